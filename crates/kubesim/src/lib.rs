//! kubesim: a simulated Kubernetes cluster for tests and the demo.
//!
//! [`ApiServer`] is a Kubernetes-compatible API server on loopback (an in-memory store,
//! discovery, CRUD, patch, watch, finalizers, garbage collection, CRDs); [`Cluster`] adds
//! the node components in [`nodes`]. See docs/kubesim.md.

pub mod admission;
pub mod audit;
mod bootstrap;
pub mod clock;
pub mod cluster;
mod controllers;
pub mod convert;
pub mod error;
pub mod kubeconfig;
pub mod nodes;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod store;

pub use cluster::{Cluster, ClusterConfig};
pub use error::ApiError;
pub use server::{ApiServer, ApiServerOptions, ServerError};
