//! The permissions `ferry install` renders cover every API request ferry really makes during a
//! restore. kubesim authorizes nothing, so its request log records who asked for what (the
//! controller and the data mover pods each with their own bearer token), and a small RBAC rule
//! matcher here checks each request against the rules bound to that identity's
//! ServiceAccount: ClusterRoles anywhere, Roles only in their own namespace.
//!
//! On the real control plane the real authorizer judges: the controller and the data mover
//! pods run as the ServiceAccounts `ferry install` creates, and the API server's audit log
//! must show no request of theirs refused.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{
    APP, Backend, DONE, NS, controller, env, install_restore_prerequisites, restores, set_config,
    wait_phase,
};
use ferry_controller::crds::{DataDownload, DataDownloadPhase, DataDownloadSpec, TargetVolumeSpec};
use ferry_controller::install::{InstallOptions, Manifests, render};
use ferry_controller::{ControllerOptions, start_controller};
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use kube::Api;
use kube::api::PostParams;
use kubesim::audit::AuditRecord;
use serde_json::json;

/// Bearer tokens the test gives each party; kubesim's log names requests after them.
const CONTROLLER_USER: &str = "ferry-controller";
const DATA_MOVER_USER: &str = "ferry-data-mover-pod";
const VOLUMES: usize = 2;

/// One RBAC rule source: its rules and, for a Role, the namespace it is confined to.
struct Grant {
    what: String,
    namespace: Option<String>,
    rules: Vec<PolicyRule>,
}

