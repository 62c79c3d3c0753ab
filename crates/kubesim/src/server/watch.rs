//! Watch streams: newline-delimited `{"type":…,"object":…}` events over a chunked response.
//!
//! Semantics follow the API conventions: without a resourceVersion (or with "0") the watch
//! starts with a synthetic ADDED per current object; with one, it replays the kept history
//! after it, or sends a single ERROR event with a 410 Expired Status when that history is
//! gone. BOOKMARKs are sent periodically when allowWatchBookmarks=true, and after the initial
//! events when sendInitialEvents=true (annotated `k8s.io/initial-events-end`). A watcher that
//! falls too far behind is disconnected and resumes from its last resourceVersion, as with a
//! real API server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{Repr, ServerState};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, WatchEvent};

pub struct WatchParams {
    pub ns: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// None: start with the current state; Some(rv): resume after rv.
    pub since: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub repr: Repr,
}

impl WatchParams {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.ns
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

pub fn watch_response(
    state: Arc<ServerState>,
    info: Arc<ResourceInfo>,
    params: WatchParams,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let sinfo = crate::convert::storage_info(&info).unwrap_or_else(|| (*info).clone());
    match state
        .store
        .watch(&sinfo, params.ns.as_deref(), params.since)
    {
        Ok(start) => {
            tokio::spawn(run_watch(state, info, params, start, tx));
        }
        Err(e) if e.code == 410 => {
            // A watch that cannot resume is still a 200 stream with one ERROR event.
            let line = encode_line("ERROR", &e.to_status());
            let _ = tx.try_send(line);
        }
        Err(e) => return Err(e),
    }
    let stream = ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>);
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("response"))
}

fn encode_line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut buf, object).expect("json");
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

fn bookmark(info: &ResourceInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut obj = json!({
        "kind": info.kind,
        "apiVersion": info.api_version(),
        "metadata": { "resourceVersion": rv.to_string() },
    });
    if initial_end {
        obj["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    encode_line("BOOKMARK", &obj)
}

struct Encoder {
    info: Arc<ResourceInfo>,
    repr: Repr,
    columns_sent: bool,
}

impl Encoder {
    fn encode(&mut self, event_type: EventType, event: &WatchEvent, object: &Arc<Value>) -> Bytes {
        let same_object = Arc::ptr_eq(object, &event.object) && event.event_type == event_type;
        let api_version = self.info.api_version();
        match &self.repr {
            Repr::Json if same_object && object["apiVersion"] == api_version.as_str() => event
                .encoded
                .get_or_init(|| encode_line(event_type.as_str(), object))
                .clone(),
            Repr::Json => encode_line(
                event_type.as_str(),
                &crate::convert::served(&self.info, object),
            ),
            Repr::Table { include_object } => {
                let t = super::table::table(
                    &self.info,
                    &[crate::convert::served(&self.info, object).as_ref()],
                    object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default(),
                    include_object,
                    !self.columns_sent,
                );
                self.columns_sent = true;
                encode_line(event_type.as_str(), &t)
            }
            Repr::PartialMetadata => encode_line(
                event_type.as_str(),
                &json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object["metadata"],
                }),
            ),
        }
    }
}

async fn run_watch(
    state: Arc<ServerState>,
    info: Arc<ResourceInfo>,
    params: WatchParams,
    start: crate::store::WatchStart,
    tx: mpsc::Sender<Bytes>,
) {
    let mut enc = Encoder {
        info: info.clone(),
        repr: params.repr.clone(),
        columns_sent: false,
    };
    let mut rx = start.rx;
    // Every broadcast event is newer than this: replayed or snapshot events cover the rest.
    let threshold = start.rv;
    for ev in &start.initial {
        if let Some((t, obj)) = filter(&params, ev)
            && tx.send(enc.encode(t, ev, &obj)).await.is_err()
        {
            return;
        }
    }
    if params.send_initial_events
        && params.bookmarks
        && tx.send(bookmark(&info, start.rv, true)).await.is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(state.options.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = &mut deadline => return,
            _ = ticker.tick(), if params.bookmarks => {
                // Every event up to `rv` has reached the channel; when it is drained, the
                // watcher has seen them all.
                let rv = state.store.current_rv();
                if rx.is_empty() && tx.send(bookmark(&info, rv, false)).await.is_err() {
                    return;
                }
            }
            r = rx.recv() => match r {
                Ok(ev) => {
                    if ev.rv <= threshold {
                        continue;
                    }
                    if let Some((t, obj)) = filter(&params, &ev)
                        && tx.send(enc.encode(t, &ev, &obj)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(resource = %info.plural, missed = n, "watcher fell behind; closing its watch");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// What a filtered watcher sees of an event: a change that makes an object match is
/// ADDED, one that makes it stop matching is DELETED (with its previous state).
fn filter(params: &WatchParams, ev: &WatchEvent) -> Option<(EventType, Arc<Value>)> {
    let now = params.matches(&ev.object);
    match (ev.event_type, &ev.prev) {
        (EventType::Modified, Some(prev)) => {
            let before = params.matches(prev);
            match (before, now) {
                (true, true) => Some((EventType::Modified, ev.object.clone())),
                (false, true) => Some((EventType::Added, ev.object.clone())),
                (true, false) => {
                    let mut gone = (**prev).clone();
                    gone["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                    Some((EventType::Deleted, Arc::new(gone)))
                }
                (false, false) => None,
            }
        }
        (t, _) => now.then(|| (t, ev.object.clone())),
    }
}
