//! What a step writes beside its decisions: status and metadata patches, Events (queued for
//! kube-runtime's Recorder), and the diagnosis of a restore or backup that does not come up.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event as RecordedEvent, EventType};
use serde_json::json;

use crate::expose::Movement;

use super::controller::Controller;
use super::view::{Observed, pod_phase};

impl Controller {
    pub(super) async fn patch_meta(
        &self,
        name: &str,
        meta: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let patch = json!({ "metadata": meta });
        self.downloads
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    pub(super) async fn set_message(&self, o: &Observed, message: &str) -> Result<(), StepError> {
        let current = o.dd.status.as_ref().and_then(|s| s.message.as_deref());
        if current != Some(message) {
            self.patch_status(&o.name, json!({ "message": message }))
                .await?;
            self.event(&o.dd, "Normal", "Waiting", message);
        }
        Ok(())
    }

    pub(super) async fn patch_status(
        &self,
        name: &str,
        status: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let patch = json!({ "status": status });
        self.downloads
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Why the restore pod does not run: its scheduling condition, the restore PVC's state and
    /// the latest events about either.
    pub(super) async fn diagnose(
        &self,
        movement: Movement,
        name: &str,
        pod: Option<&Pod>,
    ) -> String {
        let ns = &self.options.namespace;
        let mut parts = Vec::new();
        // The watch cache may lag the scheduler's condition by a moment; read it fresh.
        let fresh = Api::<Pod>::namespaced(self.options.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten();
        let pod = fresh.as_ref().or(pod);
        let unscheduled = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status != "True")
            });
        let pod_warning = self.last_warning(ns, "Pod", name).await;
        // The scheduler's FailedScheduling event may be visible before its PodScheduled
        // condition is: either says the pod is not scheduled.
        let failed_scheduling = pod_warning.as_ref().filter(|w| {
            w.reason == "FailedScheduling"
                && pod.is_some_and(|p| p.spec.as_ref().is_none_or(|s| s.node_name.is_none()))
        });
        parts.push(match (pod, unscheduled, failed_scheduling) {
            (_, Some(cond), _) => format!(
                "pod {ns}/{name} not scheduled: {}",
                cond.message
                    .clone()
                    .or(cond.reason.clone())
                    .unwrap_or_default()
            ),
            (_, None, Some(event)) => format!("pod {ns}/{name} not scheduled: {}", event.message),
            (Some(pod), None, None) => {
                let bound_to = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                match bound_to {
                    // Bound, yet not running: say where, and whether that node is Ready.
                    Some(node) => format!(
                        "pod {ns}/{name} is {} on node {node}{}",
                        pod_phase(pod),
                        self.node_readiness(node).await
                    ),
                    None => format!("pod {ns}/{name} is {}", pod_phase(pod)),
                }
            }
            (None, None, None) => {
                format!("no {movement} pod yet (it starts once its volume is provisioned)")
            }
        });
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.options.client.clone(), ns);
        if let Ok(Some(pvc)) = pvcs.get_opt(name).await {
            let phase = pvc
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into());
            if phase != "Bound" {
                parts.push(format!("{movement} PVC {ns}/{name} is {phase}"));
            }
        }
        let pvc_warning = self.last_warning(ns, "PersistentVolumeClaim", name).await;
        for (kind, warning) in [("Pod", pod_warning), ("PersistentVolumeClaim", pvc_warning)] {
            if let Some(w) = warning {
                parts.push(format!(
                    "last event on {kind} {name}: {} {}",
                    w.reason, w.message
                ));
            }
        }
        parts.join("; ")
    }

    /// " (NotReady)" (or the Ready condition's status when not True), or nothing when the node
    /// is Ready or cannot be read.
    pub(super) async fn node_readiness(&self, node: &str) -> String {
        let Ok(Some(node)) = Api::<Node>::all(self.options.client.clone())
            .get_opt(node)
            .await
        else {
            return String::new();
        };
        match crate::placement::ready_status(&node) {
            Some("True") => String::new(),
            Some("False") => " (NotReady)".into(),
            Some(other) => format!(" (Ready {other})"),
            None => " (no Ready condition)".into(),
        }
    }

    /// The latest Warning event about `kind` `ns/name`.
    pub(super) async fn last_warning(&self, ns: &str, kind: &str, name: &str) -> Option<Warning> {
        let events: Api<Event> = Api::namespaced(self.options.client.clone(), ns);
        let list = events.list(&ListParams::default()).await.ok()?;
        crate::events::latest_warning(&list.items, kind, name).map(|e| Warning {
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
        })
    }

    /// The merge patch that accepts a DataDownload or DataUpload: its finalizer list with
    /// ferry's, and the Accepted status. Conditional on the observed resourceVersion: the
    /// finalizer list is written whole, and an object changed since (canceled, or another
    /// finalizer added) is stepped again from what it is now.
    pub(super) fn acceptance(
        &self,
        finalizers: Vec<String>,
        observed: &ObjectMeta,
    ) -> serde_json::Value {
        json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": observed.resource_version,
            },
            "status": {
                "phase": "Accepted",
                "acceptedByNode": self.options.identity,
                "acceptedTimestamp": now(),
                "message": null,
            },
        })
    }

    pub(super) async fn record_accepted<K: kube::Resource<DynamicType = ()>>(&self, object: &K) {
        let message = format!("accepted by {}", self.options.identity);
        self.event(object, "Normal", "Accepted", &message);
    }

    /// Records a Kubernetes Event on a DataDownload or DataUpload (best effort, sent in the
    /// background: [`super::event_sink`]), through kube-runtime's Recorder: `kubectl
    /// describe` and `kubectl get events` show it as any controller's.
    pub(super) fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let name = object.meta().name.clone().unwrap_or_default();
        self.events.publish(
            recorded_event(type_, reason, message),
            object.object_ref(&()),
        );
        tracing::info!(kind = %K::kind(&()), name = %name, reason, message, "event");
    }
}

