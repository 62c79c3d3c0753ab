//! The quickstarts run as written: every shell block of docs/quickstart-velero.md and
//! docs/quickstart-standalone.md, in order, on the real Kubernetes control plane (with kubesim's
//! nodes attached, docs/real-cluster.md), so a command, flag or output the docs promise cannot
//! drift from the binary without this test failing.
//!
//! The rules for the fenced blocks of a quickstart:
//!
//! - ```` ```sh ````: run. The blocks of one page run in one `bash` with `set -euo pipefail`,
//!   one after another, as a reader types them into one shell (variables carry over); each
//!   must exit 0. A failure names the block (file and line), its text and its output.
//! - ```` ```sh no-test ````: not run, because the test machine cannot (build ferry, push an
//!   image, run `velero install`, read pod logs). Each such block must be listed in
//!   [`VELERO_SUBSTITUTES`] or [`STANDALONE_SUBSTITUTES`], in page order, with what the test
//!   does instead; a new one fails the test until it is listed. A variable such a block
//!   exports must be one the test sets, so the blocks after it see a value.
//! - `text`, `yaml`, `json`: shown to the reader, never run. Any other info string (`bash`,
//!   `console`, none at all) fails the test, so no command block is skipped by accident.
//!
//! What the test provides instead of the reader's cluster:
//!
//! - the cluster: one of the run's real control planes with 2 kubesim nodes; `KUBECONFIG` is
//!   its admin kubeconfig. kubesim's kubelets run an image named `…/ferry:…` as the `ferry`
//!   binary under test (through the wrapper below), and busybox's `sh`/`sleep` as this
//!   machine's, so the controller Deployment of `ferry install` and the data mover pods it
//!   starts really run, as their service accounts, judged by the real RBAC.
//! - the controller's port: kubesim runs pods as processes on this machine's network, where
//!   the port 8080 the installed controller serves its metrics on may be taken (another test's
//!   controller, anything else listening there). The `…/ferry` image therefore runs a
//!   wrapper that adds `--metrics-address 127.0.0.1:0` (a free port) to `ferry controller`
//!   and runs every other command unchanged.
//! - the bucket: moto (an S3 server, `python3 -m moto.server`) on 127.0.0.1; for the Velero
//!   page the one `testenv::velero::Velero::start` runs.
//! - Velero: `velero install` deploys Velero's server as a pod, which these nodes cannot pull
//!   or run. `Velero::start` does what it does with the page's arguments (Velero's CRDs, the
//!   secret `cloud-credentials`, the location `default` on bucket `velero` with prefix
//!   `backups`, the AWS plugin) and runs `velero server` as a local process; the test checks
//!   that the page's `velero install` names that bucket, prefix and plugin version.
//! - `kubectl logs`: the API server reaches no kubelet here (kubesim's nodes serve no logs
//!   API), so the test prints the container's log file from the node instead, and checks it.
//! - the reader's `PATH`: the `ferry` binary under test (`CARGO_BIN_EXE_ferry`), then
//!   `kubectl` (and, on the Velero page, `velero`) from the pinned components
//!   (`FERRY_TESTENV_BIN`; the standalone page gets no `velero`), then the test's own `PATH`
//!   without the pinned components' folder;
//!   `HOME` and the working directory are fresh, the environment is otherwise empty but for
//!   the settings of step 1, set to the values above.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testenv::processes::{self, Group, Spawn};
use testenv::velero::Velero;
use testenv::{Backend, Binaries, ClusterConfig, TestCluster};

/// What the test does instead of a `sh no-test` block: the block's first command starts with
/// `starts_with`; `instead` is run in its place (bash, may be empty); `why` is printed.
struct Substitute {
    starts_with: &'static str,
    instead: &'static str,
    why: &'static str,
}

const SETTINGS_BLOCK: Substitute = Substitute {
    starts_with: "export BUCKET=",
    instead: "",
    why: "the test exports the same variables for its cluster, bucket and image",
};
const CARGO_INSTALL: Substitute = Substitute {
    starts_with: "cargo install",
    instead: "",
    why: "the ferry binary under test is first on PATH",
};
const DOCKER_BUILD: Substitute = Substitute {
    starts_with: "docker build",
    instead: "",
    why: "kubesim's nodes run the image …/ferry:… as the ferry binary under test",
};
const POD_LOG: Substitute = Substitute {
    starts_with: "kubectl -n shop logs app -c data",
    instead: r#"cat "$FERRY_DOCS_PODS/shop_app/data.log""#,
    why: "kubesim's nodes serve no logs API: the container's log file on the node is printed",
};

