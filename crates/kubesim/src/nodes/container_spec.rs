//! How a container of a pod becomes a local process: which program (command, PATH, or the
//! image → binary map), its environment, and the path rewriting that stands in for mounts.
//!
//! Processes cannot mount, so every mapped path (volumeMounts' mountPath, volumeDevices'
//! devicePath, the terminationMessagePath) exists as a path under the container's root
//! directory, `ROOT/<path>` (a symlink to the PV's directory or file), and every occurrence
//! of a mapped path in the command, args, env values and workingDir is rewritten to
//! `ROOT/<path>`. `KUBESIM_ROOT` names ROOT. See docs/kubesim-nodes.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

/// What a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A local executable with its arguments (argv[1..]).
    Local { program: PathBuf, args: Vec<String> },
    /// Nothing on this machine implements it: the container "runs" until stopped.
    Simulated { reason: String },
}

/// The image's repository without registry host, tag or digest: `ghcr.io/ferry/ferry:dev`
/// → `ferry/ferry`.
pub fn image_repository(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let mut parts: Vec<&str> = without_digest.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        parts.remove(0);
    }
    let joined = parts.join("/");
    // A tag is a ':' in the last path component.
    match joined.rfind(':') {
        Some(i) if !joined[i..].contains('/') => joined[..i].to_string(),
        _ => joined,
    }
}

/// The local binary an image maps to: by full repository (`ferry/ferry`), then by its last
/// component (`ferry`).
pub fn image_binary<'a>(image: &str, map: &'a BTreeMap<String, PathBuf>) -> Option<&'a PathBuf> {
    let repository = image_repository(image);
    let last = repository
        .rsplit('/')
        .next()
        .unwrap_or(&repository)
        .to_string();
    map.get(&repository).or_else(|| map.get(&last))
}

/// The registry host of `image` when it is one that never resolves (a `.invalid` domain,
/// RFC 2606): pulling from it fails. Such an image is never mapped to a local binary.
pub fn unpullable_registry(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    let host = first.split(':').next().unwrap_or(first);
    (host == "invalid" || host.ends_with(".invalid")).then_some(first)
}

/// An executable file at `path`.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` as an absolute path that exists, or found on PATH.
pub fn find_program(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return (path.is_absolute() && is_executable(&path)).then_some(path);
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Kubernetes' `$(VAR)` expansion in command and args: `$(NAME)` becomes the variable's
/// value when defined, `$$` is a literal `$`, anything else stays as written.
pub fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Decides the program: command (or the image's mapped binary as entrypoint) + args.
/// A mapped image whose command names a program missing here runs the mapped binary with
/// the rest of the command (the image's `/ferry data-mover …` → local ferry `data-mover …`).
pub fn resolve_program(
    container: &Container,
    env: &BTreeMap<String, String>,
    image_binaries: &BTreeMap<String, PathBuf>,
    path_var: &str,
) -> Program {
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand_vars(c, env))
        .collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand_vars(a, env))
        .collect();
    let image = container.image.as_deref().unwrap_or("");
    let mapped = image_binary(image, image_binaries);
    if let Some(first) = command.first() {
        // `ferry …` in a ferry image means the mapped ferry, even if another is on PATH.
        let names_mapped = mapped.is_some_and(|b| b.file_name() == Path::new(first).file_name());
        if let Some(program) = find_program(first, path_var).filter(|_| !names_mapped) {
            return Program::Local {
                program,
                args: command[1..].iter().chain(&args).cloned().collect(),
            };
        }
        if let Some(binary) = mapped {
            return Program::Local {
                program: binary.clone(),
                args: command[1..].iter().chain(&args).cloned().collect(),
            };
        }
        return Program::Simulated {
            reason: format!("command {first:?} of image {image:?} is not on this machine"),
        };
    }
    match mapped {
        Some(binary) => Program::Local {
            program: binary.clone(),
            args,
        },
        None => Program::Simulated {
            reason: format!(
                "image {image:?} has no local binary (see NodesConfig::image_binaries)"
            ),
        },
    }
}

