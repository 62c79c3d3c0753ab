//! ferry's test environment: the real Kubernetes control plane built from the pinned Go
//! modules in `testenv/` (see testenv/README.md), started on 127.0.0.1, with kubesim's
//! nodes attached; or kubesim alone. Tests take a [`TestCluster`]; people run `testenv up`.

pub mod audit;
pub mod binaries;
pub mod cluster;
pub mod control_plane;
pub mod kubeconfig;
pub mod pki;
pub mod processes;
pub mod reset;
pub mod shared;
pub mod velero;

pub use binaries::Binaries;
pub use cluster::{Backend, ClusterConfig, TestCluster, service_account_user};
