//! The first decision of every step, the same for DataDownloads and DataUploads: from what a
//! pass observed of one object (its phase, whether it is being deleted, holds ferry's
//! finalizer, was asked to cancel, has its data moved, was admitted by the prepare queue),
//! what the step does next. No I/O here: the table test below is the rule, and
//! `downloads.rs` and `uploads.rs` carry it out.

/// The phases a step tells apart (the two CRDs name theirs alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    New,
    Accepted,
    Prepared,
    InProgress,
    Canceling,
    /// Completed, Failed or Canceled: nothing moves an object out of them.
    Ended,
}

impl Phase {
    /// The phase named `name` (DataDownloadPhase's or DataUploadPhase's `as_str`); a name
    /// this ferry does not know is treated as ended, never stepped.
    pub(super) fn named(name: &str) -> Phase {
        match name {
            "New" => Phase::New,
            "Accepted" => Phase::Accepted,
            "Prepared" => Phase::Prepared,
            "InProgress" => Phase::InProgress,
            "Canceling" => Phase::Canceling,
            _ => Phase::Ended,
        }
    }
}

/// What a pass observed of one object, as far as the next intent depends on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    pub(super) phase: Phase,
    pub(super) deleting: bool,
    pub(super) holds_finalizer: bool,
    pub(super) cancel_requested: bool,
    /// The data is where it goes: in the volume (restore, rebind to come) or in the
    /// repository (backup, cleanup to come).
    pub(super) data_moved: bool,
    /// The prepare queue lets it be accepted now.
    pub(super) admitted: bool,
}

/// What the step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// It is being deleted: cancel and clean up, then let it go.
    CleanUpDeleted,
    /// Nothing this pass: ended, or New and not admitted.
    Wait,
    /// Ended but still holding the finalizer: something of what it asked to remove needs a
    /// further step of ferry's (a failed backup's source content, deleted once its snapshot is
    /// gone). Finish that, then release the finalizer.
    FinishCleanUp,
    /// Accepted by a ferry that did not set the finalizer: set it, and go on next pass from
    /// the object that holds it (a step from this observation would write the finalizer list
    /// back without it).
    AddFinalizer,
    Cancel,
    Accept,
    /// Accepted: wait for the target or source, choose a node, expose.
    Place,
    /// Prepared: the data mover pod runs; start following it.
    Start,
    /// InProgress: follow the data mover, then rebind (restore) or clean up (backup).
    Follow,
}

pub(super) fn next_intent(f: &Facts) -> Intent {
    if f.deleting {
        return Intent::CleanUpDeleted;
    }
    if f.phase == Phase::Ended {
        return if f.holds_finalizer {
            Intent::FinishCleanUp
        } else {
            Intent::Wait
        };
    }
    if f.phase != Phase::New && !f.holds_finalizer {
        return Intent::AddFinalizer;
    }
    // Once the data has moved, the step finishes: a cancel then would throw away a complete
    // restore (and undoing a half-done rebind risks the volume) or a finished snapshot.
    if f.cancel_requested && !(f.phase == Phase::InProgress && f.data_moved) {
        return Intent::Cancel;
    }
    match f.phase {
        Phase::New if f.admitted => Intent::Accept,
        Phase::New | Phase::Ended => Intent::Wait,
        Phase::Accepted => Intent::Place,
        Phase::Prepared => Intent::Start,
        Phase::InProgress => Intent::Follow,
        Phase::Canceling => Intent::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(phase: Phase) -> Facts {
        Facts {
            phase,
            deleting: false,
            // Ended objects normally released it with their last status.
            holds_finalizer: !matches!(phase, Phase::New | Phase::Ended),
            cancel_requested: false,
            data_moved: false,
            admitted: false,
        }
    }

    #[test]
    fn the_next_intent_table() {
        use Intent::*;
        use Phase::*;
        let cases: Vec<(&str, Facts, Intent)> = vec![
            ("new, not admitted", facts(New), Wait),
            (
                "new, admitted",
                Facts {
                    admitted: true,
                    ..facts(New)
                },
                Accept,
            ),
            (
                "new, canceled before acceptance",
                Facts {
                    cancel_requested: true,
                    ..facts(New)
                },
                Cancel,
            ),
            ("accepted", facts(Accepted), Place),
            ("prepared", facts(Prepared), Start),
            ("in progress", facts(InProgress), Follow),
            ("canceling", facts(Canceling), Cancel),
            ("ended", facts(Ended), Wait),
            (
                "ended, still holding the finalizer",
                Facts {
                    holds_finalizer: true,
                    ..facts(Ended)
                },
                FinishCleanUp,
            ),
            (
                "ended, canceled late",
                Facts {
                    cancel_requested: true,
                    ..facts(Ended)
                },
                Wait,
            ),
            (
                "deleted, any phase",
                Facts {
                    deleting: true,
                    ..facts(InProgress)
                },
                CleanUpDeleted,
            ),
            (
                "deleted after it ended",
                Facts {
                    deleting: true,
                    ..facts(Ended)
                },
                CleanUpDeleted,
            ),
            (
                "accepted without the finalizer",
                Facts {
                    holds_finalizer: false,
                    ..facts(Accepted)
                },
                AddFinalizer,
            ),
            (
                "finalizer before cancel",
                Facts {
                    holds_finalizer: false,
                    cancel_requested: true,
                    ..facts(Prepared)
                },
                AddFinalizer,
            ),
            (
                "cancel while exposing",
                Facts {
                    cancel_requested: true,
                    ..facts(Accepted)
                },
                Cancel,
            ),
            (
                "cancel while moving",
                Facts {
                    cancel_requested: true,
                    ..facts(InProgress)
                },
                Cancel,
            ),
            (
                "cancel after the data moved is too late",
                Facts {
                    cancel_requested: true,
                    data_moved: true,
                    ..facts(InProgress)
                },
                Follow,
            ),
        ];
        for (case, f, want) in cases {
            assert_eq!(next_intent(&f), want, "{case}: {f:?}");
        }
    }

    #[test]
    fn phases_are_read_by_name_and_unknown_ones_are_never_stepped() {
        for (name, phase) in [
            ("New", Phase::New),
            ("Accepted", Phase::Accepted),
            ("Prepared", Phase::Prepared),
            ("InProgress", Phase::InProgress),
            ("Canceling", Phase::Canceling),
            ("Completed", Phase::Ended),
            ("Failed", Phase::Ended),
            ("Canceled", Phase::Ended),
            ("SomethingNew", Phase::Ended),
        ] {
            assert_eq!(Phase::named(name), phase, "{name}");
        }
    }
}
