//! `forget`'s policy, as restic 0.14 applies it: snapshots are grouped (by host and paths
//! unless told otherwise), each group is walked newest first, and a snapshot is kept when
//! it carries a kept tag list, lies within `keep_within` of the group's newest snapshot, or
//! opens a new bucket (last n, hour, day, ISO week, month, year) that still has a count
//! left. Times are bucketed in the time zone each snapshot recorded, as restic does.
//! Checked against `restic forget --dry-run --json` in the interop tests.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, FixedOffset, NaiveDate, Timelike};

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
    fn before(&self, t: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        let months = t.year() * 12 + t.month0() as i32 - self.years * 12 - self.months;
        let (y, m0) = (months.div_euclid(12), months.rem_euclid(12));
        let first = NaiveDate::from_ymd_opt(y, m0 as u32 + 1, 1).expect("valid month");
        let date = first + ChronoDuration::days(t.day() as i64 - 1 - self.days as i64);
        let naive = date.and_time(t.time());
        let moved = naive
            .and_local_timezone(*t.offset())
            .single()
            .expect("fixed offsets are unambiguous");
        moved - ChronoDuration::hours(self.hours as i64)
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

fn time_of(s: &Snapshot) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(&s.time).unwrap_or_else(|_| {
        let (secs, nanos) = s.unix_time();
        DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .fixed_offset()
    })
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

type Bucket = (u32, fn(DateTime<FixedOffset>, usize) -> i64, &'static str);

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
                t.year() as i64 * 1_000_000
                    + t.month() as i64 * 10_000
                    + t.day() as i64 * 100
                    + t.hour() as i64
            },
            "hourly snapshot",
        ),
        (
            policy.daily,
            |t, _| t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64,
            "daily snapshot",
        ),
        (
            policy.weekly,
            |t, _| {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            },
            "weekly snapshot",
        ),
        (
            policy.monthly,
            |t, _| t.year() as i64 * 100 + t.month() as i64,
            "monthly snapshot",
        ),
        (policy.yearly, |t, _| t.year() as i64, "yearly snapshot"),
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
            && let Some(newest) = newest
            && t > policy.within.before(newest)
        {
            reasons.push(format!("within {}", policy.within));
        }
        for (i, (_, bucket, why)) in buckets.iter().enumerate() {
            if counts[i] == 0 {
                continue;
            }
            let v = bucket(t, nr);
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
        let t = DateTime::parse_from_rfc3339("2025-03-31T12:00:00+02:00").unwrap();
        let w = Within::parse("1m").unwrap();
        // Go: March 31 minus one month is "February 31", which is March 3.
        assert_eq!(w.before(t).to_rfc3339(), "2025-03-03T12:00:00+02:00");
        let w = Within::parse("1y2d3h").unwrap();
        assert_eq!(w.before(t).to_rfc3339(), "2024-03-29T09:00:00+02:00");
        assert!(Within::parse("3w").is_err());
        assert!(Within::parse("12").is_err());
        assert_eq!(Within::parse("1y5m7d2h").unwrap().to_string(), "1y5m7d2h");
    }
}
