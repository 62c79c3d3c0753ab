//! `ferry restore create|get|describe`, the binary under test run as a user runs it (KUBECONFIG
//! pointing at kubesim), against ferry's controller: a restore without Velero.

use crate::common;

use std::process::Output;

use common::*;
use ferry_controller::crds::DataDownload;
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
        assert_eq!(fields[1], "app/pvc-0", "{row}");
        assert_eq!(fields[2], "Completed", "{row}");
        assert_eq!(fields[3], node, "{row}");
        assert_eq!(fields[4], "100%", "{row}");
        assert!(row.contains(" KiB/") || row.contains(" MiB/"), "human sizes: {row}");
        let header: Vec<&str> = get.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "TARGET", "PHASE", "NODE", "PROGRESS", "DURATION", "AGE", "MESSAGE"]
        );

        let describe = stdout(&ferry(&env, &["restore", "describe", &name]).await);
        for expected in [
            format!("Name:               velero/{name}"),
            format!("Snapshot:           {snapshot}"),
            "Target:             app/pvc-0".to_string(),
            "Phase:              Completed".to_string(),
            format!("Node:               {node}"),
            "Progress:           100% (".to_string(),
            "Duration:           ".to_string(),
            "Events:".to_string(),
        ] {
            assert!(describe.contains(&expected), "{expected:?} in\n{describe}");
        }
        for label in ["Created:", "Accepted:", "Started:", "Completed:"] {
            let line = describe.lines().find(|l| l.starts_with(label)).unwrap();
            assert!(line.ends_with(" ago)"), "a time, with its age: {line}");
        }
        // The controller's events, as kubectl shows them: written through kube-runtime's
        // Recorder as events.k8s.io/v1 Events, read back here through core/v1.
        for reason in ["Accepted", "NodeChosen", "Prepared", "DataMoved", "Completed"] {
            assert!(
                describe.lines().any(|l| l.split_whitespace().take(2).eq(["Normal", reason])),
                "a Normal {reason} event in\n{describe}"
            );
        }
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(env.client.clone(), "velero");
        let accepted = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && e.reason.as_deref() == Some("Accepted")
            })
            .expect("the Accepted event");
        assert_eq!(accepted.reporting_controller.as_deref(), Some("ferry-controller"));
        assert_eq!(accepted.action.as_deref(), Some("Accept"));

        // Without --size the PVC is sized from the snapshot; a restore no controller takes
        // says so, and --timeout ends the wait (the restore stays, for a controller to come).
        let out = ferry(
            &env,
            &[
                "restore", "create", "--snapshot", &snapshot[..8], "--to", "app/pvc-1",
                "--location", "default", "--storage-class", "standard",
                "--data-mover-name", "nobody", "--wait", "--timeout", "4s",
            ],
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            stdout(&out).contains(&format!("Snapshot {} holds ", &snapshot[..8]))
                && stdout(&out).contains("the target PVC gets 1Gi"),
            "{}",
            stdout(&out)
        );
        assert!(err.contains("no controller has accepted DataDownload velero/pvc-1-"), "{err}");
        assert!(err.contains("gave up waiting after 4s"), "{err}");
        let waiting = created_name(&out);
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP);
        let pvc1 = pvcs.get("pvc-1").await.unwrap();
        let requested = &pvc1.spec.unwrap().resources.unwrap().requests.unwrap()["storage"];
        assert_eq!(requested.0, "1Gi");
        // The DataDownload names the snapshot by its full ID, not the prefix given.
        assert_eq!(get_dd(&env, &waiting).await.spec.snapshot_id, snapshot);
        Api::<DataDownload>::namespaced(env.client.clone(), "velero")
            .delete(&waiting, &Default::default())
            .await
            .unwrap();
        pvcs.delete("pvc-1", &Default::default()).await.unwrap();
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
                // The controller, not `create`, finds the snapshot missing.
                "--skip-repository-check",
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
        assert!(describe.contains("Phase:              Failed"), "{describe}");
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

        // Each check refuses before anything is written, in one plain line that says what to do.
        let snapshot = backup(&env, 0).await;
        let refused = |args: &'static [&'static str], expected: &'static str| {
            let env = &env;
            let snapshot = snapshot.clone();
            async move {
                let mut all = vec!["restore", "create", "--snapshot", snapshot.as_str()];
                all.extend_from_slice(args);
                let out = ferry(env, &all).await;
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(!out.status.success(), "{args:?} must be refused");
                assert!(err.contains(expected), "{args:?}: {expected:?} in {err}");
                assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
                assert!(!err.contains("Status {"), "no debug dump: {err}");
                assert!(stdout(&out).is_empty(), "nothing created: {}", stdout(&out));
            }
        };
        refused(
            &["--to", "app/pvc-z", "--location", "default", "-n", "nowhere"],
            "namespace \"nowhere\" does not exist: -n/--namespace names ferry's namespace",
        )
        .await;
        refused(
            &["--to", "gone/pvc-z", "--location", "default"],
            "target namespace \"gone\" does not exist: create it first",
        )
        .await;
        refused(
            &["--to", "app/pvc-z", "--location", "elsewhere"],
            "BackupStorageLocation velero/elsewhere not found (locations there: default)",
        )
        .await;
        refused(
            &["--to", "app/pvc-z", "--location", "default", "--password-secret", "nope"],
            "secret velero/nope: not found",
        )
        .await;
        refused(
            &["--to", "app/pvc-z", "--location", "default", "--source-namespace", "other"],
            "no repository for source namespace \"other\" in location default",
        )
        .await;
        refused(
            &["--to", "app/pvc-z", "--location", "default", "--size", "1Ki"],
            "--size 1Ki is smaller than the snapshot's",
        )
        .await;
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP);
        assert!(pvcs.get_opt("pvc-z").await.unwrap().is_none());
        let out = ferry(
            &env,
            &[
                "restore", "create", "--snapshot", "0123abcd", "--to", "app/pvc-z",
                "--location", "default",
            ],
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("snapshot \"0123abcd\" in location default") && err.contains("0123abcd"),
            "{err}"
        );
        assert!(pvcs.get_opt("pvc-z").await.unwrap().is_none(), "nothing written");
        // A target that exists is refused before anything else is written.
        let out = ferry(
            &env,
            &[
                "restore", "create", "--snapshot", &snapshot, "--to", "app/pvc-x",
                "--location", "default",
            ],
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("PVC app/pvc-x already exists: a restore creates its target PVC"),
            "{err}"
        );
        let out = ferry(&env, &["restore", "describe", "no-such-restore"]).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("velero/no-such-restore not found"), "{err}");
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
