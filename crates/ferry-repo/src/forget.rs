//! `forget`'s policy, as restic 0.14 applies it: snapshots are grouped (by host and paths
//! unless told otherwise), each group is walked newest first, and a snapshot is kept when
//! it carries a kept tag list, lies within `keep_within` of the group's newest snapshot, or
//! opens a new bucket (last n, hour, day, ISO week, month, year) that still has a count
//! left. Times are bucketed in the time zone each snapshot recorded, as restic does.
//! Checked against `restic forget --dry-run --json` in the interop tests.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp, Zoned};

use crate::error::{RepoError, Result};
use crate::snapshot::Snapshot;

/// `--keep-within`: years, months, days, hours (restic's `1y5m7d2h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Within {
    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }

    /// Parses restic's duration syntax: numbers each followed by `y`, `m`, `d` or `h`.
    pub fn parse(s: &str) -> Result<Within> {
        let bad = || {
            RepoError::Invalid(format!(
                "invalid duration {s:?}: expected numbers with units y, m, d, h, e.g. 1y5m7d2h"
            ))
        };
        let mut w = Within::default();
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i32 = num.parse().map_err(|_| bad())?;
            num.clear();
            match c {
                'y' => w.years += n,
                'm' => w.months += n,
                'd' => w.days += n,
                'h' => w.hours += n,
                _ => return Err(bad()),
            }
        }
        if !num.is_empty() || s.is_empty() {
            return Err(bad());
        }
        Ok(w)
    }

    /// `t` moved back by this duration the way Go's `AddDate` then `Add` do it (a month
    /// past a short month's end rolls over into the next month, it is not clamped).
    fn before(&self, t: &Zoned) -> Zoned {
        let months =
            i32::from(t.year()) * 12 + i32::from(t.month()) - 1 - self.years * 12 - self.months;
        let (y, m0) = (months.div_euclid(12), months.rem_euclid(12));
        // Far outside jiff's years (-9999..=9999) nothing is within anyway: clamp.
        let y = y.clamp(-9999, 9999) as i16;
        let first = jiff::civil::date(y, m0 as i8 + 1, 1);
        let days = i64::from(t.day()) - 1 - i64::from(self.days);
        let date = first.checked_add(Span::new().days(days)).unwrap_or(first);
        // The snapshot's own offset is fixed: the civil time maps to one instant.
        let moved = date
            .to_datetime(t.time())
            .to_zoned(t.time_zone().clone())
            .unwrap_or_else(|_| t.clone());
        moved
            .checked_sub(SignedDuration::from_hours(i64::from(self.hours)))
            .unwrap_or(moved)
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Within,
    /// Tag lists: a snapshot carrying every tag of one list is kept.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// No rule at all: restic removes nothing then.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_zero()
            && self.tags.is_empty()
    }
}

/// What to group by: any of host, paths, tags (restic's `--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Parses `host,paths,tags` (any subset; empty for no grouping).
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(RepoError::Invalid(format!(
                        "unknown --group-by field {other:?}: use host, paths and/or tags"
                    )));
                }
            }
        }
        Ok(g)
    }
}

/// The key of one group: the fields grouped by (others empty), sorted as restic sorts them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct GroupKey {
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
}

/// One group's decision.
#[derive(Debug, Clone)]
pub struct GroupDecision {
    pub key: GroupKey,
    /// Newest first, each with why it is kept.
    pub keep: Vec<(Snapshot, Vec<String>)>,
    /// Newest first.
    pub remove: Vec<Snapshot>,
}

/// The snapshot's time in its own offset (the calendar buckets count days, weeks and months
/// where the snapshot was taken, as restic does).
fn time_of(s: &Snapshot) -> Zoned {
    let (secs, nanos) = s.unix_time();
    let at = Timestamp::new(secs, nanos.min(999_999_999) as i32).unwrap_or(Timestamp::UNIX_EPOCH);
    let offset = rfc3339_offset(&s.time).unwrap_or(Offset::UTC);
    at.to_zoned(TimeZone::fixed(offset))
}

/// The offset an RFC 3339 time ends with: `Z` or `±HH:MM`.
fn rfc3339_offset(text: &str) -> Option<Offset> {
    if text.ends_with(['Z', 'z']) {
        return Some(Offset::UTC);
    }
    let tail = text.get(text.len().checked_sub(6)?..)?;
    let sign = match tail.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = tail[1..].split_once(':')?;
    let seconds = sign * (h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60);
    Offset::from_seconds(seconds).ok()
}

/// Groups `snapshots` and applies `policy` to each group.
pub fn apply(snapshots: Vec<Snapshot>, group_by: GroupBy, policy: &Policy) -> Vec<GroupDecision> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<Snapshot>> = Default::default();
    for s in snapshots {
        let mut key = GroupKey::default();
        if group_by.host {
            key.host = s.hostname.clone();
        }
        if group_by.paths {
            key.paths = s.paths.clone();
            key.paths.sort();
        }
        if group_by.tags {
            key.tags = s.tags.clone();
            key.tags.sort();
        }
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(key, list)| {
            let (keep, remove) = apply_to_group(list, policy);
            GroupDecision { key, keep, remove }
        })
        .collect()
}

