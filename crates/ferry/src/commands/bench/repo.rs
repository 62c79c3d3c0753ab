//! `ferry bench repo` backs up and restores the same generated data with restic and with
//! ferry (each as a child process, so CPU time and peak RSS come from wait4's rusage), for
//! several shapes of data, beside `tar -x` of the same tree (the floor) and, when installed,
//! rustic. Every restore is compared byte for byte with the source.

mod data;
mod fresh_fs;
mod measuring;
mod peers;
mod report;
mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::commands::demo::size;
use data::{Shape, Shapes};
use measuring::run_quiet;
pub(super) use measuring::{Measure, measure};
use measuring::{median, settle};
use peers::{Restorer, RunRepos, Target, on_path, tool_version};
use report::{Figures, Step};

#[derive(clap::Args, Debug)]
pub struct BenchRepoArgs {
    /// Amount of data to generate per shape, e.g. 1GiB, 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = size::parse_size)]
    pub size: u64,
    /// Working directory (data, repositories, restores). Default: a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Runs of every step; the figures are each step's median run (other work on the
    /// machine makes single runs noisy).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Keep the working directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Data shapes, comma-separated, each a data set of --size with its own table: small
    /// (4–64 KiB files), mixed (half small files, half 4 large ones), large (one file),
    /// sparse (a disk image, about half of it all-zero holes).
    #[arg(long, default_value = "small,mixed,large,sparse", value_parser = data::parse_shapes)]
    pub(super) shapes: Shapes,
    /// Restore into directories of the working directory's file system, not into a fresh
    /// loop-mounted ext4 per restore.
    #[arg(long)]
    pub no_fresh_fs: bool,
    /// Skip the untimed warm-up restore (a `tar -x`) before each run's timed restores. On
    /// the 2-CPU VM the first restore after the backups often took 1.5-3x as long, CPU
    /// included, whichever tool it was; the warm-up absorbs that.
    #[arg(long)]
    pub no_warm_up: bool,
}

/// What stays the same over the whole bench.
struct Bench {
    ferry: PathBuf,
    password: &'static str,
    /// A fresh file system per restore, or why not.
    fresh: Result<(), String>,
    rustic: bool,
    runs: usize,
    warm_up: bool,
    /// Whether every step started with the whole page cache dropped.
    whole_cache: bool,
}

/// One shape's outcome, to print.
struct ShapeResult {
    heading: String,
    figures: Figures,
    /// Repository sizes of the last run (restic, ferry) and the verified file count.
    repo_bytes: (u64, u64),
    files: u64,
}

impl Bench {
    fn restic(&self, cwd: &Path, cache: &Path) -> Command {
        let mut c = Command::new("restic");
        c.current_dir(cwd)
            .env("RESTIC_CACHE_DIR", cache)
            .env("RESTIC_PASSWORD", self.password)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD_FILE");
        c
    }

    fn ferry(&self, cwd: &Path) -> Command {
        let mut c = Command::new(&self.ferry);
        c.arg("repo")
            .current_dir(cwd)
            .env("FERRY_PASSWORD", self.password)
            .env_remove("FERRY_PASSWORD_FILE")
            .env_remove("FERRY_REPOSITORY");
        c
    }

    fn settle(&mut self, inputs: &[&Path]) {
        self.whole_cache &= settle(inputs);
    }

    /// Backs up `what` (a directory of `sd`, named relative as restic users do).
    fn backup(
        &mut self,
        ferry: bool,
        sd: &Path,
        repos: &RunRepos,
        what: &str,
    ) -> anyhow::Result<Measure> {
        self.settle(&[&sd.join(what)]);
        if ferry {
            measure(
                self.ferry(sd)
                    .args(["backup", "-r"])
                    .arg(&repos.ferry)
                    .arg(what),
                "ferry backup",
                sd,
            )
        } else {
            measure(
                self.restic(sd, &repos.restic_cache)
                    .arg("-r")
                    .arg(&repos.restic)
                    .args(["backup", "-q", "--compression", "auto", what]),
                "restic backup",
                sd,
            )
        }
    }

