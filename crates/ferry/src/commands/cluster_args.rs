//! What `ferry backup` and `ferry restore` share: which cluster and namespace to talk to
//! (`-n/--namespace`, `--kubeconfig`, `--context`), the output format of `get` and `describe`
//! (`-o table|yaml|json`), and an object's recent Events.

use std::path::PathBuf;

use anyhow::Context;
use ferry_controller::events::event_time;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The cluster and ferry's namespace.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// ferry's namespace (where DataUploads, DataDownloads and BackupStorageLocations live).
    #[arg(short = 'n', long, default_value = "velero")]
    pub namespace: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

impl ClusterArgs {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.kube.client().await
    }
}

/// Which cluster: the kubeconfig file and context.
#[derive(clap::Args, Debug, Clone)]
pub struct KubeArgs {
    /// Kubeconfig file to use (default: $KUBECONFIG, ~/.kube/config or the in-cluster config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the file's current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// A client for the chosen kubeconfig and context; without either, kube's default
    /// (KUBECONFIG, ~/.kube/config, in-cluster).
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        if self.kubeconfig.is_none() && self.context.is_none() {
            return kube::Client::try_default().await.context(
                "cannot reach the Kubernetes API: no usable kubeconfig (set KUBECONFIG or \
                 --kubeconfig)",
            );
        }
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        };
        let config = config.with_context(|| match &self.context {
            Some(context) => format!("loading kubeconfig context {context:?}"),
            None => "loading the kubeconfig".to_string(),
        })?;
        kube::Client::try_from(config).context("cannot build a Kubernetes client")
    }
}

/// The column where `describe`'s values start.
pub const DESCRIBE_WIDTH: usize = 20;

/// How `get` and `describe` print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Columns (`get`) or labelled lines (`describe`), for people.
    #[default]
    Table,
    /// `get`: more columns (snapshot, location); `describe`: as table.
    Wide,
    /// The object(s) as the API server returned them, as YAML.
    Yaml,
    /// The object(s) as the API server returned them, as JSON.
    Json,
}

impl OutputFormat {
    /// Printed for people (table or wide), not as the objects.
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format: table, wide (more columns), or yaml and json, which print the objects
    /// as the API server returned them (`get`: a List).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `ar`'s objects in `namespace` as the API server returned them (unknown fields kept), with
/// `apiVersion`/`kind` filled in where a list left them out.
pub async fn list_raw(
    client: &kube::Client,
    namespace: &str,
    ar: &ApiResource,
) -> anyhow::Result<Vec<DynamicObject>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let list = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing {} in namespace {namespace}", ar.plural))?;
    Ok(list.items.into_iter().map(|o| typed(o, ar)).collect())
}

/// One object as the API server returned it; `None` when it does not exist.
pub async fn get_raw(
    client: &kube::Client,
    namespace: &str,
    ar: &ApiResource,
    name: &str,
) -> anyhow::Result<Option<DynamicObject>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let object = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading {} {namespace}/{name}", ar.kind))?;
    Ok(object.map(|o| typed(o, ar)))
}

fn typed(mut object: DynamicObject, ar: &ApiResource) -> DynamicObject {
    if object.types.is_none() {
        object.types = Some(kube::core::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
    object
}

/// A raw object as the typed one (for the table and describe views).
pub fn decode<K: serde::de::DeserializeOwned>(object: &DynamicObject) -> anyhow::Result<K> {
    let value = serde_json::to_value(object)?;
    serde_json::from_value(value).with_context(|| {
        format!(
            "decoding {}",
            object.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

/// Prints one object, or a `v1` List of objects, as YAML or JSON.
pub fn print_raw(format: OutputFormat, value: &serde_json::Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        OutputFormat::Table | OutputFormat::Wide => {
            anyhow::bail!("table output is printed by the command itself")
        }
    }
    Ok(())
}

/// `items` as the List `kubectl get -o json` prints.
pub fn list_value(items: &[DynamicObject]) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": serde_json::to_value(items)?,
    }))
}

/// The Events about `kind` `name` in `namespace`, oldest first.
pub async fn events_for(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> anyhow::Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing Events in namespace {namespace}"))?
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .collect();
    events.sort_by_key(event_time);
    Ok(events)
}

/// The `Events:` block of `describe`, as kubectl prints it (the last ten).
pub fn print_events(events: &[Event]) {
    if events.is_empty() {
        println!("Events:         <none>");
        return;
    }
    println!("Events:");
    println!("  {:<8} {:<20} {:<8} MESSAGE", "TYPE", "REASON", "AGE");
    for e in events.iter().rev().take(10).rev() {
        let age = event_time(e).map(age).unwrap_or_else(|| "-".into());
        println!(
            "  {:<8} {:<20} {:<8} {}",
            e.type_.as_deref().unwrap_or("Normal"),
            e.reason.as_deref().unwrap_or_default(),
            age,
            e.message.as_deref().unwrap_or_default()
        );
    }
}

/// How long ago `t` was, as kubectl's AGE column (`45s`, `12m`, `3h`, `2d`).
pub fn age(t: k8s_openapi::jiff::Timestamp) -> String {
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
