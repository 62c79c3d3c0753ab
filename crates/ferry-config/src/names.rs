//! Kubernetes name syntax: label keys and values, annotation keys, DNS subdomain names
//! (StorageClass and PriorityClass names). Each check returns why a string is not valid.

const QUALIFIED_NAME_MAX: usize = 63;
const DNS_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

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
    let ok = s.split('.').all(|part| {
        let b = part.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    if ok {
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