const VELERO_SUBSTITUTES: &[Substitute] = &[
    SETTINGS_BLOCK,
    CARGO_INSTALL,
    DOCKER_BUILD,
    Substitute {
        starts_with: "velero install",
        instead: "",
        why: "Velero::start did the same before the first block, with velero server as a local process",
    },
    POD_LOG,
];

const STANDALONE_SUBSTITUTES: &[Substitute] =
    &[SETTINGS_BLOCK, CARGO_INSTALL, DOCKER_BUILD, POD_LOG];

/// The variables of step 1 ("Settings") of both pages, which the test sets instead.
const SETTINGS: &[&str] = &[
    "BUCKET",
    "S3_URL",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "FERRY_IMAGE",
    "CSI_DRIVER",
    "SNAPSHOT_CLASS",
];

/// The image the settings name; kubesim maps its last path component, `ferry`, to the binary.
const FERRY_IMAGE: &str = "registry.example.com/ferry:0.1.0";
const REGION: &str = "us-east-1";
/// The whole page, kept below nextest's limit for a real-cluster test.
const PAGE_TIMEOUT: Duration = Duration::from_secs(300);
const MARK: &str = "@@ferry-docs-block";

#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    run: bool,
    text: String,
}

impl Block {
    fn first_command(&self) -> &str {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default()
    }
}

/// The fenced blocks of a page, checked against the rules in the header.
fn blocks(page: &str, markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        assert!(
            !trimmed.starts_with("~~~"),
            "{page}:{}: use ``` fences, which this test reads",
            i + 1
        );
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        assert_eq!(
            trimmed.len(),
            line.len(),
            "{page}:{}: an indented fence; the quickstarts' blocks start in column 1",
            i + 1
        );
        let info = info.trim();
        let run = match info {
            "sh" => true,
            "sh no-test" => false,
            "text" | "yaml" | "json" => {
                for (_, l) in lines.by_ref() {
                    if l.trim() == "```" {
                        break;
                    }
                }
                continue;
            }
            other => panic!(
                "{page}:{}: block with info string {other:?}: use `sh` (run by this test), \
                 `sh no-test` (listed with what the test does instead) or text/yaml/json",
                i + 1
            ),
        };
        let mut text = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        assert!(closed, "{page}:{}: the block is never closed", i + 1);
        out.push(Block {
            line: i + 1,
            run,
            text,
        });
    }
    out
}

/// Checks a page's `sh no-test` blocks against the test's list of substitutes (same blocks,
/// same order), and that every variable they export is one of [`SETTINGS`]. Returns the
/// substitute of each block (None: run as written).
fn substitutes_of<'a>(
    page: &str,
    blocks: &[Block],
    substitutes: &'a [Substitute],
) -> Vec<Option<&'a Substitute>> {
    let skipped: Vec<&Block> = blocks.iter().filter(|b| !b.run).collect();
    let listed: Vec<&str> = substitutes.iter().map(|s| s.starts_with).collect();
    let found: Vec<&str> = skipped.iter().map(|b| b.first_command()).collect();
    assert!(
        skipped.len() == substitutes.len()
            && skipped
                .iter()
                .zip(substitutes)
                .all(|(b, s)| b.first_command().starts_with(s.starts_with)),
        "{page}: the `sh no-test` blocks {found:?} are not the ones this test substitutes, \
         {listed:?}: list a new one (with what the test does instead) or run it"
    );
    for block in skipped {
        for line in block.text.lines() {
            if let Some(name) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|rest| rest.split_once('='))
                .map(|(name, _)| name.trim())
            {
                assert!(
                    SETTINGS.contains(&name),
                    "{page}:{}: the block exports {name}, which the test does not set",
                    block.line
                );
            }
        }
    }
    let mut next = substitutes.iter();
    blocks
        .iter()
        .map(|b| if b.run { None } else { next.next() })
        .collect()
}

