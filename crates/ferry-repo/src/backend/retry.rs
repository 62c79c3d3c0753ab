//! Retries transient backend failures (5xx, timeouts, broken connections) with exponential
//! backoff and jitter, bounded in attempts and in time. Other errors pass through at once.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{Backend, BackendError, FileType, Handle};

/// How often and how long to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
    /// The delay before the first retry; it doubles with each further one.
    pub initial_delay: Duration,
    /// The delay never grows beyond this.
    pub max_delay: Duration,
    /// No retry starts later than this after the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts over at most about a minute: rides out a server restart or a burst of
    /// throttling, and still reports a dead server in reasonable time.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(15),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry), with "equal jitter": a
    /// random point in the upper half of the exponential step, so that many concurrent requests
    /// that failed together do not come back together.
    pub fn delay(&self, retry: u32) -> Duration {
        let step = self
            .initial_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = step / 2;
        let jitter_nanos =
            rand::rng().random_range(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// A backend that retries its inner backend's [`BackendError::Transient`] failures.
#[derive(Debug)]
pub struct RetryingBackend<B: ?Sized> {
    inner: Arc<B>,
    policy: RetryPolicy,
}

impl<B: Backend> RetryingBackend<B> {
    pub fn new(inner: B) -> Self {
        Self::from_arc(Arc::new(inner))
    }
}

impl<B: Backend + ?Sized> RetryingBackend<B> {
    /// Wraps a shared backend, e.g. an `Arc<dyn Backend>`.
    pub fn from_arc(inner: Arc<B>) -> Self {
        Self {
            inner,
            policy: RetryPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// Runs `attempt` until it succeeds, fails with a non-transient error, or the policy's
    /// attempts or time run out; each retry is logged.
    async fn retry<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, BackendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (what, message) = match attempt().await {
                Err(BackendError::Transient { what, message }) => (what, message),
                other => {
                    if attempts > 1 && other.is_ok() {
                        tracing::info!(operation, attempts, "succeeded after retrying");
                    }
                    return other;
                }
            };
            let delay = self.policy.delay(attempts);
            let out_of_attempts = attempts >= self.policy.max_attempts.max(1);
            let out_of_time = started.elapsed() + delay > self.policy.max_elapsed;
            if out_of_attempts || out_of_time {
                tracing::warn!(operation, %what, attempts, error = %message, "giving up");
                return Err(BackendError::Transient {
                    what,
                    message: format!(
                        "{message} (gave up after {attempts} attempts in {:.1}s)",
                        started.elapsed().as_secs_f64()
                    ),
                });
            }
            tracing::warn!(
                operation,
                %what,
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                error = %message,
                "transient backend error, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for RetryingBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn save(&self, handle: &Handle, data: Bytes) -> Result<(), BackendError> {
        self.retry("save", || self.inner.save(handle, data.clone()))
            .await
    }

    /// Retried like [`Backend::save`]; but an attempt that failed transiently may have
    /// stored the file all the same (the reply was lost), and the retry then finds it
    /// present. So after a retry, "already exists" is checked against the stored bytes: ours
    /// (unique, see [`Backend::save_new`]) mean this call created it.
    async fn save_new(&self, handle: &Handle, data: Bytes) -> Result<bool, BackendError> {
        let attempts = AtomicU32::new(0);
        let created = self
            .retry("save_new", || {
                attempts.fetch_add(1, Ordering::Relaxed);
                self.inner.save_new(handle, data.clone())
            })
            .await?;
        if created || attempts.load(Ordering::Relaxed) == 1 {
            return Ok(created);
        }
        let stored = self.retry("load", || self.inner.load(handle, None)).await?;
        if stored == data {
            tracing::info!(file = %handle, "an earlier attempt had created the file");
        }
        Ok(stored == data)
    }

    async fn load(
        &self,
        handle: &Handle,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BackendError> {
        self.retry("load", || self.inner.load(handle, range.clone()))
            .await
    }

    async fn stat(&self, handle: &Handle) -> Result<u64, BackendError> {
        self.retry("stat", || self.inner.stat(handle)).await
    }

    async fn remove(&self, handle: &Handle) -> Result<(), BackendError> {
        self.retry("remove", || self.inner.remove(handle)).await
    }

    async fn list(&self, kind: FileType) -> Result<Vec<(String, u64)>, BackendError> {
        self.retry("list", || self.inner.list(kind)).await
    }

    async fn create(&self) -> Result<(), BackendError> {
        self.retry("create", || self.inner.create()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A backend whose `stat` answers from a script of results, counting calls.
    #[derive(Debug, Default)]
    struct Scripted {
        script: Mutex<Vec<Result<u64, BackendError>>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(mut script: Vec<Result<u64, BackendError>>) -> Self {
            script.reverse();
            Self {
                script: Mutex::new(script),
                calls: Mutex::new(0),
            }
        }
        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    fn transient(n: u32) -> BackendError {
        BackendError::Transient {
            what: "data/ab/abcd".into(),
            message: format!("503 number {n}"),
        }
    }

    #[async_trait]
    impl Backend for Scripted {
        fn location(&self) -> String {
            "scripted".into()
        }
        async fn save(&self, _: &Handle, _: Bytes) -> Result<(), BackendError> {
            unimplemented!()
        }
        async fn save_new(&self, _: &Handle, _: Bytes) -> Result<bool, BackendError> {
            unimplemented!()
        }
        async fn load(&self, _: &Handle, _: Option<Range<u64>>) -> Result<Bytes, BackendError> {
            unimplemented!()
        }
        async fn stat(&self, _: &Handle) -> Result<u64, BackendError> {
            *self.calls.lock().unwrap() += 1;
            self.script
                .lock()
                .unwrap()
                .pop()
                .expect("called more often than scripted")
        }
        async fn remove(&self, _: &Handle) -> Result<(), BackendError> {
            unimplemented!()
        }
        async fn list(&self, _: FileType) -> Result<Vec<(String, u64)>, BackendError> {
            unimplemented!()
        }
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_elapsed: Duration::from_secs(30),
        }
    }

    fn handle() -> Handle {
        Handle::new(FileType::Pack, "abcd")
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let backend = Arc::new(Scripted::new(vec![
            Err(transient(1)),
            Err(transient(2)),
            Ok(42),
        ]));
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(5));
        assert_eq!(retrying.stat(&handle()).await.unwrap(), 42);
        assert_eq!(backend.calls(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let backend = Arc::new(Scripted::new((1..=3).map(|n| Err(transient(n))).collect()));
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(3));
        match retrying.stat(&handle()).await {
            Err(BackendError::Transient { what, message }) => {
                assert_eq!(what, "data/ab/abcd");
                assert!(
                    message.starts_with("503 number 3 (gave up after 3 attempts"),
                    "{message}"
                );
            }
            other => panic!("expected a transient error, got {other:?}"),
        }
        assert_eq!(backend.calls(), 3);
    }

    #[tokio::test]
    async fn gives_up_when_out_of_time() {
        let backend = Arc::new(Scripted::new((1..=2).map(|n| Err(transient(n))).collect()));
        let policy = RetryPolicy {
            max_elapsed: Duration::ZERO,
            ..quick(10)
        };
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(policy);
        assert!(matches!(
            retrying.stat(&handle()).await,
            Err(BackendError::Transient { .. })
        ));
        assert_eq!(backend.calls(), 1, "no retry may start after max_elapsed");
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        for err in [
            BackendError::NotFound("data/ab/abcd".into()),
            BackendError::Other {
                what: "x".into(),
                message: "access denied".into(),
            },
        ] {
            let backend = Arc::new(Scripted::new(vec![Err(err), Ok(1)]));
            let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(5));
            assert!(retrying.stat(&handle()).await.is_err());
            assert_eq!(backend.calls(), 1);
        }
    }

    #[tokio::test]
    async fn wraps_a_dyn_backend() {
        let backend: Arc<dyn Backend> = Arc::new(Scripted::new(vec![Err(transient(1)), Ok(7)]));
        let retrying = RetryingBackend::from_arc(backend).with_policy(quick(2));
        assert_eq!(retrying.stat(&handle()).await.unwrap(), 7);
        assert_eq!(retrying.location(), "scripted");
    }

    /// One stored file; `save_new` creates it if absent, and its first `lost_replies` calls
    /// fail transiently after doing so (the server stored it, the reply was lost).
    #[derive(Debug, Default)]
    struct LossyCreate {
        stored: Mutex<Option<Bytes>>,
        lost_replies: Mutex<u32>,
        creates: Mutex<u32>,
    }

    #[async_trait]
    impl Backend for LossyCreate {
        fn location(&self) -> String {
            "lossy".into()
        }
        async fn save(&self, _: &Handle, _: Bytes) -> Result<(), BackendError> {
            unimplemented!()
        }
        async fn save_new(&self, _: &Handle, data: Bytes) -> Result<bool, BackendError> {
            *self.creates.lock().unwrap() += 1;
            let created = {
                let mut stored = self.stored.lock().unwrap();
                let absent = stored.is_none();
                if absent {
                    *stored = Some(data);
                }
                absent
            };
            let mut lost = self.lost_replies.lock().unwrap();
            if *lost > 0 {
                *lost -= 1;
                return Err(transient(*lost));
            }
            Ok(created)
        }
        async fn load(&self, h: &Handle, _: Option<Range<u64>>) -> Result<Bytes, BackendError> {
            self.stored
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| BackendError::NotFound(h.to_string()))
        }
        async fn stat(&self, _: &Handle) -> Result<u64, BackendError> {
            unimplemented!()
        }
        async fn remove(&self, _: &Handle) -> Result<(), BackendError> {
            unimplemented!()
        }
        async fn list(&self, _: FileType) -> Result<Vec<(String, u64)>, BackendError> {
            unimplemented!()
        }
    }

    #[tokio::test]
    async fn a_create_whose_reply_was_lost_is_still_ours() {
        let backend = Arc::new(LossyCreate {
            lost_replies: Mutex::new(2),
            ..Default::default()
        });
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(5));
        let ours = Bytes::from_static(b"sealed with our key");
        assert!(
            retrying
                .save_new(&Handle::config(), ours.clone())
                .await
                .unwrap(),
            "the first attempt created the file: the retry that finds it must not report a lost race"
        );
        assert_eq!(*backend.creates.lock().unwrap(), 3);
        assert_eq!(backend.stored.lock().unwrap().as_ref(), Some(&ours));
    }

    #[tokio::test]
    async fn a_retried_create_that_finds_someone_elses_file_lost() {
        let theirs = Bytes::from_static(b"sealed with their key");
        let backend = Arc::new(LossyCreate {
            stored: Mutex::new(Some(theirs.clone())),
            lost_replies: Mutex::new(1),
            ..Default::default()
        });
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(5));
        let created = retrying
            .save_new(
                &Handle::config(),
                Bytes::from_static(b"sealed with our key"),
            )
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(backend.stored.lock().unwrap().as_ref(), Some(&theirs));
    }

    #[tokio::test]
    async fn a_create_without_retries_passes_the_answer_through() {
        let backend = Arc::new(LossyCreate::default());
        let retrying = RetryingBackend::from_arc(backend.clone()).with_policy(quick(5));
        let h = Handle::config();
        assert!(
            retrying
                .save_new(&h, Bytes::from_static(b"a"))
                .await
                .unwrap()
        );
        // The same bytes again, without a lost reply: not created by this call.
        assert!(
            !retrying
                .save_new(&h, Bytes::from_static(b"a"))
                .await
                .unwrap()
        );
        assert_eq!(*backend.creates.lock().unwrap(), 2);
    }

    #[test]
    fn delays_grow_exponentially_with_jitter_and_are_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.delay(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| policy.delay(4)).collect();
        assert!(spread.len() > 1, "delays are jittered");
    }
}