fn lists(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

/// RBAC's rule semantics: group, resource (`resource/subresource` for a subresource), verb,
/// and resourceNames when the rule names objects.
fn rule_allows(rule: &PolicyRule, r: &AuditRecord) -> bool {
    let resource = match &r.subresource {
        Some(sub) => format!("{}/{sub}", r.resource),
        None => r.resource.clone(),
    };
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    any(lists(&rule.api_groups), &r.api_group)
        && any(lists(&rule.resources), &resource)
        && any(&rule.verbs, &r.verb)
        && (lists(&rule.resource_names).is_empty()
            || r.name
                .as_deref()
                .is_some_and(|n| lists(&rule.resource_names).iter().any(|x| x == n)))
}

fn grants_allow(grants: &[Grant], r: &AuditRecord) -> Option<String> {
    grants
        .iter()
        .filter(|g| g.namespace.is_none() || g.namespace.as_deref() == r.namespace.as_deref())
        .find(|g| g.rules.iter().any(|rule| rule_allows(rule, r)))
        .map(|g| g.what.clone())
}

fn binds(subjects: &Option<Vec<Subject>>, ns: &str, account: &str) -> bool {
    lists_subjects(subjects).iter().any(|s| {
        s.kind == "ServiceAccount" && s.name == account && s.namespace.as_deref() == Some(ns)
    })
}

fn lists_subjects(s: &Option<Vec<Subject>>) -> &[Subject] {
    s.as_deref().unwrap_or(&[])
}

/// What the rendered manifests grant ServiceAccount `ns/account`, following the bindings.
fn grants_for(m: &Manifests, ns: &str, account: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    let role_named = |r: &RoleRef, name: &Option<String>| Some(&r.name) == name.as_ref();
    for b in &m.cluster_role_bindings() {
        if binds(&b.subjects, ns, account) {
            for role in m.cluster_roles() {
                if b.role_ref.kind == "ClusterRole" && role_named(&b.role_ref, &role.metadata.name)
                {
                    out.push(Grant {
                        what: format!("ClusterRole {}", b.role_ref.name),
                        namespace: None,
                        rules: role.rules.clone().unwrap_or_default(),
                    });
                }
            }
        }
    }
    for b in &m.role_bindings() {
        let binding_ns = b.metadata.namespace.clone();
        if binds(&b.subjects, ns, account) && b.role_ref.kind == "Role" {
            for role in m.roles() {
                if role_named(&b.role_ref, &role.metadata.name)
                    && role.metadata.namespace == binding_ns
                {
                    out.push(Grant {
                        what: format!(
                            "Role {}/{}",
                            binding_ns.clone().unwrap_or_default(),
                            b.role_ref.name
                        ),
                        namespace: binding_ns.clone(),
                        rules: role.rules.clone().unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

/// A kubeconfig for `server` whose user authenticates with bearer token `token`.
fn write_kubeconfig(path: &Path, server: &str, token: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {server}\n\
         contexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: u\n    namespace: default\n\
         current-context: kubesim\nusers:\n- name: u\n  user:\n    token: {token}\n"
    );
    let tmp = path.with_extension("tmp-rbac");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn client_for(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.read_timeout = None;
    kube::Client::try_from(config).unwrap()
}

/// The value after `flag` (`--flag VALUE` or `--flag=VALUE`) in the rendered controller args.
fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

async fn backup(repo: &Repository, dir: &Path, i: usize) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![i as u8 + 1; 20_000 + i * 1000]).unwrap();
    repo.backup(
        BackupSource::Contents(dir.to_path_buf()),
        BackupOptions {
            no_parent: true,
            ..Default::default()
        },
        Arc::new(|_: &ferry_repo::RestoreProgress| {}),
    )
    .await
    .unwrap()
    .snapshot_id
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rendered_rbac_allows_every_request_of_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("sim");
    let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
        nodes: 2,
        zones: 0,
        data_dir: data_dir.clone(),
        port: None,
        image_binaries: BTreeMap::from([(
            "ferry".to_string(),
            PathBuf::from(env!("CARGO_BIN_EXE_ferry")),
        )]),
    })
    .await
    .unwrap();
    let audit = cluster.api_server().audit();
    audit.enable();
    // Restore pods reach the API through this file: give them their own identity.
    write_kubeconfig(cluster.kubeconfig_path(), &cluster.url(), DATA_MOVER_USER);
    let controller_kubeconfig = dir.path().join("controller-kubeconfig");
    write_kubeconfig(&controller_kubeconfig, &cluster.url(), CONTROLLER_USER);

    // Setup as an admin would (anonymous in the log).
    let admin = cluster.client();
    let (repo, _) = install_restore_prerequisites(&admin, dir.path()).await;
    set_config(&admin, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
    let downloads: Api<DataDownload> = Api::namespaced(admin.clone(), NS);

    // The controller as `ferry install` configures it.
    let mut install = InstallOptions::new("node-agent-config");
    install.namespace = NS.to_string();
    let manifests = render(&install).unwrap();
    let args = ferry_controller::install::controller_args(&install);
    let mut options = ControllerOptions::new(
        client_for(&controller_kubeconfig).await,
        &arg(&args, "--namespace").unwrap(),
        &arg(&args, "--node-agent-configmap").unwrap(),
    );
    options.data_mover_name = arg(&args, "--data-mover-name").unwrap();
    options.service_account = arg(&args, "--service-account");
    options.identity = "rbac-controller".into();
    options.data_mover_log = Some("warn".into());
    let controller = start_controller(options).await.unwrap();

    // Restores, as Velero creates them.
    let mut created_at = BTreeMap::new();
    for i in 0..VOLUMES {
        let snapshot = backup(&repo, &dir.path().join(format!("src-{i}")), i).await;
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": format!("pvc-{i}"), "namespace": APP},
            "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                "resources": {"requests": {"storage": "64Mi"}},
                "selector": {"matchLabels": {"velero.io/dynamic-pv-restore": format!("rbac-{i}")}},
            },
        }))
        .unwrap();
        Api::<PersistentVolumeClaim>::namespaced(admin.clone(), APP)
            .create(&PostParams::default(), &pvc)
            .await
            .unwrap();
        let dd = DataDownload::new(
            &format!("dd-{i}"),
            DataDownloadSpec {
                target_volume: TargetVolumeSpec {
                    pvc: format!("pvc-{i}"),
                    pv: String::new(),
                    namespace: APP.into(),
                },
                backup_storage_location: "default".into(),
                datamover: Some("ferry".into()),
                snapshot_id: snapshot,
                source_namespace: APP.into(),
                operation_timeout: "10m".into(),
                ..Default::default()
            },
        );
        downloads.create(&PostParams::default(), &dd).await.unwrap();
        created_at.insert(format!("dd-{i}"), SystemTime::now());
    }
    // Restore pods' service account, as the controller sets it.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let mut pod_accounts = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for i in 0..VOLUMES {
        let name = format!("dd-{i}");
        loop {
            if let Ok(Some(pod)) = pods.get_opt(&name).await {
                let sa = pod.spec.and_then(|s| s.service_account_name);
                pod_accounts.insert(sa.unwrap_or_else(|| "default".into()));
            }
            let dd = downloads.get(&name).await.unwrap();
            assert!(
                dd.phase() != DataDownloadPhase::Failed,
                "{name} failed: {:?}",
                dd.status.and_then(|s| s.message)
            );
            if dd.phase() == DataDownloadPhase::Completed {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    controller.stop().await;
    let records = audit.records();

    // Figures: requests per restore and the reaction to a new DataDownload.
    let of = |user: &str| {
        records
            .iter()
            .filter(|r| r.user == user)
            .collect::<Vec<_>>()
    };
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for r in of(CONTROLLER_USER) {
        let what = match &r.subresource {
            Some(s) => format!("{} {}/{s}", r.verb, r.resource),
            None => format!("{} {}", r.verb, r.resource),
        };
        *by_verb.entry(what).or_default() += 1;
    }
    let mut reactions = Vec::new();
    for (name, at) in &created_at {
        if let Some(first) = of(CONTROLLER_USER).into_iter().find(|r| {
            r.verb == "patch" && r.resource == "datadownloads" && r.name.as_deref() == Some(name)
        }) {
            reactions.push(first.at.duration_since(*at).unwrap_or_default());
        }
    }
    eprintln!(
        "controller: {} requests for {VOLUMES} restores ({:.1} per restore); data mover pods: {}; \
         DataDownload created -> Accepted: {reactions:?}\n  {by_verb:#?}",
        of(CONTROLLER_USER).len(),
        of(CONTROLLER_USER).len() as f64 / VOLUMES as f64,
        of(DATA_MOVER_USER).len(),
    );

    // Every request of the controller and the data mover is allowed by the rendered rules.
    let controller_grants = grants_for(&manifests, NS, "ferry-controller");
    assert_eq!(
        pod_accounts.len(),
        1,
        "restore pods ran as {pod_accounts:?}"
    );
    let pod_account = pod_accounts.into_iter().next().unwrap();
    let mover_grants = grants_for(&manifests, NS, &pod_account);
    assert!(!of(CONTROLLER_USER).is_empty() && !of(DATA_MOVER_USER).is_empty());
    let mut denied = Vec::new();
    for (user, grants) in [
        (CONTROLLER_USER, &controller_grants),
        (DATA_MOVER_USER, &mover_grants),
    ] {
        for r in of(user) {
            if grants_allow(grants, r).is_none() {
                denied.push(format!(
                    "{user}: {} {}{} (group {:?}) in {:?} name {:?}",
                    r.verb,
                    r.resource,
                    r.subresource
                        .as_ref()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default(),
                    r.api_group,
                    r.namespace,
                    r.name
                ));
            }
        }
    }
    denied.sort();
    denied.dedup();
    assert!(
        denied.is_empty(),
        "requests the rendered RBAC does not allow:\n{}",
        denied.join("\n")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_authorizer_refuses_nothing_ferry_asks_during_restores() {
    let env = env(
        Backend::Real,
        2,
        0,
        json!({"restorePVC": {"ignoreDelayBinding": true}}),
    )
    .await;
    restores(&env, VOLUMES, "standard").await;
    let ctl = controller(&env).await;
    for i in 0..VOLUMES {
        let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 90).await;
        assert_eq!(
            dd.phase(),
            DataDownloadPhase::Completed,
            "dd-{i}: {:?}",
            dd.status.and_then(|s| s.message)
        );
    }
    ctl.stop().await;

    let events = env.cluster.audit().events().unwrap();
    let account = |name: &str| format!("system:serviceaccount:{NS}:{name}");
    let controller_user = account(ferry_controller::install::CONTROLLER_NAME);
    let mover_user = account(ferry_controller::install::DATA_MOVER_NAME);
    let of = |user: &str| events.iter().filter(|e| e.user == user).collect::<Vec<_>>();
    assert!(
        !of(&controller_user).is_empty(),
        "the controller made no request as {controller_user}"
    );
    assert!(
        !of(&mover_user).is_empty(),
        "the data mover pods made no request as {mover_user}"
    );
    let refused: Vec<String> = events
        .iter()
        .filter(|e| e.user.starts_with(&account("ferry-")) && e.code == 403)
        .map(|e| format!("{}: {} {}", e.user, e.verb, e.uri))
        .collect();
    assert!(
        refused.is_empty(),
        "the real authorizer refused:\n{}",
        refused.join("\n")
    );
    // Its own restore pods and PVCs are made by nobody else: a synced watch that does not
    // show one is the truth, and asking the API server again is a request per pass wasted.
    let asked_for_absent: Vec<String> = of(&controller_user)
        .iter()
        .filter(|e| {
            e.verb == "get"
                && e.code == 404
                && e.namespace.as_deref() == Some(NS)
                && matches!(e.resource.as_str(), "pods" | "persistentvolumeclaims")
        })
        .map(|e| e.uri.clone())
        .collect();
    assert!(
        asked_for_absent.is_empty(),
        "the controller asked the API server for its own objects that its watches showed absent:\n{}",
        asked_for_absent.join("\n")
    );
    eprintln!(
        "real control plane: controller {} requests for {VOLUMES} restores ({:.1} per restore), \
         data mover pods {}",
        of(&controller_user).len(),
        of(&controller_user).len() as f64 / VOLUMES as f64,
        of(&mover_user).len()
    );
}

#[test]
fn the_matcher_follows_rbac_semantics() {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    };
    let req = |verb: &str, group: &str, resource: &str, sub: Option<&str>, ns: Option<&str>| {
        AuditRecord {
            user: "u".into(),
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.map(str::to_string),
            namespace: ns.map(str::to_string),
            name: Some("x".into()),
            code: 200,
            at: SystemTime::UNIX_EPOCH,
        }
    };
    let pods = rule(&[""], &["pods"], &["get"]);
    assert!(rule_allows(&pods, &req("get", "", "pods", None, Some("a"))));
    assert!(
        !rule_allows(&pods, &req("delete", "", "pods", None, Some("a"))),
        "verb"
    );
    assert!(
        !rule_allows(&pods, &req("get", "apps", "pods", None, Some("a"))),
        "group"
    );
    assert!(
        !rule_allows(&pods, &req("get", "", "pods", Some("log"), Some("a"))),
        "subresource needs its own entry"
    );
    assert!(rule_allows(
        &rule(&[""], &["pods/log"], &["get"]),
        &req("get", "", "pods", Some("log"), Some("a"))
    ));
    let mut named = pods.clone();
    named.resource_names = Some(vec!["y".into()]);
    assert!(
        !rule_allows(&named, &req("get", "", "pods", None, Some("a"))),
        "resourceNames"
    );
    let grants = [Grant {
        what: "Role a/r".into(),
        namespace: Some("a".into()),
        rules: vec![pods.clone()],
    }];
    assert!(grants_allow(&grants, &req("get", "", "pods", None, Some("a"))).is_some());
    assert!(
        grants_allow(&grants, &req("get", "", "pods", None, Some("b"))).is_none(),
        "a Role reaches only its namespace"
    );
    assert!(
        grants_allow(&grants, &req("get", "", "pods", None, None)).is_none(),
        "nor cluster-wide requests"
    );
    let cluster = [Grant {
        what: "ClusterRole c".into(),
        namespace: None,
        rules: vec![pods],
    }];
    assert!(grants_allow(&cluster, &req("get", "", "pods", None, Some("b"))).is_some());
}
