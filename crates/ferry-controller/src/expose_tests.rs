//! The exposer against an in-memory cluster with injected failures. The cases mirror those of
//! Velero's generic restore exposer tests (expose, rebind, peek), plus ferry's own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, PodStatus, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::cluster::OpResult;
use crate::crds::{DataDownloadSpec, TargetVolumeSpec};

#[derive(Default)]
struct State {
    pvcs: BTreeMap<(String, String), PersistentVolumeClaim>,
    pods: BTreeMap<(String, String), Pod>,
    pvs: BTreeMap<String, PersistentVolume>,
    classes: BTreeMap<String, StorageClass>,
    calls: HashMap<String, usize>,
    /// Every write, in order; a deleted claim with what its PV's policy was at that moment.
    writes: Vec<String>,
}

/// An in-memory cluster; `fail("patch pv", n)` makes the n-th such call (1-based) fail,
/// `fail_all` every one.
#[derive(Default)]
struct FakeCluster {
    state: Mutex<State>,
    failures: Mutex<Vec<(String, Option<usize>)>>,
}

impl FakeCluster {
    fn fail(self, op: &str, nth: usize) -> Self {
        self.failures.lock().unwrap().push((op.into(), Some(nth)));
        self
    }
    fn fail_all(self, op: &str) -> Self {
        self.failures.lock().unwrap().push((op.into(), None));
        self
    }
    fn with_pvc(self, pvc: PersistentVolumeClaim) -> Self {
        let key = (
            pvc.metadata.namespace.clone().unwrap(),
            pvc.metadata.name.clone().unwrap(),
        );
        self.state.lock().unwrap().pvcs.insert(key, pvc);
        self
    }
    fn with_pod(self, pod: Pod) -> Self {
        let key = (
            pod.metadata.namespace.clone().unwrap(),
            pod.metadata.name.clone().unwrap(),
        );
        self.state.lock().unwrap().pods.insert(key, pod);
        self
    }
    fn with_pv(self, pv: PersistentVolume) -> Self {
        let name = pv.metadata.name.clone().unwrap();
        self.state.lock().unwrap().pvs.insert(name, pv);
        self
    }
    fn with_class(self, class: StorageClass) -> Self {
        let name = class.metadata.name.clone().unwrap();
        self.state.lock().unwrap().classes.insert(name, class);
        self
    }
    fn set_pvc_phase(&self, ns: &str, name: &str, phase: &str) {
        let mut state = self.state.lock().unwrap();
        let pvc = state.pvcs.get_mut(&(ns.into(), name.into())).unwrap();
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
    }
    fn set_pv_phase(&self, name: &str, phase: &str) {
        let mut state = self.state.lock().unwrap();
        state.pvs.get_mut(name).unwrap().status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
    }
    fn check(&self, op: &str) -> OpResult<()> {
        let n = {
            let mut state = self.state.lock().unwrap();
            if !op.starts_with("get") && !op.starts_with("list") {
                state.writes.push(op.into());
            }
            let n = state.calls.entry(op.into()).or_default();
            *n += 1;
            *n
        };
        let failures = self.failures.lock().unwrap();
        if failures
            .iter()
            .any(|(f, nth)| f == op && nth.is_none_or(|k| k == n))
        {
            return Err(OpError::permanent(format!(
                "fake-{}-error",
                op.replace(' ', "-")
            )));
        }
        Ok(())
    }
    fn pvc(&self, ns: &str, name: &str) -> Option<PersistentVolumeClaim> {
        self.state
            .lock()
            .unwrap()
            .pvcs
            .get(&(ns.into(), name.into()))
            .cloned()
    }
    fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.state
            .lock()
            .unwrap()
            .pods
            .get(&(ns.into(), name.into()))
            .cloned()
    }
    fn pv(&self, name: &str) -> Option<PersistentVolume> {
        self.state.lock().unwrap().pvs.get(name).cloned()
    }
    fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }
    /// What the PV controller would do: bind the target PVC to the PV pointing at it.
    fn bind(&self, pv_name: &str) {
        let mut state = self.state.lock().unwrap();
        let pv = state.pvs.get_mut(pv_name).unwrap();
        let claim = pv.spec.as_ref().unwrap().claim_ref.clone().unwrap();
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        let key = (claim.namespace.unwrap(), claim.name.unwrap());
        let pvc = state.pvcs.get_mut(&key).unwrap();
        pvc.spec.as_mut().unwrap().volume_name = Some(pv_name.into());
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
    }
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else if v.is_object() && t.get(k).is_some_and(|x| x.is_object()) {
                merge(t.get_mut(k).unwrap(), v);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    } else {
        *target = patch.clone();
    }
}

