//! `--include` / `--exclude` for restore, with restic's pattern rules:
//!
//! - a pattern is split at `/` into components, each a glob (`*`, `?`, `[a-z]`, `[^a-z]`,
//!   `\` escapes) matched against one component of the entry's path in the snapshot;
//! - `**` matches any number of components (also none);
//! - a pattern starting with `/` is anchored at the snapshot's root, any other may match
//!   starting at any component;
//! - a pattern matches a path when it matches its first components: so a pattern naming a
//!   directory matches everything below it too.
//!
//! An excluded entry is not restored, nor anything below it. With include patterns only the
//! entries they match are restored, plus the directories leading to them (which get their
//! metadata too). Both may be given: exclusion wins.

use std::path::Path;

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    anchored: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    AnyDepth,
    Glob(Vec<char>),
}

/// A pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid restore pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// The include and exclude patterns of a restore. The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

/// What the filter says about one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    /// Restore this entry (for a directory: with its metadata).
    pub restore: bool,
    /// Walk into this directory: something below it may be restored.
    pub descend: bool,
}

impl RestoreFilter {
    /// Parses the patterns; an invalid glob (an unclosed `[`, a trailing `\`) is an error.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, PatternError> {
        let parse = |v: &[String]| -> Result<Vec<Pattern>, PatternError> {
            v.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(RestoreFilter {
            include: parse(include)?,
            exclude: parse(exclude)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Decides for the entry at `path` (its path in the snapshot, from the root).
    pub(crate) fn select(&self, path: &Path, is_dir: bool) -> Selection {
        if self.is_empty() {
            return Selection {
                restore: true,
                descend: is_dir,
            };
        }
        let comps = components(path);
        if self.exclude.iter().any(|p| p.matches(&comps)) {
            return Selection {
                restore: false,
                descend: false,
            };
        }
        if self.include.is_empty() {
            return Selection {
                restore: true,
                descend: is_dir,
            };
        }
        let restore = self.include.iter().any(|p| p.matches(&comps));
        let descend = is_dir && (restore || self.include.iter().any(|p| p.child_may_match(&comps)));
        Selection { restore, descend }
    }
}

/// A path's components as characters; bytes that are not UTF-8 become private-use
/// characters, so they only match `*`, `?` or a negated class.
fn components(path: &Path) -> Vec<Vec<char>> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(chars_of)
        .collect()
}

fn chars_of(bytes: &[u8]) -> Vec<char> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars());
        out.extend(
            chunk
                .invalid()
                .iter()
                .map(|&b| char::from_u32(0xF700 + b as u32).expect("private-use char")),
        );
    }
    out
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("empty pattern"));
        }
        let anchored = text.starts_with('/');
        let mut parts = Vec::new();
        for comp in text.split('/') {
            match comp {
                "" | "." => {}
                "**" => {
                    if parts.last() != Some(&Part::AnyDepth) {
                        parts.push(Part::AnyDepth);
                    }
                }
                glob => {
                    let g: Vec<char> = glob.chars().collect();
                    check_glob(&g).map_err(|r| err(&r))?;
                    parts.push(Part::Glob(g));
                }
            }
        }
        if parts.is_empty() {
            return Err(err("the pattern names no path component"));
        }
        Ok(Pattern { anchored, parts })
    }

    /// Whether the pattern matches the path's first components, from the root when anchored
    /// or from any component otherwise.
    fn matches(&self, comps: &[Vec<char>]) -> bool {
        if self.anchored {
            return prefix_match(&self.parts, comps);
        }
        (0..=comps.len()).any(|start| prefix_match(&self.parts, &comps[start..]))
    }

    /// Whether something below the directory at `comps` may match.
    fn child_may_match(&self, comps: &[Vec<char>]) -> bool {
        if !self.anchored {
            // It may match starting at any component below.
            return true;
        }
        for (i, c) in comps.iter().enumerate() {
            match self.parts.get(i) {
                None => return true, // the pattern already matched a parent
                Some(Part::AnyDepth) => return true,
                Some(Part::Glob(g)) if !glob_match(g, c) => return false,
                Some(Part::Glob(_)) => {}
            }
        }
        true
    }
}

/// Whether `parts` match a prefix of `comps` (every part consumed).
fn prefix_match(parts: &[Part], comps: &[Vec<char>]) -> bool {
    match parts.split_first() {
        None => true,
        Some((Part::AnyDepth, rest)) => {
            (0..=comps.len()).any(|skip| prefix_match(rest, &comps[skip..]))
        }
        Some((Part::Glob(g), rest)) => match comps.split_first() {
            Some((c, more)) => glob_match(g, c) && prefix_match(rest, more),
            None => false,
        },
    }
}