    /// The id of the one-file snapshot in `repo` (listed by ferry; restic's ids are the same).
    fn tiny_snapshot(&self, sd: &Path, repo: &Path) -> anyhow::Result<String> {
        let out = self
            .ferry(sd)
            .args(["snapshots", "--json", "-r"])
            .arg(repo)
            .output()?;
        if !out.status.success() {
            bail!(
                "ferry repo snapshots {}: {}",
                repo.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        snaps
            .iter()
            .find(|s| {
                s["paths"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p.as_str().is_some_and(|p| p.ends_with("tiny")))
                })
            })
            .and_then(|s| s["id"].as_str())
            .map(str::to_string)
            .with_context(|| format!("no snapshot of `tiny` in {}", repo.display()))
    }

    /// One restore (or untar) of `source`'s snapshot into a new target, measured, then
    /// compared with `source`; returns the measure and the restored tree's blocks on disk.
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &mut self,
        who: Restorer,
        sd: &Path,
        repos: &RunRepos,
        snap: &str,
        source: &Path,
        base: &Path,
        bytes: u64,
    ) -> anyhow::Result<(Measure, u64)> {
        let target = Target::new(self.fresh.is_ok(), base, bytes)?;
        let out = target.dir();
        let tar = source.with_extension("tar");
        let (mut cmd, inputs): (Command, Vec<&Path>) = match who {
            Restorer::Tar => {
                let mut c = Command::new("tar");
                c.arg("-xf").arg(&tar).arg("-C").arg(&out);
                (c, vec![&tar])
            }
            Restorer::Ferry | Restorer::FerryRestic | Restorer::FerryResticFlush => {
                let repo = if who == Restorer::Ferry {
                    &repos.ferry
                } else {
                    &repos.restic
                };
                let mut c = self.ferry(sd);
                c.args(["restore", "-r"])
                    .arg(repo)
                    .arg(snap)
                    .arg("--target")
                    .arg(&out);
                if who == Restorer::FerryResticFlush {
                    c.arg("--flush");
                }
                (c, vec![repo])
            }
            Restorer::Restic => {
                let mut c = self.restic(sd, &repos.restic_cache);
                c.arg("-r")
                    .arg(&repos.restic)
                    .args(["restore", snap, "--target"])
                    .arg(&out);
                (c, vec![&repos.restic, &repos.restic_cache])
            }
            Restorer::Rustic => {
                let mut c = Command::new("rustic");
                c.current_dir(sd)
                    .env("RUSTIC_PASSWORD", self.password)
                    .env_remove("RUSTIC_PASSWORD_FILE")
                    .env_remove("RUSTIC_PASSWORD_COMMAND")
                    .env_remove("RUSTIC_REPOSITORY")
                    .arg("-r")
                    .arg(&repos.restic)
                    .arg("--cache-dir")
                    .arg(&repos.rustic_cache)
                    .args(["restore", snap])
                    .arg(&out);
                (c, vec![&repos.restic, &repos.rustic_cache])
            }
        };
        self.settle(&inputs);
        let m = measure(&mut cmd, who.label(), &out)?;
        let root = tree::restored_root(&out, source);
        tree::verify_restore(source, &root, who.label())?;
        Ok((m, tree::allocated(&root)))
        // `target` drops here: a fresh file system is unmounted and deleted.
    }

    /// Generates the shape's data, then runs every step `runs` times.
    fn shape(&mut self, shape: Shape, sd: &Path, size: u64) -> anyhow::Result<ShapeResult> {
        let runs = self.runs;
        let name = shape.name();
        let _ = std::fs::remove_dir_all(sd);
        let (source, tiny) = (sd.join("data"), sd.join("tiny"));
        eprintln!(
            "{name}: generating {} MiB in {} …",
            size >> 20,
            source.display()
        );
        let set = data::generate(shape, &source, size)?;
        data::generate_tiny(&tiny)?;
        for what in ["data", "tiny"] {
            let mut tar = Command::new("tar");
            tar.current_dir(sd);
            if shape == Shape::Sparse {
                tar.arg("-S");
            }
            tar.arg("-cf").arg(format!("{what}.tar")).arg(what);
            run_quiet(&mut tar, "tar -c")?;
        }
        let mut restorers = vec![
            Restorer::Tar,
            Restorer::Ferry,
            Restorer::FerryRestic,
            Restorer::FerryResticFlush,
            Restorer::Restic,
        ];
        if self.rustic {
            restorers.push(Restorer::Rustic);
        }
        let n = restorers.len();
        let (mut full, mut startup) = (vec![vec![]; n], vec![vec![]; n]);
        let mut on_disk = vec![0u64; n];
        let (mut rbs, mut fbs, mut rbt, mut fbt) = (vec![], vec![], vec![], vec![]);
        for run in 1..=runs {
            // Every run gets new repositories.
            let repos = RunRepos::new(sd, run);
            measure(
                self.restic(sd, &repos.restic_cache)
                    .arg("init")
                    .arg("-r")
                    .arg(&repos.restic)
                    .args(["--repository-version", "2"]),
                "restic init",
                sd,
            )?;
            measure(
                self.ferry(sd).args(["init", "-r"]).arg(&repos.ferry),
                "ferry init",
                sd,
            )?;
            eprintln!("{name} run {run}/{runs} backup of one file: restic, ferry …");
            rbt.push(self.backup(false, sd, &repos, "tiny")?);
            fbt.push(self.backup(true, sd, &repos, "tiny")?);
            eprintln!("{name} run {run}/{runs} backup: restic …");
            rbs.push(self.backup(false, sd, &repos, "data")?);
            eprintln!("{name} run {run}/{runs} backup: ferry …");
            fbs.push(self.backup(true, sd, &repos, "data")?);
            let tiny_ferry = self.tiny_snapshot(sd, &repos.ferry)?;
            let tiny_restic = self.tiny_snapshot(sd, &repos.restic)?;
            if self.warm_up {
                eprintln!("{name} run {run}/{runs} warm-up (untimed): tar -x …");
                let base = sd.join(format!("warm-up-{run}"));
                let (m, _) =
                    self.restore(Restorer::Tar, sd, &repos, "", &source, &base, set.bytes)?;
                eprintln!("  {:.3} s, CPU {:.2} s (not counted)", m.wall, m.cpu);
            }
            for one_file in [false, true] {
                // A later restore may find the machine in another state; rotate who goes
                // first.
                for turn in 0..n {
                    let i = (turn + run - 1) % n;
                    let who = restorers[i];
                    let (snap, src, bytes, kind) = match (one_file, who) {
                        (false, _) => ("latest", &source, set.bytes, "out"),
                        (true, Restorer::Ferry) => (tiny_ferry.as_str(), &tiny, 4096, "tiny"),
                        (true, _) => (tiny_restic.as_str(), &tiny, 4096, "tiny"),
                    };
                    eprintln!(
                        "{name} run {run}/{runs} restore{}: {} …",
                        if one_file { " of one file" } else { "" },
                        who.label()
                    );
                    let base = sd.join(format!("{}-{kind}-{run}", who.slug()));
                    let (m, disk) = self.restore(who, sd, &repos, snap, src, &base, bytes)?;
                    eprintln!("  {:.3} s, CPU {:.2} s", m.wall, m.cpu);
                    if one_file {
                        startup[i].push(m);
                    } else {
                        full[i].push(m);
                        on_disk[i] = disk;
                    }
                }
            }
        }
        let step = |i: usize| Step {
            m: median(full[i].clone()),
            startup: median(startup[i].clone()),
            on_disk: Some(on_disk[i]),
        };
        let last = RunRepos::new(sd, runs);
        Ok(ShapeResult {
            heading: format!(
                "shape {name}: {:.0} MiB, {}; median of {runs} run(s)",
                set.bytes as f64 / 1048576.0,
                data::describe(shape, &set)
            ),
            figures: Figures {
                mib: set.bytes as f64 / 1048576.0,
                restic_backup: Step {
                    m: median(rbs),
                    startup: median(rbt),
                    on_disk: None,
                },
                ferry_backup: Step {
                    m: median(fbs),
                    startup: median(fbt),
                    on_disk: None,
                },
                tar: step(0),
                ferry: step(1),
                ferry_restic: step(2),
                ferry_restic_flush: step(3),
                restic: step(4),
                rustic: self.rustic.then(|| step(5)),
            },
            repo_bytes: (tree::du(&last.restic), tree::du(&last.ferry)),
            files: set.files,
        })
    }
}

