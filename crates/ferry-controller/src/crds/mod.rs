//! CRD types shared with Velero (not built yet).
