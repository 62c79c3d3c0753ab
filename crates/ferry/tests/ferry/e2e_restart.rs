//! The controller killed (`ControllerHandle::kill`, as a crash: no lease release, the pass cut
//! short) in each phase of a restore, and a successor started: the restore ends as specified
//! (Completed with the right data, or Canceled), its data mover never started twice, its
//! restore pod was never created twice, and nothing is left behind.
//!
//! Each kill point is reached deterministically, never by timing: a phase the cluster holds
//! (no workload yet; a NotReady node; a data mover held by the test's wrapper), or a request
//! gate on the controller's client that parks the one request of the step to interrupt
//! (`common::gate`), before it is sent or right after it was applied.

use crate::common;

use common::gate::{Gate, Rule};
use common::*;
use ferry_controller::crds::DataDownloadPhase;
use http::Method;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

const DD_PATH: &str = "/namespaces/velero/datadownloads/";
const POD_PATH: &str = "/namespaces/velero/pods";
const PVC_PATH: &str = "/namespaces/velero/persistentvolumeclaims";
const PV_PATH: &str = "/api/v1/persistentvolumes/";

fn ignore_delay_binding() -> serde_json::Value {
    json!({"restorePVC": {"ignoreDelayBinding": true}})
}

/// Starts a controller whose request matching `rule` is parked, waits until it is, and kills
/// the controller there.
async fn kill_at(env: &Env, rule: Rule) {
    let gate = Gate::new(rule);
    let first = controller_with(gate.client(env.controller_client.clone())).await;
    gate.wait_hit(60).await;
    first.kill();
}

/// The end state every restart test asks for, for restores `indices`: Completed, the right
/// data in a PV bound to the target PVC with its original reclaim policy, each data mover
/// started once, each restore pod created once, nothing left behind.
async fn assert_completed_once(env: &Env, history: &PodHistory, indices: &[usize]) {
    for &i in indices {
        let dd = wait_completed(env, &format!("dd-{i}"), 60).await;
        let pv = assert_restored(env, i).await;
        assert_eq!(
            dd.status.unwrap().node.unwrap(),
            pv_node(&pv),
            "dd-{i}: the PV lives where the restore ran"
        );
        assert_eq!(
            env.movers.starts_of(&format!("dd-{i}")),
            1,
            "dd-{i}'s data mover"
        );
    }
    env.movers.assert_each_started_once();
    history.assert_each_created_once();
    assert_no_leftovers(env).await;
}

