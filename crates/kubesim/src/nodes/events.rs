//! Recording core/v1 Events the way the scheduler, PV controller and kubelet do, with
//! repeats of the same (object, reason, message) suppressed instead of aggregated.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

pub struct EventRecorder {
    client: kube::Client,
    component: String,
    seen: Mutex<HashSet<(String, String, String)>>,
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
    pub fn new(client: kube::Client, component: &str) -> Self {
        EventRecorder {
            client,
            component: component.into(),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Posts an event unless the same one was already posted for this object.
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%error, reason, "kubesim: could not record event");
        }
    }

    /// Forget an object's events (it was deleted), so the set stays bounded.
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .expect("event set")
            .retain(|(u, _, _)| u != uid);
    }
}
