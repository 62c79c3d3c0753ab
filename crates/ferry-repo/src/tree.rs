//! Tree blobs: a directory's entries as restic's JSON `{"nodes":[…]}`. Modes are Go
//! `os.FileMode` bits, times RFC 3339 with nanoseconds, names Go-quoted (see `gostr`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::gostr;
use crate::id::Id;

// Go os.FileMode type bits.
pub const GO_MODE_DIR: u32 = 1 << 31;
pub const GO_MODE_SYMLINK: u32 = 1 << 27;
pub const GO_MODE_DEVICE: u32 = 1 << 26;
pub const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
pub const GO_MODE_SOCKET: u32 = 1 << 24;
pub const GO_MODE_SETUID: u32 = 1 << 23;
pub const GO_MODE_SETGID: u32 = 1 << 22;
pub const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
pub const GO_MODE_STICKY: u32 = 1 << 20;

/// Unix `st_mode` → Go `os.FileMode`.
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    let fmt = st_mode & libc::S_IFMT;
    m |= match fmt {
        libc::S_IFDIR => GO_MODE_DIR,
        libc::S_IFLNK => GO_MODE_SYMLINK,
        libc::S_IFBLK => GO_MODE_DEVICE,
        libc::S_IFCHR => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        libc::S_IFIFO => GO_MODE_NAMED_PIPE,
        libc::S_IFSOCK => GO_MODE_SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= GO_MODE_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= GO_MODE_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= GO_MODE_STICKY;
    }
    m
}

/// Go `os.FileMode` → the permission bits for chmod (including setuid/setgid/sticky).
pub fn unix_perm_from_go(mode: u32) -> u32 {
    let mut p = mode & 0o777;
    if mode & GO_MODE_SETUID != 0 {
        p |= libc::S_ISUID;
    }
    if mode & GO_MODE_SETGID != 0 {
        p |= libc::S_ISGID;
    }
    if mode & GO_MODE_STICKY != 0 {
        p |= libc::S_ISVTX;
    }
    p
}

/// Formats a Unix time as Go's RFC3339Nano in local time: trailing fractional zeros
/// trimmed, `Z` for UTC.
pub fn format_time(secs: i64, nanos: u32) -> String {
    let at = jiff::Timestamp::new(secs, nanos.min(999_999_999) as i32)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = at.to_zoned(jiff::tz::TimeZone::system());
    let mut s = dt.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = dt.offset().seconds();
    if off == 0 {
        s.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

/// Parses an RFC 3339 time into Unix seconds and nanoseconds.
pub fn parse_time(s: &str) -> Option<(i64, u32)> {
    let at: jiff::Timestamp = s.parse().ok()?;
    // jiff signs the fraction as the time; restic's order wants it counted forward from the
    // second before (as Go's Unix() and Nanosecond() do).
    let (secs, nanos) = (at.as_second(), at.subsec_nanosecond());
    Some(if nanos < 0 {
        (secs - 1, (nanos + 1_000_000_000) as u32)
    } else {
        (secs, nanos as u32)
    })
}

/// The time now, as [`format_time`] writes it.
pub fn format_now() -> String {
    let now = jiff::Timestamp::now();
    format_time(now.as_second(), now.subsec_nanosecond().max(0) as u32)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExtendedAttribute {
    pub name: String,
    #[serde(with = "b64_bytes")]
    pub value: Vec<u8>,
}

/// One directory entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Raw name bytes (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// "file", "dir", "symlink", "dev", "chardev", "fifo" or "socket".
    pub kind: String,
    /// Go os.FileMode.
    pub mode: u32,
    pub mtime: String,
    pub atime: String,
    pub ctime: String,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub inode: u64,
    pub device_id: u64,
    pub size: u64,
    pub links: u64,
    /// Raw link target bytes.
    pub linktarget: Vec<u8>,
    pub device: u64,
    pub content: Option<Vec<Id>>,
    pub subtree: Option<Id>,
    pub extended_attributes: Vec<ExtendedAttribute>,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The JSON shape of a node, field order as restic writes it.
#[derive(Serialize, Deserialize)]
struct NodeJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    mode: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mtime: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    atime: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ctime: String,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    inode: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    device_id: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    size: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    links: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    linktarget: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "b64_bytes_opt"
    )]
    linktarget_raw: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extended_attributes: Vec<ExtendedAttribute>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    device: u64,
    content: Option<Vec<Id>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtree: Option<Id>,
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (linktarget, linktarget_raw) = match std::str::from_utf8(&self.linktarget) {
            Ok(t) => (t.to_string(), None),
            Err(_) => (
                String::from_utf8_lossy(&self.linktarget).into_owned(),
                Some(self.linktarget.clone()),
            ),
        };
        NodeJson {
            name: gostr::quote(&self.name),
            kind: self.kind.clone(),
            mode: self.mode,
            mtime: self.mtime.clone(),
            atime: self.atime.clone(),
            ctime: self.ctime.clone(),
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            inode: self.inode,
            device_id: self.device_id,
            size: self.size,
            links: self.links,
            linktarget,
            linktarget_raw,
            extended_attributes: self.extended_attributes.clone(),
            device: self.device,
            content: self.content.clone(),
            subtree: self.subtree,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = NodeJson::deserialize(d)?;
        let name = gostr::unquote(&j.name).map_err(serde::de::Error::custom)?;
        let linktarget = j
            .linktarget_raw
            .unwrap_or_else(|| j.linktarget.into_bytes());
        Ok(Node {
            name,
            kind: j.kind,
            mode: j.mode,
            mtime: j.mtime,
            atime: j.atime,
            ctime: j.ctime,
            uid: j.uid,
            gid: j.gid,
            user: j.user,
            group: j.group,
            inode: j.inode,
            device_id: j.device_id,
            size: j.size,
            links: j.links,
            linktarget,
            device: j.device,
            content: j.content,
            subtree: j.subtree,
            extended_attributes: j.extended_attributes,
        })
    }
}

