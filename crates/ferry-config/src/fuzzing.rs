//! The entry point for fuzzing the loaders, shared by the cargo-fuzz target (`fuzz/`) and the
//! seeded property test in this crate. Any bytes: errors are expected, panics are bugs.

use std::collections::BTreeMap;

use crate::{Strictness, from_configmap_data, load_manifest_or_json, parse_config_json};

/// Loads `data` every way the controller and `ferry config validate` do, then resolves what
/// loaded (concurrency, affinity, the effective configuration).
pub fn load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for strictness in [Strictness::Strict, Strictness::Lenient] {
        let mut loaded = vec![
            parse_config_json(text, strictness),
            load_manifest_or_json(text, strictness),
        ];
        let data = BTreeMap::from([("node-agent-config.json".to_string(), text.to_string())]);
        loaded.push(from_configmap_data("fuzz", &data, strictness));
        for l in loaded {
            match l {
                Ok(l) => {
                    let c = &l.config;
                    let labels = BTreeMap::from([("kubernetes.io/hostname".into(), "n1".into())]);
                    let _ = c.concurrency_for_node(&labels);
                    let _ = c.prepare_queue_length();
                    let _ = c.load_affinity_for_storage_class(Some("standard"));
                    let _ = c.backup_pvc_for_storage_class("standard");
                    let _ = c.effective();
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}
