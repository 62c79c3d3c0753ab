//! Backups survive the controller: killed (as a crash, no lease release) at each point of a
//! DataUpload's life — right after accepting it, before each object of the take-over and the
//! exposure is created, before the source snapshot is deleted, while the data mover runs, and
//! before the result is recorded — a successor completes every backup with each data mover
//! started once and nothing left behind. A backup canceled in each phase before it ends — New,
//! Accepted half exposed, Prepared with its data mover running, InProgress — and one deleted
//! while its data mover runs, leave nothing behind either. On kubesim and on the real control
//! plane.

use crate::common;

use common::backups::*;
use common::gate::Rule;
use common::*;
use ferry_controller::crds::{DataUpload, DataUploadPhase};
use http::Method;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

const DU_PATH: &str = "/namespaces/velero/datauploads/";

/// Starts a controller whose request matching `rule` is parked, waits until it is, and kills
/// the controller there.
async fn kill_at(env: &Env, rule: Rule) {
    let gate = common::gate::Gate::new(rule);
    let first = controller_with(gate.client(env.controller_client.clone())).await;
    gate.wait_hit(90).await;
    first.kill();
}

async fn phase_of(env: &Env, name: &str) -> DataUploadPhase {
    Api::<DataUpload>::namespaced(env.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
        .phase()
}

/// Waits until DataUpload `name` is InProgress.
async fn in_progress(env: &Env, name: &str) {
    wait_for(&format!("{name} InProgress"), 90, || async {
        (phase_of(env, name).await == DataUploadPhase::InProgress).then_some(())
    })
    .await;
}

/// The gate rule of a kill point for the DataUpload named.
type RuleFor = Box<dyn Fn(&str) -> Rule>;

/// Each kill point: what it is, and its rule for a DataUpload.
fn kill_points() -> Vec<(&'static str, RuleFor)> {
    vec![
        (
            "after accepting",
            Box::new(|du| {
                Rule::after(Method::PATCH, &format!("{DU_PATH}{du}")).body(r#""Accepted""#)
            }),
        ),
        (
            "before the backup VolumeSnapshot",
            Box::new(|du| {
                Rule::before(Method::POST, "/namespaces/velero/volumesnapshots")
                    .body(&format!(r#""name":"{du}""#))
            }),
        ),
        (
            "before the backup VolumeSnapshotContent",
            Box::new(|du| {
                Rule::before(Method::POST, "/volumesnapshotcontents")
                    .body(&format!(r#""name":"{du}""#))
            }),
        ),
        (
            "before deleting the source VolumeSnapshot",
            Box::new(|du| {
                Rule::before(
                    Method::DELETE,
                    &format!("/namespaces/{APP}/volumesnapshots/{du}"),
                )
            }),
        ),
        (
            "before the backup PVC",
            Box::new(|du| {
                Rule::before(Method::POST, "/namespaces/velero/persistentvolumeclaims")
                    .body(&format!(r#""name":"{du}""#))
            }),
        ),
        (
            "before the backup pod",
            Box::new(|du| {
                Rule::before(Method::POST, "/namespaces/velero/pods")
                    .body(&format!(r#""name":"{du}""#))
            }),
        ),
        (
            "before recording the result",
            Box::new(|du| {
                Rule::before(Method::PATCH, &format!("{DU_PATH}{du}"))
                    .body(r#""ferry.io/data-uploaded""#)
            }),
        ),
    ]
}

on_both_clusters! {
    async fn e2e_backup_restart_at_each_point(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        snapshot_class(&env).await;
        let points = kill_points();
        let mut names = Vec::new();
        for (i, (what, rule)) in points.iter().enumerate() {
            let name = format!("du-{i}");
            source_volume(&env, &format!("src-{i}")).await;
            snapshot_and_upload(&env, &name, &format!("src-{i}")).await;
            eprintln!("killing at: {what}");
            kill_at(&env, rule(&name)).await;
            names.push((name, *what));
        }
        // And one killed while its data mover runs.
        let running = "du-running";
        source_volume(&env, "src-running").await;
        env.movers.hold(running);
        snapshot_and_upload(&env, running, "src-running").await;
        let first = controller(&env).await;
        env.movers.wait_started(running, 90).await;
        in_progress(&env, running).await;
        first.kill();
        names.push((running.to_string(), "while the data mover runs"));

        let successor = controller(&env).await;
        settle(&successor).await;
        env.movers.release(running);
        for (name, what) in &names {
            let du = upload_ended(&env, name, 120).await;
            let status = du.status.clone().unwrap_or_default();
            assert_eq!(du.phase(), DataUploadPhase::Completed, "killed {what}: {:?}", status.message);
            assert!(status.snapshot_id.is_some_and(|s| !s.is_empty()), "killed {what}");
            assert_eq!(env.movers.starts_of(name), 1, "killed {what}: the data mover of {name} started once");
        }
        assert_no_backup_leftovers(&env).await;
        restic(&env, &["check"]);
        successor.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_backup_canceled_or_deleted_while_moving_leaves_nothing(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        snapshot_class(&env).await;
        for name in ["du-cancel", "du-delete"] {
            source_volume(&env, &format!("src-{name}")).await;
            env.movers.hold(name);
            snapshot_and_upload(&env, name, &format!("src-{name}")).await;
        }
        // Both at once on the one node.
        set_config(&env.client, json!({"loadConcurrency": {"globalConfig": 2}})).await;
        let ctl = controller(&env).await;
        for name in ["du-cancel", "du-delete"] {
            env.movers.wait_started(name, 90).await;
            in_progress(&env, name).await;
        }
        let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
        set_cancel_of::<DataUpload>(&env, "du-cancel").await;
        uploads.delete("du-delete", &DeleteParams::default()).await.unwrap();
        let du = upload_ended(&env, "du-cancel", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Canceled);
        assert!(du.status.unwrap().snapshot_id.is_none());
        wait_for("du-delete gone", 60, || {
            let uploads = uploads.clone();
            async move { uploads.get_opt("du-delete").await.ok()?.is_none().then_some(()) }
        })
        .await;
        for name in ["du-cancel", "du-delete"] {
            env.movers.release(name);
        }
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_backup_canceled_in_each_phase_leaves_nothing(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        snapshot_class(&env).await;
        // Each backup is brought to its phase by a controller killed there, then canceled
        // while no controller runs, so the cancel meets exactly that phase's objects.
        // Accepted, half exposed: the snapshot taken over and the backup PVC made, no pod.
        source_volume(&env, "src-accepted").await;
        snapshot_and_upload(&env, "du-accepted", "src-accepted").await;
        kill_at(
            &env,
            Rule::before(Method::POST, "/namespaces/velero/pods").body(r#""name":"du-accepted""#),
        )
        .await;
        assert_eq!(phase_of(&env, "du-accepted").await, DataUploadPhase::Accepted);
        assert!(
            Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(env.client.clone(), NS)
                .get_opt("du-accepted")
                .await
                .unwrap()
                .is_some(),
            "the backup PVC exists when the cancel comes"
        );
        set_cancel_of::<DataUpload>(&env, "du-accepted").await;

        // Prepared: the backup pod runs, its data mover (held) has started, the controller
        // never recorded InProgress. The next controller also meets du-accepted's cancel.
        source_volume(&env, "src-prepared").await;
        env.movers.hold("du-prepared");
        snapshot_and_upload(&env, "du-prepared", "src-prepared").await;
        kill_at(
            &env,
            Rule::before(Method::PATCH, &format!("{DU_PATH}du-prepared")).body(r#""InProgress""#),
        )
        .await;
        assert_eq!(phase_of(&env, "du-prepared").await, DataUploadPhase::Prepared);
        env.movers.wait_started("du-prepared", 90).await;
        set_cancel_of::<DataUpload>(&env, "du-prepared").await;

        // New: canceled before any controller saw it.
        source_volume(&env, "src-new").await;
        snapshot_and_upload(&env, "du-new", "src-new").await;
        set_cancel_of::<DataUpload>(&env, "du-new").await;

        // InProgress: canceled while a running controller's data mover moves it.
        source_volume(&env, "src-moving").await;
        env.movers.hold("du-moving");
        snapshot_and_upload(&env, "du-moving", "src-moving").await;
        let ctl = controller(&env).await;
        env.movers.wait_started("du-moving", 90).await;
        in_progress(&env, "du-moving").await;
        set_cancel_of::<DataUpload>(&env, "du-moving").await;

        for (name, phase) in [
            ("du-new", "New"),
            ("du-accepted", "Accepted"),
            ("du-prepared", "Prepared"),
            ("du-moving", "InProgress"),
        ] {
            let du = upload_ended(&env, name, 90).await;
            assert_eq!(du.phase(), DataUploadPhase::Canceled, "canceled in {phase}: {}", message(&du));
            assert!(message(&du).contains("spec.cancel was set"), "canceled in {phase}: {}", message(&du));
            let status = du.status.unwrap_or_default();
            assert!(status.snapshot_id.is_none(), "canceled in {phase}: no snapshot");
            assert!(du.metadata.finalizers.unwrap_or_default().is_empty(), "canceled in {phase}: finalizer released");
        }
        assert_eq!(env.movers.starts_of("du-new"), 0, "nothing ran for a backup canceled in New");
        assert_eq!(env.movers.starts_of("du-accepted"), 0, "nothing ran for a backup canceled in Accepted");
        assert_eq!(env.movers.starts_of("du-prepared"), 1);
        assert_eq!(env.movers.starts_of("du-moving"), 1);
        env.movers.release("du-prepared");
        env.movers.release("du-moving");
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
