//! The S3 backend behind a proxy that answers 500, drops connections or truncates responses
//! for a deterministic subset of requests: failures are classified as transient, and the retry
//! layer rides through them with the data intact.

use crate::s3_support;

use std::time::Duration;

use bytes::Bytes;
use ferry_repo::backend::retry::{RetryPolicy, RetryingBackend};
use ferry_repo::backend::s3::S3Backend;
use ferry_repo::backend::{Backend, BackendError, FileType, Handle};
use futures::StreamExt;
use s3_support::{FaultPlan, FaultyProxy, Moto, config_for};

fn pack(name: &str) -> Handle {
    Handle::new(FileType::Pack, name)
}

/// Short delays: the proxy's faults are momentary.
fn fast_retries() -> RetryPolicy {
    // Every third request of the run fails and 8 run at once, so one request's attempts each
    // fail with a chance near 1/3: 12 attempts make giving up (1/3^12) practically impossible.
    RetryPolicy {
        max_attempts: 12,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn each_kind_of_fault_is_a_transient_error() {
    let moto = Moto::start();
    moto.create_bucket("faults");
    // Every second request fails: 500, close before forwarding, close after forwarding,
    // truncated response, in that order.
    let proxy = FaultyProxy::start(
        moto.port(),
        FaultPlan {
            every: 2,
            max_faults: 4,
        },
    )
    .await;
    let backend = S3Backend::new(config_for(&proxy.endpoint(), "faults", "repo")).unwrap();
    let data = Bytes::from(vec![7u8; 200_000]);
    let handle = pack("ab12");

    // Request 1 passes, so the endpoint is known to be reachable.
    backend.save(&handle, data.clone()).await.unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        // Even requests fail, odd ones pass.
        let failed = backend.load(&handle, None).await;
        outcomes.push(match failed {
            Err(BackendError::Transient { message, .. }) => message,
            other => panic!("expected a transient error, got {other:?}"),
        });
        assert_eq!(backend.load(&handle, None).await.unwrap(), data);
    }
    assert!(outcomes[0].contains("500"), "{}", outcomes[0]);
    assert_eq!(proxy.faults_injected(), 4);
    assert_eq!(proxy.requests_seen(), 9);
}

#[tokio::test]
async fn retrying_backend_rides_through_faults_with_data_intact() {
    let moto = Moto::start();
    moto.create_bucket("retries");
    let proxy = FaultyProxy::start(
        moto.port(),
        FaultPlan {
            every: 3,
            max_faults: 60,
        },
    )
    .await;
    let backend = RetryingBackend::new(
        S3Backend::new(config_for(&proxy.endpoint(), "retries", "repo")).unwrap(),
    )
    .with_policy(fast_retries());

    let files: Vec<(Handle, Bytes)> = (0..40u32)
        .map(|i| {
            let len = 1 + (i as usize * 7919) % 300_000;
            let bytes: Vec<u8> = (0..len)
                .map(|j| (j as u32 ^ i).wrapping_mul(31) as u8)
                .collect();
            (
                pack(&format!("{:02x}{i:06}", i * 5 % 256)),
                Bytes::from(bytes),
            )
        })
        .collect();
    futures::stream::iter(&files)
        .for_each_concurrent(8, |(handle, data)| {
            let backend = &backend;
            async move { backend.save(handle, data.clone()).await.unwrap() }
        })
        .await;

    let mut listed = backend.list(FileType::Pack).await.unwrap();
    listed.sort();
    let mut expected: Vec<(String, u64)> = files
        .iter()
        .map(|(h, d)| (h.name.clone(), d.len() as u64))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    futures::stream::iter(&files)
        .for_each_concurrent(8, |(handle, data)| {
            let backend = &backend;
            async move {
                assert_eq!(&backend.load(handle, None).await.unwrap(), data, "{handle}");
                assert_eq!(backend.stat(handle).await.unwrap(), data.len() as u64);
                let end = data.len() as u64;
                let range = end / 3..end;
                assert_eq!(
                    backend.load(handle, Some(range.clone())).await.unwrap(),
                    data.slice(range.start as usize..range.end as usize),
                    "{handle} {range:?}"
                );
            }
        })
        .await;
    for (handle, _) in &files[..10] {
        backend.remove(handle).await.unwrap();
    }
    assert_eq!(backend.list(FileType::Pack).await.unwrap().len(), 30);
    assert!(
        proxy.faults_injected() >= 40,
        "only {} faults injected in {} requests",
        proxy.faults_injected(),
        proxy.requests_seen()
    );
}
