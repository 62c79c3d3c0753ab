//! The API server's clock, as timestamps appear in objects (whole seconds, UTC, RFC 3339).

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
