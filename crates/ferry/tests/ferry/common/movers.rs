//! The data mover as kubesim runs it in these tests: the `ferry` image maps to a small shell
//! wrapper that records each start (one line with the pod name, which kubesim gives as
//! HOSTNAME), waits while a hold file for that pod exists, then runs the ferry binary under
//! test. Starts say directly whether a data mover ever ran twice; holds keep a restore
//! InProgress for as long as a test needs, with no timing involved.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct DataMovers {
    dir: PathBuf,
}

impl DataMovers {
    /// Writes the wrapper into `dir`; returns it and the wrapper's path (the image binary).
    pub fn install(dir: &Path, ferry: &Path) -> (DataMovers, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let script = dir.join("ferry-data-mover.sh");
        let text = format!(
            "#!/bin/sh\n\
             echo \"$HOSTNAME\" >> '{dir}/starts'\n\
             while [ -e \"{dir}/hold-$HOSTNAME\" ]; do sleep 0.05; done\n\
             exec '{ferry}' \"$@\"\n",
            dir = dir.display(),
            ferry = ferry.display()
        );
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (
            DataMovers {
                dir: dir.to_path_buf(),
            },
            script,
        )
    }

    /// How many times each restore pod's data mover started.
    pub fn starts(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.dir.join("starts")).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for name in text.lines().filter(|l| !l.is_empty()) {
            *counts.entry(name.to_string()).or_default() += 1;
        }
        counts
    }

    pub fn starts_of(&self, pod: &str) -> usize {
        self.starts().get(pod).copied().unwrap_or(0)
    }

    /// Data movers of pod `pod` wait before restoring until [`DataMovers::release`].
    pub fn hold(&self, pod: &str) {
        std::fs::write(self.dir.join(format!("hold-{pod}")), b"").unwrap();
    }

    pub fn release(&self, pod: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("hold-{pod}")));
    }

    /// Waits until the data mover of `pod` started (and, if held, is waiting).
    pub async fn wait_started(&self, pod: &str, seconds: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while self.starts_of(pod) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the data mover of {pod} did not start in {seconds} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the data mover of one of `pods` started; returns which one.
    pub async fn wait_any_started(&self, pods: &[&str], seconds: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(pod) = pods.iter().find(|p| self.starts_of(p) > 0) {
                return pod.to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no data mover of {pods:?} started in {seconds} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every data mover that started, started once.
    pub fn assert_each_started_once(&self) {
        let starts = self.starts();
        for (pod, n) in &starts {
            assert_eq!(*n, 1, "data mover of {pod} started {n} times: {starts:?}");
        }
    }
}
