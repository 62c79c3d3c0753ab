//! Reading what a data mover works from: its DataDownload or DataUpload, and the
//! BackupStorageLocation that object names. The three commands read them alike, and say alike
//! what is missing.

use ferry_controller::crds::BackupStorageLocation;
use kube::Api;
use kube::core::NamespaceResourceScope;
use serde::de::DeserializeOwned;

use crate::error::{DataMoverError, kube_err};

/// The DataDownload or DataUpload `ns/name`, with the API it was read through (the progress
/// reports go there).
pub(crate) async fn read_own<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(Api<K>, K), DataMoverError>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    let id = format!("{ns}/{name}");
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let object = api
        .get_opt(name)
        .await
        .map_err(|e| kube_err(&format!("reading {kind} {id}"), e))?
        .ok_or(DataMoverError::NotFound { kind, id })?;
    Ok((api, object))
}

/// The BackupStorageLocation `ns/name`, which `named_by` ("DataUpload ns/x") names.
pub(crate) async fn read_location(
    client: &kube::Client,
    ns: &str,
    name: &str,
    named_by: &str,
) -> Result<BackupStorageLocation, DataMoverError> {
    let id = format!("{ns}/{name}");
    Api::<BackupStorageLocation>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| kube_err(&format!("reading BackupStorageLocation {id}"), e))?
        .ok_or_else(|| DataMoverError::LocationNotFound {
            name: id,
            named_by: named_by.to_string(),
        })
}
