//! Shared helpers for the API server tests: one server per test on a free port.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use kube::Client;
use kubesim::{ApiServer, ApiServerOptions};

pub async fn start() -> (ApiServer, Client) {
    start_with(ApiServerOptions::default()).await
}

pub async fn start_with(options: ApiServerOptions) -> (ApiServer, Client) {
    let server = ApiServer::start_with(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
        .await
        .expect("start the API server");
    let client = server.client().expect("client");
    (server, client)
}

/// Polls `check` until it returns Some, for at most 10 s (a bound, not a timing assert).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

pub fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The kubectl the tests drive: the pinned one `testenv/build` made (`FERRY_TESTENV_BIN`, which
/// `testenv/run-tests` sets and puts first on PATH), else the first on PATH.
pub fn kubectl() -> std::path::PathBuf {
    match std::env::var_os("FERRY_TESTENV_BIN") {
        Some(dir) => std::path::Path::new(&dir).join("kubectl"),
        None => "kubectl".into(),
    }
}