async fn restore_pod(env: &Env, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(env.client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

on_both_clusters! {
    async fn e2e_restart_while_queued_and_waiting_for_a_consumer(backend: Backend) {
        // Default mode, one restore prepared at a time: dd-0 waits for its workload (Accepted),
        // dd-1 waits in the queue (New).
        let env = env(backend, 2, 0, json!({"loadConcurrency": {"prepareQueueLength": 1}})).await;
        restores(&env, 2, "standard").await;
        let history = PodHistory::start(&env);
        let first = controller(&env).await;
        wait_for("dd-0 waiting for a consumer", 30, || async {
            let dd = get_dd(&env, "dd-0").await;
            let message = dd.status.and_then(|s| s.message).unwrap_or_default();
            message.contains("to be consumed").then_some(())
        })
        .await;
        first.kill();
        assert_eq!(get_dd(&env, "dd-1").await.phase(), DataDownloadPhase::New);

        let second = controller(&env).await;
        settle(&second).await;
        assert_eq!(
            get_dd(&env, "dd-0").await.phase(),
            DataDownloadPhase::Accepted
        );
        assert_eq!(get_dd(&env, "dd-1").await.phase(), DataDownloadPhase::New);
        assert!(
            history.names().is_empty(),
            "no restore pod without a workload"
        );

        for i in 0..2 {
            workload_pod(&env, &format!("app-{i}"), &format!("pvc-{i}")).await;
            let pod = wait_pod_succeeded(&env, &format!("app-{i}")).await;
            let dd = wait_completed(&env, &format!("dd-{i}"), 60).await;
            assert_eq!(dd.status.unwrap().node, pod.spec.unwrap().node_name);
        }
        assert_completed_once(&env, &history, &[0, 1]).await;
        second.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_between_restore_pvc_and_restore_pod(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        restores(&env, 1, "standard").await;
        let history = PodHistory::start(&env);
        kill_at(&env, Rule::before(Method::POST, POD_PATH)).await;
        // Killed with the node chosen and the restore PVC made, the pod not yet created.
        let dd = get_dd(&env, "dd-0").await;
        assert_eq!(dd.phase(), DataDownloadPhase::Accepted);
        assert!(dd.status.unwrap().node.is_some());
        let restore_pvc = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), NS)
            .get_opt("dd-0")
            .await
            .unwrap();
        assert!(restore_pvc.is_some() && restore_pod(&env, "dd-0").await.is_none());
        let successor = controller(&env).await;
        assert_completed_once(&env, &history, &[0]).await;
        successor.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_with_the_restore_pod_created_but_not_running(backend: Backend) {
        // Default mode; the workload is scheduled to a node that then goes NotReady: the restore
        // pod pinned there stays Pending until the node is back.
        let env = env(backend, 2, 0, json!({})).await;
        restores(&env, 1, "standard").await;
        let node = workload_on_a_node_gone_not_ready(&env, "app-0", "pvc-0").await;
        let history = PodHistory::start(&env);
        let gate = Gate::new(Rule::after(Method::POST, POD_PATH));
        let first = controller_with(gate.client(env.controller_client.clone())).await;
        gate.wait_hit(60).await;
        first.kill();
        let pod = restore_pod(&env, "dd-0")
            .await
            .expect("restore pod created");
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
        assert_eq!(
            get_dd(&env, "dd-0").await.phase(),
            DataDownloadPhase::Accepted
        );

        let second = controller(&env).await;
        settle(&second).await;
        assert_eq!(
            get_dd(&env, "dd-0").await.phase(),
            DataDownloadPhase::Accepted
        );
        env.cluster
            .nodes()
            .set_node_ready(&node, true)
            .await
            .unwrap();
        let dd = wait_completed(&env, "dd-0", 60).await;
        assert_eq!(dd.status.unwrap().node.as_deref(), Some(node.as_str()));
        let app = wait_pod_succeeded(&env, "app-0").await;
        assert_eq!(app.spec.unwrap().node_name.as_deref(), Some(node.as_str()));
        assert_completed_once(&env, &history, &[0]).await;
        second.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_in_prepared(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        restores(&env, 1, "standard").await;
        let history = PodHistory::start(&env);
        // Parked on the step Prepared → InProgress: the DataDownload is Prepared.
        let rule =
            Rule::before(Method::PATCH, &format!("{DD_PATH}dd-0")).body(r#""phase":"InProgress""#);
        let gate = Gate::new(rule);
        let first = controller_with(gate.client(env.controller_client.clone())).await;
        gate.wait_hit(60).await;
        first.kill();
        assert_eq!(
            get_dd(&env, "dd-0").await.phase(),
            DataDownloadPhase::Prepared
        );
        let second = controller(&env).await;
        assert_completed_once(&env, &history, &[0]).await;
        let status = get_dd(&env, "dd-0").await.status.unwrap();
        assert!(status.start_timestamp.is_some() && status.completion_timestamp.is_some());
        second.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_while_the_data_mover_runs(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        restores(&env, 1, "standard").await;
        env.movers.hold("dd-0");
        let history = PodHistory::start(&env);
        let first = controller(&env).await;
        env.movers.wait_started("dd-0", 60).await;
        wait_phase(&env, "dd-0", &[DataDownloadPhase::InProgress], 30).await;
        first.kill();

        let second = controller(&env).await;
        settle(&second).await;
        assert_eq!(
            get_dd(&env, "dd-0").await.phase(),
            DataDownloadPhase::InProgress
        );
        env.movers.release("dd-0");
        assert_completed_once(&env, &history, &[0]).await;
        let progress = get_dd(&env, "dd-0").await.status.unwrap().progress.unwrap();
        assert!(progress.total_bytes.unwrap() > 0);
        assert_eq!(progress.total_bytes, progress.bytes_done);
        second.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_after_the_data_mover_finished(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        restores(&env, 1, "standard").await;
        let history = PodHistory::start(&env);
        // Parked on recording that the data moved: the pod Succeeded, nothing rebound yet.
        let rule =
            Rule::before(Method::PATCH, &format!("{DD_PATH}dd-0")).body(r#""ferry.io/data-moved""#);
        kill_at(&env, rule).await;
        let pod = restore_pod(&env, "dd-0")
            .await
            .expect("restore pod still there");
        assert_eq!(
            pod.status.and_then(|s| s.phase).as_deref(),
            Some("Succeeded")
        );
        let successor = controller(&env).await;
        assert_completed_once(&env, &history, &[0]).await;
        successor.stop().await;
        env.cluster.stop().await;
    }
}

/// The gate rule for restore `i`.
type RuleFor = Box<dyn Fn(usize) -> Rule>;

on_both_clusters! {
    /// Rebind runs over several passes; the controller is killed after each of its writes in turn
    /// (one restore per kill point, in one cluster).
    async fn e2e_restart_at_each_rebind_step(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        let history = PodHistory::start(&env);
        let points: Vec<(&str, RuleFor)> = vec![
            (
                "PV set to Retain, restore pod and PVC still there",
                Box::new(|_| {
                    Rule::after(Method::PATCH, PV_PATH)
                        .body(r#""persistentVolumeReclaimPolicy":"Retain""#)
                }),
            ),
            (
                "restore pod deleted, restore PVC still there",
                Box::new(|i| Rule::after(Method::DELETE, &format!("{POD_PATH}/dd-{i}"))),
            ),
            (
                "PV's claimRef pointed at the target PVC, restore PVC still there",
                Box::new(|_| Rule::after(Method::PATCH, PV_PATH).body(r#""claimRef""#)),
            ),
            (
                "restore PVC deleted",
                Box::new(|i| Rule::after(Method::DELETE, &format!("{PVC_PATH}/dd-{i}"))),
            ),
            (
                "target bound, reclaim policy not yet restored",
                Box::new(|_| {
                    Rule::before(Method::PATCH, PV_PATH)
                        .body(r#""persistentVolumeReclaimPolicy":"Delete""#)
                }),
            ),
            (
                "everything rebound, phase not yet Completed",
                Box::new(|i| {
                    Rule::before(Method::PATCH, &format!("{DD_PATH}dd-{i}"))
                        .body(r#""phase":"Completed""#)
                }),
            ),
        ];
        for (i, (what, rule)) in points.iter().enumerate() {
            restore_of(&env, i, "standard").await;
            kill_at(&env, rule(i)).await;
            let dd = get_dd(&env, &format!("dd-{i}")).await;
            assert_eq!(
                dd.phase(),
                DataDownloadPhase::InProgress,
                "killed at: {what}"
            );
            let successor = controller(&env).await;
            let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 60).await;

            assert_eq!(
                dd.phase(),
                DataDownloadPhase::Completed,
                "killed at: {what}: {:?}",
                dd.status
            );
            assert_restored(&env, i).await;
            assert_no_leftovers(&env).await;
            successor.stop().await;
        }
        assert_completed_once(&env, &history, &(0..points.len()).collect::<Vec<_>>()).await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restart_while_canceling(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        let history = PodHistory::start(&env);
        // dd-0: killed as it entered Canceling (nothing removed yet); dd-1: killed with its
        // objects removed, before Canceled was recorded.
        let points = [
            (Rule::after(Method::PATCH, &format!("{DD_PATH}dd-0")).body(r#""phase":"Canceling""#)),
            (Rule::before(Method::PATCH, &format!("{DD_PATH}dd-1")).body(r#""phase":"Canceled""#)),
        ];
        for (i, rule) in points.into_iter().enumerate() {
            let name = format!("dd-{i}");
            env.movers.hold(&name);
            restore_of(&env, i, "standard").await;
            let gate = Gate::new(rule);
            let first = controller_with(gate.client(env.controller_client.clone())).await;
            env.movers.wait_started(&name, 60).await;
            wait_phase(&env, &name, &[DataDownloadPhase::InProgress], 30).await;
            set_cancel(&env, &name).await;
            gate.wait_hit(60).await;
            first.kill();
            assert_eq!(
                get_dd(&env, &name).await.phase(),
                DataDownloadPhase::Canceling
            );
            let second = controller(&env).await;
            let dd = wait_phase(&env, &name, DONE, 60).await;
            assert_eq!(dd.phase(), DataDownloadPhase::Canceled, "{:?}", dd.status);
            assert_target_unbound(&env, &format!("pvc-{i}")).await;
            assert_no_leftovers(&env).await;
            // The held data mover was stopped with its pod; it never restored anything.
            env.movers.release(&name);
            assert_eq!(env.movers.starts_of(&name), 1);
            second.stop().await;
        }
        history.assert_each_created_once();
        let pvs = Api::<PersistentVolume>::all(env.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(pvs.items.is_empty(), "canceled restores leave no PV");
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// Once the data has moved, a cancel no longer undoes the restore: rebind finishes (undoing a
    /// half-done rebind would risk the data) and the restore Completes, also across a restart.
    async fn e2e_cancel_after_the_data_moved_completes_across_a_restart(backend: Backend) {
        let env = env(backend, 2, 0, ignore_delay_binding()).await;
        restores(&env, 1, "standard").await;
        let history = PodHistory::start(&env);
        let gate = Gate::new(
            Rule::after(Method::PATCH, PV_PATH).body(r#""persistentVolumeReclaimPolicy":"Retain""#),
        );
        let first = controller_with(gate.client(env.controller_client.clone())).await;
        gate.wait_hit(60).await;
        first.kill();
        set_cancel(&env, "dd-0").await;
        let second = controller(&env).await;
        assert_completed_once(&env, &history, &[0]).await;
        second.stop().await;
        env.cluster.stop().await;
    }
}

/// `GET /metrics` on `address`: the body, or the connection error.
async fn scrape(address: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: ferry\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The metrics server belongs to the controller: it counts the restore, and a killed
/// controller (a crash in the process that embeds it) no longer answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_killed_controller_stops_serving_metrics() {
    let env = env(Backend::Kubesim, 1, 0, ignore_delay_binding()).await;
    restores(&env, 1, "standard").await;
    let mut options = options(env.client.clone());
    options.metrics_address = Some("127.0.0.1:0".parse().unwrap());
    let ctl = ferry_controller::start_controller(options).await.unwrap();
    let address = ctl.metrics_address.expect("metrics are served");
    wait_completed(&env, "dd-0", 60).await;
    let body = wait_for("the completed restore in the metrics", 30, || async {
        let body = scrape(address).await.ok()?;
        body.contains("ferry_restores_completed_total 1")
            .then_some(body)
    })
    .await;
    assert!(body.contains("ferry_controller_leader 1"), "{body}");
    ctl.kill();
    wait_for("the metrics server to stop", 30, || async {
        scrape(address).await.is_err().then_some(())
    })
    .await;
    env.cluster.stop().await;
}
