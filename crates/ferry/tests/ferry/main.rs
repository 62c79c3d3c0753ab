//! ferry's integration tests, one binary: each module was a test file of its own.

#[macro_use]
mod common;

mod backup_cli;
mod bench_restore;
mod config_validate;
mod demo;
mod docs_quickstarts;
mod e2e_backup;
mod e2e_backup_mover;
mod e2e_backup_restart;
mod e2e_beside_velero;
mod e2e_cleanup;
mod e2e_config_as_velero;
mod e2e_config_reload;
mod e2e_controller_process;
mod e2e_failures;
mod e2e_install;
mod e2e_ordering;
mod e2e_restart;
mod e2e_restore;
mod e2e_snapshots;
mod e2e_standalone;
mod e2e_timeouts;
mod e2e_transient_errors;
mod install_cli;
mod rbac_covers_requests;
mod repo_cli;
mod repo_cli_behaviour;
mod repo_cli_habits;
mod repo_restic_layout;
mod repo_restore_kill;
mod repo_restore_memory;
mod velero_acceptance;
