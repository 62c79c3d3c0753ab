//! Test support for the S3 backend: a real S3-compatible server (moto, from PyPI) on a free
//! loopback port, and a fault-injecting HTTP proxy to put in front of it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_repo::backend::s3::S3Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ACCESS_KEY_ID: &str = "ferry-test-key";
pub const SECRET_ACCESS_KEY: &str = "ferry-test-secret";
pub const REGION: &str = "us-east-1";

/// A moto S3 server on 127.0.0.1, killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    /// moto's output, shown if it fails to start.
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers HTTP.
    pub fn start() -> Moto {
        let mut last_failure = String::new();
        // The port is free when picked but could be taken before moto binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("temp file for moto's log");
            let mut command = Command::new("python3");
            command
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("moto log"))
                .stderr(log.reopen().expect("moto log"));
            // moto must not outlive the test process, even if it is killed.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command
                .spawn()
                .expect("start moto: python3 -m moto.server (pip install 'moto[server]')");
            let mut moto = Moto { child, port, log };
            match moto.wait_until_ready(Duration::from_secs(60)) {
                Ok(()) => return moto,
                Err(e) => last_failure = e,
            }
        }
        panic!("moto did not start: {last_failure}");
    }

    fn wait_until_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited with {status}: {}", self.log_text()));
            }
            if let Ok(200) = http_status(self.port, "GET", "/") {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("no answer within {limit:?}: {}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let status = http_status(self.port, "PUT", &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// A backend configuration for `bucket`/`prefix` on this server (or on `endpoint`, e.g. a
    /// proxy in front of it).
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        config_for(&self.endpoint(), bucket, prefix)
    }

    /// Environment for a process (restic, ferry) that talks to this server.
    pub fn env() -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_DEFAULT_REGION", REGION),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config_for(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_string()),
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        region: REGION.to_string(),
        access_key_id: ACCESS_KEY_ID.to_string(),
        secret_access_key: SECRET_ACCESS_KEY.to_string(),
        session_token: None,
        allow_http: true,
        path_style: true,
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The status of a bodiless request to 127.0.0.1:`port`.
fn http_status(port: u16, method: &str, path: &str) -> io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {text:.200}")))
}

/// Which requests the proxy breaks: every `every`-th request (counting all requests from 1),
/// until `max_faults` have been injected. The kind of fault cycles through [`FaultKind`].
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub every: u64,
    pub max_faults: u64,
}

/// How a request is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer 500 InternalError without asking the server.
    InternalError,
    /// Close the connection without forwarding the request.
    CloseBeforeForwarding,
    /// Forward the request (the server acts on it), then close without answering.
    CloseAfterForwarding,
    /// Forward, then send only the first half of the server's response.
    TruncateResponse,
}

const FAULT_CYCLE: [FaultKind; 4] = [
    FaultKind::InternalError,
    FaultKind::CloseBeforeForwarding,
    FaultKind::CloseAfterForwarding,
    FaultKind::TruncateResponse,
];

/// An HTTP/1.1 proxy on 127.0.0.1 in front of an upstream loopback port that breaks a
/// deterministic subset of requests. One request per client connection (it answers with
/// `Connection: close`), which keeps it simple and makes every request visible.
pub struct FaultyProxy {
    port: u16,
    counters: Arc<Counters>,
    accept_loop: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    faults: AtomicU64,
}

impl FaultyProxy {
    /// Starts the proxy on the current tokio runtime.
    pub async fn start(upstream_port: u16, plan: FaultPlan) -> FaultyProxy {
        assert!(plan.every >= 2, "every request failing would never succeed");
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counters = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream_port, plan, &counters).await;
                });
            }
        });
        FaultyProxy {
            port,
            counters,
            accept_loop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests_seen(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn faults_injected(&self) -> u64 {
        self.counters.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Handles one request on `client`.
async fn serve(
    mut client: tokio::net::TcpStream,
    upstream_port: u16,
    plan: FaultPlan,
    counters: &Counters,
) -> io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let number = counters.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = if number.is_multiple_of(plan.every) {
        let injected = counters.faults.fetch_add(1, Ordering::SeqCst);
        if injected < plan.max_faults {
            Some(FAULT_CYCLE[(injected % FAULT_CYCLE.len() as u64) as usize])
        } else {
            counters.faults.fetch_sub(1, Ordering::SeqCst);
            None
        }
    } else {
        None
    };
    match fault {
        Some(FaultKind::InternalError) => {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                        <Message>injected by the test proxy</Message></Error>";
            let response = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes()).await?;
            return client.shutdown().await;
        }
        Some(FaultKind::CloseBeforeForwarding) => return Ok(()),
        _ => {}
    }
    let mut upstream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port)).await?;
    upstream.write_all(&head).await?;
    upstream.write_all(&body).await?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    match fault {
        Some(FaultKind::CloseAfterForwarding) => Ok(()),
        Some(FaultKind::TruncateResponse) => {
            client.write_all(&response[..response.len() / 2]).await?;
            client.shutdown().await
        }
        _ => {
            client.write_all(&response).await?;
            client.shutdown().await
        }
    }
}

/// Reads one request: its head (rewritten to `Connection: close`) and its body. `None` if the
/// client closed the connection without sending one.
async fn read_request(
    client: &mut tokio::net::TcpStream,
) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut rewritten = format!("{request_line}\r\n");
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name_lower = name.trim().to_ascii_lowercase();
        match name_lower.as_str() {
            "connection" | "keep-alive" => continue,
            "content-length" => content_length = value.trim().parse().unwrap_or(0),
            "transfer-encoding" => {
                return Err(io::Error::other(
                    "the test proxy handles only Content-Length bodies",
                ));
            }
            _ => {}
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut body = buf[head_end..].to_vec();
    while body.len() < content_length {
        let mut chunk = vec![0u8; (content_length - body.len()).min(1 << 20)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((rewritten.into_bytes(), body)))
}

/// Runs restic against an S3 location with the test credentials; panics with its output if
/// it fails. restic is /usr/bin/restic (Debian package `restic`).
pub fn restic_s3(cwd: &std::path::Path, password: &str, location: &str, args: &[&str]) -> String {
    let output = Command::new("restic")
        .arg("-r")
        .arg(location)
        .arg("--no-cache")
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_PASSWORD", password)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("AWS_PROFILE")
        .envs(Moto::env())
        .output()
        .expect("run restic (apt-get install restic)");
    assert!(
        output.status.success(),
        "restic {args:?} on {location} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