/// The page's script: every block in order, each `sh no-test` block replaced by its
/// substitute, each preceded by a marker line carrying its index and the time.
fn script(page: &str, blocks: &[Block], substitutes: &[Substitute]) -> String {
    let mut script = String::from("set -euo pipefail\n");
    for (i, (block, substitute)) in blocks
        .iter()
        .zip(substitutes_of(page, blocks, substitutes))
        .enumerate()
    {
        script.push_str(&format!(
            "printf '\\n%s %s %s\\n' {MARK} {i} \"$EPOCHREALTIME\"\n"
        ));
        match substitute {
            None => script.push_str(&block.text),
            Some(substitute) => {
                eprintln!(
                    "{page}:{}: not run ({}): {}",
                    block.line,
                    block.first_command(),
                    substitute.why
                );
                script.push_str(substitute.instead);
                script.push('\n');
            }
        }
    }
    script.push_str(&format!(
        "printf '\\n%s %s %s\\n' {MARK} end \"$EPOCHREALTIME\"\n"
    ));
    script
}

/// The environment of the reader's shell.
struct Env {
    vars: BTreeMap<String, String>,
    work: PathBuf,
}

impl Env {
    /// `tools`: the pinned components the page may call (kubectl, velero).
    fn new(dir: &Path, cluster: &TestCluster, tools: &[&str]) -> Env {
        let binaries = Binaries::locate().unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in tools {
            std::os::unix::fs::symlink(binaries.path(tool).unwrap(), bin.join(tool)).unwrap();
        }
        let ferry_dir = Path::new(env!("CARGO_BIN_EXE_ferry")).parent().unwrap();
        let system = std::env::var("PATH").unwrap_or_default();
        let mut path = vec![ferry_dir.to_path_buf(), bin];
        // The pinned components come only through `bin`, so a page gets the tools it lists.
        let pinned = binaries.dir().canonicalize().ok();
        path.extend(std::env::split_paths(&system).filter(|d| d.canonicalize().ok() != pinned));
        let home = dir.join("home");
        let work = dir.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let pods = cluster.nodes().pod_dir("shop", "app");
        let mut vars = BTreeMap::from([
            (
                "PATH".to_string(),
                std::env::join_paths(path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("HOME".into(), home.to_string_lossy().into_owned()),
            (
                "KUBECONFIG".into(),
                cluster.kubeconfig_path().to_string_lossy().into_owned(),
            ),
            ("LANG".into(), "C.UTF-8".into()),
            (
                "FERRY_DOCS_PODS".into(),
                pods.parent().unwrap().to_string_lossy().into_owned(),
            ),
            ("FERRY_IMAGE".into(), FERRY_IMAGE.into()),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
            (
                "AWS_ACCESS_KEY_ID".into(),
                testenv::velero::ACCESS_KEY_ID.into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                testenv::velero::SECRET_ACCESS_KEY.into(),
            ),
            (
                "CSI_DRIVER".into(),
                kubesim::nodes::bootstrap::PROVISIONER.into(),
            ),
            (
                "SNAPSHOT_CLASS".into(),
                testenv::velero::SNAPSHOT_CLASS.into(),
            ),
        ]);
        if let Ok(tmp) = std::env::var("TMPDIR") {
            vars.insert("TMPDIR".into(), tmp);
        }
        Env { vars, work }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
    }
}

/// What a page's run printed, block by block.
struct Run {
    /// Block index → (output, seconds).
    blocks: BTreeMap<usize, (String, f64)>,
    /// The block that failed and the shell's exit status, if one did.
    failed: Option<(usize, String)>,
}

/// Runs the page's blocks (see the header) and returns what each printed, or why it failed
/// (the caller stops the cluster first, so nothing of it outlives a failure).
async fn run_page(
    page: &str,
    substitutes: &[Substitute],
    env: &Env,
    logs: &str,
) -> Result<Run, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(page);
    let markdown = std::fs::read_to_string(&path).unwrap();
    let blocks = blocks(page, &markdown);
    for name in SETTINGS {
        assert!(env.vars.contains_key(*name), "the test sets {name}");
    }
    let script = script(page, &blocks, substitutes);
    let script_path = env.work.join("quickstart.sh");
    std::fs::write(&script_path, &script).unwrap();
    let output_path = env.work.join("quickstart.out");
    let output = std::fs::File::create(&output_path).unwrap();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bash")
            .arg(&script_path)
            .env_clear()
            .envs(&env.vars)
            .current_dir(&env.work)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let group = Group(child.id() as i32);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > PAGE_TIMEOUT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Whatever a block left running in the background goes with the shell.
    processes::stop_group(group, Duration::from_secs(2));
    let _ = child.wait();
    let mut text = String::new();
    std::fs::File::open(&output_path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();

    // Split the output at the markers.
    let mut run = Run {
        blocks: BTreeMap::new(),
        failed: None,
    };
    let mut current: Option<(usize, f64)> = None;
    let mut buffer = String::new();
    let mut finished = false;
    for line in text.split_inclusive('\n') {
        let Some(rest) = line.trim_end().strip_prefix(MARK) else {
            buffer.push_str(line);
            continue;
        };
        let mut fields = rest.split_whitespace();
        let which = fields.next().unwrap_or_default();
        let at: f64 = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        if let Some((i, start)) = current.take() {
            run.blocks
                .insert(i, (std::mem::take(&mut buffer), at - start));
        }
        buffer.clear();
        match which.parse::<usize>() {
            Ok(i) => current = Some((i, at)),
            Err(_) => finished = true,
        }
    }
    if let Some((i, _)) = current {
        run.blocks.insert(i, (buffer, 0.0));
        let why = match status {
            Some(status) => format!("{status}"),
            None => format!("still running after {PAGE_TIMEOUT:?}"),
        };
        run.failed = Some((i, why));
    }
    if let Some((i, why)) = &run.failed {
        let block = &blocks[*i];
        let kept = env.work.parent().unwrap();
        return Err(format!(
            "docs/{page}:{}: this block failed ({why}):\n{}\n--- its output ---\n{}\n--- \
             logs: {logs}; the run's folder {} is kept",
            block.line,
            block.text,
            run.blocks[i].0,
            kept.display()
        ));
    }
    if !(finished && status.is_some_and(|s| s.success())) {
        return Err(format!(
            "docs/{page}: the script ended early ({status:?}): {text}"
        ));
    }
    for (i, block) in blocks.iter().enumerate() {
        let (output, seconds) = &run.blocks[&i];
        eprintln!(
            "docs/{page}:{} ({seconds:.1} s){}\n{}",
            block.line,
            if block.run { "" } else { " [substituted]" },
            output.trim_end()
        );
    }
    Ok(run)
}

/// The restored pod's init container checked every file (the output of the substitute for
/// `kubectl logs`).
fn assert_data_checked(run: &Run, page: &str) {
    let log = run
        .blocks
        .values()
        .map(|(out, _)| out.as_str())
        .find(|out| out.contains("random.bin:"))
        .unwrap_or_else(|| panic!("{page}: no check of the restored data printed"));
    assert!(
        log.contains("random.bin: OK") && log.contains("created: OK") && !log.contains("FAILED"),
        "{page}: the restored data differs: {log}"
    );
}

/// The binary kubesim runs for the `…/ferry` image: the ferry binary under test, with a free
/// metrics port for `ferry controller` (see the header).
fn image_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("image").join("ferry");
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    let text = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = controller ]; then exec '{ferry}' \"$@\" --metrics-address 127.0.0.1:0; fi\n\
         exec '{ferry}' \"$@\"\n",
        ferry = env!("CARGO_BIN_EXE_ferry")
    );
    std::fs::write(&wrapper, text).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