impl RestoreCluster for FakeCluster {
    async fn get_pvc(&self, ns: &str, name: &str) -> OpResult<Option<PersistentVolumeClaim>> {
        self.check("get pvc")?;
        Ok(self.pvc(ns, name))
    }
    async fn create_pvc(&self, ns: &str, pvc: &PersistentVolumeClaim) -> OpResult<()> {
        self.check("create pvc")?;
        let key = (ns.to_string(), pvc.metadata.name.clone().unwrap());
        self.state
            .lock()
            .unwrap()
            .pvcs
            .entry(key)
            .or_insert(pvc.clone());
        Ok(())
    }
    async fn delete_pvc(&self, ns: &str, name: &str) -> OpResult<()> {
        self.check("delete pvc")?;
        let mut state = self.state.lock().unwrap();
        let pvc = state.pvcs.remove(&(ns.into(), name.into()));
        if let Some(pv) = pvc
            .and_then(|c| c.spec?.volume_name)
            .and_then(|v| state.pvs.get(&v))
        {
            let policy = reclaim_policy(pv).to_string();
            state
                .writes
                .push(format!("(claim {name} deleted while its PV is {policy})"));
        }
        Ok(())
    }
    async fn patch_pvc(&self, ns: &str, name: &str, patch: &serde_json::Value) -> OpResult<()> {
        self.check("patch pvc")?;
        let mut state = self.state.lock().unwrap();
        let pvc = state
            .pvcs
            .get_mut(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| OpError::permanent(format!("PVC {ns}/{name} not found")))?;
        let mut value = serde_json::to_value(&*pvc).unwrap();
        merge(&mut value, patch);
        *pvc = serde_json::from_value(value).unwrap();
        Ok(())
    }
    async fn get_pod(&self, ns: &str, name: &str) -> OpResult<Option<Pod>> {
        self.check("get pod")?;
        Ok(self.pod(ns, name))
    }
    async fn create_pod(&self, ns: &str, pod: &Pod) -> OpResult<()> {
        self.check("create pod")?;
        let key = (ns.to_string(), pod.metadata.name.clone().unwrap());
        self.state
            .lock()
            .unwrap()
            .pods
            .entry(key)
            .or_insert(pod.clone());
        Ok(())
    }
    async fn delete_pod(&self, ns: &str, name: &str) -> OpResult<()> {
        self.check("delete pod")?;
        self.state
            .lock()
            .unwrap()
            .pods
            .remove(&(ns.into(), name.into()));
        Ok(())
    }
    async fn get_pv(&self, name: &str) -> OpResult<Option<PersistentVolume>> {
        self.check("get pv")?;
        Ok(self.pv(name))
    }
    async fn list_pvs(&self, label: &str, value: &str) -> OpResult<Vec<PersistentVolume>> {
        self.check("list pv")?;
        Ok(self
            .state
            .lock()
            .unwrap()
            .pvs
            .values()
            .filter(|pv| {
                pv.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(label))
                    .is_some_and(|v| v == value)
            })
            .cloned()
            .collect())
    }
    async fn patch_pv(&self, name: &str, patch: &serde_json::Value) -> OpResult<()> {
        self.check("patch pv")?;
        let mut state = self.state.lock().unwrap();
        let pv = state
            .pvs
            .get_mut(name)
            .ok_or_else(|| OpError::permanent(format!("PV {name} not found")))?;
        let mut value = serde_json::to_value(&*pv).unwrap();
        merge(&mut value, patch);
        *pv = serde_json::from_value(value).unwrap();
        Ok(())
    }
    async fn delete_pv(&self, name: &str) -> OpResult<()> {
        self.check("delete pv")?;
        self.state.lock().unwrap().pvs.remove(name);
        Ok(())
    }
    async fn get_storage_class(&self, name: &str) -> OpResult<Option<StorageClass>> {
        self.check("get storageclass")?;
        Ok(self.state.lock().unwrap().classes.get(name).cloned())
    }
}

const NS: &str = "ferry";

fn dd() -> DataDownload {
    let mut dd = DataDownload::new(
        "fake-restore",
        DataDownloadSpec {
            target_volume: TargetVolumeSpec {
                pvc: "fake-target-pvc".into(),
                pv: String::new(),
                namespace: "fake-ns".into(),
            },
            backup_storage_location: "default".into(),
            datamover: Some("ferry".into()),
            snapshot_id: "abc".into(),
            source_namespace: "fake-ns".into(),
            operation_timeout: "10m".into(),
            ..Default::default()
        },
    );
    dd.metadata.namespace = Some(NS.into());
    dd.metadata.uid = Some("fake-uid".into());
    dd
}