/// The Event recorded for `reason` with `message` as its note. events.k8s.io/v1 refuses a
/// note over 1 kB: a long diagnosis is cut, not lost (the object's status.message has it
/// whole).
fn recorded_event(type_: &str, reason: &str, message: &str) -> RecordedEvent {
    let mut note = message.to_string();
    ferry_text::truncate(&mut note, EVENT_NOTE_BYTES);
    RecordedEvent {
        type_: if type_ == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: event_action(reason).into(),
        secondary: None,
    }
}

pub(super) fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    // Whole seconds, as metav1.Time is written.
    now.round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(now)
        .to_string()
}

pub(super) fn since(t: Option<&Time>) -> Duration {
    t.map(|t| {
        let ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - t.0.as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    })
    .unwrap_or_default()
}

pub(super) fn human(d: Duration) -> String {
    crate::crds::format_go_duration(d)
}

/// A Warning event's reason and message, as diagnosis quotes them.
pub(super) struct Warning {
    pub(super) reason: String,
    pub(super) message: String,
}

/// The longest note events.k8s.io/v1 accepts.
const EVENT_NOTE_BYTES: usize = 1024;
/// The action an event's reason reports (events.k8s.io/v1 asks for both): what the
/// controller did, or tried, to the DataDownload or DataUpload.
fn event_action(reason: &str) -> &str {
    match reason {
        "Accepted" => "Accept",
        "NodeChosen" => "Place",
        "Prepared" => "Expose",
        "InProgress" | "DataMoved" | "RestoredWithWarnings" => "MoveData",
        "Completed" => "Complete",
        "Canceling" | "Canceled" => "Cancel",
        "Waiting" => "Wait",
        "ForgettingSnapshot" | "SnapshotForgotten" | "SnapshotKept" | "ForgetFailed" => {
            "ForgetSnapshot"
        }
        "Failed" => "Fail",
        other => other,
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Op(#[from] crate::cluster::OpError),
    #[error(transparent)]
    Expose(#[from] crate::expose::ExposeError),
}

impl StepError {
    /// Logs a step's error on `kind` `name`; the next pass retries either way. A conditional
    /// write refused because the object changed since it was observed (409 Conflict) is no
    /// failure: the change wakes that pass.
    pub(super) fn report(&self, kind: &str, name: &str) {
        if matches!(self, StepError::Kube(kube::Error::Api(status)) if status.code == 409) {
            tracing::debug!(
                kind,
                name,
                "changed since observed; the next pass steps it again"
            );
        } else {
            tracing::warn!(kind, name, error = %self, "step failed; retrying next pass");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_an_action_and_a_note_the_api_accepts() {
        let accepted = recorded_event("Normal", "Accepted", "accepted by ferry-0");
        assert_eq!(accepted.type_, EventType::Normal);
        assert_eq!(accepted.action, "Accept");
        assert_eq!(accepted.note.as_deref(), Some("accepted by ferry-0"));
        // A long diagnosis of multi-byte text: cut to 1 kB on a character boundary.
        let failed = recorded_event("Warning", "Failed", &"é".repeat(1000));
        assert_eq!(failed.type_, EventType::Warning);
        assert_eq!(failed.action, "Fail");
        assert_eq!(failed.note.unwrap(), "é".repeat(EVENT_NOTE_BYTES / 2));
        // A reason without an action of its own is its own action.
        assert_eq!(
            recorded_event("Normal", "Rebinding", "").action,
            "Rebinding"
        );
    }

    #[test]
    fn now_is_rfc3339_in_whole_seconds_as_kubernetes_writes_times() {
        let text = now();
        assert!(text.ends_with('Z') && !text.contains('.'), "{text}");
        let parsed: k8s_openapi::jiff::Timestamp = text.parse().unwrap();
        assert_eq!(parsed.subsec_nanosecond(), 0);
        // metav1.Time reads it back.
        let time: Time = serde_json::from_value(serde_json::json!(text)).unwrap();
        assert_eq!(time.0, parsed);
    }
}
