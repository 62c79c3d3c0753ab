//! Manifests rendered by `ferry install` (not built yet).
