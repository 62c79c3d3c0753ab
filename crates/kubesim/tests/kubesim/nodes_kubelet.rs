//! The kubelets against a running kubesim: real processes with volumes mapped into their
//! root, exit codes and termination messages in the pod status, deletion stops processes.

use crate::nodes_support;

use k8s_openapi::api::core::v1::{
    ContainerStateTerminated, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, Pod,
};
use kube::Api;
use kube::api::DeleteParams;
use nodes_support::*;

async fn terminated(pods: &Api<Pod>, name: &str) -> (Pod, ContainerStateTerminated) {
    eventually(&format!("pod {name} finished"), || async {
        let p = pods.get(name).await.ok()?;
        let phase = p.status.as_ref()?.phase.clone()?;
        if phase != "Succeeded" && phase != "Failed" {
            return None;
        }
        let t = p.status.as_ref()?.container_statuses.as_ref()?[0]
            .state
            .as_ref()?
            .terminated
            .clone()?;
        Some((p, t))
    })
    .await
}

#[tokio::test]
async fn a_real_program_writes_into_its_volume_and_reports_exit_code_and_message() {
    let t = start(2, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    create(&claims, &claim("data", "10Mi", None)).await;
    let mut p = pod(
        "writer",
        &["data"],
        Some(vec![
            "/bin/sh",
            "-c",
            "echo hi from $POD_NAME > /data/f; echo wrote it > /dev/termination-log; exit 3",
        ]),
    );
    p.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
        name: "POD_NAME".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }]);
    create(&pods, &p).await;
    let (finished, state) = terminated(&pods, "writer").await;
    assert_eq!(
        finished.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    assert_eq!(state.exit_code, 3);
    assert_eq!(state.reason.as_deref(), Some("Error"));
    assert_eq!(state.message.as_deref(), Some("wrote it\n"));
    assert!(state.started_at.is_some() && state.finished_at.is_some());
    let pv_name = claims
        .get("data")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let written =
        std::fs::read_to_string(t.cluster.nodes().volume_path(&pv_name).join("f")).unwrap();
    assert_eq!(written, "hi from writer\n");
    t.cluster.stop().await;
}

#[tokio::test]
async fn success_and_fallback_to_logs_on_error() {
    let t = start(1, 0).await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    create(
        &pods,
        &pod("ok", &[], Some(vec!["/bin/sh", "-c", "echo fine"])),
    )
    .await;
    let mut failing = pod(
        "oops",
        &[],
        Some(vec![
            "/bin/sh",
            "-c",
            "echo first; echo went wrong >&2; exit 7",
        ]),
    );
    failing.spec.as_mut().unwrap().containers[0].termination_message_policy =
        Some("FallbackToLogsOnError".into());
    create(&pods, &failing).await;
    let (ok, ok_state) = terminated(&pods, "ok").await;
    assert_eq!(ok.status.unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        (ok_state.exit_code, ok_state.reason.as_deref()),
        (0, Some("Completed"))
    );
    let log = std::fs::read_to_string(t.cluster.nodes().pod_dir("default", "ok").join("main.log"))
        .unwrap();
    assert_eq!(log, "fine\n");
    let (_, state) = terminated(&pods, "oops").await;
    assert_eq!(state.exit_code, 7);
    assert_eq!(state.message.as_deref(), Some("first\nwent wrong"));
    t.cluster.stop().await;
}

#[tokio::test]
async fn deleting_a_pod_stops_its_process() {
    let t = start(1, 0).await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    create(&pods, &pod("sleeper", &[], Some(vec!["sleep", "300"]))).await;
    let pid: i32 = eventually("sleeper running", || async {
        let p = pods.get("sleeper").await.ok()?;
        let status = &p.status.as_ref()?.container_statuses.as_ref()?[0];
        status.state.as_ref()?.running.as_ref()?;
        status
            .container_id
            .as_deref()?
            .strip_prefix("kubesim://")?
            .parse()
            .ok()
    })
    .await;
    // SAFETY: signal 0 only checks that the process exists.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) == 0 };
    assert!(alive(pid));
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    eventually("process gone", || async { (!alive(pid)).then_some(()) }).await;
    eventually("pod gone", || async {
        pods.get_opt("sleeper").await.ok()?.is_none().then_some(())
    })
    .await;
    t.cluster.stop().await;
}
