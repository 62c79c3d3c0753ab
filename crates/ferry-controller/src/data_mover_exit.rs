//! How a data mover pod ends, the contract between the data mover (`ferry-mover`, which
//! writes it) and the controller (which reads it): the JSON summary the data mover leaves as
//! its container's termination message, and, in words for `status.message`, its own error when
//! it wrote one, else the exit code, signal and reason its container reported.

use std::path::Path;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use serde::{Deserialize, Serialize};

/// The termination message: what the controller reads when the pod ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataMoverResult {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub snapshot_id: String,
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub files: u64,
    pub seconds: f64,
    /// Bytes a backup added to the repository (new since its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_bytes: Option<u64>,
    /// `ferry data-mover forget`: the snapshot was kept on purpose, and why (its tags do not
    /// name the DataUpload); None when it was forgotten (or was gone already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// What a successful restore could not put back without losing file data (a device node
    /// without MKNOD, an xattr the file system refuses): the controller turns them into a
    /// Warning event, so they are seen beyond the pod's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Most bytes of termination message written (Kubernetes keeps at most 4096).
const TERMINATION_MESSAGE_BYTES: usize = 4000;

/// Writes the termination message (Kubernetes keeps at most 4096 bytes of it).
pub fn write_termination_message(path: &Path, result: &DataMoverResult) -> std::io::Result<()> {
    let mut text = serde_json::to_string(result).unwrap_or_default();
    let mut shorter = result.clone();
    let mut budget = 3000;
    // Cut the error on a character boundary until the JSON fits: escapes (`\n`, `\u0001`)
    // make the JSON longer than the error, so one cut may not be enough.
    while text.len() > TERMINATION_MESSAGE_BYTES {
        // Warnings go first: the error is what a failure is about.
        if shorter.warnings.pop().is_some() {
            text = serde_json::to_string(&shorter).unwrap_or_default();
            continue;
        }
        let Some(err) = shorter.error.as_mut() else {
            break;
        };
        ferry_text::truncate(err, budget);
        text = serde_json::to_string(&shorter).unwrap_or_default();
        if budget == 0 {
            break;
        }
        budget /= 2;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// Reads a termination message back (the controller's side).
pub fn parse_termination_message(text: &str) -> Option<DataMoverResult> {
    serde_json::from_str(text.trim()).ok()
}

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
    parse_termination_message(message)
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

    #[test]
    fn termination_message_round_trips_and_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev/termination-log");
        let result = DataMoverResult {
            ok: false,
            error: Some("x".repeat(10_000)),
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096);
        let back = parse_termination_message(&text).unwrap();
        assert!(!back.ok);
        assert_eq!(back.error.unwrap().len(), 3000);
    }

    #[test]
    fn termination_message_keeps_warnings_that_fit_and_drops_the_rest_before_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        let result = DataMoverResult {
            ok: true,
            warnings: vec!["cannot create special file /v/dev/null: EPERM".to_string()],
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let back = parse_termination_message(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.warnings, result.warnings);

        let result = DataMoverResult {
            ok: false,
            error: Some("e".repeat(2000)),
            warnings: vec!["w".repeat(1000); 5],
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{} bytes", text.len());
        let back = parse_termination_message(&text).unwrap();
        assert_eq!(back.error.unwrap().len(), 2000, "the error is kept whole");
        assert_eq!(back.warnings.len(), 1);
    }

    #[test]
    fn termination_message_cuts_multi_byte_and_escaped_errors_safely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        // 3000 is not a multiple of 3 bytes per '€' plus the leading 'x': a byte cut panics.
        for error in [
            format!("x{}", "€".repeat(2000)),
            "😀".repeat(1500),
            "\u{1}".repeat(5000),
        ] {
            let result = DataMoverResult {
                ok: false,
                error: Some(error.clone()),
                ..Default::default()
            };
            write_termination_message(&path, &result).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.len() <= 4096, "{} bytes", text.len());
            let back = parse_termination_message(&text).unwrap().error.unwrap();
            assert!(!back.is_empty() && error.starts_with(&back), "{back:?}");
        }
    }
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