fn target_pvc(volume_mode: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("fake-target-pvc".into()),
            namespace: Some("fake-ns".into()),
            uid: Some("fake-target-uid".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some("wffc".into()),
            volume_mode: Some(volume_mode.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "velero.io/dynamic-pv-restore".into(),
                    "fake-ns.fake-target-pvc.abcde".into(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn bound(mut pvc: PersistentVolumeClaim, pv: &str) -> PersistentVolumeClaim {
    pvc.spec.as_mut().unwrap().volume_name = Some(pv.into());
    pvc
}

fn class(mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some("wffc".into()),
            ..Default::default()
        },
        provisioner: "hostpath.kubesim.io".into(),
        volume_binding_mode: Some(mode.into()),
        ..Default::default()
    }
}

fn annotated(mut pvc: PersistentVolumeClaim, node: &str) -> PersistentVolumeClaim {
    pvc.metadata.annotations = Some(BTreeMap::from([(
        SELECTED_NODE_ANNOTATION.into(),
        node.into(),
    )]));
    pvc
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn exposed_objects(mode: &str, node: Option<&str>) -> (PersistentVolumeClaim, Pod) {
    let target = target_pvc(mode);
    let config = NodeAgentConfig::default();
    (
        restore_pvc_for(&dd(), NS, &target, node),
        restore_pod_for(
            &dd(),
            NS,
            &target,
            node,
            &config,
            &PodSettings {
                image: "ferry/ferry:dev".into(),
                ..Default::default()
            },
        ),
    )
}

// ---- Velero's TestRestoreExpose ----

#[test]
fn wait_target_pvc_consumed_fails_when_the_target_does_not_exist() {
    let err = check_target("fake-ns/fake-target-pvc", None, None, false).unwrap_err();
    assert_eq!(
        err,
        ExposeError::TargetNotFound("fake-ns/fake-target-pvc".into())
    );
    assert!(
        err.to_string()
            .starts_with("target PVC fake-ns/fake-target-pvc not found")
    );
}

#[test]
fn target_pvc_already_bound_aborts() {
    let target = bound(target_pvc("Filesystem"), "fake-pv");
    for ignore in [false, true] {
        let err = check_target("fake-ns/fake-target-pvc", Some(&target), None, ignore).unwrap_err();
        assert_eq!(
            err.to_string(),
            "target PVC fake-ns/fake-target-pvc has already been bound, abort: a DataDownload restores only into a new, unbound PVC"
        );
    }
}

#[test]
fn create_restore_pod_failure_is_reported_and_removes_the_restore_pvc() {
    let cluster = FakeCluster::default().fail_all("create pod");
    let exposer = new_exposer(cluster, NS);
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    let err = block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot create restore pod: fake-create-pod-error"
    );
    assert!(exposer.cluster.pvc(NS, "fake-restore").is_none());
}

#[test]
fn create_restore_pvc_failure_is_reported_and_creates_no_pod() {
    let cluster = FakeCluster::default().fail_all("create pvc");
    let exposer = new_exposer(cluster, NS);
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    let err = block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot create restore PVC: fake-create-pvc-error"
    );
    assert!(exposer.cluster.pod(NS, "fake-restore").is_none());
}

#[test]
fn a_backup_s_expose_failure_names_the_backup_pvc_and_pod() {
    for (fail, said) in [
        (
            "create pvc",
            "cannot create backup PVC: fake-create-pvc-error",
        ),
        (
            "create pod",
            "cannot create backup pod: fake-create-pod-error",
        ),
    ] {
        let exposer = new_exposer(FakeCluster::default().fail_all(fail), NS);
        let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
        let err = block_on(exposer.expose(Movement::Backup, &pvc, &pod)).unwrap_err();
        assert_eq!(err.to_string(), said);
    }
}

// ---- ferry's expose rules ----

#[test]
fn wait_for_first_consumer_waits_until_a_node_is_selected() {
    let wffc = class("WaitForFirstConsumer");
    let target = target_pvc("Filesystem");
    assert_eq!(
        check_target("t", Some(&target), Some(&wffc), false).unwrap(),
        TargetState::WaitingForConsumer
    );
    let consumed = annotated(target.clone(), "node-3");
    assert_eq!(
        check_target("t", Some(&consumed), Some(&wffc), false).unwrap(),
        TargetState::Ready {
            selected_node: Some("node-3".into())
        }
    );
}

#[test]
fn ignore_delay_binding_does_not_wait() {
    let wffc = class("WaitForFirstConsumer");
    let target = target_pvc("Filesystem");
    assert_eq!(
        check_target("t", Some(&target), Some(&wffc), true).unwrap(),
        TargetState::Ready {
            selected_node: None
        }
    );
}

#[test]
fn immediate_binding_does_not_wait() {
    let immediate = class("Immediate");
    assert_eq!(
        check_target(
            "t",
            Some(&target_pvc("Filesystem")),
            Some(&immediate),
            false
        )
        .unwrap(),
        TargetState::Ready {
            selected_node: None
        }
    );
}

#[test]
fn restore_pvc_copies_the_target_spec_and_is_owned_by_the_data_download() {
    let (pvc, _) = exposed_objects("Block", Some("node-2"));
    let target = target_pvc("Block").spec.unwrap();
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(pvc.metadata.name.as_deref(), Some("fake-restore"));
    assert_eq!(pvc.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(spec.access_modes, target.access_modes);
    assert_eq!(spec.storage_class_name, target.storage_class_name);
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    assert_eq!(spec.resources, target.resources);
    // Not the target's selector: the restore PVC must be provisioned.
    assert!(spec.selector.is_none());
    assert_eq!(
        pvc.metadata.annotations.unwrap()[SELECTED_NODE_ANNOTATION],
        "node-2"
    );
    let owner = &pvc.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("DataDownload", "fake-uid")
    );
    assert_eq!(owner.controller, Some(true));
    let (unpinned, _) = exposed_objects("Filesystem", None);
    assert!(unpinned.metadata.annotations.is_none());
}

#[test]
fn restore_pod_mounts_a_filesystem_and_runs_the_data_mover() {
    let (_, pod) = exposed_objects("Filesystem", Some("node-4"));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.node_selector.unwrap()[HOSTNAME_LABEL], "node-4");
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("ferry/ferry:dev"));
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with(
            "data-mover restore --data-download fake-restore --namespace ferry --volume-path /restore-volume --volume-mode Filesystem"
        ),
        "{args}"
    );
    assert_eq!(
        c.volume_mounts.as_ref().unwrap()[0].mount_path,
        FILESYSTEM_MOUNT_PATH
    );
    assert!(c.volume_devices.is_none());
    // Root, so that restored files get their owners back; no escalation beyond that (the
    // whole context: data_mover_pods_run_with_the_fewest_capabilities_their_work_needs).
    let security = c.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_user, Some(0));
    assert_eq!(security.run_as_non_root, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let claim = spec.volumes.unwrap()[0]
        .persistent_volume_claim
        .clone()
        .unwrap();
    assert_eq!(claim.claim_name, "fake-restore");
    assert_eq!(
        pod.metadata.labels.unwrap()[DATA_DOWNLOAD_LABEL],
        "fake-restore"
    );
}

