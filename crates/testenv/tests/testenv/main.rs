//! testenv's integration tests, one binary: each module was a test file of its own.

mod kubesim_vs_real;
mod velero_server;