/// Rejects globs that cannot match as written: an unclosed class or a trailing escape.
fn check_glob(g: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < g.len() {
        match g[i] {
            '\\' => {
                if i + 1 >= g.len() {
                    return Err("trailing \\".into());
                }
                i += 2;
            }
            '[' => match class_end(g, i) {
                Some(end) => i = end + 1,
                None => return Err("unclosed [".into()),
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index of the `]` closing the class that opens at `open`.
fn class_end(g: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if g.get(i) == Some(&'^') {
        i += 1;
    }
    // A `]` right after the opening (or the `^`) is a member, not the end.
    if g.get(i) == Some(&']') {
        i += 1;
    }
    while i < g.len() {
        match g[i] {
            '\\' => i += 2,
            ']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Whether `c` is in the class `g[open..=end]` (`[abc]`, `[a-z]`, `[^…]`).
fn class_match(g: &[char], open: usize, end: usize, c: char) -> bool {
    let mut i = open + 1;
    let negated = g.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < end {
        let mut lo = g[i];
        if lo == '\\' {
            i += 1;
            lo = g[i];
        } else if lo == ']' && !first {
            break;
        }
        first = false;
        i += 1;
        let mut hi = lo;
        if i + 1 < end && g[i] == '-' {
            hi = g[i + 1];
            if hi == '\\' && i + 2 < end {
                hi = g[i + 2];
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            found = true;
        }
    }
    found != negated
}

/// Matches one path component against one glob component.
fn glob_match(g: &[char], s: &[char]) -> bool {
    // Iterative matching with one backtrack point for the last `*` seen.
    let (mut gi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match g.get(gi) {
            Some('*') => {
                star = Some((gi, si));
                gi += 1;
                continue;
            }
            Some('?') => Some(gi + 1),
            Some('[') => match class_end(g, gi) {
                Some(end) if class_match(g, gi, end, s[si]) => Some(end + 1),
                _ => None,
            },
            Some('\\') if gi + 1 < g.len() => (g[gi + 1] == s[si]).then_some(gi + 2),
            Some(&c) => (c == s[si]).then_some(gi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                gi = next;
                si += 1;
            }
            (None, Some((sg, ss))) => {
                gi = sg + 1;
                si = ss + 1;
                star = Some((sg, ss + 1));
            }
            (None, None) => return false,
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(include: &[&str], exclude: &[&str]) -> RestoreFilter {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        RestoreFilter::new(&v(include), &v(exclude)).unwrap()
    }

    fn sel(filter: &RestoreFilter, path: &str, dir: bool) -> (bool, bool) {
        let s = filter.select(Path::new(path), dir);
        (s.restore, s.descend)
    }

    #[test]
    fn globs_match_one_component() {
        let g = |p: &str, s: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.txt", "a.txt"));
        assert!(g("*.txt", ".txt"));
        assert!(!g("*.txt", "a.txt.gz"));
        assert!(g("a?c", "abc") && !g("a?c", "ac"));
        assert!(g("[a-c]x", "bx") && !g("[a-c]x", "dx"));
        assert!(g("[^a-c]x", "dx") && !g("[^a-c]x", "ax"));
        assert!(g("\\*", "*") && !g("\\*", "a"));
        assert!(g("*a*b*", "xxaxxbxx") && !g("*a*b*", "xxbxxaxx"));
        assert!(g("名前*", "名前.txt"));
    }

    #[test]
    fn patterns_follow_restics_rules() {
        // Relative patterns match at any depth, and a match on a directory covers its contents.
        let inc = f(&["nested"], &[]);
        assert_eq!(sel(&inc, "/src", true), (false, true));
        assert_eq!(sel(&inc, "/src/small/nested", true), (true, true));
        assert_eq!(sel(&inc, "/src/small/nested/f1", false), (true, false));
        assert_eq!(sel(&inc, "/src/small/other", false), (false, false));
        // Anchored patterns only descend along their own prefix.
        let inc = f(&["/src/small/*.bin"], &[]);
        assert_eq!(sel(&inc, "/src", true), (false, true));
        assert_eq!(sel(&inc, "/src/small", true), (false, true));
        assert_eq!(sel(&inc, "/other", true), (false, false));
        assert_eq!(sel(&inc, "/src/small/f1.bin", false), (true, false));
        assert_eq!(sel(&inc, "/src/small/f1.txt", false), (false, false));
        // ** spans components, also none.
        let inc = f(&["/src/**/deep*"], &[]);
        assert_eq!(sel(&inc, "/src/deeper", true), (true, true));
        assert_eq!(sel(&inc, "/src/a/b/deepest", false), (true, false));
        assert_eq!(sel(&inc, "/other/deep", false), (false, false));
        // Exclusion wins and prunes the subtree.
        let both = f(&["/src"], &["*.tmp", "/src/cache"]);
        assert_eq!(sel(&both, "/src/cache", true), (false, false));
        assert_eq!(sel(&both, "/src/a.tmp", false), (false, false));
        assert_eq!(sel(&both, "/src/a.txt", false), (true, false));
        assert_eq!(sel(&f(&[], &[]), "/x", true), (true, true));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "/", "a/[bc", "x\\"] {
            assert!(
                RestoreFilter::new(&[bad.to_string()], &[]).is_err(),
                "{bad:?}"
            );
        }
    }
}
