//! The acceptance scenario of Velero with ferry as its data mover, on the real control plane
//! (see docs/velero.md): Velero v1.18 (built from its Go module) backs up a namespace with a
//! 3-replica StatefulSet on a WaitForFirstConsumer class through `velero backup create
//! --snapshot-move-data --data-mover ferry`; ferry's controller (as its service account, with
//! the RBAC `ferry install` renders) handles the DataUploads, writing the data into the
//! repository on the location's S3 bucket (moto); the namespace is deleted; `velero restore
//! create` brings it back through ferry's DataDownloads, once with the default node-agent
//! configuration (each restore waits for its pod) and once with
//! `restorePVC.ignoreDelayBinding`; every byte of each volume is compared.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::movers::DataMovers;
use common::trees::{describe, fill};
use common::{CONFIGMAP, NS, options, set_config, wait_for};
use ferry_controller::crds::{DataDownload, DataUpload};
use ferry_controller::install::{CONTROLLER_NAME, InstallOptions, render};
use ferry_controller::start_controller;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use testenv::velero::Velero;
use testenv::{Backend, ClusterConfig, TestCluster};

const APP: &str = "shop";
const REPLICAS: usize = 3;

fn statefulset() -> StatefulSet {
    let labels = json!({"app": "db"});
    serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": APP},
        "spec": {
            "replicas": REPLICAS, "serviceName": "db",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                {"name": "db", "image": "busybox",
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                "resources": {"requests": {"storage": "256Mi"}}}}],
        },
    }))
    .unwrap()
}

/// The directory of claim `data-db-i`'s volume once it is bound.
async fn volume_of(cluster: &TestCluster, i: usize) -> PathBuf {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client(), APP);
    let name = format!("data-db-{i}");
    let pv = wait_for(&format!("{name} bound"), 300, || {
        let claims = claims.clone();
        let name = name.clone();
        async move {
            let c = claims.get(&name).await.ok()?;
            (c.status?.phase.as_deref() == Some("Bound")).then_some(())?;
            c.spec?.volume_name
        }
    })
    .await;
    cluster.nodes().volume_path(&pv)
}