/// Removes what a shape's runs left in `sd`; the data set and its tar stay.
fn clean_shape(sd: &Path) {
    let Ok(rd) = std::fs::read_dir(sd) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !["data", "tiny", "data.tar", "tiny.tar"].contains(&name.to_string_lossy().as_ref()) {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub(super) fn bench_repo(a: BenchRepoArgs) -> anyhow::Result<ExitCode> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    fresh_fs::unmount_stale(&dir);
    let fresh = if a.no_fresh_fs {
        Err("--no-fresh-fs".to_string())
    } else {
        fresh_fs::probe(&dir)
    };
    match &fresh {
        Ok(()) => eprintln!("restoring into a fresh loop-mounted ext4 per restore"),
        Err(why) => eprintln!("restoring into directories of {} ({why})", dir.display()),
    }
    let mut bench = Bench {
        ferry: std::env::current_exe()?,
        password: "ferry-bench-password",
        fresh,
        rustic: on_path("rustic"),
        runs: a.runs.max(1),
        warm_up: !a.no_warm_up,
        whole_cache: true,
    };
    let mut summary = Vec::new();
    for &shape in &a.shapes.0 {
        let sd = dir.join(shape.name());
        let r = bench.shape(shape, &sd, a.size)?;
        let f = &r.figures;
        println!();
        println!("{}", r.heading);
        for line in report::table(f) {
            println!("{line}");
        }
        println!(
            "repository size: restic {:.1} MiB, ferry {:.1} MiB; every restore verified identical to the source ({} file{})",
            r.repo_bytes.0 as f64 / 1048576.0,
            r.repo_bytes.1 as f64 / 1048576.0,
            r.files,
            if r.files == 1 { "" } else { "s" },
        );
        let goals = report::goals(f);
        for g in &goals {
            println!("{}", g.line());
        }
        for line in report::ratio_lines(f) {
            println!("{line}");
        }
        summary.push(report::summary_line(shape.name(), &goals));
        if !a.keep {
            if a.dir.is_none() {
                let _ = std::fs::remove_dir_all(&sd);
            } else {
                clean_shape(&sd);
            }
        }
    }
    println!();
    println!(
        "measured: wall = process start to exit (restored files are not fsynced by any tool but `ferry restore --flush`, which flushes them as the data mover does; \
         restic and ferry fsync the repository files they write); +flush adds syncfs of the output file system after exit; \
         start-up = the same step for a set of one 4 KiB file (its backup into the same repository, made \
         before the data set's; its restore from there; the untar of its tar), w/o start-up = size / (wall - start-up); the restores rotate which tool goes first{}; \
         CPU = user+system of the process; each step starts after sync with {}; targets: {}; \
         restic {} with --compression auto, ferry zstd level {}; {}",
        if bench.warm_up {
            ", after an untimed warm-up (a tar -x of the data set, after the backups of each run)"
        } else {
            ", no warm-up (--no-warm-up)"
        },
        if bench.whole_cache {
            "the whole page cache dropped"
        } else {
            "its input dropped from the page cache (POSIX_FADV_DONTNEED; not root, so other cached files stay)"
        },
        match &bench.fresh {
            Ok(()) => "every restore and untar into its own fresh ext4 (a sparse image file of the data \
                       set's size + 25% + 64 MiB, mkfs.ext4 without lazy init, mount -o loop, unmounted and \
                       deleted after the step); the repositories on the working directory's file system"
                .to_string(),
            Err(why) => format!(
                "directories of the working directory's file system, nothing deleted between the steps of a shape \
                 (no fresh file system per restore: {why})"
            ),
        },
        tool_version("restic"),
        ferry_repo::compression::LEVEL,
        if bench.rustic {
            format!("rustic {}", tool_version("rustic"))
        } else {
            "rustic: not installed".to_string()
        }
    );
    println!(
        "summary (goals: ferry restore / tar -x <= 1.1x wall; ferry restore of restic's repository >= 2x restic's throughput; \
         ferry backup >= 2x restic's; ferry peak RSS <= 256 MiB):"
    );
    for line in summary {
        println!("  {line}");
    }
    if !a.keep && a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ExitCode::SUCCESS)
}
