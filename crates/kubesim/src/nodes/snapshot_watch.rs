//! Watches on the `snapshot.storage.k8s.io` objects for kubesim's snapshot components:
//! reflector stores plus a change counter each component waits on.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::snapshot_types::{VolumeSnapshot, VolumeSnapshotContent, class_resource};

pub struct SnapshotWatch {
    pub snapshots: Store<VolumeSnapshot>,
    pub contents: Store<VolumeSnapshotContent>,
    pub classes: Store<DynamicObject>,
    signal: watch::Sender<u64>,
    /// True once every store holds its first list (a store's own wait serves one waiter
    /// only, and two components wait).
    ready: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn spawn<K>(api: Api<K>, writer: Writer<K>, signal: watch::Sender<u64>) -> JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::debug!(%error, "kubesim snapshot watch: retrying");
            }
            signal.send_modify(|n| *n += 1);
        }
    })
}

impl SnapshotWatch {
    pub fn start(client: &kube::Client) -> SnapshotWatch {
        let signal = watch::channel(0).0;
        let (snapshots, w1) = reflector::store();
        let (contents, w2) = reflector::store();
        let w3 = Writer::new(class_resource());
        let classes = w3.as_reader();
        let tasks = vec![
            spawn(
                Api::<VolumeSnapshot>::all(client.clone()),
                w1,
                signal.clone(),
            ),
            spawn(
                Api::<VolumeSnapshotContent>::all(client.clone()),
                w2,
                signal.clone(),
            ),
            spawn(
                Api::<DynamicObject>::all_with(client.clone(), &class_resource()),
                w3,
                signal.clone(),
            ),
        ];
        let (ready_tx, ready) = watch::channel(false);
        let mut tasks = tasks;
        let stores = (snapshots.clone(), contents.clone(), classes.clone());
        tasks.push(tokio::spawn(async move {
            let _ = stores.0.wait_until_ready().await;
            let _ = stores.1.wait_until_ready().await;
            let _ = stores.2.wait_until_ready().await;
            let _ = ready_tx.send(true);
        }));
        SnapshotWatch {
            snapshots,
            contents,
            classes,
            signal,
            ready,
            tasks,
        }
    }

    /// A receiver that sees every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Waits until every store holds its first list.
    pub async fn ready(&self) {
        let _ = self.ready.clone().wait_for(|r| *r).await;
    }

    pub fn content(&self, name: &str) -> Option<Arc<VolumeSnapshotContent>> {
        self.contents.get(&reflector::ObjectRef::new(name))
    }

    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<Arc<VolumeSnapshot>> {
        self.snapshots
            .get(&reflector::ObjectRef::new(name).within(namespace))
    }
}

impl Drop for SnapshotWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
