//! The top-level object shape shared by ferry's Velero CRD types, and their `kube::Resource`
//! implementation, written by hand so that the CRD ferry installs is exactly Velero's (kube's
//! derive would add a status subresource Velero's CRDs do not have).

/// Implements `kube::Resource`, `Serialize` (with `apiVersion`/`kind`) and a constructor for
/// a namespaced custom resource `struct $kind { metadata, spec, status: Option<_> }`.
macro_rules! velero_resource {
    ($kind:ident, group = $group:literal, version = $version:literal, plural = $plural:literal) => {
        impl $kind {
            /// API group (`velero.io`).
            pub const GROUP: &'static str = $group;
            /// API version within the group.
            pub const VERSION: &'static str = $version;
            /// `apiVersion` as written in manifests.
            pub const API_VERSION: &'static str = concat!($group, "/", $version);
            /// `kind`.
            pub const KIND: &'static str = stringify!($kind);
            /// Resource name in URLs and RBAC rules.
            pub const PLURAL: &'static str = $plural;
            /// CustomResourceDefinition name (`<plural>.<group>`).
            pub const CRD_NAME: &'static str = concat!($plural, ".", $group);

            /// Whether the object holds `finalizer`.
            pub fn holds_finalizer(&self, finalizer: &str) -> bool {
                self.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|f| f == finalizer))
            }
        }

        impl kube::Resource for $kind {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                Self::KIND.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                Self::GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                Self::VERSION.into()
            }
            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                Self::API_VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                Self::PLURAL.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl serde::Serialize for $kind {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = if self.status.is_some() { 5 } else { 4 };
                let mut out = serializer.serialize_struct(stringify!($kind), fields)?;
                out.serialize_field("apiVersion", Self::API_VERSION)?;
                out.serialize_field("kind", Self::KIND)?;
                out.serialize_field("metadata", &self.metadata)?;
                out.serialize_field("spec", &self.spec)?;
                if let Some(status) = &self.status {
                    out.serialize_field("status", status)?;
                }
                out.end()
            }
        }
    };
}

pub(crate) use velero_resource;