#[test]
fn restore_pod_gets_a_block_device_for_block_volumes() {
    let (_, pod) = exposed_objects("Block", Some("node-1"));
    let c = &pod.spec.unwrap().containers[0];
    assert_eq!(
        c.volume_devices.as_ref().unwrap()[0].device_path,
        BLOCK_DEVICE_PATH
    );
    assert!(c.volume_mounts.is_none());
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.contains("--volume-path /dev/restore-volume --volume-mode Block"),
        "{args}"
    );
}

#[test]
fn restore_pod_takes_resources_priority_labels_and_annotations_from_the_config() {
    let config: NodeAgentConfig = ferry_config::parse_config_json(
        r#"{"podResources": {"cpuRequest": "100m", "memoryLimit": "1Gi"},
            "priorityClassName": "restores",
            "podLabels": {"team": "storage"},
            "podAnnotations": {"example.com/audit": "yes"}}"#,
        ferry_config::Strictness::Strict,
    )
    .unwrap()
    .config;
    let target = target_pvc("Filesystem");
    let pod = restore_pod_for(&dd(), NS, &target, None, &config, &PodSettings::default());
    let spec = pod.spec.unwrap();
    assert_eq!(spec.priority_class_name.as_deref(), Some("restores"));
    assert_eq!(
        spec.node_selector,
        Some(BTreeMap::from([(
            "kubernetes.io/os".into(),
            "linux".into()
        )])),
        "unpinned, but on Linux"
    );
    let resources = spec.containers[0].resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"], Quantity("100m".into()));
    assert_eq!(resources.limits.unwrap()["memory"], Quantity("1Gi".into()));
    assert_eq!(pod.metadata.labels.unwrap()["team"], "storage");
    assert_eq!(
        pod.metadata.annotations.unwrap()["example.com/audit"],
        "yes"
    );
}

#[test]
fn expose_is_idempotent() {
    let exposer = new_exposer(FakeCluster::default(), NS);
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap();
    block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap();
    let calls = exposer.cluster.state.lock().unwrap().calls.clone();
    assert_eq!(calls["create pvc"], 1);
    assert_eq!(calls["create pod"], 1);
}

#[test]
fn a_provisioned_restore_pvc_gets_its_pod_only_once_bound() {
    let exposer = new_exposer(
        FakeCluster::default().with_class(class("WaitForFirstConsumer")),
        NS,
    );
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    for _ in 0..2 {
        assert!(matches!(
            block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap(),
            ExposeState::WaitingForVolume { .. }
        ));
        assert!(exposer.cluster.pvc(NS, "fake-restore").is_some());
        assert!(
            exposer.cluster.pod(NS, "fake-restore").is_none(),
            "no pod while the provisioner works: the scheduler would write the claim too"
        );
    }
    exposer.cluster.set_pvc_phase(NS, "fake-restore", "Bound");
    assert_eq!(
        block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap(),
        ExposeState::PodCreated
    );
    assert!(exposer.cluster.pod(NS, "fake-restore").is_some());
    assert_eq!(exposer.cluster.state.lock().unwrap().calls["create pvc"], 1);
}

fn provisioner_named_on(pvc: &PersistentVolumeClaim) -> Vec<Option<String>> {
    STORAGE_PROVISIONER_ANNOTATIONS
        .iter()
        .map(|k| pvc.metadata.annotations.as_ref()?.get(*k).cloned())
        .collect()
}

#[test]
fn a_restore_pvc_for_a_chosen_node_names_its_provisioner_at_creation() {
    let exposer = new_exposer(
        FakeCluster::default().with_class(class("WaitForFirstConsumer")),
        NS,
    );
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap();
    let created = exposer.cluster.pvc(NS, "fake-restore").unwrap();
    assert_eq!(
        provisioner_named_on(&created),
        vec![Some("hostpath.kubesim.io".to_string()); 2],
        "the PV controller would write both; it writes nothing when they are there"
    );
    assert_eq!(
        created.metadata.annotations.as_ref().unwrap()[SELECTED_NODE_ANNOTATION],
        "node-1"
    );
}