async fn cluster(dir: &Path) -> TestCluster {
    TestCluster::start(
        Backend::Real,
        ClusterConfig {
            nodes: 2,
            zones: 0,
            data_dir: dir.join("cluster"),
            image_binaries: BTreeMap::from([("ferry".to_string(), image_binary(dir))]),
        },
    )
    .await
    .unwrap()
}

fn logs_of(cluster: &TestCluster, dir: &Path) -> String {
    format!(
        "control plane {}, pods {}",
        cluster
            .control_plane_logs()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        dir.join("cluster/pods").display()
    )
}

/// Keeps the run's folder when the test fails (the panic message names it).
struct KeepOnPanic(Option<tempfile::TempDir>);

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            let _ = dir.keep();
        }
    }
}

impl KeepOnPanic {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_quickstart_runs_on_the_real_cluster() {
    let started = Instant::now();
    let dir = KeepOnPanic(Some(tempfile::tempdir().unwrap()));
    let cluster = cluster(dir.path()).await;
    let velero = Velero::start(&cluster, &dir.path().join("velero"))
        .await
        .unwrap();
    let mut env = Env::new(dir.path(), &cluster, &["kubectl", "velero"]);
    env.set("BUCKET", testenv::velero::BUCKET);
    env.set("S3_URL", &velero.s3_url());