/// Rewrites every occurrence of a mapped path (as a whole path prefix: preceded by start or
/// a non-path character, followed by end, `/` or a non-path character) to `root` + path.
pub fn rewrite_paths(text: &str, mapped: &[String], root: &Path) -> String {
    if mapped.is_empty() {
        return text.to_string();
    }
    let mut sorted: Vec<&String> = mapped
        .iter()
        .filter(|p| p.starts_with('/') && p.len() > 1)
        .collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let is_path_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '~');
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let before_ok = i == 0 || !is_path_char(text[..i].chars().next_back().unwrap_or(' '));
        let mut matched = None;
        if before_ok && bytes[i] == b'/' {
            for path in &sorted {
                let path = path.trim_end_matches('/');
                if text[i..].starts_with(path) {
                    let after = text[i + path.len()..].chars().next();
                    if after.is_none_or(|c| c == '/' || !is_path_char(c)) {
                        matched = Some(path.len());
                        break;
                    }
                }
            }
        }
        match matched {
            Some(len) => {
                out.push_str(root);
                out.push_str(&text[i..i + len]);
                i += len;
            }
            None => {
                let c = text[i..].chars().next().expect("char boundary");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// `KUBESIM_MOUNT_<path>`: the mount path upper-cased with non-alphanumerics as `_`.
pub fn mount_env_name(mount_path: &str) -> String {
    let sanitized: String = mount_path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KUBESIM_MOUNT_{sanitized}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_registries_are_unpullable() {
        assert_eq!(
            unpullable_registry("registry.invalid/ferry/ferry:dev"),
            Some("registry.invalid")
        );
        assert_eq!(
            unpullable_registry("registry.invalid:5000/ferry"),
            Some("registry.invalid:5000")
        );
        assert_eq!(unpullable_registry("ferry/ferry:dev"), None);
        assert_eq!(unpullable_registry("ghcr.io/ferry/ferry:v1"), None);
        assert_eq!(unpullable_registry("busybox"), None);
    }

    #[test]
    fn image_repository_drops_registry_tag_and_digest() {
        assert_eq!(image_repository("ferry/ferry:dev"), "ferry/ferry");
        assert_eq!(image_repository("ghcr.io/ferry/ferry:v1"), "ferry/ferry");
        assert_eq!(image_repository("localhost:5000/ferry"), "ferry");
        assert_eq!(image_repository("busybox"), "busybox");
        assert_eq!(image_repository("busybox@sha256:abc"), "busybox");
        let map = BTreeMap::from([("ferry".to_string(), PathBuf::from("/bin/true"))]);
        assert_eq!(
            image_binary("ferry/ferry:dev", &map),
            Some(&PathBuf::from("/bin/true"))
        );
        assert_eq!(image_binary("velero/velero:v1.16", &map), None);
    }

    #[test]
    fn programs_resolve_from_path_mapped_image_or_are_simulated() {
        let path = std::env::var("PATH").unwrap_or_default();
        let map = BTreeMap::from([("ferry".to_string(), PathBuf::from("/opt/ferry"))]);
        let container = |image: &str, command: &[&str], args: &[&str]| Container {
            name: "c".into(),
            image: Some(image.into()),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let env = BTreeMap::from([("TARGET".to_string(), "/data".to_string())]);
        match resolve_program(
            &container("busybox", &["sh", "-c", "echo $(TARGET)"], &[]),
            &env,
            &map,
            &path,
        ) {
            Program::Local { program, args } => {
                assert!(program.ends_with("sh"));
                assert_eq!(args, vec!["-c", "echo /data"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            resolve_program(
                &container("ferry/ferry:dev", &["/ferry", "data-mover"], &["restore"]),
                &env,
                &map,
                &path
            ),
            Program::Local {
                program: "/opt/ferry".into(),
                args: vec!["data-mover".into(), "restore".into()]
            }
        );
        assert_eq!(
            resolve_program(
                &container("ferry/ferry:dev", &[], &["version"]),
                &env,
                &map,
                &path
            ),
            Program::Local {
                program: "/opt/ferry".into(),
                args: vec!["version".into()]
            }
        );
        assert!(matches!(
            resolve_program(&container("nginx", &[], &[]), &env, &map, &path),
            Program::Simulated { .. }
        ));
        assert!(matches!(
            resolve_program(
                &container("velero/velero", &["/velero", "server"], &[]),
                &env,
                &map,
                &path
            ),
            Program::Simulated { .. }
        ));
    }

    #[test]
    fn var_expansion_follows_kubernetes_rules() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand_vars("$(A)/$(B)/$$(A)/$", &env), "x/$(B)/$(A)/$");
    }

    #[test]
    fn mapped_paths_are_rewritten_as_whole_path_prefixes() {
        let mapped = vec!["/data".to_string(), "/dev/termination-log".to_string()];
        let root = Path::new("/tmp/r/root");
        assert_eq!(
            rewrite_paths("echo hi > /data/f", &mapped, root),
            "echo hi > /tmp/r/root/data/f"
        );
        assert_eq!(
            rewrite_paths("--target=/data", &mapped, root),
            "--target=/tmp/r/root/data"
        );
        assert_eq!(
            rewrite_paths("/database /x/data /data2", &mapped, root),
            "/database /x/data /data2"
        );
        assert_eq!(
            rewrite_paths("'/data'", &mapped, root),
            "'/tmp/r/root/data'"
        );
        assert_eq!(
            rewrite_paths("cat /dev/termination-log", &mapped, root),
            "cat /tmp/r/root/dev/termination-log"
        );
        assert_eq!(
            mount_env_name("/var/lib/data-1"),
            "KUBESIM_MOUNT_VAR_LIB_DATA_1"
        );
    }
}
