//! Kubernetes name syntax: label keys and values, annotation keys, DNS labels (namespace
//! names) and DNS subdomains (most object names: StorageClass, PriorityClass, ConfigMap, PVC).
//! Each check returns why a string is not valid. The one place ferry spells these rules:
//! `ferry install`'s flags and the DataDownload/DataUpload spec checks call these too.

const QUALIFIED_NAME_MAX: usize = 63;
/// The longest RFC 1123 label (a namespace name).
pub const DNS_LABEL_MAX: usize = 63;
/// The longest RFC 1123 subdomain (most object names).
pub const DNS_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

/// Why a string is not an RFC 1123 label, the first problem in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLabelProblem {
    Empty,
    /// Longer than [`DNS_LABEL_MAX`].
    TooLong,
    /// A character other than a lower-case letter, a digit or '-'.
    Characters,
    /// Starts or ends with '-'.
    Ends,
}

/// What keeps `s` from being an RFC 1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63
/// characters: what a namespace name must be), if anything.
pub fn dns_label_problem(s: &str) -> Option<DnsLabelProblem> {
    if s.is_empty() {
        Some(DnsLabelProblem::Empty)
    } else if s.len() > DNS_LABEL_MAX {
        Some(DnsLabelProblem::TooLong)
    } else if !s.bytes().all(is_dns_char) {
        Some(DnsLabelProblem::Characters)
    } else if s.starts_with('-') || s.ends_with('-') {
        Some(DnsLabelProblem::Ends)
    } else {
        None
    }
}

/// Whether `s` is an RFC 1123 label: a valid namespace name.
pub fn is_dns_label(s: &str) -> bool {
    dns_label_problem(s).is_none()
}

fn is_dns_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// The syntax of an RFC 1123 subdomain without its length limit: dot-separated non-empty parts
/// of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`. As in Kubernetes, a part has no length limit of its own.
fn is_dns_subdomain_syntax(s: &str) -> bool {
    s.split('.').all(|part| {
        !part.is_empty()
            && part.bytes().all(is_dns_char)
            && !part.starts_with('-')
            && !part.ends_with('-')
    })
}

/// Whether `s` is an RFC 1123 subdomain of at most 253 characters: a valid object name.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= DNS_SUBDOMAIN_MAX && is_dns_subdomain_syntax(s)
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the shape of a label value and of a key's name part.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Lower-case RFC 1123 subdomain: dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS_SUBDOMAIN_MAX {
        return Err(format!(
            "{s:?} is longer than {DNS_SUBDOMAIN_MAX} characters"
        ));
    }
    if is_dns_subdomain_syntax(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. \"fast-ssd\")"
        ))
    }
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most
/// 63 characters.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err(format!("key {key:?} has an empty prefix before '/'"));
            }
            check_dns_subdomain(prefix)
                .map_err(|e| format!("key {key:?} has an invalid prefix: {e}"))?;
            *name
        }
        _ => {
            return Err(format!(
                "key {key:?} has more than one '/': a key is an optional prefix (a DNS subdomain), '/', and a name"
            ));
        }
    };
    if name.len() > QUALIFIED_NAME_MAX {
        return Err(format!(
            "key {key:?}: the name part is longer than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !is_label_token(name) {
        return Err(format!(
            "key {key:?}: the name part must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters shaped like a key's name part.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > LABEL_VALUE_MAX {
        return Err(format!(
            "label value {value:?} is longer than {LABEL_VALUE_MAX} characters"
        ));
    }
    if !is_label_token(value) {
        return Err(format!(
            "label value {value:?} must be empty or letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for good in [
            "kubernetes.io/hostname",
            "beta.kubernetes.io/instance-type",
            "node-type",
            "a",
            "x_y.z",
            "critical-workload",
        ] {
            assert!(check_qualified_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/name",
            "a/b/c",
            "Kubernetes.IO/hostname",
            "-leading",
            "trailing-",
            "has space",
            "inva/lid/",
            &"x".repeat(64),
        ] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for good in ["", "node1", "Standard_B4ms", "a.b-c_d"] {
            assert!(check_label_value(good).is_ok(), "{good}");
        }
        for bad in ["inva/lid", "-x", "x-", "has space", &"v".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        for good in ["velero", "a", "ns-1", "0", &"a".repeat(63)] {
            assert_eq!(dns_label_problem(good), None, "{good}");
            assert!(is_dns_label(good), "{good}");
        }
        for (bad, problem) in [
            ("", DnsLabelProblem::Empty),
            (&"a".repeat(64) as &str, DnsLabelProblem::TooLong),
            (&"A".repeat(64), DnsLabelProblem::TooLong),
            ("Velero", DnsLabelProblem::Characters),
            ("a.b", DnsLabelProblem::Characters),
            ("a_b", DnsLabelProblem::Characters),
            ("a b", DnsLabelProblem::Characters),
            ("-x", DnsLabelProblem::Ends),
            ("x-", DnsLabelProblem::Ends),
            ("-", DnsLabelProblem::Ends),
        ] {
            assert_eq!(dns_label_problem(bad), Some(problem), "{bad:?}");
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn dns_subdomain_parts_have_no_length_limit_of_their_own() {
        let long_part = format!("{}.example", "a".repeat(64));
        assert!(is_dns_subdomain(&long_part));
        assert!(check_dns_subdomain(&long_part).is_ok());
        assert!(is_dns_subdomain(&"a".repeat(253)));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        for bad in ["", ".", "a.", ".a", "a.-b", "a-.b", "A.b", "a:b"] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
            assert!(check_dns_subdomain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dns_subdomain_messages() {
        assert_eq!(check_dns_subdomain("").unwrap_err(), "must not be empty");
        assert!(
            check_dns_subdomain(&"a".repeat(254))
                .unwrap_err()
                .ends_with("is longer than 253 characters")
        );
        assert!(
            check_dns_subdomain("Fast")
                .unwrap_err()
                .contains("is not a valid name: use lower-case letters")
        );
    }

    #[test]
    fn dns_subdomains() {
        for good in [
            "fast-ssd",
            "gp3",
            "csi.vsphere.vmware.com",
            "backup-priority",
        ] {
            assert!(check_dns_subdomain(good).is_ok(), "{good}");
        }
        for bad in ["", "Fast", "fast_ssd", "-a", "a..b", &"a".repeat(254)] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad}");
        }
    }
}