#[test]
fn the_provisioner_is_left_to_the_pv_controller_where_it_may_choose_otherwise() {
    let (with_node, _) = exposed_objects("Filesystem", Some("node-1"));
    let (without_node, _) = exposed_objects("Filesystem", None);
    let wffc = class("WaitForFirstConsumer");
    let mut in_tree = wffc.clone();
    in_tree.provisioner = "kubernetes.io/aws-ebs".into();
    let mut local = wffc.clone();
    local.provisioner = NO_PROVISIONER.into();
    let cases = [
        (
            &with_node,
            Some(class("Immediate")),
            "an Immediate claim may bind an existing PV",
        ),
        (
            &with_node,
            Some(in_tree),
            "an in-tree plugin may be migrated to a CSI driver",
        ),
        (&with_node, Some(local), "nothing provisions local volumes"),
        (&with_node, None, "no class, no provisioner"),
        (
            &without_node,
            Some(wffc),
            "no node selected: the PV controller waits for a consumer",
        ),
    ];
    for (pvc, class, why) in cases {
        let named = with_provisioner_named(pvc, class.as_ref());
        assert_eq!(provisioner_named_on(&named), vec![None, None], "{why}");
        assert_eq!(&named, pvc, "{why}");
    }
}

#[test]
fn a_class_without_provisioner_gets_its_pod_at_once() {
    let mut local = class("WaitForFirstConsumer");
    local.provisioner = NO_PROVISIONER.into();
    let exposer = new_exposer(FakeCluster::default().with_class(local), NS);
    let (pvc, pod) = exposed_objects("Filesystem", Some("node-1"));
    assert_eq!(
        block_on(exposer.expose(Movement::Restore, &pvc, &pod)).unwrap(),
        ExposeState::PodCreated,
        "the scheduler binds local volumes, for a pod"
    );
    assert!(exposer.cluster.pod(NS, "fake-restore").is_some());
}

// ---- Velero's TestRestorePeekExpose ----

#[test]
fn peek_restore_pod_not_found_is_fine() {
    let exposer = new_exposer(FakeCluster::default(), NS);
    assert_eq!(
        block_on(exposer.peek_exposed("fake-restore")).unwrap(),
        None
    );
}

