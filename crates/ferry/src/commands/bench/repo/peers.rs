//! Who restores, where to, and the helper commands around the measured ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fresh_fs::FreshFs;

/// Who restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restorer {
    Tar,
    /// ferry restoring its own repository.
    Ferry,
    /// ferry restoring the repository restic wrote.
    FerryRestic,
    /// The same with `--flush`, as the data mover restores (and so with direct writes).
    FerryResticFlush,
    Restic,
    /// rustic restoring the repository restic wrote.
    Rustic,
}

impl Restorer {
    pub(super) fn label(self) -> &'static str {
        match self {
            Restorer::Tar => "tar -x",
            Restorer::Ferry => "ferry restore",
            Restorer::FerryRestic => "ferry restore (restic's repository)",
            Restorer::FerryResticFlush => "ferry restore --flush (restic's repository)",
            Restorer::Restic => "restic restore",
            Restorer::Rustic => "rustic restore (restic's repository)",
        }
    }

    pub(super) fn slug(self) -> &'static str {
        match self {
            Restorer::Tar => "tar",
            Restorer::Ferry => "ferry",
            Restorer::FerryRestic => "ferry-rr",
            Restorer::FerryResticFlush => "ferry-rr-flush",
            Restorer::Restic => "restic",
            Restorer::Rustic => "rustic",
        }
    }
}

/// Where one restore writes: its own fresh file system, or a new directory of the working
/// directory's file system.
pub(super) enum Target {
    Fresh(FreshFs),
    Dir(PathBuf),
}

impl Target {
    pub(super) fn new(fresh: bool, base: &Path, bytes: u64) -> anyhow::Result<Target> {
        let t = if fresh {
            Target::Fresh(FreshFs::new(base, bytes)?)
        } else {
            let _ = std::fs::remove_dir_all(base);
            Target::Dir(base.to_path_buf())
        };
        std::fs::create_dir_all(t.dir())?;
        Ok(t)
    }

    pub(super) fn dir(&self) -> PathBuf {
        match self {
            Target::Fresh(f) => f.path().join("out"),
            Target::Dir(d) => d.clone(),
        }
    }
}

/// One run's repositories and caches, below the shape's directory.
pub(super) struct RunRepos {
    pub(super) restic: PathBuf,
    pub(super) ferry: PathBuf,
    pub(super) restic_cache: PathBuf,
    pub(super) rustic_cache: PathBuf,
}

impl RunRepos {
    pub(super) fn new(sd: &Path, run: usize) -> RunRepos {
        let p = |d: &str| sd.join(format!("{d}-{run}"));
        RunRepos {
            restic: p("restic-repo"),
            ferry: p("ferry-repo"),
            restic_cache: p("restic-cache"),
            rustic_cache: p("rustic-cache"),
        }
    }
}

/// Whether an executable `name` is on PATH.
pub(super) fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The second word of `<tool> version` (restic) or `<tool> --version` (rustic).
pub(super) fn tool_version(tool: &str) -> String {
    let arg = if tool == "restic" {
        "version"
    } else {
        "--version"
    };
    Command::new(tool)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}
