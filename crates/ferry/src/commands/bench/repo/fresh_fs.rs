//! A freshly made ext4 for one benchmark step: a sparse image file, `mkfs.ext4`, `mount -o
//! loop`; unmounted and deleted when the guard drops (also when the step failed). Every
//! restore then writes into an empty, unaged file system of the same size, whatever ran
//! before it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use super::measuring::run_quiet;

/// A mounted fresh ext4; dropping it unmounts it and deletes the image and the mount point.
pub(super) struct FreshFs {
    image: PathBuf,
    mount: PathBuf,
    mounted: bool,
}

/// The image size for a step writing `bytes`: the bytes plus a quarter, plus 64 MiB for the
/// file system's own metadata and journal, in whole MiB.
pub(super) fn image_size(bytes: u64) -> u64 {
    let want = bytes + bytes / 4 + (64 << 20);
    want.div_ceil(1 << 20) << 20
}

impl FreshFs {
    /// Makes an ext4 of [`image_size`]`(bytes)` in the sparse file `<base>.img` and mounts it at
    /// `<base>`. The inode tables and journal are initialised now (no lazy init running in
    /// the background during the step).
    pub(super) fn new(base: &Path, bytes: u64) -> anyhow::Result<FreshFs> {
        let image = base.with_extension("img");
        let _ = std::fs::remove_file(&image);
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(image_size(bytes)))
            .with_context(|| format!("create {}", image.display()))?;
        std::fs::create_dir_all(base)?;
        // From here on Drop cleans up whatever exists.
        let mut fs = FreshFs {
            image,
            mount: base.to_path_buf(),
            mounted: false,
        };
        run_quiet(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-E"])
                .arg("lazy_itable_init=0,lazy_journal_init=0,nodiscard")
                .arg(&fs.image),
            "mkfs.ext4",
        )?;
        let mount = || {
            run_quiet(
                Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&fs.image)
                    .arg(&fs.mount),
                "mount -o loop",
            )
        };
        if let Err(e) = mount() {
            // The loop driver may be a module not loaded yet.
            if Path::new("/dev/loop-control").exists()
                || run_quiet(Command::new("modprobe").arg("loop"), "modprobe loop").is_err()
            {
                return Err(e);
            }
            mount()?;
        }
        fs.mounted = true;
        Ok(fs)
    }

    /// The mount point.
    pub(super) fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        if self.mounted {
            let mut done = false;
            for attempt in 0..5 {
                if run_quiet(Command::new("umount").arg(&self.mount), "umount").is_ok() {
                    done = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            if !done {
                // Busy: detach it now, the kernel finishes when the last user goes.
                if let Err(e) = run_quiet(
                    Command::new("umount").arg("-l").arg(&self.mount),
                    "umount -l",
                ) {
                    eprintln!("warning: {e}; {} stays mounted", self.mount.display());
                    return;
                }
            }
        }
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Whether fresh file systems can be made here: Ok, or why not (said in the output).
pub(super) fn probe(dir: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    if Command::new("mkfs.ext4")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_err()
    {
        return Err("mkfs.ext4 not found".into());
    }
    let fs = FreshFs::new(&dir.join("fresh-fs-probe"), 1 << 20).map_err(|e| format!("{e:#}"))?;
    std::fs::write(fs.path().join("probe"), b"probe")
        .map_err(|e| format!("cannot write to a fresh file system: {e}"))?;
    Ok(())
}

/// The mount points below `dir` in the mount table (for instance, left by an interrupted
/// run), deepest first.
pub(super) fn mounts_below(mounts: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // The table escapes spaces and other specials as octal (\040).
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// Unmounts what an interrupted run left mounted below `dir`.
pub(super) fn unmount_stale(dir: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    for m in mounts_below(&table, dir) {
        eprintln!("unmounting {} (left by an earlier run)", m.display());
        if run_quiet(Command::new("umount").arg(&m), "umount").is_err() {
            let _ = run_quiet(Command::new("umount").arg("-l").arg(&m), "umount -l");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_holds_the_data_and_a_margin() {
        assert_eq!(image_size(0), 64 << 20);
        assert_eq!(image_size(1 << 30), (1280 << 20) + (64 << 20));
        let odd = image_size(1000);
        assert_eq!(odd % (1 << 20), 0);
        assert!(odd >= 1000 + (64 << 20));
    }

    fn mounted(p: &Path) -> bool {
        let table = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts_below(&table, p.parent().unwrap()).contains(&p.to_path_buf())
    }

    #[test]
    fn the_guard_unmounts_and_deletes_even_when_the_step_fails() {
        let dir = tempfile::tempdir().unwrap();
        if let Err(why) = probe(dir.path()) {
            // Not root, no mkfs.ext4, or no loop devices: nothing to test here.
            eprintln!("skipped: no fresh file systems here ({why})");
            return;
        }
        let base = dir.path().join("target");
        let step = || -> anyhow::Result<()> {
            let fs = FreshFs::new(&base, 8 << 20)?;
            assert!(mounted(&base));
            // A file system of its own: not the one holding the temporary directory.
            use std::os::unix::fs::MetadataExt;
            assert_ne!(
                std::fs::metadata(fs.path())?.dev(),
                std::fs::metadata(dir.path())?.dev()
            );
            assert!(fs.path().join("lost+found").is_dir());
            std::fs::write(fs.path().join("f"), vec![1u8; 4 << 20])?;
            anyhow::bail!("the step failed");
        };
        assert!(step().is_err());
        assert!(!mounted(&base));
        assert!(!base.exists());
        assert!(!base.with_extension("img").exists());
    }

    #[test]
    fn stale_mounts_below_the_dir_deepest_first() {
        let table = "/dev/vda / ext4 rw 0 0\n\
                     /dev/loop0 /b/shape/x\\040y ext4 rw 0 0\n\
                     /dev/loop1 /b/shape/out/inner ext4 rw 0 0\n\
                     /dev/loop2 /bench2/out ext4 rw 0 0\n\
                     /dev/loop3 /b ext4 rw 0 0\n";
        assert_eq!(
            mounts_below(table, Path::new("/b")),
            vec![
                PathBuf::from("/b/shape/out/inner"),
                PathBuf::from("/b/shape/x y")
            ]
        );
    }
}