#[test]
fn peek_unrecoverable_pod_is_an_error() {
    let (_, mut pod) = exposed_objects("Filesystem", None);
    pod.status = Some(PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    let exposer = new_exposer(FakeCluster::default().with_pod(pod), NS);
    let err = block_on(exposer.peek_exposed("fake-restore")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "restore pod ferry/fake-restore is in abnormal state Failed"
    );
}

#[test]
fn peek_healthy_pod_succeeds() {
    let (_, pod) = exposed_objects("Filesystem", None);
    let exposer = new_exposer(FakeCluster::default().with_pod(pod), NS);
    assert!(
        block_on(exposer.peek_exposed("fake-restore"))
            .unwrap()
            .is_some()
    );
}

// ---- Velero's TestRebindVolume ----

fn restore_pvc_bound() -> PersistentVolumeClaim {
    let (pvc, _) = exposed_objects("Filesystem", Some("node-1"));
    bound(pvc, "fake-restore-pv")
}

fn restore_pv() -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some("fake-restore-pv".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: Some(ObjectReference {
                namespace: Some(NS.into()),
                name: Some("fake-restore".into()),
                uid: Some("restore-pvc-uid".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        }),
    }
}

fn rebind_cluster() -> FakeCluster {
    let (_, pod) = exposed_objects("Filesystem", Some("node-1"));
    FakeCluster::default()
        .with_pvc(target_pvc("Filesystem"))
        .with_pvc(restore_pvc_bound())
        .with_pv(restore_pv())
        .with_pod(pod)
}

/// The PV's reclaim policy as written (no default).
fn policy(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()
        .unwrap()
        .persistent_volume_reclaim_policy
        .as_deref()
}

fn rebind(exposer: &RestoreExposer<FakeCluster>) -> Result<RebindState, ExposeError> {
    block_on(exposer.rebind("fake-restore", "fake-ns", "fake-target-pvc"))
}

#[test]
fn rebind_get_target_pvc_fail() {
    let exposer = new_exposer(FakeCluster::default(), NS);
    let err = rebind(&exposer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot get target PVC PVC fake-ns/fake-target-pvc not found"
    );
}

#[test]
fn rebind_without_restore_pvc_or_pv_fails() {
    let exposer = new_exposer(
        FakeCluster::default().with_pvc(target_pvc("Filesystem")),
        NS,
    );
    assert_eq!(
        rebind(&exposer).unwrap_err(),
        ExposeError::RestorePvMissing("fake-restore".into())
    );
}

#[test]
fn rebind_retain_pv_fail() {
    let exposer = new_exposer(rebind_cluster().fail_all("patch pv"), NS);
    assert_eq!(
        rebind(&exposer).unwrap_err().to_string(),
        "cannot retain PV fake-restore-pv: fake-patch-pv-error"
    );
    // Nothing was deleted: the restore can be retried or cleaned up.
    assert!(exposer.cluster.pod(NS, "fake-restore").is_some());
}

#[test]
fn rebind_delete_restore_pod_fail() {
    let exposer = new_exposer(rebind_cluster().fail_all("delete pod"), NS);
    assert_eq!(
        rebind(&exposer).unwrap_err().to_string(),
        "cannot delete restore pod fake-restore: fake-delete-pod-error"
    );
    // The PV was retained first, and the claim is left.
    assert_eq!(exposer.cluster.writes(), ["patch pv", "delete pod"]);
    assert!(exposer.cluster.pvc(NS, "fake-restore").is_some());
}

#[test]
fn rebind_delete_restore_pvc_fail() {
    let exposer = new_exposer(rebind_cluster().fail_all("delete pvc"), NS);
    assert_eq!(
        rebind(&exposer).unwrap_err().to_string(),
        "cannot delete restore PVC fake-restore: fake-delete-pvc-error"
    );
}

#[test]
fn rebind_pv_to_target_fail() {
    let exposer = new_exposer(rebind_cluster().fail("patch pv", 2), NS);
    assert_eq!(
        rebind(&exposer).unwrap_err().to_string(),
        "cannot rebind PV fake-restore-pv to target PVC fake-ns/fake-target-pvc: fake-patch-pv-error"
    );
}

#[test]
fn rebind_reset_reclaim_policy_fail() {
    let exposer = new_exposer(rebind_cluster().fail("patch pv", 3), NS);
    assert!(matches!(
        rebind(&exposer).unwrap(),
        RebindState::WaitingForBinding(_)
    ));
    exposer.cluster.bind("fake-restore-pv");
    assert_eq!(
        rebind(&exposer).unwrap_err().to_string(),
        "cannot restore the reclaim policy of PV fake-restore-pv: fake-patch-pv-error"
    );
}

#[test]
fn rebind_waits_until_the_pv_is_bound() {
    let exposer = new_exposer(rebind_cluster(), NS);
    for _ in 0..3 {
        let RebindState::WaitingForBinding(why) = rebind(&exposer).unwrap() else {
            panic!("must wait for binding");
        };
        assert!(why.contains("to be Bound"), "{why}");
    }
}

/// The annotation that makes the PV controller look at the waiting target, if any.
fn bind_requested(exposer: &RestoreExposer<FakeCluster>) -> Option<String> {
    exposer
        .cluster
        .pvc("fake-ns", "fake-target-pvc")
        .unwrap()
        .metadata
        .annotations
        .and_then(|a| a.get(BIND_REQUESTED_ANNOTATION).cloned())
}

#[test]
fn a_target_still_waiting_2_s_after_the_hand_over_is_touched_and_left_clean() {
    let exposer = new_exposer(rebind_cluster(), NS);
    rebind(&exposer).unwrap();
    rebind(&exposer).unwrap();
    assert_eq!(
        bind_requested(&exposer),
        None,
        "not within 2 s of the hand-over"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    rebind(&exposer).unwrap();
    assert!(bind_requested(&exposer).is_some(), "touched after 2 s");
    assert_eq!(exposer.cluster.writes().last().unwrap(), "patch pvc");
    exposer.cluster.bind("fake-restore-pv");
    assert!(matches!(
        rebind(&exposer).unwrap(),
        RebindState::Done { .. }
    ));
    assert_eq!(bind_requested(&exposer), None, "removed once bound");
}

#[test]
fn a_target_that_cannot_be_touched_still_completes() {
    let exposer = new_exposer(rebind_cluster().fail_all("patch pvc"), NS);
    for _ in 0..5 {
        assert!(matches!(
            rebind(&exposer).unwrap(),
            RebindState::WaitingForBinding(_)
        ));
    }
    exposer.cluster.bind("fake-restore-pv");
    assert!(matches!(
        rebind(&exposer).unwrap(),
        RebindState::Done { .. }
    ));
}

#[test]
fn rebind_happy_path_leaves_nothing_behind() {
    let exposer = new_exposer(rebind_cluster(), NS);
    // One pass goes as far as it can without the PV controller: it waits for the binding.
    let RebindState::WaitingForBinding(why) = rebind(&exposer).unwrap() else {
        panic!("must wait for the binding");
    };
    assert!(why.contains("to be Bound"), "{why}");
    // The PV is retained before anything is deleted; the pod goes, then the restore PVC,
    // while the PV still names it: the restore PVC is never a bound claim whose PV names
    // another claim (the PV controller would mark it Lost, with Warning events). Only then
    // is the PV handed to the target. The target is not touched: given the claim's uid, the
    // PV controller binds it as soon as it sees the PV (a touch now would only race with it).
    assert_eq!(
        exposer.cluster.writes(),
        [
            "patch pv",
            "delete pod",
            "delete pvc",
            "(claim fake-restore deleted while its PV is Retain)",
            "patch pv",
        ]
    );
    assert!(exposer.cluster.pod(NS, "fake-restore").is_none());
    assert!(exposer.cluster.pvc(NS, "fake-restore").is_none());
    // Bound to the target from the PV's side (claimRef with its uid), the selector's labels,
    // still Retain.
    let pv = exposer.cluster.pv("fake-restore-pv").unwrap();
    let claim = pv.spec.as_ref().unwrap().claim_ref.clone().unwrap();
    assert_eq!(claim.namespace.as_deref(), Some("fake-ns"));
    assert_eq!(claim.name.as_deref(), Some("fake-target-pvc"));
    assert_eq!(claim.uid.as_deref(), Some("fake-target-uid"));
    assert_eq!(
        pv.metadata.labels.as_ref().unwrap()["velero.io/dynamic-pv-restore"],
        "fake-ns.fake-target-pvc.abcde"
    );
    assert_eq!(policy(&pv), Some("Retain"));
    assert!(
        pv.metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(HANDED_OVER_ANNOTATION),
        "the hand-over's time, from which a touch of the target becomes due"
    );
    assert_eq!(bind_requested(&exposer), None);
    // Bound → reclaim policy restored, marks removed.
    exposer.cluster.bind("fake-restore-pv");
    assert_eq!(
        rebind(&exposer).unwrap(),
        RebindState::Done {
            pv: "fake-restore-pv".into()
        }
    );
    let pv = exposer.cluster.pv("fake-restore-pv").unwrap();
    assert_eq!(policy(&pv), Some("Delete"));
    assert!(
        !pv.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key(DATA_DOWNLOAD_LABEL)
    );
    assert!(
        pv.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| a.is_empty())
    );
    // Repeated after a restart: still done, nothing changes.
    assert_eq!(
        rebind(&exposer).unwrap(),
        RebindState::Done {
            pv: "fake-restore-pv".into()
        }
    );
}

#[test]
fn cleanup_removes_pod_pvc_and_a_retained_pv() {
    // Interrupted mid-rebind: PV retained and marked, pod and restore PVC deleted, the
    // hand-over to the target failed.
    let exposer = new_exposer(rebind_cluster().fail("patch pv", 2), NS);
    rebind(&exposer).unwrap_err();
    let pv = exposer.cluster.pv("fake-restore-pv").unwrap();
    assert_eq!(policy(&pv), Some("Retain"));
    assert!(block_on(exposer.cleanup("fake-restore")).unwrap());
    assert!(exposer.cluster.pv("fake-restore-pv").is_none());
}

#[test]
fn cleanup_leaves_a_pv_handed_to_the_target() {
    // Interrupted once the PV was bound to the target from its side: the PV controller binds
    // the target to it whatever happens to the restore, so the data stays.
    let exposer = new_exposer(rebind_cluster(), NS);
    rebind(&exposer).unwrap();
    // Still Released, as a real PV is until the PV controller binds the target: the claimRef
    // with the target's uid, not the phase, says it is handed over.
    exposer.cluster.set_pv_phase("fake-restore-pv", "Released");
    assert!(block_on(exposer.cleanup("fake-restore")).unwrap());
    let pv = exposer.cluster.pv("fake-restore-pv").expect("kept");
    let claim = pv.spec.unwrap().claim_ref.unwrap();
    assert_eq!(claim.name.as_deref(), Some("fake-target-pvc"));
}

fn new_exposer<C: RestoreCluster>(cluster: C, namespace: &str) -> RestoreExposer<C> {
    RestoreExposer::new(cluster, namespace)
}

// ---- Restore PVC and pod as Velero builds them (issue 10, point 7) ----

#[test]
fn restore_pvc_copies_the_targets_labels_and_annotations_but_not_its_binding() {
    let mut target = annotated(target_pvc("Filesystem"), "workload-node");
    let meta = &mut target.metadata;
    meta.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
    let annotations = meta.annotations.as_mut().unwrap();
    annotations.insert("example.com/tier".into(), "gold".into());
    annotations.insert("pv.kubernetes.io/bind-completed".into(), "yes".into());
    annotations.insert(
        "volume.kubernetes.io/storage-provisioner".into(),
        "x".into(),
    );
    let pvc = restore_pvc_for(&dd(), NS, &target, Some("node-2"));
    let labels = pvc.metadata.labels.unwrap();
    assert_eq!(labels["app"], "db");
    assert_eq!(labels[DATA_DOWNLOAD_LABEL], "fake-restore");
    assert_eq!(
        pvc.metadata.annotations.unwrap(),
        BTreeMap::from([
            ("example.com/tier".into(), "gold".into()),
            (SELECTED_NODE_ANNOTATION.into(), "node-2".into()),
        ])
    );
}

fn node_with(name: &str, hostname: &str, taints: &[(&str, Option<&str>, &str)]) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: hostname}},
        "spec": {"taints": taints.iter().map(|(k, v, e)| json!({"key": k, "value": v, "effect": e})).collect::<Vec<_>>()},
    }))
    .unwrap()
}

