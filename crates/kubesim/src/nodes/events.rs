//! Recording core/v1 Events the way the scheduler, PV controller and kubelet do, with
//! repeats of the same (object, reason, message) suppressed instead of aggregated.
//!
//! As client-go's event broadcaster, recording does not wait for the API: events go to a
//! background task that posts them, so a controller's work is not slowed by its events.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

/// How many events are posted at once.
const POST_CONCURRENCY: usize = 16;

pub struct EventRecorder {
    component: String,
    seen: Mutex<HashSet<(String, String, String)>>,
    outbox: tokio::sync::mpsc::UnboundedSender<Event>,
}

/// A reference to an object for `involvedObject`.
pub fn object_reference<K>(object: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl EventRecorder {
    /// Must be called within a tokio runtime (it starts the posting task, which ends when
    /// the recorder is dropped and its queue is drained).
    pub fn new(client: kube::Client, component: &str) -> Self {
        let (outbox, queue) = tokio::sync::mpsc::unbounded_channel::<Event>();
        tokio::spawn(
            tokio_stream::wrappers::UnboundedReceiverStream::new(queue).for_each_concurrent(
                POST_CONCURRENCY,
                move |event| {
                    let client = client.clone();
                    async move {
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client, &namespace);
                        if let Err(error) = api.create(&PostParams::default(), &event).await {
                            tracing::debug!(%error, reason = event.reason, "kubesim: could not record event");
                        }
                    }
                },
            ),
        );
        EventRecorder {
            component: component.into(),
            seen: Mutex::new(HashSet::new()),
            outbox,
        }
    }

    /// Queues an event for posting unless the same one was already recorded for this
    /// object (it returns at once).
    pub async fn record(
        &self,
        involved: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let key = (
            involved.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        if !self.seen.lock().expect("event set").insert(key) {
            return;
        }
        // Events of cluster-scoped objects live in "default", as in Kubernetes.
        let namespace = involved
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            involved.name.as_deref().unwrap_or("object"),
            now.as_nanosecond() as u128 ^ (rand::random::<u32>() as u128)
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            ..Default::default()
        };
        let _ = self.outbox.send(event);
    }

    /// Forget an object's events (it was deleted), so the set stays bounded.
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .expect("event set")
            .retain(|(u, _, _)| u != uid);
    }
}
