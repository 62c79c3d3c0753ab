//! Checks on `ferry install`'s options before anything is rendered: a bad name would only
//! surface later as an API server rejection, far from the flag that caused it.

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

/// RFC 1123 label: what a namespace name must be.
fn check_label(flag: &'static str, value: &str) -> Result<(), InstallError> {
    if value.is_empty() {
        return Err(InstallError::Empty { flag });
    }
    let invalid = |reason| InstallError::InvalidName {
        flag,
        value: value.to_string(),
        reason,
    };
    if value.len() > 63 {
        return Err(invalid("at most 63 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("use only lowercase letters, digits and '-'"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(invalid("start and end with a letter or digit"));
    }
    Ok(())
}

/// RFC 1123 subdomain: what a ConfigMap name must be.
fn check_subdomain(flag: &'static str, value: &str) -> Result<(), InstallError> {
    if value.is_empty() {
        return Err(InstallError::Empty { flag });
    }
    if value.len() > 253 {
        return Err(InstallError::InvalidName {
            flag,
            value: value.to_string(),
            reason: "at most 253 characters",
        });
    }
    for part in value.split('.') {
        check_label(flag, part).map_err(|_| InstallError::InvalidName {
            flag,
            value: value.to_string(),
            reason: "use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit",
        })?;
    }
    Ok(())
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
        let dotted = InstallOptions {
            node_agent_configmap: "cfg.v2".into(),
            ..good
        };
        assert_eq!(validate_options(&dotted), Ok(()));
    }
}