#[test]
fn restore_pod_is_pinned_by_hostname_label_and_tolerates_the_nodes_own_taints() {
    let node = node_with(
        "ip-10-0-0-1.internal",
        "ip-10-0-0-1",
        &[
            ("dedicated", Some("db"), "NoSchedule"),
            ("gpu", None, "NoExecute"),
            ("node.kubernetes.io/not-ready", None, "NoSchedule"),
            (
                "node.cloudprovider.kubernetes.io/uninitialized",
                Some("true"),
                "NoSchedule",
            ),
        ],
    );
    assert_eq!(hostname_of(&node), "ip-10-0-0-1");
    let tolerations = tolerations_for(&node);
    let keys: Vec<(&str, &str, Option<&str>)> = tolerations
        .iter()
        .map(|t| {
            (
                t.key.as_deref().unwrap(),
                t.operator.as_deref().unwrap(),
                t.value.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![("dedicated", "Equal", Some("db")), ("gpu", "Exists", None)],
        "condition taints are never tolerated"
    );
    let settings = PodSettings {
        tolerations,
        ..Default::default()
    };
    let pod = restore_pod_for(
        &dd(),
        NS,
        &target_pvc("Filesystem"),
        Some(&hostname_of(&node)),
        &NodeAgentConfig::default(),
        &settings,
    );
    let spec = pod.spec.unwrap();
    assert_eq!(
        spec.node_selector.unwrap(),
        BTreeMap::from([
            (HOSTNAME_LABEL.into(), "ip-10-0-0-1".into()),
            ("kubernetes.io/os".into(), "linux".into()),
        ])
    );
    assert_eq!(spec.tolerations.unwrap().len(), 2);
}

#[test]
fn unrecoverable_container_waits_are_recognised() {
    let pod = |reason: &str| -> Pod {
        serde_json::from_value(json!({
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": DATA_MOVER_CONTAINER, "image": "x", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "why"}}}]},
        }))
        .unwrap()
    };
    for reason in ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"] {
        assert_eq!(
            unrecoverable_wait(&pod(reason)),
            Some((reason.to_string(), Some("why".to_string())))
        );
    }
    for reason in ["ContainerCreating", "CreateContainerConfigError"] {
        assert_eq!(unrecoverable_wait(&pod(reason)), None);
    }
}

// ---- The data mover pods' privileges (issue 15 point 7) ----

/// The container security context of `pod`'s only container, as the API server gets it.
fn container_security(pod: &Pod) -> serde_json::Value {
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1);
    serde_json::to_value(spec.containers[0].security_context.as_ref().unwrap()).unwrap()
}

