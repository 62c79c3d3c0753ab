//! The HTTP API server: plain HTTP on loopback, no authentication, Kubernetes REST paths.

mod discovery;
mod handlers;
mod openapi;
mod protobuf;
pub(crate) mod table;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Tunables of the API server.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Watch events kept per resource for resuming watches; older resourceVersions get
    /// 410 Expired.
    pub watch_history: usize,
    /// How often an idle watch with allowWatchBookmarks=true gets a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            watch_history: 20_000,
            bookmark_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build a client for {url}: {source}")]
    Client { url: String, source: kube::Error },
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// How the response body represents objects, from the Accept header.
#[derive(Debug, Clone)]
pub(crate) enum Repr {
    Json,
    /// `as=Table`, with `includeObject` (None, Metadata, Object).
    Table {
        include_object: String,
    },
    /// `as=PartialObjectMetadata` / `as=PartialObjectMetadataList`.
    PartialMetadata,
}

pub(crate) struct ServerState {
    pub store: Arc<Store>,
    pub options: ApiServerOptions,
    pub shutdown: CancellationToken,
    /// Opt-in request log (off until enabled).
    pub audit: crate::audit::AuditLog,
}

/// A running API server with its garbage collector and namespace controller.
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts serving on `addr` (port 0 picks a free port) with default options.
    pub async fn start(addr: SocketAddr) -> Result<ApiServer, ServerError> {
        Self::start_with(addr, ApiServerOptions::default()).await
    }

    pub async fn start_with(
        addr: SocketAddr,
        options: ApiServerOptions,
    ) -> Result<ApiServer, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let store = Arc::new(Store::new(options.watch_history));
        crate::bootstrap::create_system_namespaces(&store);
        let state = Arc::new(ServerState {
            store: store.clone(),
            options,
            shutdown: CancellationToken::new(),
            audit: crate::audit::AuditLog::default(),
        });
        let app = Router::new()
            .fallback(handlers::handle)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(state.clone());
        let token = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "kubesim API server stopped with an error");
            }
        });
        let controllers = tokio::spawn(crate::controllers::run(
            store.clone(),
            state.shutdown.clone(),
        ));
        tracing::info!(%addr, "kubesim API server listening");
        Ok(ApiServer {
            addr,
            state,
            tasks: vec![server, controllers],
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The object store behind the API (for in-process inspection in tests).
    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// The request log: off until `audit().enable()` (see [`crate::audit`]).
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.state.audit
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, ServerError> {
        let url = self.url();
        let uri: http::Uri = url.parse().expect("valid url");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_string();
        config.read_timeout = None;
        kube::Client::try_from(config).map_err(|source| ServerError::Client { url, source })
    }

    /// Writes a kubeconfig for this server (context `kubesim`).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), ServerError> {
        crate::kubeconfig::write(path, &self.url()).map_err(|source| ServerError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Stops serving: open watches end, the listener closes, background tasks stop.
    pub async fn stop(mut self) {
        self.state.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}