type Bucket = (u32, fn(&Zoned, usize) -> i64, &'static str);

/// restic's policy over one group.
pub fn apply_to_group(
    mut list: Vec<Snapshot>,
    policy: &Policy,
) -> (Vec<(Snapshot, Vec<String>)>, Vec<Snapshot>) {
    // Newest first; equal times keep a stable order.
    list.sort_by_key(|s| std::cmp::Reverse(time_of(s)));
    if policy.is_empty() {
        return (
            list.into_iter().map(|s| (s, Vec::new())).collect(),
            Vec::new(),
        );
    }
    let buckets: [Bucket; 6] = [
        (policy.last, |_, nr| nr as i64, "last snapshot"),
        (
            policy.hourly,
            |t, _| {
                i64::from(t.year()) * 1_000_000
                    + i64::from(t.month()) * 10_000
                    + i64::from(t.day()) * 100
                    + i64::from(t.hour())
            },
            "hourly snapshot",
        ),
        (
            policy.daily,
            |t, _| i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day()),
            "daily snapshot",
        ),
        (
            policy.weekly,
            |t, _| {
                let w = t.date().iso_week_date();
                i64::from(w.year()) * 100 + i64::from(w.week())
            },
            "weekly snapshot",
        ),
        (
            policy.monthly,
            |t, _| i64::from(t.year()) * 100 + i64::from(t.month()),
            "monthly snapshot",
        ),
        (policy.yearly, |t, _| i64::from(t.year()), "yearly snapshot"),
    ];
    let mut counts: Vec<u32> = buckets.iter().map(|b| b.0).collect();
    let mut last: Vec<i64> = vec![-1; buckets.len()];
    let newest = list.first().map(time_of);
    let (mut keep, mut remove) = (Vec::new(), Vec::new());
    for (nr, snap) in list.into_iter().enumerate() {
        let t = time_of(&snap);
        let mut reasons = Vec::new();
        for tags in &policy.tags {
            if tags.iter().all(|t| snap.tags.contains(t)) {
                reasons.push(format!("has tags [{}]", tags.join(", ")));
            }
        }
        if !policy.within.is_zero()
            && let Some(newest) = &newest
            && t > policy.within.before(newest)
        {
            reasons.push(format!("within {}", policy.within));
        }
        for (i, (_, bucket, why)) in buckets.iter().enumerate() {
            if counts[i] == 0 {
                continue;
            }
            let v = bucket(&t, nr);
            if v != last[i] {
                last[i] = v;
                counts[i] -= 1;
                reasons.push(why.to_string());
            }
        }
        if reasons.is_empty() {
            remove.push(snap);
        } else {
            keep.push((snap, reasons));
        }
    }
    (keep, remove)
}

impl crate::repository::Repository {
    /// Deletes snapshot files (the data they used stays until `prune`).
    pub async fn remove_snapshots(&self, ids: &[crate::id::Id]) -> Result<()> {
        for id in ids {
            self.backend()
                .remove(&crate::backend::Handle::new(
                    crate::backend::FileType::Snapshot,
                    id.to_hex(),
                ))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            id: crate::id::Id::hash(time.as_bytes()),
            time: time.into(),
            parent: None,
            tree: crate::id::Id::default(),
            paths: vec!["/src".into()],
            hostname: "h".into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            original: None,
            program_version: None,
        }
    }

    fn kept(list: Vec<Snapshot>, p: &Policy) -> Vec<String> {
        let (keep, _) = apply_to_group(list, p);
        keep.into_iter().map(|(s, _)| s.time).collect()
    }

    #[test]
    fn buckets_keep_the_newest_of_each_period() {
        let list = vec![
            snap("2025-01-01T10:00:00Z", &[]),
            snap("2025-01-01T11:30:00Z", &[]),
            snap("2025-01-02T09:00:00Z", &[]),
            snap("2025-01-09T09:00:00Z", &["x", "y"]),
        ];
        let daily = Policy {
            daily: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(list.clone(), &daily),
            ["2025-01-09T09:00:00Z", "2025-01-02T09:00:00Z"]
        );
        let last = Policy {
            last: 3,
            ..Default::default()
        };
        assert_eq!(kept(list.clone(), &last).len(), 3);
        let within = Policy {
            within: Within::parse("7d").unwrap(),
            ..Default::default()
        };
        assert_eq!(kept(list.clone(), &within), ["2025-01-09T09:00:00Z"]);
        let tags = Policy {
            tags: vec![vec!["x".into(), "y".into()]],
            weekly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(list.clone(), &tags),
            ["2025-01-09T09:00:00Z", "2025-01-02T09:00:00Z"]
        );
        // No rule keeps everything.
        assert_eq!(kept(list, &Policy::default()).len(), 4);
    }

    #[test]
    fn within_moves_months_as_go_does() {
        let snap: Snapshot = serde_json::from_value(serde_json::json!({
            "time": "2025-03-31T12:00:00+02:00", "tree": "0".repeat(64), "paths": ["/x"],
        }))
        .unwrap();
        let t = time_of(&snap);
        let rfc3339 = |z: Zoned| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
        let w = Within::parse("1m").unwrap();
        // Go: March 31 minus one month is "February 31", which is March 3.
        assert_eq!(rfc3339(w.before(&t)), "2025-03-03T12:00:00+02:00");
        let w = Within::parse("1y2d3h").unwrap();
        assert_eq!(rfc3339(w.before(&t)), "2024-03-29T09:00:00+02:00");
        assert!(Within::parse("3w").is_err());
        assert!(Within::parse("12").is_err());
        assert_eq!(Within::parse("1y5m7d2h").unwrap().to_string(), "1y5m7d2h");
    }
}
