//! Checks on `ferry install`'s options before anything is rendered: a bad name would only
//! surface later as an API server rejection, far from the flag that caused it.

use ferry_config::{DNS_SUBDOMAIN_MAX, DnsLabelProblem, dns_label_problem, is_dns_subdomain};

use super::InstallOptions;

/// An install option the API server would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("--{flag} {value:?} is not a valid Kubernetes name: {reason}")]
    InvalidName {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("--{flag} must not be empty")]
    Empty { flag: &'static str },
}

/// Checks every option; the error names the flag and what is wrong with its value.
pub fn validate_options(options: &InstallOptions) -> Result<(), InstallError> {
    check_label("namespace", &options.namespace)?;
    check_subdomain("node-agent-configmap", &options.node_agent_configmap)?;
    if options.image.trim().is_empty() {
        return Err(InstallError::Empty { flag: "image" });
    }
    if options.image.chars().any(char::is_whitespace) {
        return Err(InstallError::InvalidName {
            flag: "image",
            value: options.image.clone(),
            reason: "an image reference contains no whitespace",
        });
    }
    if options.data_mover_name.is_empty() {
        return Err(InstallError::Empty {
            flag: "data-mover-name",
        });
    }
    if matches!(options.data_mover_name.as_str(), "velero") {
        return Err(InstallError::InvalidName {
            flag: "data-mover-name",
            value: options.data_mover_name.clone(),
            reason: "\"velero\" means Velero's built-in data mover; ferry would race it for the same DataDownloads",
        });
    }
    check_label("data-mover-name", &options.data_mover_name)
}

/// RFC 1123 label: what a namespace name must be (the rule is ferry-config's).
fn check_label(flag: &'static str, value: &str) -> Result<(), InstallError> {
    let reason = match dns_label_problem(value) {
        None => return Ok(()),
        Some(DnsLabelProblem::Empty) => return Err(InstallError::Empty { flag }),
        Some(DnsLabelProblem::TooLong) => "at most 63 characters",
        Some(DnsLabelProblem::Characters) => "use only lowercase letters, digits and '-'",
        Some(DnsLabelProblem::Ends) => "start and end with a letter or digit",
    };
    Err(InstallError::InvalidName {
        flag,
        value: value.to_string(),
        reason,
    })
}

/// RFC 1123 subdomain: what a ConfigMap name must be (the rule is ferry-config's).
fn check_subdomain(flag: &'static str, value: &str) -> Result<(), InstallError> {
    if value.is_empty() {
        return Err(InstallError::Empty { flag });
    }
    let reason = if value.len() > DNS_SUBDOMAIN_MAX {
        "at most 253 characters"
    } else if !is_dns_subdomain(value) {
        "use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
    } else {
        return Ok(());
    };
    Err(InstallError::InvalidName {
        flag,
        value: value.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_option_names_its_flag() {
        let good = InstallOptions::new("node-agent-config");
        assert_eq!(validate_options(&good), Ok(()));
        let cases: Vec<(InstallOptions, &str)> = vec![
            (
                InstallOptions {
                    namespace: "Velero".into(),
                    ..good.clone()
                },
                "--namespace",
            ),
            (
                InstallOptions {
                    namespace: "".into(),
                    ..good.clone()
                },
                "--namespace",
            ),
            (
                InstallOptions {
                    namespace: "-x".into(),
                    ..good.clone()
                },
                "--namespace",
            ),
            (
                InstallOptions {
                    node_agent_configmap: "a_b".into(),
                    ..good.clone()
                },
                "--node-agent-configmap",
            ),
            (
                InstallOptions {
                    node_agent_configmap: "a..b".into(),
                    ..good.clone()
                },
                "--node-agent-configmap",
            ),
            (
                InstallOptions {
                    image: " ".into(),
                    ..good.clone()
                },
                "--image",
            ),
            (
                InstallOptions {
                    image: "ferry: 1".into(),
                    ..good.clone()
                },
                "--image",
            ),
            (
                InstallOptions {
                    data_mover_name: "velero".into(),
                    ..good.clone()
                },
                "--data-mover-name",
            ),
            (
                InstallOptions {
                    data_mover_name: "".into(),
                    ..good.clone()
                },
                "--data-mover-name",
            ),
        ];
        for (options, flag) in cases {
            let message = validate_options(&options).unwrap_err().to_string();
            assert!(message.starts_with(flag), "{options:?}: {message}");
        }
        // The messages users see, word for word.
        let message = |options: InstallOptions| validate_options(&options).unwrap_err().to_string();
        assert_eq!(
            message(InstallOptions {
                namespace: "Velero".into(),
                ..good.clone()
            }),
            "--namespace \"Velero\" is not a valid Kubernetes name: use only lowercase letters, digits and '-'"
        );
        assert_eq!(
            message(InstallOptions {
                namespace: "x".repeat(64),
                ..good.clone()
            }),
            format!(
                "--namespace {:?} is not a valid Kubernetes name: at most 63 characters",
                "x".repeat(64)
            )
        );
        assert_eq!(
            message(InstallOptions {
                data_mover_name: "ferry-".into(),
                ..good.clone()
            }),
            "--data-mover-name \"ferry-\" is not a valid Kubernetes name: start and end with a letter or digit"
        );
        assert_eq!(
            message(InstallOptions {
                node_agent_configmap: "a..b".into(),
                ..good.clone()
            }),
            "--node-agent-configmap \"a..b\" is not a valid Kubernetes name: use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
        );
        assert_eq!(
            message(InstallOptions {
                node_agent_configmap: "a".repeat(254),
                ..good.clone()
            }),
            format!(
                "--node-agent-configmap {:?} is not a valid Kubernetes name: at most 253 characters",
                "a".repeat(254)
            )
        );
        let dotted = InstallOptions {
            node_agent_configmap: "cfg.v2".into(),
            ..good
        };
        assert_eq!(validate_options(&dotted), Ok(()));
    }
}
