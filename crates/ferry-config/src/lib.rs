//! ferry's node-agent configuration: the JSON document in the ConfigMap named by
//! `--node-agent-configmap`, read with Velero's rules and field names, checked more strictly
//! than Velero does (every problem reported at once, each with its JSON path), and resolved the
//! way Velero resolves it (concurrency per node, load affinity per storage class, defaults).
//!
//! Entry points: [`parse_config_json`], [`from_configmap_data`], [`load_manifest_or_json`];
//! then the resolution methods on [`NodeAgentConfig`].

pub mod fuzzing;
mod label_selector;
mod load;
mod names;
mod problems;
mod quantity;
mod repair;
mod resolve;
mod types;
mod validate;

pub use label_selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
pub use load::{from_configmap_data, from_json_value, load_manifest_or_json, parse_config_json};
pub use names::{
    DNS_LABEL_MAX, DNS_SUBDOMAIN_MAX, DnsLabelProblem, check_dns_subdomain, check_label_value,
    check_qualified_name, dns_label_problem, is_dns_label, is_dns_subdomain,
};
pub use problems::{ConfigErrors, ConfigProblem, Loaded, Strictness};
pub use quantity::{Quantity, QuantityError, parse_quantity};
pub use resolve::{
    DEFAULT_CONCURRENCY, EffectiveBackupPvc, EffectiveConfig, EffectiveLoadConcurrency,
    EffectivePodResources,
};
pub use types::{
    BackupPvcConfig, CachePvcConfig, LoadAffinity, LoadConcurrency, NodeAgentConfig,
    PerNodeConcurrency, PodResources, RESOURCE_CPU, RESOURCE_EPHEMERAL_STORAGE, RESOURCE_MEMORY,
    RestorePvcConfig,
};
