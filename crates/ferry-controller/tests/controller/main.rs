//! ferry-controller's integration tests, one binary: each module was a test file of its own.

mod crds_types;
mod crds_velero_compat;
mod install_manifests;
