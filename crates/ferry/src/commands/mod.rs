//! One module per top-level subcommand; each owns its clap arguments and a `run` function.

pub mod backup;
#[cfg(feature = "sim")]
pub mod bench;
pub mod cluster_args;
pub mod config;
pub mod controller;
pub mod data_movement;
pub mod data_mover;
#[cfg(feature = "sim")]
pub mod demo;
pub mod install;
pub mod repo;
pub mod repo_access;
pub mod repo_forget;
pub mod repo_progress;
pub mod repo_prune;
pub mod repo_stats;
pub mod repo_unlock;
pub mod restore;
pub mod restore_checks;
