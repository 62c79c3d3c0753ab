//! Restores that cannot succeed fail with a message that says why, and leave nothing behind: a
//! corrupt pack in the repository, a wrong password in the repository secret, a restore pod no node can run (expose timeout, with the
//! scheduler's reason: a NotReady node, a request larger than any node), no node matching the
//! loadAffinity. And what is not a failure: waiting for a workload or for a free slot is not
//! counted against the expose timeout. A restore pod that can never run (an image that cannot be
//! pulled) fails the restore at once with its reason.

use crate::common;

use std::time::Duration;

use common::*;
use ferry_controller::crds::DataDownloadPhase;
use ferry_controller::start_controller;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

/// Pack files of the repository (`data/<xx>/<id>`), largest first.
fn packs(env: &Env) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(env.repo_dir.join("data")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let file = file.unwrap();
            out.push((file.path(), file.metadata().unwrap().len()));
        }
    }
    out.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    out
}

/// The Warning events about `dd` once one of them satisfies `wanted` (the controller records
/// an event after the status change that a test waits for: it may arrive a moment later).
async fn warning_event_where(env: &Env, dd: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let warnings = warning_events(env, dd).await;
        if warnings.iter().any(|w| wanted(w)) || tokio::time::Instant::now() > deadline {
            return warnings;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn warning_events(env: &Env, dd: &str) -> Vec<String> {
    Api::<Event>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(dd) && e.type_.as_deref() == Some("Warning")
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

on_both_clusters! {
    async fn e2e_corrupt_pack_fails_the_restore_naming_the_pack(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        // Flip bytes inside the largest pack (its blobs; the header is at the end).
        let (pack, len) = packs(&env).remove(0);
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = (len / 4) as usize;
        for b in &mut bytes[at..at + 16] {
            *b ^= 0xff;
        }
        std::fs::write(&pack, bytes).unwrap();
        let pack_id = pack.file_name().unwrap().to_string_lossy().into_owned();

        let ctl = controller(&env).await;
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        assert!(
            message.contains("damaged") && message.contains(&pack_id),
            "the message names the damaged pack {pack_id}: {message}"
        );
        let named = |w: &str| w.starts_with("Failed") && w.contains(&pack_id);
        let warnings = warning_event_where(&env, "dd-0", named).await;
        assert!(warnings.iter().any(|w| named(w)), "{warnings:?}");
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        assert_eq!(env.movers.starts_of("dd-0"), 1);
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_wrong_password_in_the_secret_fails_naming_the_secret(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        let secret = json!({"stringData": {"repository-password": "not the password"}});
        Api::<Secret>::namespaced(env.client.clone(), NS)
            .patch(
                "velero-repo-credentials",
                &PatchParams::default(),
                &Patch::Merge(&secret),
            )
            .await
            .unwrap();

        let ctl = controller(&env).await;
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        assert!(
            message.contains("wrong password")
                && message.contains(&format!("secret {NS}/velero-repo-credentials"))
                && message.contains("key repository-password")
                && !message.contains("--password-file"),
            "the message names the secret and its key: {message}"
        );
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_expose_timeout_fails_with_the_reason_nothing_runs(backend: Backend) {
        // Default mode and a loadAffinity no node matches.
        let env = env(backend, 2,
            0,
            json!({"loadAffinity": [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-9"}}}]}),
        )
        .await;
        // dd-0: its workload was scheduled to a node that then went NotReady; the restore pod
        // pinned to that node cannot be scheduled.
        restore_of(&env, 0, "standard").await;
        workload_on_a_node_gone_not_ready(&env, "app-0", "pvc-0").await;
        // dd-1: an Immediate class (no workload to wait for): no node matches the loadAffinity.
        restore_of(&env, 1, "immediate").await;

        let mut options = options(env.controller_client.clone());
        // Long enough for the restore PVC to be provisioned and the scheduler to have judged
        // the pod on a loaded 2-core machine (3 s once timed out with no pod yet: flaky).
        options.expose_timeout = Duration::from_secs(8);
        // Timeouts are noticed on the periodic resync (nothing changes meanwhile).
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();

        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        // Either the scheduler refused the NotReady node (its taint), or the pod was bound to
        // it anyway: seen once on the real control plane (2026-12-04, before set_node_ready
        // wrote the condition ahead of the taint), where the node lifecycle controller can
        // take a not-ready taint off a node whose Ready condition it still sees True. Then
        // the node's state is the reason, and the diagnosis names it.
        assert!(
            message.contains("timed out after 8s")
                && ((message.contains("velero/dd-0 not scheduled")
                    && message.contains("untolerated taint"))
                    || message.contains("(NotReady)")),
            "the scheduler's reason: {message}"
        );
        let dd = wait_phase(&env, "dd-1", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        assert!(
            message.contains("timed out after 8s")
                && message.contains("choosing a node")
                && message.contains("not matching the loadAffinity nodeSelector"),
            "{message}"
        );
        for (dd, pvc) in [("dd-0", "pvc-0"), ("dd-1", "pvc-1")] {
            assert_target_unbound(&env, pvc).await;
            assert!(!warning_event_where(&env, dd, |_| true).await.is_empty());
        }
        assert_no_leftovers(&env).await;
        assert_eq!(env.movers.starts_of("dd-0"), 0, "no data mover ever ran");
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// podResources reach the restore pod, and a request no node can hold is an expose timeout
    /// that says so (the scheduler's "Insufficient cpu"), not a restore waiting forever.
    async fn e2e_restore_pod_too_big_for_any_node_fails_with_insufficient_cpu(backend: Backend) {
        let env = env(backend, 2,
            0,
            json!({"restorePVC": {"ignoreDelayBinding": true},
                   "podResources": {"cpuRequest": "512", "memoryRequest": "64Mi"}}),
        )
        .await;
        restores(&env, 1, "standard").await;
        let mut options = options(env.controller_client.clone());
        options.expose_timeout = Duration::from_secs(3);
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();

        let pod = wait_for("the restore pod", 30, || async {
            Api::<k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), NS)
                .get_opt("dd-0")
                .await
                .unwrap()
        })
        .await;
        let requests = pod.spec.unwrap().containers[0]
            .resources
            .clone()
            .and_then(|r| r.requests)
            .unwrap_or_default();
        assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("512"));
        assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("64Mi"));

        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        assert!(
            message.contains("timed out after 3s") && message.contains("Insufficient cpu"),
            "the scheduler's reason: {message}"
        );
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        assert_eq!(env.movers.starts_of("dd-0"), 0, "no data mover ever ran");
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// The expose timeout bounds exposing (restore pod created → running, or no node can take
    /// the restore), not the time a restore waits for its workload or for a free slot.
    async fn e2e_waiting_for_a_workload_or_a_slot_is_not_an_expose_timeout(backend: Backend) {
        let env = env(backend, 1, 0, json!({"loadConcurrency": {"globalConfig": 1}})).await;
        restores(&env, 2, "standard").await;
        // Both held: which restore gets the node's only slot first is not ours to decide.
        env.movers.hold("dd-0");
        env.movers.hold("dd-1");
        let mut options = options(env.controller_client.clone());
        // Short, yet longer than a real scheduler's retry of a pod whose claim changed under
        // it (a PreBind conflict, retried after its backoff): 2 s failed there now and then.
        options.expose_timeout = Duration::from_secs(5);
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        for dd in ["dd-0", "dd-1"] {
            wait_phase(&env, dd, &[DataDownloadPhase::Accepted], 30).await;
        }
        // Longer than the expose timeout without a workload.
        tokio::time::sleep(Duration::from_secs(6)).await;
        for i in 0..2 {
            workload_pod(&env, &format!("app-{i}"), &format!("pvc-{i}")).await;
        }
        // One runs (held); the other waits for the node's only slot, longer than the expose
        // timeout, and is still Accepted, not failed.
        let running = env.movers.wait_any_started(&["dd-0", "dd-1"], 60).await;
        let waiting = if running == "dd-0" { "dd-1" } else { "dd-0" };
        tokio::time::sleep(Duration::from_secs(6)).await;
        let other = get_dd(&env, waiting).await;
        assert_eq!(
            other.phase(),
            DataDownloadPhase::Accepted,
            "{:?}",
            other.status
        );
        assert_eq!(
            env.movers.starts_of(waiting),
            0,
            "{waiting} waits for the slot"
        );
        env.movers.release("dd-0");
        env.movers.release("dd-1");
        for i in 0..2 {
            wait_completed(&env, &format!("dd-{i}"), 60).await;
            assert_restored(&env, i).await;
            wait_pod_succeeded(&env, &format!("app-{i}")).await;
        }
        env.movers.assert_each_started_once();
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// A restore pod that can never run (its image cannot be pulled) ends the restore at once
    /// with the pod's reason, long before the expose timeout (600 s here).
    async fn e2e_restore_pod_that_cannot_pull_its_image_fails_at_once_with_the_reason(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        let mut options = options(env.controller_client.clone());
        // A registry that never resolves (RFC 2606): the kubelet cannot pull from it.
        options.image = "registry.invalid/ferry/ferry:dev".into();
        assert_eq!(options.expose_timeout, Duration::from_secs(600));
        let ctl = start_controller(options).await.unwrap();
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let status = dd.status.unwrap();
        let message = status.message.unwrap();
        assert!(
            message.contains("restore pod velero/dd-0")
                && (message.contains("ErrImagePull") || message.contains("ImagePullBackOff"))
                && message.contains("registry.invalid"),
            "the pod's reason: {message}"
        );
        assert!(status.completion_timestamp.is_some());
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        assert_eq!(env.movers.starts_of("dd-0"), 0);
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_hostile_fields_of_a_data_download_are_refused_naming_the_field(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        // A repository outside the location's path, if the namespace were joined as given.
        let evil = env.repo_dir.parent().unwrap().join("evil");
        std::fs::create_dir_all(&evil).unwrap();
        let snap = backup(&env, 0).await;
        data_download(&env, "dd-escape", "pvc-0", &snap, "ferry").await;
        data_download(&env, "dd-id", "pvc-1", &"名".repeat(4000), "ferry").await;
        let downloads = Api::<ferry_controller::crds::DataDownload>::namespaced(env.client.clone(), NS);
        downloads
            .patch(
                "dd-escape",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"sourceNamespace": "../../../../evil/repo"}})),
            )
            .await
            .unwrap();
        let ctl = controller(&env).await;
        for (name, expected) in [
            (
                "dd-escape",
                "refused: spec.sourceNamespace \"../../../../evil/repo\" is not a namespace name",
            ),
            ("dd-id", "refused: spec.snapshotID \"名名"),
        ] {
            let dd = wait_phase(&env, name, DONE, 60).await;
            assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{name}");
            let message = dd.status.unwrap().message.unwrap();
            assert!(message.contains(expected), "{expected:?} in {message:?}");
            assert!(message.len() < 1000, "{name}: a short message");
        }
        // Refused before anything was created or opened.
        assert_no_leftovers(&env).await;
        assert_eq!(std::fs::read_dir(&evil).unwrap().count(), 0);
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
