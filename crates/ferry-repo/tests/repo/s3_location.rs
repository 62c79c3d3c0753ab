//! Parsing restic's S3 location syntax into a backend configuration.

use std::collections::HashMap;

use ferry_repo::backend::BackendError;
use ferry_repo::backend::s3::{DEFAULT_REGION, S3Config};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn credentials() -> impl Fn(&str) -> Option<String> {
    env(&[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
    ])
}

fn parse(location: &str) -> S3Config {
    S3Config::from_location(location, credentials()).unwrap()
}

fn error_message(location: &str, env: impl Fn(&str) -> Option<String>) -> String {
    match S3Config::from_location(location, env) {
        Err(BackendError::Other { what, message }) => {
            assert!(what.contains(location), "{what}");
            message
        }
        other => panic!("expected an error for {location}, got {other:?}"),
    }
}

#[test]
fn http_endpoint_with_port_bucket_and_prefix() {
    let config = parse("s3:http://127.0.0.1:9000/bucket/some/prefix");
    assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(config.bucket, "bucket");
    assert_eq!(config.prefix, "some/prefix");
    assert!(config.allow_http);
    assert!(config.path_style);
    assert_eq!(config.region, DEFAULT_REGION);
    assert_eq!(config.access_key_id, "AKID");
    assert_eq!(config.secret_access_key, "SECRET");
    assert_eq!(config.session_token, None);
    assert_eq!(
        config.location(),
        "s3:http://127.0.0.1:9000/bucket/some/prefix"
    );
}

#[test]
fn https_endpoint_without_prefix() {
    let config = parse("s3:https://minio.example.com/backups");
    assert_eq!(
        config.endpoint.as_deref(),
        Some("https://minio.example.com")
    );
    assert_eq!(config.bucket, "backups");
    assert_eq!(config.prefix, "");
    assert!(!config.allow_http);
    assert_eq!(config.location(), "s3:https://minio.example.com/backups");
}

#[test]
fn slashes_are_normalised() {
    let config = parse("s3:http://host:1/bucket//a///b/");
    assert_eq!(
        (config.bucket.as_str(), config.prefix.as_str()),
        ("bucket", "a/b")
    );
    assert_eq!(parse("s3:http://host:1/bucket/").prefix, "");
}

#[test]
fn aws_without_scheme_uses_the_regional_endpoint() {
    let config = parse("s3:s3.amazonaws.com/bucket/prefix");
    assert_eq!(config.endpoint, None);
    assert_eq!(config.bucket, "bucket");
    assert_eq!(config.prefix, "prefix");
    assert!(!config.allow_http);
    assert_eq!(config.location(), "s3:s3.amazonaws.com/bucket/prefix");
}

#[test]
fn other_host_without_scheme_means_https() {
    let config = parse("s3:storage.example.org:8443/bucket");
    assert_eq!(
        config.endpoint.as_deref(),
        Some("https://storage.example.org:8443")
    );
    assert!(!config.allow_http);
}

#[test]
fn region_and_session_token_from_the_environment() {
    let config = S3Config::from_location(
        "s3:http://h/b",
        env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
            ("AWS_REGION", "eu-west-1"),
        ]),
    )
    .unwrap();
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.session_token.as_deref(), Some("TOKEN"));
    // AWS_DEFAULT_REGION wins over AWS_REGION (restic reads AWS_DEFAULT_REGION).
    let config = S3Config::from_location(
        "s3:http://h/b",
        env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ]),
    )
    .unwrap();
    assert_eq!(config.region, "ap-south-1");
}

#[test]
fn missing_credentials_name_the_variable() {
    let message = error_message("s3:http://h/b", env(&[("AWS_SECRET_ACCESS_KEY", "SECRET")]));
    assert!(
        message.contains("AWS_ACCESS_KEY_ID is not set"),
        "{message}"
    );
    let message = error_message(
        "s3:http://h/b",
        env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "")]),
    );
    assert!(
        message.contains("AWS_SECRET_ACCESS_KEY is not set"),
        "{message}"
    );
}

#[test]
fn malformed_locations_are_rejected_with_the_syntax() {
    for (location, expected) in [
        ("s3:http://host:9000", "no bucket"),
        ("s3:http://host:9000/", "no bucket"),
        ("s3:http:///bucket", "missing or invalid host"),
        ("s3://bucket/prefix", "not restic's syntax"),
        ("s3:ftp://host/bucket", "unsupported scheme"),
        ("/srv/repo", "not an S3 location"),
    ] {
        let message = error_message(location, credentials());
        assert!(message.contains(expected), "{location}: {message}");
    }
}

#[test]
fn debug_output_hides_the_secret() {
    let config = S3Config::from_location(
        "s3:http://h/b",
        env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SUPERSECRET"),
            ("AWS_SESSION_TOKEN", "TOKENVALUE"),
        ]),
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("SUPERSECRET") && !debug.contains("TOKENVALUE"),
        "{debug}"
    );
    assert!(debug.contains("AKID"), "{debug}");
}
