//! The rebind decision, one row per thing the cluster can show.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;

const NS: &str = "ferry";
const DD: &str = "dd-1";
const PV: &str = "pv-1";

fn now() -> Timestamp {
    "2026-12-05T12:00:00Z".parse().unwrap()
}

fn pvc(ns: &str, name: &str, volume: Option<&str>, phase: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-of-{ns}-{name}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: volume.map(Into::into),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn target() -> PersistentVolumeClaim {
    pvc("app", "data", None, "Pending")
}

fn target_bound() -> PersistentVolumeClaim {
    pvc("app", "data", Some(PV), "Bound")
}

fn with_annotation(
    mut pvc: PersistentVolumeClaim,
    key: &str,
    value: &str,
) -> PersistentVolumeClaim {
    pvc.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    pvc
}

fn pv(policy: &str, labelled: bool, claim: Option<(&str, &str)>, phase: &str) -> PersistentVolume {
    let labels = labelled.then(|| BTreeMap::from([(DATA_DOWNLOAD_LABEL.to_string(), DD.into())]));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(PV.into()),
            labels,
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            persistent_volume_reclaim_policy: Some(policy.into()),
            claim_ref: claim.map(|(ns, name)| ObjectReference {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn pod(deleting: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(DD.into()),
            deletion_timestamp: deleting.then(|| Time(now())),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// While the restore PVC exists.
fn restoring(volume: Option<&str>, pv: Option<PersistentVolume>, pod: Option<Pod>) -> RebindView {
    RebindView {
        dd_name: DD.into(),
        target: target(),
        restore: Some(RestoreSide {
            pvc: pvc(
                NS,
                DD,
                volume,
                if volume.is_some() { "Bound" } else { "Pending" },
            ),
            pv,
            pod,
            deleted: DeletedThisPass::default(),
        }),
        marked_pv: None,
        now: now(),
    }
}

/// Once the restore PVC is gone.
fn handing(target: PersistentVolumeClaim, marked: Option<PersistentVolume>) -> RebindView {
    RebindView {
        dd_name: DD.into(),
        target,
        restore: None,
        marked_pv: marked,
        now: now(),
    }
}

fn step(view: &RebindView) -> RebindStep {
    next_step(view, NS).unwrap()
}

/// What a waiting step waits for, its touch of the target, and whether it waits for the
/// PV controller's binding.
fn wait(view: &RebindView) -> (String, Option<Value>, bool) {
    match step(view) {
        RebindStep::Wait {
            why,
            touch_target,
            binding,
        } => (why, touch_target, binding),
        other => panic!("must wait, not {other:?}"),
    }
}

#[test]
fn an_unbound_restore_pvc_is_an_error() {
    assert_eq!(
        next_step(&restoring(None, None, None), NS).unwrap_err(),
        RebindLost::RestorePvcNotBound(format!("{NS}/{DD}"))
    );
}

#[test]
fn a_restore_pv_that_is_gone_is_an_error() {
    assert_eq!(
        next_step(&restoring(Some(PV), None, Some(pod(false))), NS).unwrap_err(),
        RebindLost::RestorePvMissing(DD.into())
    );
}

#[test]
fn first_the_pv_is_retained_and_its_policy_kept() {
    for policy in ["Delete", "Recycle"] {
        let view = restoring(
            Some(PV),
            Some(pv(policy, false, None, "Bound")),
            Some(pod(false)),
        );
        let RebindStep::RetainPv { pv, patch } = step(&view) else {
            panic!("must retain the PV first");
        };
        assert_eq!(pv, PV);
        assert_eq!(patch["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(
            patch["metadata"]["annotations"][ORIGINAL_RECLAIM_ANNOTATION],
            policy
        );
        assert_eq!(patch["metadata"]["labels"][DATA_DOWNLOAD_LABEL], DD);
    }
}

#[test]
fn then_the_pod_goes_before_the_restore_pvc() {
    let retained = || Some(pv("Retain", true, Some((NS, DD)), "Bound"));
    assert_eq!(
        step(&restoring(Some(PV), retained(), Some(pod(false)))),
        RebindStep::DeleteRestorePod
    );
    assert_eq!(
        step(&restoring(Some(PV), retained(), None)),
        RebindStep::DeleteRestorePvc
    );
}

#[test]
fn a_pod_on_its_way_out_is_not_deleted_again_and_its_claim_follows() {
    let retained = || Some(pv("Retain", true, Some((NS, DD)), "Bound"));
    let terminating = restoring(Some(PV), retained(), Some(pod(true)));
    let mut deleted_this_pass = restoring(Some(PV), retained(), Some(pod(false)));
    deleted_this_pass.restore.as_mut().unwrap().deleted.pod = true;
    for mut view in [terminating, deleted_this_pass] {
        assert_eq!(step(&view), RebindStep::DeleteRestorePvc);
        // Then both are waited for, whether the claim shows its deletion yet or not.
        for shown in [false, true] {
            let restore = view.restore.as_mut().unwrap();
            restore.deleted.pvc = !shown;
            restore.pvc.metadata.deletion_timestamp = shown.then(|| Time(now()));
            let (why, touch_target, binding) = wait(&view);
            assert_eq!(why, format!("restore pod and PVC {NS}/{DD} to be deleted"));
            assert_eq!(touch_target, None);
            assert!(!binding, "deletions are seen by the watches");
        }
    }
}

#[test]
fn a_claim_on_its_way_out_is_waited_for_not_deleted_again() {
    let retained = || Some(pv("Retain", true, Some((NS, DD)), "Bound"));
    let mut view = restoring(Some(PV), retained(), None);
    view.restore
        .as_mut()
        .unwrap()
        .pvc
        .metadata
        .deletion_timestamp = Some(Time(now()));
    let (why, touch_target, binding) = wait(&view);
    assert_eq!(why, format!("restore PVC {NS}/{DD} to be deleted"));
    assert_eq!(touch_target, None);
    assert!(!binding, "a deletion is seen by the watches");
}

#[test]
fn a_free_pv_is_handed_to_the_target_with_the_labels_its_selector_asks_for() {
    let mut target = target();
    target.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("tier".to_string(), "db".to_string())])),
        ..Default::default()
    });
    // Released: its claimRef still names the restore PVC.
    let view = handing(target, Some(pv("Retain", true, Some((NS, DD)), "Released")));
    let RebindStep::HandToTarget { pv, patch } = step(&view) else {
        panic!("must hand the PV over");
    };
    assert_eq!(pv, PV);
    let claim = &patch["spec"]["claimRef"];
    assert_eq!(
        (&claim["namespace"], &claim["name"]),
        (&json!("app"), &json!("data"))
    );
    assert_eq!(
        claim["uid"], "uid-of-app-data",
        "bound from the PV's side, so that the PV controller syncs the claim at once"
    );
    assert_eq!(patch["metadata"]["labels"]["tier"], "db");
}

#[test]
fn a_target_waiting_for_its_pv_is_touched_at_most_every_two_seconds_and_looked_at_again() {
    let at = |ago: i64| (now() - SignedDuration::from_millis(ago)).to_string();
    let handed_over = |ago: &str| {
        let mut pv = pv("Retain", true, Some(("app", "data")), "Available");
        pv.metadata.annotations = Some(BTreeMap::from([(
            HANDED_OVER_ANNOTATION.to_string(),
            ago.to_string(),
        )]));
        Some(pv)
    };
    // Handed over just now: the PV controller, which binds the claim its PV names by uid
    // as soon as it sees the PV, is given time before ferry touches the claim.
    let (why, touch_target, binding) = wait(&handing(target(), handed_over(&at(300))));
    assert_eq!(touch_target, None, "{why}");
    assert!(binding, "looked at again soon: {why}");
    let reserved = || handed_over(&at(2_000));
    for (target, touched) in [
        (target(), true),
        (
            with_annotation(target(), BIND_REQUESTED_ANNOTATION, &at(1_000)),
            false,
        ),
        (
            with_annotation(target(), BIND_REQUESTED_ANNOTATION, &at(2_000)),
            true,
        ),
        (
            with_annotation(target(), BIND_REQUESTED_ANNOTATION, "not a time"),
            true,
        ),
        // Bound on its side already: the PV controller is at work, nothing to touch.
        (pvc("app", "data", Some(PV), "Pending"), false),
    ] {
        for marked in [reserved(), handed_over("not a time")] {
            let (why, touch_target, binding) = wait(&handing(target.clone(), marked));
            assert!(
                why.contains("to be Bound (PVC Pending, PV Available)"),
                "{why}"
            );
            // Touched or not, the next look must come soon: the PV controller may not act on
            // what it saw, and then no watched change follows.
            assert!(binding, "{why}");
            assert_eq!(touch_target.is_some(), touched, "{why}");
            if let Some(patch) = touch_target {
                assert_eq!(
                    patch["metadata"]["annotations"][BIND_REQUESTED_ANNOTATION],
                    now().to_string()
                );
            }
        }
    }
}

#[test]
fn once_both_sides_are_bound_the_policy_comes_back_and_the_marks_go() {
    let mut bound = pv("Retain", true, Some(("app", "data")), "Bound");
    bound.metadata.annotations = Some(BTreeMap::from([(
        ORIGINAL_RECLAIM_ANNOTATION.to_string(),
        "Recycle".to_string(),
    )]));
    let touched = with_annotation(target_bound(), BIND_REQUESTED_ANNOTATION, "x");
    let RebindStep::Finish {
        pv: finished,
        patch,
        untouch_target,
    } = step(&handing(touched, Some(bound)))
    else {
        panic!("must finish");
    };
    assert_eq!(finished, PV);
    assert_eq!(patch["spec"]["persistentVolumeReclaimPolicy"], "Recycle");
    assert!(patch["metadata"]["labels"][DATA_DOWNLOAD_LABEL].is_null());
    assert!(patch["metadata"]["annotations"][ORIGINAL_RECLAIM_ANNOTATION].is_null());
    assert!(
        untouch_target.unwrap()["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .contains_key(BIND_REQUESTED_ANNOTATION)
    );

    // Never touched, and no policy kept (a PV retained by an older ferry): Delete.
    let RebindStep::Finish {
        patch,
        untouch_target,
        ..
    } = step(&handing(
        target_bound(),
        Some(pv("Retain", true, Some(("app", "data")), "Bound")),
    ))
    else {
        panic!("must finish");
    };
    assert_eq!(patch["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(untouch_target, None);
}

#[test]
fn with_the_marks_gone_a_bound_target_is_done_and_anything_else_is_lost() {
    assert_eq!(
        step(&handing(target_bound(), None)),
        RebindStep::Done { pv: PV.into() }
    );
    assert_eq!(
        next_step(&handing(target(), None), NS).unwrap_err(),
        RebindLost::RestorePvMissing(DD.into())
    );
}
