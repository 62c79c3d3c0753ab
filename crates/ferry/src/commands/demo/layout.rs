//! The demo's output directory: what goes where, and making it ready without destroying
//! anything that is not a previous demo's output.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use super::timeline::TimelineInput;

/// A file marking a directory as the demo's output, so a rerun may clean it.
const MARKER: &str = ".ferry-demo";
/// A file a running demo holds an OS lock on (released when the process ends, however it
/// ends), so a second demo never wipes the cluster of one still running (`--keep`).
const LOCK: &str = ".ferry-demo.lock";

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    _lock: Option<Arc<File>>,
}

impl Layout {
    /// Creates `root` or cleans a previous demo's output in it. A directory with other
    /// content is left alone and refused.
    pub fn prepare(root: &Path) -> anyhow::Result<Layout> {
        if root.exists() {
            let marked = root.join(MARKER).exists();
            let empty = std::fs::read_dir(root)
                .with_context(|| format!("reading the output directory {}", root.display()))?
                .next()
                .is_none();
            if !marked && !empty {
                bail!(
                    "--out {}: the directory exists and is not a previous demo's output; pass an \
                     empty or new directory",
                    root.display()
                );
            }
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the output directory {}", root.display()))?;
        let lock = lock(root)?;
        {
            for old in ["cluster", "backups"] {
                let path = root.join(old);
                if path.exists() {
                    std::fs::remove_dir_all(&path).with_context(|| {
                        format!("removing the previous demo's {}", path.display())
                    })?;
                }
            }
        }
        std::fs::write(
            root.join(MARKER),
            "output of `ferry demo`; safe to delete\n",
        )
        .with_context(|| format!("writing {}", root.join(MARKER).display()))?;
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Ok(Layout {
            root,
            _lock: Some(Arc::new(lock)),
        })
    }

    /// kubesim's data: PV directories, pod logs, the kubeconfig.
    pub fn cluster(&self) -> PathBuf {
        self.root.join("cluster")
    }

    /// The BackupStorageLocation's directory (`config.path`).
    pub fn location(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// Where the repository for the workload's namespace lives under the location:
    /// `<path>/<bucket>/<prefix>/plugins/ferry/<namespace>`.
    pub fn repository(&self) -> PathBuf {
        self.location()
            .join(super::objects::LOCATION_BUCKET)
            .join(super::objects::LOCATION_PREFIX)
            .join(ferry_mover::REPOSITORY_DIR)
            .join(super::objects::WORKLOAD_NAMESPACE)
    }

    /// The log of a controller process (the bench's), per restore mode.
    pub fn controller_log(&self, mode: &str) -> PathBuf {
        self.root.join(format!("controller-{mode}.log"))
    }

    pub fn report(&self) -> PathBuf {
        self.root.join("report.txt")
    }

    pub fn svg(&self) -> PathBuf {
        self.root.join("timeline.svg")
    }

    pub fn html(&self) -> PathBuf {
        self.root.join("timeline.html")
    }

    /// Writes the report, the timeline SVG and its HTML page, and prints where they are.
    pub fn write_report_and_timeline(
        &self,
        report: &str,
        timeline: &TimelineInput,
    ) -> anyhow::Result<()> {
        let svg = super::timeline::render_svg(timeline);
        let html = super::timeline::render_html(timeline, &svg);
        for (path, text) in [
            (self.report(), report),
            (self.svg(), svg.as_str()),
            (self.html(), html.as_str()),
        ] {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("Timeline: {}", self.svg().display());
        println!("          {}", self.html().display());
        println!("Report:   {}", self.report().display());
        Ok(())
    }
}

/// Takes the output directory's lock, or says which running demo holds it.
fn lock(root: &Path) -> anyhow::Result<File> {
    let path = root.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "--out {}: a running `ferry demo` (pid {}) uses this directory; stop it (Ctrl-C) \
                 or choose another --out",
                root.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_created_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let layout = Layout::prepare(&root).unwrap();
        assert!(root.join(MARKER).exists());
        assert!(
            layout
                .repository()
                .ends_with("backups/demo/backups/plugins/ferry/ledger")
        );
    }

    #[test]
    fn a_previous_demo_output_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        Layout::prepare(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("cluster/pv")).unwrap();
        std::fs::write(dir.path().join("timeline.svg"), "old").unwrap();
        Layout::prepare(dir.path()).unwrap();
        assert!(!dir.path().join("cluster").exists());
    }

    #[test]
    fn a_foreign_directory_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cluster")).unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
        let err = Layout::prepare(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a previous demo's output"), "{err}");
        assert!(dir.path().join("cluster").exists());
        assert!(dir.path().join("thesis.tex").exists());
    }

    #[test]
    fn a_directory_in_use_by_a_running_demo_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let running = Layout::prepare(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("cluster/pv")).unwrap();
        let err = Layout::prepare(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "a running `ferry demo` (pid {}) uses this directory",
                std::process::id()
            )),
            "{err}"
        );
        assert!(dir.path().join("cluster/pv").exists(), "nothing removed");
        drop(running);
        Layout::prepare(dir.path()).unwrap();
        assert!(!dir.path().join("cluster").exists());
    }
}
