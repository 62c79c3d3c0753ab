//! Nothing of a restore outlives it: a failed or canceled restore into a StorageClass that
//! retains volumes leaves no PV behind, and deleting a DataDownload (`kubectl delete
//! datadownload`) in any phase cancels it and removes its restore pod, restore PVC and any PV
//! rebind had marked (ferry's finalizer, as Velero's).

use crate::common;

use common::gate::{Gate, Rule};
use common::*;
use ferry_controller::crds::{DataDownload, DataDownloadPhase};
use ferry_controller::expose::DATA_DOWNLOAD_LABEL;
use ferry_controller::reconciler::CLEANUP_FINALIZER;
use http::Method;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

/// An Immediate StorageClass of kubesim's provisioner whose volumes are retained.
async fn retain_class(env: &Env) {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "retain"},
        "provisioner": kubesim::nodes::bootstrap::PROVISIONER,
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }))
    .unwrap();
    match Api::<StorageClass>::all(env.client.clone())
        .create(&PostParams::default(), &class)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
}

/// The reclaim policy of the PV bound to restore PVC `name`, once it is bound.
async fn restore_pv_policy(env: &Env, name: &str) -> String {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    let pv = wait_for(&format!("restore PVC {name} bound"), 30, || async {
        pvcs.get_opt(name).await.unwrap()?.spec?.volume_name
    })
    .await;
    Api::<PersistentVolume>::all(env.client.clone())
        .get(&pv)
        .await
        .unwrap()
        .spec
        .unwrap()
        .persistent_volume_reclaim_policy
        .unwrap_or_default()
}

on_both_clusters! {
    async fn e2e_failed_and_canceled_restores_into_a_retain_class_leave_no_volume(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        retain_class(&env).await;
        // dd-0 is canceled while its data mover runs; dd-1's snapshot does not exist, so its
        // data mover fails.
        let snap = backup(&env, 0).await;
        target_pvc(&env, "pvc-0", "retain", "Filesystem").await;
        data_download(&env, "dd-0", "pvc-0", &snap, "ferry").await;
        target_pvc(&env, "pvc-1", "retain", "Filesystem").await;
        data_download(&env, "dd-1", "pvc-1", &"0".repeat(64), "ferry").await;
        env.movers.hold("dd-0");
        env.movers.hold("dd-1");
        let ctl = controller(&env).await;
        for dd in ["dd-0", "dd-1"] {
            env.movers.wait_started(dd, 60).await;
            assert_eq!(restore_pv_policy(&env, dd).await, "Retain");
        }
        set_cancel(&env, "dd-0").await;
        env.movers.release("dd-1");
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Canceled, "{:?}", dd.status);
        let dd = wait_phase(&env, "dd-1", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        env.movers.release("dd-0");
        for pvc in ["pvc-0", "pvc-1"] {
            assert_target_unbound(&env, pvc).await;
        }
        // No Released PV of either restore.
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_deleting_a_data_download_removes_its_restore_in_any_phase(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        // dd-0: its data mover runs (held). dd-1: rebind retained and marked its PV, then the
        // controller died. dd-2: waits for a target PVC that never comes.
        restores(&env, 2, "standard").await;
        let snap = backup(&env, 2).await;
        data_download(&env, "dd-2", "pvc-2", &snap, "ferry").await;
        env.movers.hold("dd-0");
        let gate = Gate::new(Rule::before(Method::PATCH, "/api/v1/persistentvolumes/").body(r#""claimRef""#));
        let first = controller_with(gate.client(env.controller_client.clone())).await;
        gate.wait_hit(60).await;
        env.movers.wait_started("dd-0", 60).await;
        wait_for("dd-2 waiting for its target", 30, || async {
            let dd = get_dd(&env, "dd-2").await;
            dd.status?.message?.contains("to be created").then_some(())
        })
        .await;
        first.kill();
        let marked = Api::<PersistentVolume>::all(env.client.clone())
            .list(&ListParams::default().labels(&format!("{DATA_DOWNLOAD_LABEL}=dd-1")))
            .await
            .unwrap()
            .items;
        assert_eq!(marked.len(), 1, "rebind marked dd-1's PV");
        let downloads: Api<DataDownload> = Api::namespaced(env.client.clone(), NS);
        for dd in ["dd-0", "dd-1", "dd-2"] {
            let finalizers = get_dd(&env, dd).await.metadata.finalizers.unwrap_or_default();
            assert!(finalizers.contains(&CLEANUP_FINALIZER.to_string()), "{dd}: {finalizers:?}");
            downloads.delete(dd, &DeleteParams::default()).await.unwrap();
        }
        // Held by the finalizer until a controller has cleaned up.
        assert!(downloads.get_opt("dd-1").await.unwrap().is_some());

        let ctl = controller(&env).await;
        for dd in ["dd-0", "dd-1", "dd-2"] {
            wait_for(&format!("{dd} gone"), 60, || async {
                downloads.get_opt(dd).await.unwrap().is_none().then_some(())
            })
            .await;
        }
        env.movers.release("dd-0");
        for pvc in ["pvc-0", "pvc-1"] {
            assert_target_unbound(&env, pvc).await;
        }
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
