//! The API server's clock, as timestamps appear in objects (whole seconds, UTC, RFC 3339).

pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(now)
        .to_string()
}
