//! A kube client for the controller under test whose requests pass a gate: one rule (method,
//! path fragment, body fragment) parks the first matching request, either before it reaches
//! the API server or right after its answer came back (or fails it, or holds it until the
//! test releases it). The test then kills the controller
//! exactly there, at a chosen point inside a step, whatever the timing of the controller's
//! loop (polling or watch wake-ups).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request};
use kube::client::Body;
use tokio::sync::Notify;

/// Where the matching request is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Never sent: the cluster does not see it.
    Before,
    /// Sent and applied; the controller never sees the answer.
    After,
    /// Never sent: the controller gets this HTTP error status instead (a transient API error).
    Fail(u16),
    /// Held until [`Gate::release`], then sent: the test changes the cluster meanwhile.
    Hold,
}

#[derive(Clone, Debug)]
pub struct Rule {
    method: Method,
    path: String,
    body: Vec<String>,
    stop: Stop,
}

impl Rule {
    /// Parks the first `method` request whose path contains `path`, before sending it.
    pub fn before(method: Method, path: &str) -> Rule {
        Rule {
            method,
            path: path.to_string(),
            body: Vec::new(),
            stop: Stop::Before,
        }
    }

    /// Parks the first `method` request whose path contains `path`, after its answer.
    pub fn after(method: Method, path: &str) -> Rule {
        Rule {
            stop: Stop::After,
            ..Rule::before(method, path)
        }
    }

    /// Answers the first `method` request whose path contains `path` with HTTP `code`,
    /// without sending it.
    pub fn fail(method: Method, path: &str, code: u16) -> Rule {
        Rule {
            stop: Stop::Fail(code),
            ..Rule::before(method, path)
        }
    }

    /// Holds the first `method` request whose path contains `path` until [`Gate::release`].
    pub fn hold(method: Method, path: &str) -> Rule {
        Rule {
            stop: Stop::Hold,
            ..Rule::before(method, path)
        }
    }

    /// Also requires the request body to contain `fragment` (compact JSON, as kube sends it).
    pub fn body(mut self, fragment: &str) -> Rule {
        self.body.push(fragment.to_string());
        self
    }

    fn matches(&self, method: &Method, path: &str, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        *method == self.method
            && path.contains(&self.path)
            && self.body.iter().all(|f| text.contains(f.as_str()))
    }
}

/// One rule, fired at most once.
pub struct Gate {
    rule: Mutex<Option<Rule>>,
    description: String,
    hit: Notify,
    released: Notify,
}

impl Gate {
    pub fn new(rule: Rule) -> Arc<Gate> {
        Arc::new(Gate {
            description: format!("{rule:?}"),
            rule: Mutex::new(Some(rule)),
            hit: Notify::new(),
            released: Notify::new(),
        })
    }

    /// Whether this request trips the rule (the rule is consumed if so).
    fn trips(&self, method: &Method, path: &str, body: &[u8]) -> Option<Stop> {
        let mut rule = self.rule.lock().unwrap();
        if rule.as_ref().is_some_and(|r| r.matches(method, path, body)) {
            return rule.take().map(|r| r.stop);
        }
        None
    }

    async fn park(&self) {
        self.hit.notify_one();
        std::future::pending::<()>().await;
    }

    /// Waits until a request tripped the rule (and is parked).
    pub async fn wait_hit(&self, seconds: u64) {
        tokio::time::timeout(Duration::from_secs(seconds), self.hit.notified())
            .await
            .unwrap_or_else(|_| panic!("no request matched {} in {seconds} s", self.description));
    }

    /// Lets a held request go on to the API server.
    pub fn release(&self) {
        self.released.notify_one();
    }

    /// A client sending through `inner` once past the gate.
    pub fn client(self: &Arc<Self>, inner: kube::Client) -> kube::Client {
        let namespace = inner.default_namespace().to_string();
        let gate = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let (gate, inner) = (gate.clone(), inner.clone());
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await?;
                let stop = gate.trips(&parts.method, parts.uri.path(), &bytes);
                if stop == Some(Stop::Before) {
                    gate.park().await;
                }
                if stop == Some(Stop::Hold) {
                    gate.hit.notify_one();
                    gate.released.notified().await;
                }
                if let Some(Stop::Fail(code)) = stop {
                    gate.hit.notify_one();
                    return Ok(failure(code));
                }
                let response = inner
                    .send(Request::from_parts(parts, Body::from(bytes)))
                    .await?;
                if stop == Some(Stop::After) {
                    gate.park().await;
                }
                Ok::<_, kube::Error>(response)
            }
        });
        kube::Client::new(service, namespace)
    }
}

/// An API server's error answer with status `code`.
fn failure(code: u16) -> http::Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "injected by the test's gate", "reason": "InternalError", "code": code,
    });
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&status).unwrap()))
        .unwrap()
}
