//! `ferry restore create|get|describe`, the binary under test run as a user runs it (KUBECONFIG
//! pointing at kubesim), against ferry's controller: a restore without Velero.

mod common;

use std::process::Output;

use common::*;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use serde_json::json;

async fn ferry(env: &Env, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("KUBECONFIG", env.cluster.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DataDownload's name from `create`'s "DataDownload velero/NAME created for …".
fn created_name(out: &Output) -> String {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("DataDownload "))
        .unwrap_or_else(|| panic!("no creation line in {text:?}"));
    let id = line.split_whitespace().nth(1).unwrap();
    id.split_once('/').unwrap().1.to_string()
}

on_both_clusters! {
    async fn e2e_restore_create_wait_get_describe(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let snapshot = backup(&env, 0).await;
        let ctl = controller(&env).await;

        let out = ferry(
            &env,
            &[
                "restore",
                "create",
                "--snapshot",
                &snapshot,
                "--to",
                "app/pvc-0",
                "--location",
                "default",
                "--storage-class",
                "standard",
                "--size",
                "64Mi",
                "--wait",
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = created_name(&out);
        assert!(stdout(&out).contains("Completed"), "{}", stdout(&out));
        // The target PVC carries Velero's selector, so only the restore could have bound it.
        let pvc = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP)
            .get("pvc-0")
            .await
            .unwrap();
        assert!(pvc.spec.as_ref().unwrap().selector.is_some());
        let pv = assert_restored(&env, 0).await;
        let node = pv_node(&pv);
        let dd = get_dd(&env, &name).await;
        let total = dd.status.unwrap().progress.unwrap().total_bytes.unwrap();
        let expected: usize = volume_files(0).values().map(Vec::len).sum();
        assert_eq!(total as usize, expected);

        let get = stdout(&ferry(&env, &["restore", "get"]).await);
        let row = get
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("{name} not listed: {get}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[1], "Completed", "{row}");
        assert_eq!(fields[2], node, "{row}");
        assert_eq!(fields[3], format!("{total}/{total}"), "{row}");
        assert!(get.lines().next().unwrap().contains("PHASE"), "{get}");

        let describe = stdout(&ferry(&env, &["restore", "describe", &name]).await);
        for expected in [
            format!("Name:           velero/{name}"),
            format!("Snapshot:       {snapshot}"),
            "Target:         app/pvc-0".to_string(),
            "Phase:          Completed".to_string(),
            format!("Node:           {node}"),
            format!("Progress:       {total} / {total} bytes"),
        ] {
            assert!(describe.contains(&expected), "{expected:?} in\n{describe}");
        }
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_restore_create_wait_reports_a_failed_restore(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let ctl = controller(&env).await;
        let out = ferry(
            &env,
            &[
                "restore",
                "create",
                "--snapshot",
                "feedbeef",
                "--to",
                "app/pvc-x",
                "--location",
                "default",
                "--size",
                "64Mi",
                "--wait",
            ],
        )
        .await;
        assert!(!out.status.success(), "a failed restore fails --wait");
        let name = created_name(&out);
        assert!(
            stdout(&out).contains("Failed") && stdout(&out).contains("feedbeef"),
            "{}",
            stdout(&out)
        );
        let describe = stdout(&ferry(&env, &["restore", "describe", &name]).await);
        assert!(describe.contains("Phase:          Failed"), "{describe}");
        let message = describe
            .lines()
            .find(|l| l.starts_with("Message:"))
            .unwrap();
        assert!(
            message.contains("feedbeef") && message.contains("not found"),
            "{message}"
        );

        // Bad input changes nothing and says what to do.
        let out = ferry(
            &env,
            &[
                "restore",
                "create",
                "--snapshot",
                "x",
                "--to",
                "pvc-y",
                "--location",
                "default",
            ],
        )
        .await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NAMESPACE/PVC"), "{err}");
        let out = ferry(&env, &["restore", "describe", "no-such-restore"]).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("velero/no-such-restore not found"), "{err}");
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
