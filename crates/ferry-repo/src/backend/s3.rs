//! S3-compatible object storage backend (not built yet).
