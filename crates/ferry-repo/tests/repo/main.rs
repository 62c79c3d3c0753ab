//! ferry-repo's integration tests, one binary: each module was a test file of its own.

mod common;
mod s3_support;

mod concurrent_init;
mod fuzz_smoke;
mod key_files;
mod key_once_per_process;
mod lock_interop;
mod read_ahead;
mod repo_behaviour;
mod restic_interop;
mod restic_maintenance;
mod restore_damage;
mod restore_filters;
mod restore_flush;
mod restore_safety;
mod s3_backend;
mod s3_faults;
mod s3_location;
mod s3_repository;
mod xattr_interop;
