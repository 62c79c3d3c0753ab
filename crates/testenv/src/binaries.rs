//! Where the real components are: the folder `testenv/build` fills in a machine-wide cache
//! (built once per pinned version, see testenv/README.md), or `FERRY_TESTENV_BIN`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The repository's `testenv/` folder (Go modules and the build script).
pub fn testenv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv")
}

#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries, built first if this machine has not built these pins yet (that takes
    /// about 8 minutes for Kubernetes and 10 for Velero on 2 cores; a second call is instant).
    pub fn locate() -> anyhow::Result<Binaries> {
        static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let found = FOUND.get_or_init(|| find().map_err(|e| format!("{e:#}")));
        match found {
            Ok(dir) => Ok(Binaries { dir: dir.clone() }),
            Err(e) => bail!("{e}"),
        }
    }

    pub fn in_dir(dir: PathBuf) -> Binaries {
        Binaries { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of binary `name`, which must exist.
    pub fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        if !path.exists() {
            bail!(
                "{name} is not in {} (run testenv/build to build the pinned components)",
                self.dir.display()
            );
        }
        Ok(path)
    }

    /// The VolumeSnapshot CRDs (snapshot.storage.k8s.io) of the pinned external-snapshotter,
    /// which the build copies beside the Kubernetes binaries.
    pub fn snapshot_crds(&self) -> anyhow::Result<Vec<PathBuf>> {
        let apiserver = std::fs::canonicalize(self.path("kube-apiserver")?)?;
        let crds = apiserver
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("crds"))
            .context("kube-apiserver has no parent folder")?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&crds)
            .with_context(|| format!("cannot list {}", crds.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        Ok(files)
    }
}

fn find() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRY_TESTENV_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = testenv_dir().join("build");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("all")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); see its messages above",
            script.display(),
            out.status
        );
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        bail!("{} printed no folder", script.display());
    }
    Ok(PathBuf::from(dir))
}