/// Root with the capabilities `add` and nothing else: all dropped, RuntimeDefault seccomp, a
/// read-only root file system, no privilege escalation.
fn root_context(add: &[&str]) -> serde_json::Value {
    json!({
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": false,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"], "add": add},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn upload() -> crate::crds::DataUpload {
    let mut du = crate::crds::DataUpload::new(
        "du-1",
        crate::crds::DataUploadSpec {
            source_namespace: "app".into(),
            source_pvc: "data".into(),
            ..Default::default()
        },
    );
    du.metadata.uid = Some("uid-1".into());
    du
}

#[test]
fn data_mover_pods_run_with_the_fewest_capabilities_their_work_needs() {
    let settings = PodSettings {
        image: "ferry/ferry:dev".into(),
        ..Default::default()
    };
    // Restore, on a filesystem and on a block device: owners, modes, setgid bits and times
    // of files of every owner, no MKNOD.
    let restore = root_context(&["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]);
    for mode in ["Filesystem", "Block"] {
        let (_, pod) = exposed_objects(mode, Some("node-1"));
        assert_eq!(container_security(&pod), restore, "{mode} restore pod");
    }
    // Backup reads only, on a filesystem or block device, with or without the ConfigMap's
    // read-only volume and SELinux spc_t (which stays pod-level).
    let backup = root_context(&["DAC_OVERRIDE"]);
    for (block, config) in [
        (false, NodeAgentConfig::default()),
        (true, NodeAgentConfig::default()),
        (
            false,
            serde_json::from_value(json!({"backupPVC": {"standard":
                {"readOnly": true, "spcNoRelabeling": true}}}))
            .unwrap(),
        ),
    ] {
        let pod = crate::expose_snapshot::backup_pod_for(
            &upload(),
            NS,
            "standard",
            block,
            Some("node-1"),
            &config,
            &settings,
        );
        assert_eq!(
            container_security(&pod),
            backup,
            "backup pod, block {block}"
        );
        let pod_level = pod.spec.as_ref().unwrap().security_context.as_ref();
        assert!(pod_level.is_none_or(|p| p.seccomp_profile.is_none() && p.run_as_user.is_none()));
    }
    // Forget touches no file: the image's non-root user, no capability at all.
    let pod = crate::backup_deletion::forget_pod_for(
        &upload(),
        NS,
        &NodeAgentConfig::default(),
        &settings,
    );
    assert_eq!(
        container_security(&pod),
        json!({
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
}

#[test]
fn data_mover_pods_need_no_writable_scratch_space() {
    // With a read-only root file system, a restore pod writes only to its volume and the
    // kubelet-mounted termination message: no emptyDir, no TMPDIR or HOME.
    for mode in ["Filesystem", "Block"] {
        let (_, pod) = exposed_objects(mode, None);
        let spec = pod.spec.unwrap();
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert!(volumes[0].persistent_volume_claim.is_some());
        let c = &spec.containers[0];
        assert!(c.env.is_none());
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
    }
}

#[test]
fn the_data_mover_capabilities_are_those_pod_security_baseline_allows() {
    // Pod Security's baseline level: adding any other capability is refused at admission.
    const BASELINE: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    for access in [
        DataMoverAccess::Restore,
        DataMoverAccess::Backup,
        DataMoverAccess::RepositoryOnly,
    ] {
        for cap in data_mover_capabilities(access) {
            assert!(BASELINE.contains(cap), "{access:?}: {cap}");
        }
        assert!(!data_mover_capabilities(access).contains(&"MKNOD"));
    }
}
