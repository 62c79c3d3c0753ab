//! The S3 backend against a real S3-compatible server (moto on 127.0.0.1).

use crate::s3_support;

use bytes::Bytes;
use ferry_repo::backend::s3::S3Backend;
use ferry_repo::backend::{Backend, BackendError, FileType, Handle};
use futures::StreamExt;
use s3_support::{Moto, config_for, free_port};

fn pack(name: &str) -> Handle {
    Handle::new(FileType::Pack, name)
}

/// moto honours `If-None-Match: *` on PUT (as AWS S3 does): the second create is refused
/// and the object keeps the first one's bytes.
#[tokio::test]
async fn save_new_creates_once_and_never_replaces() {
    let moto = Moto::start();
    moto.create_bucket("repo");
    let backend = S3Backend::new(moto.config("repo", "p")).unwrap();
    let config = Handle::config();
    assert!(
        backend
            .save_new(&config, Bytes::from_static(b"first"))
            .await
            .unwrap()
    );
    assert!(
        !backend
            .save_new(&config, Bytes::from_static(b"second"))
            .await
            .unwrap()
    );
    assert_eq!(
        backend.load(&config, None).await.unwrap(),
        Bytes::from_static(b"first")
    );
    // Another name is created as usual.
    assert!(
        backend
            .save_new(&pack("abcd"), Bytes::from_static(b"x"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn save_load_stat_remove_round_trip() {
    let moto = Moto::start();
    moto.create_bucket("repo");
    let backend = S3Backend::new(moto.config("repo", "some/prefix")).unwrap();
    assert_eq!(
        backend.location(),
        format!("s3:{}/repo/some/prefix", moto.endpoint())
    );
    backend.create().await.unwrap();

    let data = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let handle = pack("abcdef0123");
    backend.save(&handle, data.clone()).await.unwrap();
    backend
        .save(&Handle::config(), Bytes::from_static(b"config bytes"))
        .await
        .unwrap();

    assert_eq!(backend.load(&handle, None).await.unwrap(), data);
    assert_eq!(backend.stat(&handle).await.unwrap(), 100_000);
    assert_eq!(
        backend.load(&Handle::config(), None).await.unwrap(),
        Bytes::from_static(b"config bytes")
    );

    // Locks may be overwritten.
    let lock = Handle::new(FileType::Lock, "1234");
    backend
        .save(&lock, Bytes::from_static(b"one"))
        .await
        .unwrap();
    backend
        .save(&lock, Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(
        backend.load(&lock, None).await.unwrap(),
        Bytes::from_static(b"two")
    );

    backend.remove(&handle).await.unwrap();
    assert!(matches!(
        backend.stat(&handle).await,
        Err(BackendError::NotFound(_))
    ));
    // Removing what is gone is not an error on S3.
    backend.remove(&handle).await.unwrap();
}

#[tokio::test]
async fn objects_use_restics_layout_under_the_prefix() {
    let moto = Moto::start();
    moto.create_bucket("layout");
    let backend = S3Backend::new(moto.config("layout", "/team/repo/")).unwrap();
    for handle in [
        Handle::config(),
        Handle::new(FileType::Key, "k1"),
        Handle::new(FileType::Snapshot, "s1"),
        Handle::new(FileType::Index, "i1"),
        Handle::new(FileType::Lock, "l1"),
        pack("ab01"),
    ] {
        backend
            .save(&handle, Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // Look at the bucket with a prefix-less view: the keys are restic's paths under the prefix.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(moto.endpoint())
        .with_bucket_name("layout")
        .with_region(s3_support::REGION)
        .with_access_key_id(s3_support::ACCESS_KEY_ID)
        .with_secret_access_key(s3_support::SECRET_ACCESS_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    use object_store::ObjectStore;
    let mut keys: Vec<String> = raw
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    assert_eq!(
        keys,
        [
            "team/repo/config",
            "team/repo/data/ab/ab01",
            "team/repo/index/i1",
            "team/repo/keys/k1",
            "team/repo/locks/l1",
            "team/repo/snapshots/s1",
        ]
    );
}

#[tokio::test]
async fn range_reads() {
    let moto = Moto::start();
    moto.create_bucket("ranges");
    let backend = S3Backend::new(moto.config("ranges", "")).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let handle = pack("cd99");
    backend
        .save(&handle, Bytes::from(data.clone()))
        .await
        .unwrap();

    for range in [0..1, 0..10_000, 17..4096, 9_999..10_000, 5_000..5_000] {
        let got = backend.load(&handle, Some(range.clone())).await.unwrap();
        assert_eq!(
            &got[..],
            &data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    // Past the end of the file: an error, never fewer bytes than asked for.
    let err = backend
        .load(&handle, Some(9_000..10_001))
        .await
        .unwrap_err();
    assert!(!matches!(err, BackendError::Transient { .. }), "{err}");
    let err = backend.load(&pack("cd00"), Some(0..10)).await.unwrap_err();
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn missing_files_are_not_found() {
    let moto = Moto::start();
    moto.create_bucket("empty");
    let backend = S3Backend::new(moto.config("empty", "repo")).unwrap();
    for result in [
        backend.load(&Handle::config(), None).await.map(|_| ()),
        backend.stat(&pack("ee11")).await.map(|_| ()),
    ] {
        match result {
            Err(BackendError::NotFound(what)) => assert!(what.contains("repo/"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert!(backend.list(FileType::Config).await.unwrap().is_empty());
    assert!(backend.list(FileType::Pack).await.unwrap().is_empty());
}

#[tokio::test]
async fn list_names_sizes_and_kinds() {
    let moto = Moto::start();
    moto.create_bucket("listing");
    let backend = S3Backend::new(moto.config("listing", "r")).unwrap();
    let other_repo = S3Backend::new(moto.config("listing", "r2")).unwrap();
    backend
        .save(&Handle::config(), Bytes::from_static(b"cfg"))
        .await
        .unwrap();
    backend
        .save(&pack("aa01"), Bytes::from(vec![1; 10]))
        .await
        .unwrap();
    backend
        .save(&pack("aa02"), Bytes::from(vec![1; 20]))
        .await
        .unwrap();
    backend
        .save(&pack("bb01"), Bytes::from(vec![1; 30]))
        .await
        .unwrap();
    backend
        .save(
            &Handle::new(FileType::Snapshot, "5a"),
            Bytes::from(vec![1; 5]),
        )
        .await
        .unwrap();
    // Another repository whose prefix starts with this one's must stay invisible.
    other_repo
        .save(&pack("cc01"), Bytes::from(vec![1; 1]))
        .await
        .unwrap();

    let mut packs = backend.list(FileType::Pack).await.unwrap();
    packs.sort();
    assert_eq!(
        packs,
        [
            ("aa01".to_string(), 10),
            ("aa02".to_string(), 20),
            ("bb01".to_string(), 30)
        ]
    );
    assert_eq!(
        backend.list(FileType::Snapshot).await.unwrap(),
        [("5a".to_string(), 5)]
    );
    assert_eq!(
        backend.list(FileType::Config).await.unwrap(),
        [(String::new(), 3)]
    );
    assert!(backend.list(FileType::Index).await.unwrap().is_empty());
    assert_eq!(
        other_repo.list(FileType::Pack).await.unwrap(),
        [("cc01".to_string(), 1)]
    );
}

#[tokio::test]
async fn list_pages_through_more_than_one_page() {
    // S3 returns at most 1000 keys per ListObjectsV2 page.
    const COUNT: usize = 1_234;
    let moto = Moto::start();
    moto.create_bucket("many");
    let backend = S3Backend::new(moto.config("many", "repo")).unwrap();
    let names: Vec<String> = (0..COUNT)
        .map(|i| format!("{:02x}{i:08}", i % 256))
        .collect();
    futures::stream::iter(names.iter())
        .for_each_concurrent(16, |name| {
            let backend = &backend;
            async move {
                backend
                    .save(
                        &Handle::new(FileType::Index, name.clone()),
                        Bytes::from_static(b"i"),
                    )
                    .await
                    .unwrap();
            }
        })
        .await;
    let mut listed: Vec<String> = backend
        .list(FileType::Index)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, size)| {
            assert_eq!(size, 1);
            name
        })
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed.len(), COUNT);
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn missing_bucket_is_a_clear_error() {
    let moto = Moto::start();
    let backend = S3Backend::new(moto.config("no-such-bucket", "repo")).unwrap();
    for err in [
        backend.create().await.unwrap_err(),
        backend.load(&Handle::config(), None).await.unwrap_err(),
    ] {
        match err {
            BackendError::Other { message, .. } => {
                assert!(
                    message.contains("\"no-such-bucket\" does not exist"),
                    "{message}"
                )
            }
            other => panic!("expected a bucket error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_error_not_retried() {
    // Nothing listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let backend = S3Backend::new(config_for(&endpoint, "bucket", "repo")).unwrap();
    let err = backend.load(&Handle::config(), None).await.unwrap_err();
    match &err {
        BackendError::Other { what, message } => {
            assert!(what.contains(&endpoint), "{what}");
            assert!(
                message.contains(&format!("cannot connect to the S3 endpoint {endpoint}")),
                "{message}"
            );
        }
        other => panic!("expected a non-retryable error, got {other:?}"),
    }
    // Through the retry layer it fails on the first attempt as well.
    let retrying = ferry_repo::backend::retry::RetryingBackend::new(
        S3Backend::new(config_for(&endpoint, "bucket", "repo")).unwrap(),
    );
    assert!(matches!(
        retrying.stat(&Handle::config()).await,
        Err(BackendError::Other { .. })
    ));
}

#[tokio::test]
async fn refused_access_is_reported_as_access_denied() {
    // moto accepts any key unless IAM enforcement is on, so a stand-in server answers 403 the
    // way S3 does for a bad signature.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let body = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message></Error>";
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let backend = S3Backend::new(config_for(
        &format!("http://127.0.0.1:{port}"),
        "locked",
        "",
    ))
    .unwrap();
    match backend.list(FileType::Snapshot).await.unwrap_err() {
        BackendError::Other { message, .. } => {
            assert!(message.contains("access denied"), "{message}");
            assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
        }
        other => panic!("expected access denied, got {other:?}"),
    }
}
