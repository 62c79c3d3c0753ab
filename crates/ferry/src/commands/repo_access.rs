//! Where the repository is and its password, from flags and the environment the way restic
//! users expect: `RESTIC_REPOSITORY`, `RESTIC_PASSWORD_FILE` and `RESTIC_PASSWORD` work
//! beside ferry's own names (a `FERRY_*` setting wins when both are set), and on a terminal
//! a missing password is asked for without echo. [`RepoArgs`] are the flags every `ferry repo`
//! command shares, and [`open`] opens the repository they name.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_repo::Repository;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// Where the repository is and how to open it.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    /// Repository location: a local path or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`
    /// (else RESTIC_REPOSITORY).
    #[arg(short = 'r', long = "repo", env = "FERRY_REPOSITORY")]
    pub repo: Option<String>,
    /// File holding the repository password (else FERRY_PASSWORD, RESTIC_PASSWORD_FILE,
    /// RESTIC_PASSWORD, or a prompt on a terminal).
    #[arg(long, env = "FERRY_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Print machine-readable JSON to stdout.
    #[arg(long)]
    pub json: bool,
}

/// The location's backend, with an unsupported restic backend named as such.
pub(crate) fn backend(location: &str) -> anyhow::Result<Arc<dyn ferry_repo::backend::Backend>> {
    ferry_repo::backend::open(location).map_err(|e| match e {
        ferry_repo::backend::BackendError::Unsupported { scheme } => anyhow::anyhow!(
            "unsupported backend '{scheme}' in --repo {location}; ferry supports local paths \
             (or local:PATH) and s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]"
        ),
        e => {
            anyhow::Error::from(e).context(format!("cannot open repository location {location:?}"))
        }
    })
}

pub(crate) async fn open(args: &RepoArgs) -> anyhow::Result<Repository> {
    let location = location(args.repo.as_deref())?;
    let backend = backend(&location)?;
    let pw = password(args.password_file.as_deref(), &location, Purpose::Open)?;
    Ok(Repository::open(backend, &pw).await?)
}

/// Reads an environment variable; an empty value counts as unset (as restic treats it).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The repository location: `--repo` (or `FERRY_REPOSITORY`, which clap fills in), else
/// `RESTIC_REPOSITORY`.
pub fn location(flag: Option<&str>) -> anyhow::Result<String> {
    location_from(flag, env)
}

fn location_from(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    if let Some(l) = flag.filter(|l| !l.is_empty()) {
        return Ok(l.to_string());
    }
    env("RESTIC_REPOSITORY").ok_or_else(|| {
        anyhow::anyhow!(
            "no repository: pass --repo LOCATION or set FERRY_REPOSITORY (or RESTIC_REPOSITORY)"
        )
    })
}

/// What the password is for: opening asks once, a new repository asks twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Open,
    Create,
}

/// Where a password came from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    File(String),
    Value(String),
    None,
}

/// The first password source set, in order: `--password-file` (or `FERRY_PASSWORD_FILE`,
/// which clap fills in), `FERRY_PASSWORD`, `RESTIC_PASSWORD_FILE`, `RESTIC_PASSWORD`.
fn source(file_flag: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Source {
    if let Some(f) = file_flag {
        return Source::File(f.to_string_lossy().into_owned());
    }
    if let Some(p) = env("FERRY_PASSWORD") {
        return Source::Value(p);
    }
    if let Some(f) = env("RESTIC_PASSWORD_FILE") {
        return Source::File(f);
    }
    if let Some(p) = env("RESTIC_PASSWORD") {
        return Source::Value(p);
    }
    Source::None
}

/// A password file holds the password with surrounding white space trimmed (restic's rule,
/// so both tools read the same password from the same file).
fn read_password_file(path: &str) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {path}"))?,
    );
    Ok(Zeroizing::new(text.trim().to_string()))
}

/// The repository password from flags, environment or, on a terminal, a prompt.
pub fn password(
    file_flag: Option<&Path>,
    location: &str,
    purpose: Purpose,
) -> anyhow::Result<Zeroizing<String>> {
    match source(file_flag, env) {
        Source::File(f) => read_password_file(&f),
        Source::Value(p) => Ok(Zeroizing::new(p)),
        Source::None if std::io::stdin().is_terminal() => prompt(location, purpose),
        Source::None => bail!(
            "no repository password for {location}: pass --password-file FILE, set \
             FERRY_PASSWORD_FILE or FERRY_PASSWORD (or RESTIC_PASSWORD_FILE or RESTIC_PASSWORD), \
             or run on a terminal to be asked"
        ),
    }
}

/// Turns the terminal's echo off until dropped. rpassword turns it off only after showing
/// the prompt; whoever types right after seeing the prompt would race that, so echo goes
/// off first.
struct EchoOff {
    fd: std::fs::File,
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> Option<EchoOff> {
        use std::os::fd::AsRawFd;
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut saved) } != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid descriptor and a termios read from it.
        if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: restores the settings read from the same descriptor.
        unsafe { libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

/// Asks on the terminal without echo; a new repository's password is asked twice.
fn prompt(location: &str, purpose: Purpose) -> anyhow::Result<Zeroizing<String>> {
    let ask = |text: &str| -> anyhow::Result<Zeroizing<String>> {
        let _quiet = EchoOff::new();
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .context("cannot read the password from the terminal")
    };
    match purpose {
        Purpose::Open => ask(&format!("password for repository {location}: ")),
        Purpose::Create => {
            let first = ask(&format!("password for the new repository {location}: "))?;
            let again = ask("the same password again: ")?;
            if first != again {
                bail!("the two passwords differ; nothing was created");
            }
            Ok(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            set.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn ferry_names_win_over_restic_names() {
        let all = vars(&[
            ("FERRY_PASSWORD", "f"),
            ("RESTIC_PASSWORD_FILE", "/r"),
            ("RESTIC_PASSWORD", "r"),
        ]);
        assert_eq!(source(None, &all), Source::Value("f".into()));
        assert_eq!(
            source(Some(Path::new("/flag")), &all),
            Source::File("/flag".into())
        );
        let restic = vars(&[("RESTIC_PASSWORD_FILE", "/r"), ("RESTIC_PASSWORD", "r")]);
        assert_eq!(source(None, &restic), Source::File("/r".into()));
        assert_eq!(
            source(None, vars(&[("RESTIC_PASSWORD", "r")])),
            Source::Value("r".into())
        );
        assert_eq!(
            source(
                None,
                vars(&[("FERRY_PASSWORD", ""), ("RESTIC_PASSWORD", "r")])
            ),
            Source::Value("r".into())
        );
        assert_eq!(source(None, vars(&[])), Source::None);

        let loc = vars(&[("RESTIC_REPOSITORY", "/restic")]);
        assert_eq!(location_from(Some("/ferry"), &loc).unwrap(), "/ferry");
        assert_eq!(location_from(None, &loc).unwrap(), "/restic");
        let err = location_from(None, vars(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--repo") && err.contains("RESTIC_REPOSITORY"),
            "{err}"
        );
    }
}