    // The page's `velero install` asks for what Velero::start set up.
    let page = "quickstart-velero.md";
    let markdown = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(page),
    )
    .unwrap();
    let install = blocks(page, &markdown)
        .into_iter()
        .find(|b| b.first_command().starts_with("velero install"))
        .expect("the page installs Velero");
    let go_mod =
        std::fs::read_to_string(testenv::binaries::testenv_dir().join("velero/go.mod")).unwrap();
    let plugin = go_mod
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("github.com/vmware-tanzu/velero-plugin-for-aws ")
        })
        .expect("the AWS plugin is pinned")
        .split_whitespace()
        .next()
        .unwrap();
    for expected in [
        "--bucket \"$BUCKET\"".to_string(),
        format!("--prefix {}", testenv::velero::PREFIX),
        format!("--plugins velero/velero-plugin-for-aws:{plugin}"),
        "--features=EnableCSI".to_string(),
    ] {
        assert!(
            install.text.contains(&expected),
            "{page}:{}: `velero install` should say {expected} as the test's Velero is set up",
            install.line
        );
    }

    let logs = format!(
        "{}, velero {}",
        logs_of(&cluster, dir.path()),
        velero.logs().display()
    );
    let run = run_page(page, VELERO_SUBSTITUTES, &env, &logs).await;
    drop(velero);
    cluster.stop().await;
    let run = run.unwrap_or_else(|e| panic!("{e}"));
    assert_data_checked(&run, page);
    eprintln!(
        "{page}: {:.0} s in all (the control plane and Velero included)",
        started.elapsed().as_secs_f64()
    );
}

/// moto on a free loopback port, with one bucket; stopped when dropped (and by its watchdog
/// when the test process ends).
struct S3 {
    group: Group,
    url: String,
}

impl S3 {
    fn start(dir: &Path, bucket: &str) -> S3 {
        let port = processes::free_ports(1).unwrap()[0];
        let logs = dir.join("logs");
        let group = processes::spawn(
            Spawn {
                name: "moto",
                program: Path::new("python3"),
                args: ["-m", "moto.server", "-H", "127.0.0.1", "-p"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([port.to_string()])
                    .collect(),
                log_dir: &logs,
            },
            None,
        )
        .expect("python3 -m moto.server (pip install 'moto[server]')");
        processes::start_watchdog(group, std::process::id(), &dir.join("watchdog"), false).unwrap();
        let s3 = S3 {
            group,
            url: format!("http://127.0.0.1:{port}"),
        };
        // The reader's bucket exists before the page starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !put(port, &format!("/{bucket}")) {
            assert!(
                Instant::now() < deadline,
                "moto did not create bucket {bucket}: {}",
                processes::log_tail(&processes::log_path(&logs, "moto"), 20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s3
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        processes::stop_group(self.group, Duration::from_secs(5));
    }
}

/// `PUT path` on 127.0.0.1:`port`; true on a 2xx answer.
fn put(port: u16, path: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request =
        format!("PUT {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.0 2") || answer.starts_with(b"HTTP/1.1 2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_quickstart_runs_on_the_real_cluster() {
    const BUCKET: &str = "ferry-quickstart";
    let started = Instant::now();
    let dir = KeepOnPanic(Some(tempfile::tempdir().unwrap()));
    let s3 = S3::start(&dir.path().join("s3"), BUCKET);
    let cluster = cluster(dir.path()).await;
    let mut env = Env::new(dir.path(), &cluster, &["kubectl"]);
    env.set("BUCKET", BUCKET);
    env.set("S3_URL", &s3.url);
    // No VolumeSnapshotClass yet: the page creates one for kubesim's driver.
    env.set("SNAPSHOT_CLASS", "csi-snapshots");

    let page = "quickstart-standalone.md";
    let logs = format!(
        "{}, moto {}",
        logs_of(&cluster, dir.path()),
        dir.path().join("s3/logs").display()
    );
    let run = run_page(page, STANDALONE_SUBSTITUTES, &env, &logs).await;
    drop(s3);
    cluster.stop().await;
    let run = run.unwrap_or_else(|e| panic!("{e}"));
    assert_data_checked(&run, page);
    eprintln!(
        "{page}: {:.0} s in all (the control plane included)",
        started.elapsed().as_secs_f64()
    );
}

/// The block rules, checked without a cluster (the fast tier sees a broken page at once).
#[test]
fn quickstart_pages_follow_the_block_rules() {
    for (page, substitutes) in [
        ("quickstart-velero.md", VELERO_SUBSTITUTES),
        ("quickstart-standalone.md", STANDALONE_SUBSTITUTES),
    ] {
        let markdown = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs")
                .join(page),
        )
        .unwrap();
        let blocks = blocks(page, &markdown);
        assert!(blocks.iter().filter(|b| b.run).count() > 10, "{page}");
        substitutes_of(page, &blocks, substitutes);
    }
}
