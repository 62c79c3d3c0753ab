//! How a data mover ended, in words for `status.message`: its own error when it wrote one,
//! else the exit code, signal and reason its container reported.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

/// The data mover's container in restore, backup and forget pods.
pub const DATA_MOVER_CONTAINER: &str = "ferry-data-mover";

/// Why a data mover failed: its own error, else its termination message as it is (a log
/// tail), else how its container ended. A data mover killed by a signal (the OOM killer, a
/// node drain) writes nothing, so the exit code, signal and reason are all there is.
pub fn data_mover_failure(pod: &Pod) -> String {
    if let Some(message) = termination_message(pod) {
        return data_mover_error(&message);
    }
    let Some(ended) = data_mover_terminated(pod) else {
        return "the data mover failed without a message (its container reported no end state)"
            .to_string();
    };
    let signal = ended
        .signal
        .filter(|s| *s > 0)
        .or((ended.exit_code > 128).then(|| ended.exit_code - 128));
    let mut why = match signal {
        Some(sig) => format!(
            "the data mover was killed by signal {sig}{} (exit code {})",
            signal_name(sig)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            ended.exit_code
        ),
        None => format!(
            "the data mover exited with code {} without a message",
            ended.exit_code
        ),
    };
    if let Some(reason) = ended.reason.as_deref().filter(|r| !r.is_empty()) {
        why.push_str(&format!(", reason {reason}"));
        if reason == "OOMKilled" {
            why.push_str(
                ": it ran out of memory; raise podResources.memoryLimit in the node-agent ConfigMap",
            );
        }
    }
    why
}

/// The data mover's error from its termination message (the whole message if it is not the
/// data mover's JSON summary, e.g. a log tail).
pub fn data_mover_error(message: &str) -> String {
    crate::data_mover::parse_termination_message(message)
        .and_then(|r| r.error)
        .unwrap_or_else(|| message.to_string())
}

/// The data mover container's termination message, if it wrote one.
pub fn termination_message(pod: &Pod) -> Option<String> {
    data_mover_terminated(pod)?
        .message
        .clone()
        .filter(|m| !m.trim().is_empty())
}

pub(crate) fn data_mover_terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == DATA_MOVER_CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended(terminated: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "dd-0"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": DATA_MOVER_CONTAINER, "image": "ferry", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": terminated},
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn a_killed_data_mover_is_reported_by_its_signal() {
        let pod = ended(json!({"exitCode": 137, "reason": "Error"}));
        assert_eq!(
            data_mover_failure(&pod),
            "the data mover was killed by signal 9 (SIGKILL) (exit code 137), reason Error"
        );
        let pod = ended(json!({"exitCode": 143, "signal": 15}));
        assert_eq!(
            data_mover_failure(&pod),
            "the data mover was killed by signal 15 (SIGTERM) (exit code 143)"
        );
    }

    #[test]
    fn an_out_of_memory_kill_says_which_setting_to_raise() {
        let pod = ended(json!({"exitCode": 137, "reason": "OOMKilled"}));
        let why = data_mover_failure(&pod);
        assert!(
            why.starts_with("the data mover was killed by signal 9 (SIGKILL)"),
            "{why}"
        );
        assert!(why.contains("reason OOMKilled"), "{why}");
        assert!(why.contains("podResources.memoryLimit"), "{why}");
    }

    #[test]
    fn an_exit_without_a_message_gives_the_code() {
        let pod = ended(json!({"exitCode": 3}));
        assert_eq!(
            data_mover_failure(&pod),
            "the data mover exited with code 3 without a message"
        );
    }

    #[test]
    fn the_data_movers_own_error_wins_over_its_exit_code() {
        let pod = ended(json!({"exitCode": 1, "message": "no snapshot abc in the repository"}));
        assert_eq!(
            data_mover_failure(&pod),
            "no snapshot abc in the repository"
        );
    }

    #[test]
    fn a_pod_without_an_end_state_says_so() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "dd-0"}})).unwrap();
        assert!(data_mover_failure(&pod).contains("no end state"));
    }
}
