//! The kubelet's record of a pod's containers and how it becomes `pod.status`
//! (phase, conditions, containerStatuses), following the kubelet's rules for phases.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started: Timestamp,
    },
    Terminated(Termination),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    pub exit_code: i32,
    /// `Completed`, `Error`, `StartError`, …
    pub reason: String,
    pub message: Option<String>,
    pub started: Option<Timestamp>,
    pub finished: Timestamp,
    pub container_id: String,
}

#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    pub container_id: Option<String>,
    /// Set once the container will not run again (restart policy says so).
    pub done: bool,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.into(),
            image: image.into(),
            state: ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_termination: None,
            restart_count: 0,
            container_id: None,
            done: false,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, ContainerState::Terminated(t) if t.exit_code == 0)
    }
}

#[derive(Debug, Clone)]
pub struct PodRecord {
    pub init: Vec<ContainerRecord>,
    pub main: Vec<ContainerRecord>,
    pub initialized: bool,
    /// Set when an init container failed under restartPolicy Never.
    pub init_failed: bool,
    pub start_time: Timestamp,
    pub host_ip: String,
    pub pod_ip: String,
}

fn termination_json(t: &Termination) -> Value {
    json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "message": t.message,
        "startedAt": t.started.map(|s| s.to_string()),
        "finishedAt": t.finished.to_string(),
        "containerID": t.container_id,
    })
}

fn container_json(c: &ContainerRecord) -> Value {
    let state = match &c.state {
        ContainerState::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        ContainerState::Running { started } => {
            json!({"running": {"startedAt": started.to_string()}})
        }
        ContainerState::Terminated(t) => json!({"terminated": termination_json(t)}),
    };
    let last = c
        .last_termination
        .as_ref()
        .map(|t| json!({"terminated": termination_json(t)}))
        .unwrap_or_else(|| json!({}));
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": format!("kubesim://{}", c.image),
        "containerID": c.container_id,
        "state": state,
        "lastState": last,
        "ready": c.running(),
        "started": c.running(),
        "restartCount": c.restart_count,
    })
}

impl PodRecord {
    /// The kubelet's phase rules: Pending until init containers succeeded and a container
    /// started; Running while any container runs or will restart; Succeeded when all
    /// terminated with 0 and will not restart; Failed when all are done and one failed.
    pub fn phase(&self) -> &'static str {
        if self.init_failed {
            return "Failed";
        }
        if !self.initialized {
            return "Pending";
        }
        let all_done = self.main.iter().all(|c| c.done);
        if all_done {
            return if self.main.iter().all(|c| c.succeeded()) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        let any_started = self.main.iter().any(|c| {
            c.running() || c.restart_count > 0 || matches!(c.state, ContainerState::Terminated(_))
        });
        if any_started { "Running" } else { "Pending" }
    }

    pub fn status_json(&self) -> Value {
        let phase = self.phase();
        let all_running = !self.main.is_empty() && self.main.iter().all(|c| c.running());
        let now = Timestamp::now().to_string();
        let condition = |type_: &str, ok: bool, reason: Option<&str>| {
            json!({"type": type_, "status": if ok { "True" } else { "False" }, "reason": reason,
                   "lastProbeTime": null, "lastTransitionTime": now})
        };
        let finished = matches!(phase, "Succeeded" | "Failed");
        let ready_reason = if finished {
            Some("PodCompleted")
        } else if all_running {
            None
        } else {
            Some("ContainersNotReady")
        };
        json!({
            "phase": phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time.to_string(),
            "conditions": [
                condition("PodReadyToStartContainers", !finished, None),
                condition("Initialized", self.initialized, if self.initialized { None } else { Some("ContainersNotInitialized") }),
                condition("Ready", all_running, ready_reason),
                condition("ContainersReady", all_running, ready_reason),
                condition("PodScheduled", true, None),
            ],
            "initContainerStatuses": self.init.iter().map(container_json).collect::<Vec<_>>(),
            "containerStatuses": self.main.iter().map(container_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(code: i32) -> ContainerState {
        ContainerState::Terminated(Termination {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started: None,
            finished: Timestamp::now(),
            container_id: "kubesim://1".into(),
        })
    }

    fn record(states: Vec<(ContainerState, bool)>) -> PodRecord {
        PodRecord {
            init: vec![],
            main: states
                .into_iter()
                .map(|(state, done)| ContainerRecord {
                    state,
                    done,
                    ..ContainerRecord::new("c", "img")
                })
                .collect(),
            initialized: true,
            init_failed: false,
            start_time: Timestamp::now(),
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.244.0.1".into(),
        }
    }

    #[test]
    fn phases_follow_containers() {
        let running = ContainerState::Running {
            started: Timestamp::now(),
        };
        assert_eq!(record(vec![(running.clone(), false)]).phase(), "Running");
        assert_eq!(record(vec![(terminated(0), true)]).phase(), "Succeeded");
        assert_eq!(
            record(vec![(terminated(0), true), (terminated(2), true)]).phase(),
            "Failed"
        );
        assert_eq!(
            record(vec![(terminated(0), true), (running, false)]).phase(),
            "Running"
        );
        let waiting = ContainerState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(record(vec![(waiting, false)]).phase(), "Pending");
        let status = record(vec![(terminated(3), true)]).status_json();
        assert_eq!(
            status["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
    }
}