impl Node {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tree {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub nodes: Vec<Node>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Node>, D::Error> {
    Ok(Option::<Vec<Node>>::deserialize(d)?.unwrap_or_default())
}

/// Why a name cannot be a directory entry: empty, `.`, `..`, or holding `/` or NUL would
/// let a restore write somewhere else than below the entry's directory.
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("an empty entry name"),
        b"." | b".." => Some("an entry named . or .."),
        _ if name.contains(&b'/') => Some("an entry name containing /"),
        _ if name.contains(&0) => Some("an entry name containing NUL"),
        _ => None,
    }
}

/// Every reason a tree's entries cannot be restored safely: invalid names, and names that
/// occur twice (a symlink then a directory of one name would let the second write through
/// the first). Empty for a sound tree.
pub fn entry_problems(nodes: &[Node]) -> Vec<String> {
    let mut problems: Vec<String> = nodes
        .iter()
        .filter_map(|n| name_problem(&n.name).map(|p| format!("{p} ({:?})", gostr::quote(&n.name))))
        .collect();
    let mut names: Vec<&[u8]> = nodes.iter().map(|n| n.name.as_slice()).collect();
    names.sort_unstable();
    let mut last: Option<&[u8]> = None;
    for pair in names.windows(2) {
        if pair[0] == pair[1] && last != Some(pair[0]) {
            problems.push(format!(
                "two or more entries named {:?}",
                gostr::quote(pair[0])
            ));
            last = Some(pair[0]);
        }
    }
    problems
}

impl Tree {
    /// The tree blob's bytes: JSON plus a newline, as restic writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("tree serializes");
        v.push(b'\n');
        v
    }
}

mod b64_bytes {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

mod b64_bytes_opt {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&B64.encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_round_trips_non_utf8_names_and_targets() {
        let n = Node {
            name: vec![b'x', 0xff],
            kind: "symlink".into(),
            mode: GO_MODE_SYMLINK | 0o777,
            linktarget: vec![0xfe, b'/'],
            ..Default::default()
        };
        let j = serde_json::to_string(&n).unwrap();
        assert!(j.contains(r#""name":"x\\xff""#), "{j}");
        assert!(j.contains("linktarget_raw"), "{j}");
        let back: Node = serde_json::from_str(&j).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn entry_problems_name_bad_and_duplicate_names() {
        let node = |name: &[u8]| Node {
            name: name.to_vec(),
            kind: "file".into(),
            ..Default::default()
        };
        let good = [node(b"a"), node(b"b"), node(b".a"), node(b"..a")];
        assert!(entry_problems(&good).is_empty());
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            let p = entry_problems(&[node(bad)]);
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
        }
        let p = entry_problems(&[node(b"d"), node(b"x"), node(b"d"), node(b"d")]);
        assert_eq!(p, [r#"two or more entries named "d""#]);
    }

    #[test]
    fn go_modes_map_both_ways() {
        assert_eq!(
            go_mode_from_unix(libc::S_IFDIR | 0o755),
            GO_MODE_DIR | 0o755
        );
        assert_eq!(unix_perm_from_go(GO_MODE_SETUID | 0o4755 & 0o777), 0o4755);
        let (s, n) = parse_time(&format_time(1_700_000_000, 123_000_000)).unwrap();
        assert_eq!((s, n), (1_700_000_000, 123_000_000));
    }
}
