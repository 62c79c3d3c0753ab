//! Events go out from a task of their own, as client-go's event broadcaster sends them, so a
//! step never waits for one: on a busy API server each Event took 20-100 ms, and a restore's
//! steps (accepted, node chosen, prepared, in progress, data moved) waited for five of them in
//! a row before and after its data moved. Events are best effort: one that cannot be queued
//! (the API server unreachable for long) is dropped with a warning, never blocks a step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events waiting to be sent, at most (client-go's broadcaster keeps 1000).
const QUEUE: usize = 1000;

pub(super) struct EventSink {
    queue: Option<mpsc::Sender<(Event, ObjectReference)>>,
    sender: Option<JoinHandle<()>>,
    warned: AtomicBool,
}

impl EventSink {
    /// Starts the task that sends events through `recorder`, in the order they are queued
    /// (the recorder counts a repeated event in a series, which needs that order).
    pub(super) fn start(recorder: Recorder) -> Self {
        let (queue, mut queued) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let sender = tokio::spawn(async move {
            while let Some((event, reference)) = queued.recv().await {
                if let Err(err) = recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %err, reason = %event.reason, "cannot record event");
                }
            }
        });
        Self {
            queue: Some(queue),
            sender: Some(sender),
            warned: AtomicBool::new(false),
        }
    }

    /// Queues `event` on `reference`; returns at once.
    pub(super) fn publish(&self, event: Event, reference: ObjectReference) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(err) = queue.try_send((event, reference))
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(error = %err, "events dropped: {QUEUE} are waiting to be sent");
        }
    }

    /// Sends what is queued, for at most `within`; later events are dropped.
    pub(super) async fn flush(&mut self, within: Duration) {
        self.queue = None;
        if let Some(sender) = self.sender.take()
            && tokio::time::timeout(within, sender).await.is_err()
        {
            tracing::warn!("events still unsent at shutdown were dropped");
        }
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        if let Some(sender) = &self.sender {
            sender.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorder on a client whose every request fails at once (nothing listens there).
    fn unreachable_recorder() -> Recorder {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    fn event() -> Event {
        Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "Tested".into(),
            note: None,
            action: "Test".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn publishing_never_waits_a_full_queue_drops_with_a_warning_and_flush_ends() {
        let mut sink = EventSink::start(unreachable_recorder());
        // Nothing is awaited here, so on this test's single thread the sender cannot run:
        // the queue fills, and publishing goes on without waiting for it.
        for _ in 0..QUEUE * 2 {
            sink.publish(event(), ObjectReference::default());
        }
        assert!(
            sink.warned.load(Ordering::Relaxed),
            "a full queue drops, with a warning"
        );
        sink.flush(Duration::from_secs(30)).await;
        assert!(sink.sender.is_none());
        // After the flush nothing is queued any more, and nothing panics.
        sink.publish(event(), ObjectReference::default());
    }
}
