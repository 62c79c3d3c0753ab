//! What `ferry restore create` checks before it writes anything: both namespaces exist, the
//! target PVC name is free, the BackupStorageLocation and the password secret exist, and the
//! snapshot is in the repository — which also gives the size the target PVC needs.

use anyhow::{Context, bail};
use ferry_controller::crds::BackupStorageLocation;
use ferry_mover::location::{
    PasswordSource, RepositoryLocation, open_location_backend, repository_location,
};
use ferry_repo::Repository;
use ferry_repo::stats::StatsMode;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::Api;
use kube::api::ListParams;

use super::repo_progress::human_bytes;

const GIB: u64 = 1 << 30;

/// What the checks found.
#[derive(Debug)]
pub struct Checked {
    /// Bytes a restore of the snapshot writes; None when the repository was not opened.
    pub snapshot_bytes: Option<u64>,
    /// The snapshot's full ID, when the repository was opened.
    pub snapshot_id: Option<String>,
}

/// The inputs of the checks.
pub struct Request<'a> {
    pub namespace: &'a str,
    pub target_namespace: &'a str,
    pub pvc: &'a str,
    pub location: &'a str,
    pub source_namespace: &'a str,
    pub snapshot: &'a str,
    pub password_secret: &'a str,
    pub open_repository: bool,
}

pub async fn check(client: &kube::Client, r: &Request<'_>) -> anyhow::Result<Checked> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(r.namespace).await?.is_none() {
        bail!(
            "namespace {:?} does not exist: -n/--namespace names ferry's namespace (where `ferry \
             install` put the controller and the BackupStorageLocations; default velero)",
            r.namespace
        );
    }
    if namespaces.get_opt(r.target_namespace).await?.is_none() {
        bail!(
            "target namespace {:?} does not exist: create it first (`kubectl create namespace {}`)",
            r.target_namespace,
            r.target_namespace
        );
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), r.target_namespace);
    if pvcs.get_opt(r.pvc).await?.is_some() {
        bail!(
            "PVC {}/{} already exists: a restore creates its target PVC; delete it or choose \
             another --to",
            r.target_namespace,
            r.pvc
        );
    }
    let locations: Api<BackupStorageLocation> = Api::namespaced(client.clone(), r.namespace);
    let Some(bsl) = locations
        .get_opt(r.location)
        .await
        .context("reading BackupStorageLocations (are ferry's CRDs installed? `ferry install`)")?
    else {
        let names: Vec<String> = locations
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|l| l.metadata.name)
            .collect();
        bail!(
            "BackupStorageLocation {}/{} not found (locations there: {})",
            r.namespace,
            r.location,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let password = PasswordSource {
        secret: r.password_secret.to_string(),
        given: None,
    };
    let password = password
        .read(client, r.namespace)
        .await
        .context("reading the repository password the controller uses")?;
    if !r.open_repository {
        return Ok(Checked {
            snapshot_bytes: None,
            snapshot_id: None,
        });
    }
    if let RepositoryLocation::Local(path) =
        repository_location(r.location, &bsl.spec, r.source_namespace)?
        && !path.exists()
    {
        let base = bsl
            .spec
            .config
            .as_ref()
            .and_then(|c| c.get("path"))
            .cloned()
            .unwrap_or_default();
        if !std::path::Path::new(&base).exists() {
            bail!(
                "location {} is the local path {base} on the nodes, which this machine does not \
                 have: give --skip-repository-check and --size to restore without checking here",
                r.location
            );
        }
        bail!(
            "no repository for source namespace {:?} in location {} ({}): was the backup taken \
             in another namespace? (--source-namespace)",
            r.source_namespace,
            r.location,
            path.display()
        );
    }
    let backend = open_location_backend(client, r.namespace, &bsl, r.source_namespace).await?;
    let repo = Repository::open(backend, &password)
        .await
        .with_context(|| {
            format!(
                "opening the repository of location {} for source namespace {:?}",
                r.location, r.source_namespace
            )
        })?;
    let snapshot = repo.find_snapshot(r.snapshot).await.with_context(|| {
        format!(
            "snapshot {:?} in location {} (source namespace {:?})",
            r.snapshot, r.location, r.source_namespace
        )
    })?;
    let stats = repo
        .stats(std::slice::from_ref(&snapshot), StatsMode::RestoreSize)
        .await?;
    Ok(Checked {
        snapshot_bytes: Some(stats.total_size),
        snapshot_id: Some(snapshot.id.to_hex()),
    })
}

/// The target PVC's size: the one asked for (refused when the data cannot fit), else the
/// snapshot's data plus a tenth for the filesystem's own structures, rounded up to whole GiB.
pub fn pvc_size(asked: Option<&str>, snapshot_bytes: Option<u64>) -> anyhow::Result<String> {
    match (asked, snapshot_bytes) {
        (Some(size), bytes) => {
            let q: ferry_config::Quantity = size
                .parse()
                .map_err(|e| anyhow::anyhow!("--size {size:?}: {e}"))?;
            if q.value() <= 0 {
                bail!("--size {size:?}: must be positive");
            }
            if let Some(bytes) = bytes
                && (q.value() as u128) < bytes as u128
            {
                bail!(
                    "--size {size} is smaller than the snapshot's {} of data; give at least \
                     that, or leave --size out to size the PVC from the snapshot",
                    human_bytes(bytes)
                );
            }
            Ok(size.to_string())
        }
        (None, Some(bytes)) => {
            let wanted = bytes + bytes / 10;
            Ok(format!("{}Gi", wanted.div_ceil(GIB).max(1)))
        }
        (None, None) => {
            bail!("--size is needed when the repository is not checked (--skip-repository-check)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_comes_from_the_snapshot_with_room_to_spare() {
        assert_eq!(pvc_size(None, Some(0)).unwrap(), "1Gi");
        assert_eq!(pvc_size(None, Some(33_866_448)).unwrap(), "1Gi");
        assert_eq!(pvc_size(None, Some(GIB)).unwrap(), "2Gi");
        assert_eq!(pvc_size(None, Some(10 * GIB)).unwrap(), "11Gi");
    }

    #[test]
    fn an_asked_size_is_kept_unless_the_data_cannot_fit() {
        assert_eq!(pvc_size(Some("64Mi"), Some(1 << 20)).unwrap(), "64Mi");
        assert_eq!(pvc_size(Some("64Mi"), None).unwrap(), "64Mi");
        let err = pvc_size(Some("1Mi"), Some(3 << 20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("smaller than the snapshot's 3.0 MiB"), "{err}");
        assert!(pvc_size(Some("lots"), None).is_err());
        assert!(
            pvc_size(None, None)
                .unwrap_err()
                .to_string()
                .contains("--size")
        );
    }
}
