//! kubesim's integration tests, one binary: each module was a test file of its own.

mod api_support;
mod nodes_support;

mod api_binary;
mod api_crud;
mod api_kubectl;
mod api_lifecycle;
mod api_watch;
mod nodes_kubelet;
mod nodes_scheduling;
mod nodes_volumes;
