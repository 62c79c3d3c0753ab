//! kubesim: a simulated Kubernetes cluster for tests and the demo.

pub mod nodes;