/// The phase `velero backup|restore describe` prints.
fn phase(details: &str) -> &str {
    details
        .lines()
        .find_map(|l| l.strip_prefix("Phase:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
}

async fn velero(velero: &Velero, args: &[&str]) -> String {
    let out = velero.cli(args).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "velero {args:?} failed: {text}\nserver log: {}",
        velero.logs().join("velero-server.log").display()
    );
    text
}

/// Deletes the application namespace and waits until it is gone (its volumes with it).
async fn lose_the_namespace(cluster: &TestCluster) {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    namespaces
        .delete(APP, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("namespace deleted", 180, || {
        let namespaces = namespaces.clone();
        async move { namespaces.get_opt(APP).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// Restores backup `b1` as restore `name`; returns how long Velero took and the nodes of
/// ferry's DataDownloads.
async fn restore(
    cluster: &TestCluster,
    v: &Velero,
    name: &str,
    expected: &BTreeMap<usize, BTreeMap<String, String>>,
) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let out = velero(
        v,
        &["restore", "create", name, "--from-backup", "b1", "--wait"],
    )
    .await;
    let took = started.elapsed();
    let details = velero(
        v,
        &[
            "restore",
            "describe",
            name,
            "--details",
            "--colorized=false",
        ],
    )
    .await;
    assert_eq!(
        phase(&details),
        "Completed",
        "restore {name}: {out}\n{details}"
    );
    assert!(
        details.contains("Data Mover: ferry")
            && details.contains("Progress description:        Completed"),
        "the data mover operations completed: {details}"
    );
    let downloads: Api<DataDownload> = Api::namespaced(cluster.client(), NS);
    let ours: Vec<DataDownload> = downloads
        .list(&ListParams::default().labels(&format!("velero.io/restore-name={name}")))
        .await
        .unwrap()
        .items;
    assert_eq!(ours.len(), REPLICAS, "one DataDownload per volume");
    let mut nodes = Vec::new();
    for dd in &ours {
        assert_eq!(dd.spec.datamover.as_deref(), Some("ferry"));
        let status = dd.status.clone().unwrap();
        assert_eq!(
            status.phase.as_ref().map(|p| p.as_str()),
            Some("Completed"),
            "{:?}",
            status.message
        );
        nodes.push(status.node.unwrap_or_default());
    }
    for (i, tree) in expected {
        let dir = volume_of(cluster, *i).await;
        assert_eq!(
            &describe(&dir),
            tree,
            "volume data-db-{i} restored by {name}"
        );
    }
    (took, nodes)
}

/// restic on ferry's repository in moto's bucket.
struct Restic {
    url: String,
    password: String,
    cache: PathBuf,
}

impl Restic {
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("restic")
            .arg("-r")
            .arg(&self.url)
            .args(args)
            .env("RESTIC_PASSWORD", &self.password)
            .env("RESTIC_CACHE_DIR", &self.cache)
            .env("AWS_ACCESS_KEY_ID", testenv::velero::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", testenv::velero::SECRET_ACCESS_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The ids of the snapshots carrying `tag` (all of them for "").
    fn snapshots(&self, tag: &str) -> Vec<String> {
        let mut args = vec!["snapshots", "--json", "--no-lock"];
        if !tag.is_empty() {
            args.extend(["--tag", tag]);
        }
        let list: Vec<serde_json::Value> = serde_json::from_str(&self.run(&args)).unwrap();
        list.iter()
            .map(|s| s["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_backs_up_and_restores_a_statefulset_through_ferry_on_the_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (_movers, wrapper) = DataMovers::install(
        &dir.path().join("movers"),
        env!("CARGO_BIN_EXE_ferry").as_ref(),
    );
    let cluster = TestCluster::start(
        Backend::Real,
        ClusterConfig {
            nodes: 3,
            zones: 0,
            data_dir: dir.path().join("sim"),
            image_binaries: BTreeMap::from([("ferry".to_string(), wrapper)]),
        },
    )
    .await
    .unwrap();
    let client = cluster.client();
    let v = Velero::start(&cluster, &dir.path().join("velero"))
        .await
        .unwrap();
    // ferry beside Velero in its namespace (Velero's CRDs stay as Velero installed them).
    let mut manifests = render(&InstallOptions::new(CONFIGMAP)).unwrap();
    manifests.deployment.spec.as_mut().unwrap().replicas = Some(0);
    ferry_controller::install::apply(&client, &manifests)
        .await
        .unwrap();
    set_config(&client, json!({})).await;
    let controller_client = cluster
        .service_account_client(NS, CONTROLLER_NAME)
        .await
        .unwrap();
    let mut controller_options = options(controller_client);
    // A failed forget (the wrong password below) is retried soon.
    controller_options.forget_retry = Duration::from_secs(3);
    let ctl = start_controller(controller_options).await.unwrap();

    // The workload: each replica's volume holds its own data.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": APP}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), APP)
        .create(&PostParams::default(), &statefulset())
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..REPLICAS {
        let dir = volume_of(&cluster, i).await;
        fill(&dir);
        std::fs::write(dir.join("replica"), format!("db-{i}")).unwrap();
        expected.insert(i, describe(&dir));
    }

    let started = Instant::now();
    let out = velero(
        &v,
        &[
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            APP,
            "--snapshot-move-data",
            "--data-mover",
            "ferry",
            "--wait",
        ],
    )
    .await;
    let backup_took = started.elapsed();
    let backup_done = k8s_openapi::jiff::Timestamp::now();
    let details = velero(
        &v,
        &["backup", "describe", "b1", "--details", "--colorized=false"],
    )
    .await;
    assert_eq!(phase(&details), "Completed", "{out}\n{details}");
    let uploads: Api<DataUpload> = Api::namespaced(client.clone(), NS);
    let ours = uploads
        .list(&ListParams::default().labels("velero.io/backup-name=b1"))
        .await
        .unwrap()
        .items;
    assert_eq!(ours.len(), REPLICAS, "one DataUpload per volume");
    for du in &ours {
        let status = du.status.clone().unwrap();
        assert_eq!(
            status.phase.as_ref().map(|p| p.as_str()),
            Some("Completed"),
            "{:?}",
            status.message
        );
        // ferry accepted it (Velero's node-agent, not running here, never did).
        assert_eq!(status.accepted_by_node.as_deref(), Some("e2e-controller"));
        assert!(status.snapshot_id.is_some_and(|s| !s.is_empty()));
    }

    // Default restorePVC: each restore waits for its pod.
    lose_the_namespace(&cluster).await;
    let (default_took, _) = restore(&cluster, &v, "r-default", &expected).await;

    // ignoreDelayBinding: the restores start at once, spread over the nodes.
    lose_the_namespace(&cluster).await;
    set_config(&client, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
    let (ignore_took, nodes) = restore(&cluster, &v, "r-ignore", &expected).await;
    // Velero creates the DataDownloads one after another; a restore that ends before the
    // next is created frees its node again, so "spread" means more than one node here.
    let distinct: std::collections::BTreeSet<&String> = nodes.iter().collect();
    assert!(
        distinct.len() >= 2,
        "ignoreDelayBinding spreads the restores over the nodes: {nodes:?}"
    );
    // ferry's repository under the location's prefix leaves the location valid in Velero's
    // eyes (Velero validates it every minute; a stray top-level directory makes it
    // Unavailable, which a second restore then trips over).
    let location = wait_for(
        "a validation of the location after the backup",
        120,
        || async {
            let out = v
                .cli(&["backup-location", "get", "default", "-o", "json"])
                .await
                .ok()?;
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let validated: k8s_openapi::jiff::Timestamp = json["status"]["lastValidationTime"]
                .as_str()?
                .parse()
                .ok()?;
            (validated > backup_done).then_some(json)
        },
    )
    .await;
    assert_eq!(location["status"]["phase"], "Available", "{location}");

    // A repository password that does not open the repository: Velero's restore ends
    // PartiallyFailed, with ferry's reason in its description.
    lose_the_namespace(&cluster).await;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS);
    let password = String::from_utf8(
        secrets
            .get("velero-repo-credentials")
            .await
            .unwrap()
            .data
            .unwrap()["repository-password"]
            .0
            .clone(),
    )
    .unwrap();
    let repo = Restic {
        url: format!("s3:{}/velero/backups/plugins/ferry/{APP}", v.s3_url()),
        password: password.clone(),
        cache: dir.path().join("restic-cache"),
    };
    let b1_snapshots = repo.snapshots("backup=b1");
    assert_eq!(b1_snapshots.len(), REPLICAS, "{b1_snapshots:?}");
    secrets
        .patch(
            "velero-repo-credentials",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"stringData": {"repository-password": "not-the-password"}}),
            ),
        )
        .await
        .unwrap();
    let _ = v
        .cli(&[
            "restore",
            "create",
            "r-wrong",
            "--from-backup",
            "b1",
            "--wait",
        ])
        .await
        .unwrap();
    let details = velero(
        &v,
        &[
            "restore",
            "describe",
            "r-wrong",
            "--details",
            "--colorized=false",
        ],
    )
    .await;
    assert_eq!(phase(&details), "PartiallyFailed", "{details}");
    assert!(
        details.contains("data mover failed") && details.to_lowercase().contains("password"),
        "ferry's reason shows in Velero's description: {details}"
    );

    // `velero backup delete` while the password is still wrong: Velero deletes the backup
    // (it does not wait for a third-party data mover), ferry's forget fails and keeps the
    // DataUploads and every snapshot until it can do its part.
    let started = Instant::now();
    velero(&v, &["backup", "delete", "b1", "--confirm"]).await;
    let backups = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        NS,
        &ferry_controller::backup_deletion::backup_resource(),
    );
    wait_for("backup b1 gone from Velero", 180, || {
        let backups = backups.clone();
        async move { backups.get_opt("b1").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), NS);
    wait_for("a ForgetFailed event", 120, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ForgetFailed")
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.to_lowercase().contains("password"))
                })
                .then_some(())
        }
    })
    .await;
    let held = uploads
        .list(&ListParams::default().labels("velero.io/backup-name=b1"))
        .await
        .unwrap()
        .items;
    assert_eq!(held.len(), REPLICAS, "the DataUploads wait for the forget");
    assert!(
        held.iter()
            .all(|du| du.metadata.deletion_timestamp.is_some())
    );
    assert_eq!(
        repo.snapshots("backup=b1").len(),
        REPLICAS,
        "nothing forgotten on error"
    );

    // The password back: the retry forgets exactly b1's snapshots and lets the DataUploads go.
    secrets
        .patch(
            "velero-repo-credentials",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"repository-password": password}})),
        )
        .await
        .unwrap();
    wait_for("b1's DataUploads gone", 120, || {
        let uploads = uploads.clone();
        async move {
            let list = uploads
                .list(&ListParams::default().labels("velero.io/backup-name=b1"))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        }
    })
    .await;
    let delete_took = started.elapsed();
    assert_eq!(repo.snapshots("backup=b1"), Vec::<String>::new());
    assert!(repo.snapshots("").is_empty(), "b1 was the only backup");
    repo.run(&["check"]);
    let out = v.cli(&["backup", "get", "b1"]).await.unwrap();
    assert!(!out.status.success(), "b1 is gone from Velero");
    let metrics = ctl.metrics.render();
    assert!(
        metrics.contains("ferry_backup_snapshot_deletions_total{outcome=\"forgotten\"} 3\n")
            && metrics.contains("ferry_backup_snapshot_deletions_total{outcome=\"failed\"}"),
        "{metrics}"
    );

    eprintln!(
        "velero with ferry, {REPLICAS} volumes: backup {:.1} s, restore default {:.1} s, ignoreDelayBinding {:.1} s, backup delete (one failed forget, then its retry) {:.1} s",
        backup_took.as_secs_f64(),
        default_took.as_secs_f64(),
        ignore_took.as_secs_f64(),
        delete_took.as_secs_f64()
    );
    ctl.stop().await;
    drop(v);
    cluster.stop().await;
}
