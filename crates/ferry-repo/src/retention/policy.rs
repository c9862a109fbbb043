//! The retention policy of `ferry forget`: which snapshots to keep, with restic's `forget`
//! semantics (restic's `--keep-*` and `--group-by` options; see restic's documentation,
//! "Removing snapshots according to a policy").
//!
//! Pure logic, no I/O and no clock: [`apply`] takes the snapshots, a [`KeepPolicy`] and a
//! [`GroupBy`], and returns one [`GroupPlan`] per group saying, for every snapshot, whether
//! it is kept and why.
//!
//! ## Semantics
//!
//! * Snapshots are divided into groups ([`GroupBy`]; by default host and paths, like
//!   restic), and the policy is applied to each group on its own.
//! * Within a group, snapshots are considered newest first; snapshots with the same time are
//!   ordered by id (ascending), so the result never depends on the input order.
//! * `last` keeps the newest N snapshots.
//! * `hourly`, `daily`, `weekly`, `monthly` and `yearly` keep the newest snapshot of each
//!   distinct calendar hour / day / ISO week (Monday to Sunday) / month / year that has
//!   snapshots, until N such buckets have been kept: a snapshot counts for a rule only when
//!   its bucket differs from the last bucket kept by that rule.
//! * Like restic (since 0.17), when a count rule still has counts left once it reaches the
//!   oldest snapshot of the group, it keeps that oldest snapshot too (reason e.g. `oldest
//!   daily snapshot`), which maximises the history kept.
//! * `within` keeps every snapshot strictly newer than the newest snapshot of the group minus
//!   the duration (restic's rule: relative to the newest snapshot, not to "now").
//! * `tags` keeps every snapshot carrying all tags of any of the lists.
//! * A snapshot is kept when any rule keeps it; every matching rule is listed as a reason.
//!
//! ## Time zone
//!
//! Hours, days, weeks, months and years are those of **UTC**, and `within` subtracts its
//! years, months, days and hours from the newest snapshot's UTC calendar date. The backup
//! VM and the operator may be in different time zones; UTC keeps a `forget` reproducible
//! anywhere (restic uses the zone offset recorded with each snapshot, normally the local
//! time of the machine that made it).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Duration, Month, UtcDateTime};

use crate::objects::{Snapshot, SnapshotInfo};

/// Why a policy could not be applied, or a retention option not parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy has no rule ([`KeepPolicy::is_empty`]): applying it would keep nothing.
    #[error(
        "no retention rule given: nothing would be kept, refusing; give at least one --keep-* option"
    )]
    Empty,
    /// A retention option's value could not be parsed.
    #[error("invalid {what} {value:?}: {reason}")]
    BadValue {
        /// What was being parsed (e.g. `keep count`, `keep-within duration`).
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

fn bad(what: &'static str, value: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::BadValue {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// How many snapshots (or buckets) a count rule keeps.
///
/// Parses from `"7"`, `"unlimited"` or `"-1"` (restic's spelling of unlimited); refuses
/// anything else, naming the value. `N(0)` is a rule that keeps nothing, as if not given
/// (restic's default of 0). Serialises as a number, or as the string `"unlimited"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Keep {
    /// Keep at most this many.
    N(u32),
    /// Keep all (restic's `-1` / `unlimited`).
    Unlimited,
}

impl Keep {
    /// `Some(n)` for `N(n)`, `None` for unlimited.
    fn limit(self) -> Option<u32> {
        match self {
            Keep::N(n) => Some(n),
            Keep::Unlimited => None,
        }
    }
}

impl FromStr for Keep {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "keep count";
        match s {
            "unlimited" | "-1" => Ok(Keep::Unlimited),
            _ if s.starts_with('-') => Err(bad(
                WHAT,
                s,
                "negative counts other than -1 are not allowed (use -1 or \"unlimited\" to keep all)",
            )),
            _ => s.parse::<u32>().map(Keep::N).map_err(|_| {
                bad(
                    WHAT,
                    s,
                    format!(
                        "expected a whole number up to {}, -1 or \"unlimited\"",
                        u32::MAX
                    ),
                )
            }),
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::N(n) => write!(f, "{n}"),
            Keep::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for Keep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Keep::N(n) => serializer.serialize_u32(*n),
            Keep::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(i64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => n.to_string().parse(),
            Repr::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A `within` duration in calendar units, restic's `1y2m3d4h`.
///
/// Parses from numbers each followed by a unit, `y` (years), `m` (months), `d` (days), `h`
/// (hours): any subset, in that order, each at most once, at least one (`"30d"`, `"1y6m"`,
/// `"2m2h"`). Displays the same way, leaving out zero parts (an all-zero duration displays
/// as `0h`). An all-zero duration keeps nothing: like restic, such a `within` rule counts as
/// not given. Serialises as that string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepWithin {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl KeepWithin {
    fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// The instant `latest` minus this duration, as restic computes it (Go's
    /// `AddDate(-years, -months, -days)` then minus the hours), in UTC nanoseconds since the
    /// epoch. Go normalises an overflowing day: 31 March minus 1 month is "31 February", that
    /// is 2 or 3 March. `None` when the result is before any representable date (the rule
    /// then keeps every snapshot). `ferry status --max-age` measures its age limit with it.
    pub fn cutoff_ns(&self, latest: UtcDateTime) -> Option<i128> {
        let months_since_year_0 = i64::from(latest.year()) * 12
            + i64::from(u8::from(latest.month()))
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months_since_year_0.div_euclid(12)).ok()?;
        let month = u8::try_from(months_since_year_0.rem_euclid(12) + 1).ok()?;
        let month = Month::try_from(month).ok()?;
        let first_of_month = Date::from_calendar_date(year, month, 1).ok()?;
        let date = first_of_month.checked_add(Duration::days(
            i64::from(latest.day()) - 1 - i64::from(self.days),
        ))?;
        let at = UtcDateTime::new(date, latest.time())
            .checked_sub(Duration::hours(i64::from(self.hours)))?;
        Some(at.unix_timestamp_nanos())
    }
}

impl FromStr for KeepWithin {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "keep-within duration";
        let text = s.trim();
        if text.is_empty() {
            return Err(bad(WHAT, s, "empty duration (e.g. \"30d\" or \"1y6m\")"));
        }
        let mut within = KeepWithin::default();
        // Index in "ymdh" of the last unit seen; units must come in that order.
        let mut next_unit = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let mut chars = tail.chars();
            let Some(unit) = chars.next() else {
                return Err(bad(
                    WHAT,
                    s,
                    format!("number {number} has no unit (y, m, d or h)"),
                ));
            };
            if number.is_empty() {
                return Err(bad(WHAT, s, format!("expected a number before {unit:?}")));
            }
            let Some(index) = "ymdh".find(unit) else {
                return Err(bad(
                    WHAT,
                    s,
                    format!("unknown unit {unit:?} (use y, m, d or h)"),
                ));
            };
            if index < next_unit {
                return Err(bad(
                    WHAT,
                    s,
                    "units must come in the order y, m, d, h, each at most once",
                ));
            }
            let value: u32 = number
                .parse()
                .map_err(|_| bad(WHAT, s, format!("number {number} is too large")))?;
            match unit {
                'y' => within.years = value,
                'm' => within.months = value,
                'd' => within.days = value,
                _ => within.hours = value,
            }
            next_unit = index + 1;
            rest = chars.as_str();
        }
        Ok(within)
    }
}

impl fmt::Display for KeepWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for KeepWithin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeepWithin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A list of tags for the `tags` rule: a snapshot matches when it carries all of them.
///
/// Parses from `"a,b"` (whitespace around each tag is trimmed). As in restic, the list made
/// of the empty tag alone (parsed from `""`) matches untagged snapshots only; an empty tag
/// among others (`"a,,b"`) is refused, since such a list could match nothing. A list with no
/// tags at all (only constructible directly) matches every snapshot. Displays as `a,b`;
/// serialises as a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// restic's `HasTags`: every tag is on the snapshot, where the empty tag matches a
    /// snapshot without tags.
    fn matches(&self, snapshot: &Snapshot) -> bool {
        for tag in &self.0 {
            if tag.is_empty() && snapshot.tags.is_empty() {
                return true;
            }
            if !snapshot.tags.contains(tag) {
                return false;
            }
        }
        true
    }

    fn is_untagged(&self) -> bool {
        self.0.len() == 1 && self.0[0].is_empty()
    }
}

impl FromStr for TagList {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let tags: Vec<String> = s.split(',').map(|t| t.trim().to_string()).collect();
        if tags.len() > 1 && tags.iter().any(String::is_empty) {
            return Err(bad(
                "tag list",
                s,
                "empty tag in a list of several (give \"\" alone for untagged snapshots)",
            ));
        }
        Ok(TagList(tags))
    }
}

impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// The retention policy: how many snapshots each rule keeps. `None` means the rule is not
/// used; so does a count of `Some(Keep::N(0))` and an all-zero `within`, as in restic.
///
/// Missing fields deserialise as not used; unknown fields are refused (a misspelt rule must
/// not silently keep less).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepPolicy {
    /// Keep the newest N snapshots.
    pub last: Option<Keep>,
    /// Keep the newest snapshot of each of the newest N (UTC) hours that have snapshots.
    pub hourly: Option<Keep>,
    /// Keep the newest snapshot of each of the newest N (UTC) days that have snapshots.
    pub daily: Option<Keep>,
    /// Keep the newest snapshot of each of the newest N ISO weeks (Monday to Sunday, UTC)
    /// that have snapshots.
    pub weekly: Option<Keep>,
    /// Keep the newest snapshot of each of the newest N (UTC) months that have snapshots.
    pub monthly: Option<Keep>,
    /// Keep the newest snapshot of each of the newest N (UTC) years that have snapshots.
    pub yearly: Option<Keep>,
    /// Keep every snapshot newer than the group's newest snapshot minus this duration.
    pub within: Option<KeepWithin>,
    /// Keep every snapshot that has all tags of any of these lists.
    pub tags: Vec<TagList>,
}

/// Reads one count rule of a policy.
type CountField = fn(&KeepPolicy) -> Option<Keep>;

/// The count rules in restic's order: field, bucket, reason, word for [`KeepPolicy::describe`].
const COUNT_RULES: [(CountField, Bucket, &str, &str); 6] = [
    (|p| p.last, Bucket::Each, "last snapshot", "last"),
    (|p| p.hourly, Bucket::Hour, "hourly snapshot", "hourly"),
    (|p| p.daily, Bucket::Day, "daily snapshot", "daily"),
    (|p| p.weekly, Bucket::Week, "weekly snapshot", "weekly"),
    (|p| p.monthly, Bucket::Month, "monthly snapshot", "monthly"),
    (|p| p.yearly, Bucket::Year, "yearly snapshot", "yearly"),
];

impl KeepPolicy {
    /// True when no rule is used: every count `None` or 0, `within` `None` or zero, no tag
    /// list. [`apply`] refuses such a policy.
    pub fn is_empty(&self) -> bool {
        COUNT_RULES
            .iter()
            .all(|(count, ..)| matches!(count(self), None | Some(Keep::N(0))))
            && self.within.is_none_or(|w| w.is_zero())
            && self.tags.is_empty()
    }

    /// One line for people, e.g. `keep 7 daily, 4 weekly, all monthly, all within 1y of the
    /// newest, all with tags a,b or c`; `keep nothing (no rule)` for an empty policy.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (count, _, _, word) in COUNT_RULES {
            match count(self) {
                None | Some(Keep::N(0)) => {}
                Some(Keep::N(n)) => parts.push(format!("{n} {word}")),
                Some(Keep::Unlimited) => parts.push(format!("all {word}")),
            }
        }
        if let Some(within) = self.within.filter(|w| !w.is_zero()) {
            parts.push(format!("all within {within} of the newest"));
        }
        if !self.tags.is_empty() {
            let lists: Vec<String> = self.tags.iter().map(tag_reason).collect();
            parts.push(format!("all with {}", lists.join(" or ")));
        }
        if parts.is_empty() {
            "keep nothing (no rule)".to_string()
        } else {
            format!("keep {}", parts.join(", "))
        }
    }
}

/// `tags a,b`, or `untagged` for the list matching untagged snapshots.
fn tag_reason(list: &TagList) -> String {
    if list.is_untagged() {
        "untagged".to_string()
    } else {
        format!("tags {list}")
    }
}

/// Which fields of a snapshot form its group: restic's `--group-by`.
///
/// Parses from a comma-separated list of `host`, `paths`, `tags` (restic's singular
/// `path` and `tag` and plural `hosts` too); the empty string groups nothing (all snapshots
/// form one group). Unknown words are refused, naming them. The default is host and paths,
/// as restic's. Displays as `host,paths`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the (sorted) list of paths.
    pub paths: bool,
    /// Group by the (sorted) list of tags.
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

impl FromStr for GroupBy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut group_by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        let mut unknown = Vec::new();
        for word in s.split(',').map(str::trim) {
            match word {
                "host" | "hosts" => group_by.host = true,
                "path" | "paths" => group_by.paths = true,
                "tag" | "tags" => group_by.tags = true,
                "" => {}
                other => unknown.push(format!("{other:?}")),
            }
        }
        if unknown.is_empty() {
            Ok(group_by)
        } else {
            Err(bad(
                "group-by",
                s,
                format!(
                    "unknown grouping {} {} (use host, paths and/or tags, or \"\" for one group)",
                    if unknown.len() == 1 { "word" } else { "words" },
                    unknown.join(", ")
                ),
            ))
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.tags, "tags"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
        f.write_str(&words.join(","))
    }
}

/// The key of a group: the grouped-by fields of its snapshots (`None` for fields not grouped
/// by). Paths and tags are sorted.
///
/// Displays like restic's group header: `host [h], tags [a, b], paths [/a, /b]` (the fields
/// grouped by, in that order); `all snapshots` when nothing is grouped by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    /// The host name, when grouping by host.
    pub host: Option<String>,
    /// The sorted paths, when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// The sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(snapshot: &Snapshot, group_by: &GroupBy) -> GroupKey {
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        GroupKey {
            host: group_by.host.then(|| snapshot.host.clone()),
            paths: group_by.paths.then(|| sorted(&snapshot.paths)),
            tags: group_by.tags.then(|| sorted(&snapshot.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(format!("host [{host}]"));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(", ")));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("paths [{}]", paths.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What the policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot's id.
    pub id: String,
    /// The snapshot's time, UTC nanoseconds since the epoch.
    pub time_ns: i64,
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Why it is kept, one entry per matching rule, in restic's words and order: `tags a,b`
    /// (or `untagged`), `within 30d`, `last snapshot`, `hourly snapshot`, `daily snapshot`,
    /// `weekly snapshot`, `monthly snapshot`, `yearly snapshot` (each possibly as `oldest
    /// daily snapshot` etc.). Empty for a removed snapshot.
    pub reasons: Vec<String>,
}

/// The decisions for one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// The group.
    pub key: GroupKey,
    /// One decision per snapshot of the group, newest first (equal times by id).
    pub decisions: Vec<Decision>,
}

impl GroupPlan {
    /// The kept snapshots, newest first.
    pub fn keep(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep)
    }

    /// The snapshots to remove, newest first.
    pub fn remove(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// Applies `policy` to `snapshots`, divided into groups by `group_by`.
///
/// Returns one plan per group, ordered by [`GroupKey`]; every snapshot appears in exactly one
/// plan, once. Calendar buckets and `within` are computed in UTC (see the module
/// documentation).
///
/// An empty policy ([`KeepPolicy::is_empty`]) is refused with [`PolicyError::Empty`]: it would
/// keep nothing. restic's own policy function keeps every snapshot for an empty policy ("policy
/// is empty") and so removes nothing; its `forget` command (since 0.17) stops with an error
/// instead, as this does.
///
/// Two restic behaviours are left to the caller: restic's `forget` refuses to remove every
/// snapshot of a group (which only a policy made of tag lists alone can do; check
/// `plan.keep().next().is_none()`), and restic ignores snapshots dated in the future of the
/// local clock when finding the newest one for `within`; this function has no clock, so the
/// newest snapshot is the newest of the group, whatever its time.
pub fn apply(
    snapshots: &[SnapshotInfo],
    policy: &KeepPolicy,
    group_by: &GroupBy,
) -> Result<Vec<GroupPlan>, PolicyError> {
    if policy.is_empty() {
        return Err(PolicyError::Empty);
    }
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotInfo>> = BTreeMap::new();
    for info in snapshots {
        groups
            .entry(GroupKey::of(&info.snapshot, group_by))
            .or_default()
            .push(info);
    }
    Ok(groups
        .into_iter()
        .map(|(key, mut list)| {
            list.sort_by(|a, b| {
                b.snapshot
                    .time_ns
                    .cmp(&a.snapshot.time_ns)
                    .then_with(|| a.id.cmp(&b.id))
            });
            GroupPlan {
                key,
                decisions: decide(&list, policy),
            }
        })
        .collect())
}

/// A calendar bucket of a count rule.
#[derive(Clone, Copy, Debug)]
enum Bucket {
    /// Every snapshot is its own bucket (`last`).
    Each,
    Hour,
    Day,
    /// ISO week.
    Week,
    Month,
    Year,
}

impl Bucket {
    /// The bucket of the `index`-th snapshot (newest first) taken at `at`. Values only need to
    /// be equal for equal buckets.
    fn of(self, index: usize, at: UtcDateTime) -> i64 {
        let year = i64::from(at.year());
        let month = i64::from(u8::from(at.month()));
        let day = i64::from(at.day());
        match self {
            Bucket::Each => i64::try_from(index).unwrap_or(i64::MAX),
            Bucket::Hour => ((year * 100 + month) * 100 + day) * 100 + i64::from(at.hour()),
            Bucket::Day => (year * 100 + month) * 100 + day,
            Bucket::Week => {
                let (iso_year, week, _) = at.to_iso_week_date();
                i64::from(iso_year) * 100 + i64::from(week)
            }
            Bucket::Month => year * 100 + month,
            Bucket::Year => year,
        }
    }
}

/// A count rule's state while walking a group newest first.
struct CountRule {
    /// Counts left; `None` for unlimited.
    left: Option<u32>,
    bucket: Bucket,
    reason: &'static str,
    /// The bucket of the last snapshot this rule kept.
    last_kept: Option<i64>,
}

/// UTC date and time of a snapshot time (every `i64` of nanoseconds is representable).
fn utc(time_ns: i64) -> UtcDateTime {
    UtcDateTime::UNIX_EPOCH.saturating_add(Duration::nanoseconds(time_ns))
}

/// The decisions for one group, sorted newest first.
fn decide(list: &[&SnapshotInfo], policy: &KeepPolicy) -> Vec<Decision> {
    let mut rules: Vec<CountRule> = COUNT_RULES
        .iter()
        .filter_map(|&(count, bucket, reason, _)| match count(policy)? {
            Keep::N(0) => None,
            keep => Some(CountRule {
                left: keep.limit(),
                bucket,
                reason,
                last_kept: None,
            }),
        })
        .collect();
    let within = policy.within.filter(|w| !w.is_zero());
    // `Some(None)`: a `within` rule whose cutoff is before any date, keeping everything.
    let cutoff = match (within, list.first()) {
        (Some(w), Some(newest)) => Some(w.cutoff_ns(utc(newest.snapshot.time_ns))),
        _ => None,
    };
    let oldest = list.len().saturating_sub(1);

    list.iter()
        .enumerate()
        .map(|(index, info)| {
            let snapshot = &info.snapshot;
            let at = utc(snapshot.time_ns);
            let mut reasons = Vec::new();
            for list in &policy.tags {
                if list.matches(snapshot) {
                    reasons.push(tag_reason(list));
                }
            }
            if let (Some(w), Some(cutoff)) = (within, cutoff)
                && cutoff.is_none_or(|c| i128::from(snapshot.time_ns) > c)
            {
                reasons.push(format!("within {w}"));
            }
            for rule in &mut rules {
                if rule.left == Some(0) {
                    continue;
                }
                let bucket = rule.bucket.of(index, at);
                let same = rule.last_kept == Some(bucket);
                if !same || index == oldest {
                    rule.last_kept = Some(bucket);
                    if let Some(left) = &mut rule.left {
                        *left -= 1;
                    }
                    reasons.push(if same {
                        format!("oldest {}", rule.reason)
                    } else {
                        rule.reason.to_string()
                    });
                }
            }
            Decision {
                id: info.id.clone(),
                time_ns: snapshot.time_ns,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlobId;
    use crate::objects::SnapshotStats;
    use std::collections::BTreeSet;
    use time::PrimitiveDateTime;
    use time::macros::format_description;

    /// UTC nanoseconds of `"YYYY-MM-DD hh:mm:ss"`.
    fn ns(text: &str) -> i64 {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let at = PrimitiveDateTime::parse(text, format).unwrap().assume_utc();
        i64::try_from(at.unix_timestamp_nanos()).unwrap()
    }

    fn info(id: &str, time_ns: i64, host: &str, paths: &[&str], tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: id.to_string(),
            snapshot: Snapshot {
                time: String::new(),
                time_ns,
                host: host.to_string(),
                paths: paths.iter().map(|p| p.to_string()).collect(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                source_set: String::new(),
                root: BlobId([0; 32]),
                stats: SnapshotStats::default(),
                sources: Vec::new(),
                errors: Vec::new(),
                ferry_version: String::new(),
                usage: None,
            },
        }
    }

    /// Snapshots of host `h`, paths `/data`, no tags, each named by its time.
    fn at_times(times: &[&str]) -> Vec<SnapshotInfo> {
        times
            .iter()
            .map(|t| info(t, ns(t), "h", &["/data"], &[]))
            .collect()
    }

    fn policy(f: impl FnOnce(&mut KeepPolicy)) -> KeepPolicy {
        let mut p = KeepPolicy::default();
        f(&mut p);
        p
    }

    /// The one group's plan.
    fn one_group(snapshots: &[SnapshotInfo], p: &KeepPolicy) -> GroupPlan {
        let mut plans = apply(snapshots, p, &GroupBy::default()).unwrap();
        assert_eq!(plans.len(), 1, "{plans:?}");
        plans.remove(0)
    }

    fn kept_ids(plan: &GroupPlan) -> Vec<&str> {
        plan.keep().map(|d| d.id.as_str()).collect()
    }

    fn reasons_of<'a>(plan: &'a GroupPlan, id: &str) -> &'a [String] {
        &plan.decisions.iter().find(|d| d.id == id).unwrap().reasons
    }

    fn count(n: u32) -> Option<Keep> {
        Some(Keep::N(n))
    }

    #[test]
    fn keep_parses_counts_and_unlimited() {
        assert_eq!("7".parse::<Keep>().unwrap(), Keep::N(7));
        assert_eq!("0".parse::<Keep>().unwrap(), Keep::N(0));
        assert_eq!("-1".parse::<Keep>().unwrap(), Keep::Unlimited);
        assert_eq!("unlimited".parse::<Keep>().unwrap(), Keep::Unlimited);
        for bad_value in ["abc", "-2", "", "1.5", "99999999999", "7d"] {
            let err = bad_value.parse::<Keep>().unwrap_err();
            assert!(matches!(err, PolicyError::BadValue { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&format!("{bad_value:?}")),
                "{err} should name {bad_value:?}"
            );
        }
        assert!(
            "-2".parse::<Keep>()
                .unwrap_err()
                .to_string()
                .contains("unlimited")
        );
        assert_eq!(Keep::N(3).to_string(), "3");
        assert_eq!(Keep::Unlimited.to_string(), "unlimited");
        // JSON: a number or "unlimited"; -1 accepted, -2 refused.
        assert_eq!(serde_json::to_string(&Keep::N(4)).unwrap(), "4");
        assert_eq!(
            serde_json::to_string(&Keep::Unlimited).unwrap(),
            "\"unlimited\""
        );
        assert_eq!(serde_json::from_str::<Keep>("4").unwrap(), Keep::N(4));
        assert_eq!(serde_json::from_str::<Keep>("-1").unwrap(), Keep::Unlimited);
        assert_eq!(
            serde_json::from_str::<Keep>("\"unlimited\"").unwrap(),
            Keep::Unlimited
        );
        let err = serde_json::from_str::<Keep>("-2").unwrap_err().to_string();
        assert!(err.contains("\"-2\""), "{err}");
    }

    #[test]
    fn keep_within_parses_restic_durations() {
        let w = |years, months, days, hours| KeepWithin {
            years,
            months,
            days,
            hours,
        };
        assert_eq!("1y2m3d4h".parse::<KeepWithin>().unwrap(), w(1, 2, 3, 4));
        assert_eq!("30d".parse::<KeepWithin>().unwrap(), w(0, 0, 30, 0));
        assert_eq!("2m2h".parse::<KeepWithin>().unwrap(), w(0, 2, 0, 2));
        assert_eq!(" 1y ".parse::<KeepWithin>().unwrap(), w(1, 0, 0, 0));
        assert_eq!("0d".parse::<KeepWithin>().unwrap(), w(0, 0, 0, 0));
        assert_eq!(w(1, 2, 3, 4).to_string(), "1y2m3d4h");
        assert_eq!(w(0, 0, 30, 0).to_string(), "30d");
        assert_eq!(w(1, 0, 0, 5).to_string(), "1y5h");
        assert_eq!(w(0, 0, 0, 0).to_string(), "0h");
        for (bad_value, why) in [
            ("", "empty"),
            ("abc", "number before"),
            ("1x", "unknown unit"),
            ("d", "number before"),
            ("5", "no unit"),
            ("1d1y", "order"),
            ("1d1d", "order"),
            ("1w", "unknown unit"),
            ("-1d", "number before"),
            ("99999999999d", "too large"),
        ] {
            let err = bad_value.parse::<KeepWithin>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad_value:?}")), "{err}");
            assert!(err.contains(why), "{bad_value:?}: {err} should say {why}");
        }
        assert_eq!(serde_json::to_string(&w(0, 1, 14, 0)).unwrap(), "\"1m14d\"");
        assert_eq!(
            serde_json::from_str::<KeepWithin>("\"7d\"").unwrap(),
            w(0, 0, 7, 0)
        );
        assert!(serde_json::from_str::<KeepWithin>("\"7x\"").is_err());
    }

    #[test]
    fn tag_lists_parse() {
        assert_eq!(
            "a,b".parse::<TagList>().unwrap(),
            TagList(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            " a , b ".parse::<TagList>().unwrap(),
            TagList(vec!["a".into(), "b".into()])
        );
        assert_eq!("".parse::<TagList>().unwrap(), TagList(vec![String::new()]));
        let err = "a,,b".parse::<TagList>().unwrap_err().to_string();
        assert!(
            err.contains("\"a,,b\"") && err.contains("empty tag"),
            "{err}"
        );
        assert_eq!(TagList(vec!["a".into(), "b".into()]).to_string(), "a,b");
    }

    #[test]
    fn group_by_parses_like_restic() {
        let g = |host, paths, tags| GroupBy { host, paths, tags };
        assert_eq!(GroupBy::default(), g(true, true, false));
        assert_eq!(
            "host,paths".parse::<GroupBy>().unwrap(),
            g(true, true, false)
        );
        assert_eq!("host".parse::<GroupBy>().unwrap(), g(true, false, false));
        assert_eq!(
            "tags,path".parse::<GroupBy>().unwrap(),
            g(false, true, true)
        );
        assert_eq!("".parse::<GroupBy>().unwrap(), g(false, false, false));
        let err = "host,foo,bar".parse::<GroupBy>().unwrap_err().to_string();
        assert!(
            err.contains("\"foo\"") && err.contains("\"bar\"") && err.contains("words"),
            "{err}"
        );
        assert_eq!(g(true, true, true).to_string(), "host,paths,tags");
        assert_eq!(g(false, false, false).to_string(), "");
    }

    #[test]
    fn empty_policy_is_refused() {
        assert!(KeepPolicy::default().is_empty());
        // 0 counts and a zero duration are "not given", as in restic.
        let zeros = policy(|p| {
            p.last = count(0);
            p.daily = count(0);
            p.within = Some(KeepWithin::default());
        });
        assert!(zeros.is_empty());
        let snapshots = at_times(&["2020-01-01 00:00:00"]);
        for p in [KeepPolicy::default(), zeros] {
            let err = apply(&snapshots, &p, &GroupBy::default()).unwrap_err();
            assert_eq!(err, PolicyError::Empty);
            assert_eq!(
                err.to_string(),
                "no retention rule given: nothing would be kept, refusing; give at least one \
                 --keep-* option"
            );
            // Even with no snapshots at all.
            assert_eq!(
                apply(&[], &p, &GroupBy::default()).unwrap_err(),
                PolicyError::Empty
            );
        }
        assert!(!policy(|p| p.tags = vec![TagList(vec!["a".into()])]).is_empty());
        assert!(!policy(|p| p.yearly = Some(Keep::Unlimited)).is_empty());
        assert!(!policy(|p| p.within = Some("1h".parse().unwrap())).is_empty());
        assert!(
            apply(&[], &policy(|p| p.last = count(1)), &GroupBy::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn describe_names_every_rule() {
        let p = policy(|p| {
            p.daily = count(7);
            p.weekly = count(4);
        });
        assert_eq!(p.describe(), "keep 7 daily, 4 weekly");
        let p = policy(|p| {
            p.last = count(3);
            p.hourly = count(0);
            p.monthly = Some(Keep::Unlimited);
            p.yearly = count(10);
            p.within = Some("1y6m".parse().unwrap());
            p.tags = vec!["a,b".parse().unwrap(), "".parse().unwrap()];
        });
        assert_eq!(
            p.describe(),
            "keep 3 last, all monthly, 10 yearly, all within 1y6m of the newest, \
             all with tags a,b or untagged"
        );
        assert_eq!(KeepPolicy::default().describe(), "keep nothing (no rule)");
    }

    /// restic's documented example: one backup every Sunday for 12 weeks; `--keep-daily 4`
    /// keeps the last four Sundays.
    #[test]
    fn restic_example_weekly_backups_keep_daily_4() {
        let times = [
            "2019-09-01 11:00:00",
            "2019-09-08 11:00:00",
            "2019-09-15 11:00:00",
            "2019-09-22 11:00:00",
            "2019-09-29 11:00:00",
            "2019-10-06 11:00:00",
            "2019-10-13 11:00:00",
            "2019-10-20 11:00:00",
            "2019-10-27 11:00:00",
            "2019-11-03 11:00:00",
            "2019-11-10 11:00:00",
            "2019-11-17 11:00:00",
        ];
        let plan = one_group(&at_times(&times), &policy(|p| p.daily = count(4)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2019-11-17 11:00:00",
                "2019-11-10 11:00:00",
                "2019-11-03 11:00:00",
                "2019-10-27 11:00:00"
            ]
        );
        assert!(plan.keep().all(|d| d.reasons == ["daily snapshot"]));
        assert_eq!(plan.remove().count(), 8);
        assert!(plan.remove().all(|d| d.reasons.is_empty()));
        // Newest first.
        assert_eq!(plan.decisions[0].id, "2019-11-17 11:00:00");
        assert_eq!(plan.decisions[11].id, "2019-09-01 11:00:00");
    }

    /// Several snapshots a day: `daily 3` keeps the newest of each of the 3 newest days that
    /// have snapshots (a day without snapshots does not count).
    #[test]
    fn daily_keeps_newest_of_each_of_the_last_days_with_snapshots() {
        let snapshots = at_times(&[
            "2021-05-01 08:00:00",
            "2021-05-01 20:00:00",
            "2021-05-02 09:00:00",
            "2021-05-02 10:00:00",
            "2021-05-02 23:59:59",
            // 3 and 4 May: nothing.
            "2021-05-05 00:00:00",
            "2021-05-05 13:00:00",
            "2021-05-06 07:00:00",
        ]);
        let plan = one_group(&snapshots, &policy(|p| p.daily = count(3)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2021-05-06 07:00:00",
                "2021-05-05 13:00:00",
                "2021-05-02 23:59:59"
            ]
        );
        // hourly 3: the newest of each of the 3 newest hours.
        let plan = one_group(&snapshots, &policy(|p| p.hourly = count(3)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2021-05-06 07:00:00",
                "2021-05-05 13:00:00",
                "2021-05-05 00:00:00"
            ]
        );
        // last 2: just the newest two.
        let plan = one_group(&snapshots, &policy(|p| p.last = count(2)));
        assert_eq!(
            kept_ids(&plan),
            ["2021-05-06 07:00:00", "2021-05-05 13:00:00"]
        );
        assert!(plan.keep().all(|d| d.reasons == ["last snapshot"]));
    }

    /// restic (0.17+): a count rule with counts left when it reaches the group's oldest
    /// snapshot keeps that one too, as "oldest …".
    #[test]
    fn a_rule_with_counts_left_keeps_the_oldest_snapshot() {
        let snapshots = at_times(&[
            "2021-05-01 08:00:00",
            "2021-05-01 20:00:00",
            "2021-05-02 09:00:00",
            "2021-05-02 10:00:00",
            "2021-05-03 07:00:00",
        ]);
        let plan = one_group(&snapshots, &policy(|p| p.daily = count(5)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2021-05-03 07:00:00",
                "2021-05-02 10:00:00",
                "2021-05-01 20:00:00",
                "2021-05-01 08:00:00"
            ]
        );
        assert_eq!(
            reasons_of(&plan, "2021-05-01 08:00:00"),
            ["oldest daily snapshot"]
        );
        assert_eq!(reasons_of(&plan, "2021-05-01 20:00:00"), ["daily snapshot"]);
        // With exactly 3 counts, none is left at the oldest: it goes.
        let plan = one_group(&snapshots, &policy(|p| p.daily = count(3)));
        assert_eq!(plan.keep().count(), 3);
        assert!(!plan.decisions[4].keep);
        // Unlimited always has counts left.
        let plan = one_group(&snapshots, &policy(|p| p.daily = Some(Keep::Unlimited)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2021-05-03 07:00:00",
                "2021-05-02 10:00:00",
                "2021-05-01 20:00:00",
                "2021-05-01 08:00:00"
            ]
        );
        // `last` never says "oldest": every snapshot is its own bucket.
        let plan = one_group(&snapshots, &policy(|p| p.last = count(10)));
        assert_eq!(plan.keep().count(), 5);
        assert!(plan.keep().all(|d| d.reasons == ["last snapshot"]));
    }

    #[test]
    fn unlimited_keeps_every_bucket() {
        let snapshots = at_times(&[
            "2018-03-01 00:00:00",
            "2019-07-01 00:00:00",
            "2019-07-02 00:00:00",
            "2020-01-01 00:00:00",
        ]);
        let plan = one_group(&snapshots, &policy(|p| p.last = Some(Keep::Unlimited)));
        assert_eq!(plan.keep().count(), 4);
        let plan = one_group(&snapshots, &policy(|p| p.yearly = Some(Keep::Unlimited)));
        assert_eq!(
            kept_ids(&plan),
            [
                "2020-01-01 00:00:00",
                "2019-07-02 00:00:00",
                "2018-03-01 00:00:00"
            ]
        );
        let plan = one_group(&snapshots, &policy(|p| p.monthly = Some(Keep::Unlimited)));
        assert_eq!(plan.keep().count(), 3);
        assert!(!plan.decisions[2].keep, "{plan:?}");
    }

    /// A snapshot kept by several rules lists them all, in restic's order.
    #[test]
    fn every_matching_rule_is_a_reason() {
        let snapshots: Vec<SnapshotInfo> = [
            ("new", "2022-06-30 12:00:00", &["x"][..]),
            ("mid", "2022-06-29 12:00:00", &[][..]),
            ("old", "2022-05-31 12:00:00", &[][..]),
        ]
        .iter()
        .map(|(id, t, tags)| info(id, ns(t), "h", &["/"], tags))
        .collect();
        let p = policy(|p| {
            p.last = count(1);
            p.daily = count(2);
            p.weekly = count(1);
            p.monthly = count(2);
            p.yearly = count(1);
            p.within = Some("1d".parse().unwrap());
            p.tags = vec!["x".parse().unwrap()];
        });
        let plan = one_group(&snapshots, &p);
        assert_eq!(
            reasons_of(&plan, "new"),
            [
                "tags x",
                "within 1d",
                "last snapshot",
                "daily snapshot",
                "weekly snapshot",
                "monthly snapshot",
                "yearly snapshot"
            ]
        );
        // Exactly one day older: not strictly within.
        assert_eq!(reasons_of(&plan, "mid"), ["daily snapshot"]);
        assert_eq!(reasons_of(&plan, "old"), ["monthly snapshot"]);
    }

    /// Weeks are ISO weeks (Monday to Sunday), even across a new year.
    #[test]
    fn weekly_uses_iso_weeks() {
        let snapshots = at_times(&[
            "2024-12-29 10:00:00", // Sunday, 2024-W52
            "2024-12-30 10:00:00", // Monday, 2025-W01
            "2025-01-05 10:00:00", // Sunday, 2025-W01
        ]);
        let plan = one_group(&snapshots, &policy(|p| p.weekly = count(2)));
        assert_eq!(
            kept_ids(&plan),
            ["2025-01-05 10:00:00", "2024-12-29 10:00:00"]
        );
        // …whereas yearly splits the week.
        let plan = one_group(&snapshots, &policy(|p| p.yearly = count(2)));
        assert_eq!(
            kept_ids(&plan),
            ["2025-01-05 10:00:00", "2024-12-30 10:00:00"]
        );
    }

    /// Days are UTC days: 23:30 and 00:30 UTC are two days, whatever the local zone.
    #[test]
    fn buckets_are_utc() {
        let snapshots = at_times(&["2024-03-10 23:30:00", "2024-03-11 00:30:00"]);
        let plan = one_group(&snapshots, &policy(|p| p.daily = count(2)));
        assert_eq!(plan.keep().count(), 2);
        assert!(plan.keep().all(|d| d.reasons == ["daily snapshot"]));
        // Before the epoch too.
        let snapshots = at_times(&["1969-12-31 23:00:00", "1969-12-31 22:00:00"]);
        let plan = one_group(&snapshots, &policy(|p| p.daily = count(1)));
        assert_eq!(kept_ids(&plan), ["1969-12-31 23:00:00"]);
    }

    /// `within` counts back from the group's newest snapshot (not from now), strictly.
    #[test]
    fn within_is_relative_to_the_newest_snapshot() {
        let snapshots = at_times(&[
            "2020-06-15 12:00:00",
            "2020-06-10 00:00:00",
            "2020-06-08 12:00:01",
            "2020-06-08 12:00:00",
            "2020-06-01 00:00:00",
        ]);
        let plan = one_group(
            &snapshots,
            &policy(|p| p.within = Some("7d".parse().unwrap())),
        );
        assert_eq!(
            kept_ids(&plan),
            [
                "2020-06-15 12:00:00",
                "2020-06-10 00:00:00",
                "2020-06-08 12:00:01"
            ]
        );
        assert!(plan.keep().all(|d| d.reasons == ["within 7d"]));
        // A nanosecond past the cutoff counts.
        let mut edge = at_times(&["2020-06-15 12:00:00"]);
        edge.push(info(
            "edge",
            ns("2020-06-08 12:00:00") + 1,
            "h",
            &["/data"],
            &[],
        ));
        let plan = one_group(&edge, &policy(|p| p.within = Some("7d".parse().unwrap())));
        assert_eq!(plan.keep().count(), 2);
    }

    /// Years, months, days, hours subtract calendar-wise like restic (Go's `AddDate`,
    /// overflowing days roll into the next month).
    #[test]
    fn within_subtracts_calendar_units() {
        let cutoff = |latest: &str, within: &str| {
            let w: KeepWithin = within.parse().unwrap();
            let at = w.cutoff_ns(utc(ns(latest))).unwrap();
            i64::try_from(at).unwrap()
        };
        assert_eq!(
            cutoff("2024-03-31 10:00:00", "1m"),
            ns("2024-03-02 10:00:00") // "31 February 2024"
        );
        assert_eq!(
            cutoff("2023-03-31 10:00:00", "1m"),
            ns("2023-03-03 10:00:00")
        );
        assert_eq!(
            cutoff("2024-02-29 00:00:00", "1y"),
            ns("2023-03-01 00:00:00")
        );
        assert_eq!(
            cutoff("2020-01-01 01:00:00", "1d2h"),
            ns("2019-12-30 23:00:00")
        );
        assert_eq!(
            cutoff("2020-05-15 06:00:00", "1y2m3d4h"),
            ns("2019-03-12 02:00:00")
        );
        assert_eq!(
            cutoff("2020-01-10 00:00:00", "14m"),
            ns("2018-11-10 00:00:00")
        );
        // Far beyond any date: keeps everything.
        let huge: KeepWithin = "4000000000y".parse().unwrap();
        assert_eq!(huge.cutoff_ns(utc(ns("2020-01-01 00:00:00"))), None);
        let snapshots = at_times(&["2020-01-01 00:00:00", "1700-01-01 00:00:00"]);
        let plan = one_group(&snapshots, &policy(|p| p.within = Some(huge)));
        assert_eq!(plan.keep().count(), 2);
    }

    #[test]
    fn tag_lists_keep_snapshots_having_all_tags_of_any_list() {
        let snapshots: Vec<SnapshotInfo> = [
            ("ab", &["a", "b", "x"][..]),
            ("a", &["a"][..]),
            ("c", &["c"][..]),
            ("abc", &["c", "b", "a"][..]),
            ("none", &[][..]),
        ]
        .iter()
        .enumerate()
        .map(|(i, (id, tags))| {
            let hour = i64::try_from(i).unwrap() * 3_600_000_000_000;
            info(id, ns("2020-01-01 00:00:00") - hour, "h", &["/"], tags)
        })
        .collect();
        let p = policy(|p| p.tags = vec!["a,b".parse().unwrap(), "c".parse().unwrap()]);
        let plan = one_group(&snapshots, &p);
        assert_eq!(kept_ids(&plan), ["ab", "c", "abc"]);
        assert_eq!(reasons_of(&plan, "ab"), ["tags a,b"]);
        assert_eq!(reasons_of(&plan, "c"), ["tags c"]);
        assert_eq!(reasons_of(&plan, "abc"), ["tags a,b", "tags c"]);
        // restic's `--keep-tag ''`: untagged snapshots only.
        let p = policy(|p| p.tags = vec!["".parse().unwrap()]);
        let plan = one_group(&snapshots, &p);
        assert_eq!(kept_ids(&plan), ["none"]);
        assert_eq!(reasons_of(&plan, "none"), ["untagged"]);
        // A tag-only policy can keep nothing of a group (the caller must refuse, as restic).
        let p = policy(|p| p.tags = vec!["zzz".parse().unwrap()]);
        let plan = one_group(&snapshots, &p);
        assert!(plan.keep().next().is_none());
    }

    #[test]
    fn groups_by_host_and_paths() {
        let snapshots = vec![
            info("a1", ns("2020-01-01 00:00:00"), "alpha", &["/b", "/a"], &[]),
            info(
                "a2",
                ns("2020-01-02 00:00:00"),
                "alpha",
                &["/a", "/b"],
                &["t"],
            ),
            info("b1", ns("2020-01-01 00:00:00"), "beta", &["/a", "/b"], &[]),
            info("b2", ns("2019-01-01 00:00:00"), "beta", &["/a", "/b"], &[]),
            info("a3", ns("2020-01-03 00:00:00"), "alpha", &["/c"], &[]),
        ];
        let p = policy(|p| p.last = count(1));
        let plans = apply(&snapshots, &p, &GroupBy::default()).unwrap();
        let summary: Vec<(String, Vec<&str>)> = plans
            .iter()
            .map(|plan| (plan.key.to_string(), kept_ids(plan)))
            .collect();
        assert_eq!(
            summary,
            [
                ("host [alpha], paths [/a, /b]".to_string(), vec!["a2"]),
                ("host [alpha], paths [/c]".to_string(), vec!["a3"]),
                ("host [beta], paths [/a, /b]".to_string(), vec!["b1"]),
            ]
        );
        assert_eq!(
            plans[0].key,
            GroupKey {
                host: Some("alpha".into()),
                paths: Some(vec!["/a".into(), "/b".into()]),
                tags: None
            }
        );
        // Two hosts, grouped by host only: two groups.
        let plans = apply(&snapshots, &p, &"host".parse().unwrap()).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(kept_ids(&plans[0]), ["a3"]);
        assert_eq!(kept_ids(&plans[1]), ["b1"]);
        // Grouping by nothing: one group.
        let plans = apply(&snapshots, &p, &"".parse().unwrap()).unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].decisions.len(), 5);
        assert_eq!(kept_ids(&plans[0]), ["a3"]);
        assert_eq!(plans[0].key.to_string(), "all snapshots");
        // Grouping by tags: sorted tags in the key, shown before the paths as in restic.
        let plans = apply(&snapshots, &p, &"host,paths,tags".parse().unwrap()).unwrap();
        assert_eq!(plans.len(), 4);
        let keys: Vec<String> = plans.iter().map(|plan| plan.key.to_string()).collect();
        assert!(
            keys.contains(&"host [alpha], tags [t], paths [/a, /b]".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"host [alpha], tags [], paths [/a, /b]".to_string()),
            "{keys:?}"
        );
    }

    /// Equal times are ordered by id, whatever the input order.
    #[test]
    fn ties_are_ordered_by_id() {
        let t = ns("2020-01-01 00:00:00");
        let mut snapshots = vec![
            info("b", t, "h", &["/"], &[]),
            info("a", t, "h", &["/"], &[]),
            info("c", t, "h", &["/"], &[]),
        ];
        let p = policy(|p| p.last = count(1));
        for _ in 0..3 {
            snapshots.rotate_left(1);
            let plan = one_group(&snapshots, &p);
            let order: Vec<&str> = plan.decisions.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(order, ["a", "b", "c"]);
            assert_eq!(kept_ids(&plan), ["a"]);
        }
    }

    /// restic's documentation's long example, on five years of daily backups ending on
    /// Tuesday 31 December 2019: `--keep-daily 7 --keep-weekly 5 --keep-monthly 12
    /// --keep-yearly 75`.
    #[test]
    fn restic_example_daily_weekly_monthly_yearly() {
        let first = ns("2015-01-01 03:00:00");
        let last = ns("2019-12-31 03:00:00");
        let day: i64 = 86_400_000_000_000;
        let snapshots: Vec<SnapshotInfo> = (first..=last)
            .step_by(usize::try_from(day).unwrap())
            .map(|t| {
                let name = utc(t).date().to_string();
                info(&name, t, "h", &["/"], &[])
            })
            .collect();
        let p = policy(|p| {
            p.daily = count(7);
            p.weekly = count(5);
            p.monthly = count(12);
            p.yearly = count(75);
        });
        let plan = one_group(&snapshots, &p);
        let kept: BTreeSet<&str> = plan.keep().map(|d| d.id.as_str()).collect();
        let mut want: BTreeSet<&str> = BTreeSet::new();
        // 7 dailies: 25..31 December.
        want.extend([
            "2019-12-31",
            "2019-12-30",
            "2019-12-29",
            "2019-12-28",
            "2019-12-27",
            "2019-12-26",
            "2019-12-25",
        ]);
        // 5 weeklies (Sundays, and Tuesday 31 in the week of 30 December): 3 more.
        want.extend(["2019-12-22", "2019-12-15", "2019-12-08"]);
        // 12 monthlies (month ends): 11 more.
        want.extend([
            "2019-11-30",
            "2019-10-31",
            "2019-09-30",
            "2019-08-31",
            "2019-07-31",
            "2019-06-30",
            "2019-05-31",
            "2019-04-30",
            "2019-03-31",
            "2019-02-28",
            "2019-01-31",
        ]);
        // Yearlies: 4 more year ends, and, counts being left, the oldest snapshot.
        want.extend([
            "2018-12-31",
            "2017-12-31",
            "2016-12-31",
            "2015-12-31",
            "2015-01-01",
        ]);
        assert_eq!(kept, want);
        assert_eq!(
            reasons_of(&plan, "2019-12-31"),
            [
                "daily snapshot",
                "weekly snapshot",
                "monthly snapshot",
                "yearly snapshot"
            ]
        );
        assert_eq!(
            reasons_of(&plan, "2019-12-29"),
            ["daily snapshot", "weekly snapshot"]
        );
        assert_eq!(reasons_of(&plan, "2015-01-01"), ["oldest yearly snapshot"]);
    }

    #[test]
    fn plans_serialise_for_json_output() {
        let snapshots = vec![
            info("old", 1, "h", &["/b", "/a"], &[]),
            info("new", 2, "h", &["/a", "/b"], &[]),
        ];
        let plans = apply(
            &snapshots,
            &policy(|p| p.last = count(1)),
            &GroupBy::default(),
        )
        .unwrap();
        let json = serde_json::to_value(&plans).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "key": {"host": "h", "paths": ["/a", "/b"], "tags": null},
                "decisions": [
                    {"id": "new", "time_ns": 2, "keep": true, "reasons": ["last snapshot"]},
                    {"id": "old", "time_ns": 1, "keep": false, "reasons": []}
                ]
            }])
        );
    }

    #[test]
    fn policies_deserialise_from_config() {
        let p: KeepPolicy = serde_json::from_str(
            r#"{"last": "unlimited", "daily": 7, "within": "30d", "tags": [["a", "b"], [""]]}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            policy(|p| {
                p.last = Some(Keep::Unlimited);
                p.daily = count(7);
                p.within = Some("30d".parse().unwrap());
                p.tags = vec!["a,b".parse().unwrap(), "".parse().unwrap()];
            })
        );
        let back: KeepPolicy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let err = serde_json::from_str::<KeepPolicy>(r#"{"dayly": 7}"#).unwrap_err();
        assert!(err.to_string().contains("dayly"), "{err}");
        assert!(serde_json::from_str::<KeepPolicy>("{}").unwrap().is_empty());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const QUARTER_HOUR: i64 = 15 * 60 * 1_000_000_000;

        /// Up to 40 snapshots over 2 hosts, 2 path sets and 3 tags, spread over three years
        /// or crowded into one week (so that hours and days hold several, and times tie).
        fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotInfo>> {
            let base = ns("2020-01-01 00:00:00");
            let one = (
                prop_oneof![0i64..3 * 365 * 24 * 4, 0i64..7 * 24 * 4],
                0usize..2,
                0usize..2,
                proptest::collection::btree_set(0usize..3, 0..3),
                any::<u16>(),
            );
            proptest::collection::vec(one, 0..40).prop_map(move |list| {
                list.into_iter()
                    .enumerate()
                    .map(|(i, (quarters, host, paths, tags, salt))| {
                        let tags: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
                        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                        info(
                            &format!("{salt:04x}{i:02}"),
                            base + quarters * QUARTER_HOUR,
                            ["alpha", "beta"][host],
                            [&["/a"][..], &["/b", "/a"][..]][paths],
                            &tags,
                        )
                    })
                    .collect()
            })
        }

        fn arb_keep() -> impl Strategy<Value = Option<Keep>> {
            prop_oneof![
                2 => Just(None),
                2 => (0u32..5).prop_map(|n| Some(Keep::N(n))),
                1 => Just(Some(Keep::Unlimited)),
            ]
        }

        fn arb_within() -> impl Strategy<Value = Option<KeepWithin>> {
            prop_oneof![
                Just(None),
                (0u32..2, 0u32..3, 0u32..10, 0u32..30).prop_map(|(years, months, days, hours)| {
                    Some(KeepWithin {
                        years,
                        months,
                        days,
                        hours,
                    })
                }),
            ]
        }

        fn arb_tag_list() -> impl Strategy<Value = TagList> {
            prop_oneof![
                Just(TagList(vec![String::new()])),
                proptest::collection::btree_set(0usize..3, 1..3)
                    .prop_map(|set| TagList(set.iter().map(|t| format!("t{t}")).collect())),
            ]
        }

        fn arb_policy() -> impl Strategy<Value = KeepPolicy> {
            (
                [
                    arb_keep(),
                    arb_keep(),
                    arb_keep(),
                    arb_keep(),
                    arb_keep(),
                    arb_keep(),
                ],
                arb_within(),
                proptest::collection::vec(arb_tag_list(), 0..3),
            )
                .prop_map(|(counts, within, tags)| {
                    let [last, hourly, daily, weekly, monthly, yearly] = counts;
                    KeepPolicy {
                        last,
                        hourly,
                        daily,
                        weekly,
                        monthly,
                        yearly,
                        within,
                        tags,
                    }
                })
        }

        fn arb_group_by() -> impl Strategy<Value = GroupBy> {
            any::<(bool, bool, bool)>().prop_map(|(host, paths, tags)| GroupBy {
                host,
                paths,
                tags,
            })
        }

        /// The kept ids of all groups.
        fn kept(plans: &[GroupPlan]) -> BTreeSet<String> {
            plans
                .iter()
                .flat_map(|plan| plan.keep().map(|d| d.id.clone()))
                .collect()
        }

        /// `p` with one rule made to keep more: a count raised (or set, or made unlimited),
        /// a `within` lengthened in one unit, or a tag list added.
        fn loosen(p: &KeepPolicy, rule: usize, by: u32, list: TagList) -> KeepPolicy {
            let mut q = p.clone();
            let raise = |keep: &mut Option<Keep>| {
                *keep = match *keep {
                    _ if by == 3 => Some(Keep::Unlimited),
                    None => Some(Keep::N(by)),
                    Some(Keep::N(n)) => Some(Keep::N(n + by)),
                    Some(Keep::Unlimited) => Some(Keep::Unlimited),
                }
            };
            match rule {
                0 => raise(&mut q.last),
                1 => raise(&mut q.hourly),
                2 => raise(&mut q.daily),
                3 => raise(&mut q.weekly),
                4 => raise(&mut q.monthly),
                5 => raise(&mut q.yearly),
                6..=9 => {
                    let mut w = q.within.unwrap_or_default();
                    match rule {
                        6 => w.years += by,
                        7 => w.months += by,
                        8 => w.days += by,
                        _ => w.hours += by,
                    }
                    q.within = Some(w);
                }
                _ => q.tags.push(list),
            }
            q
        }

        proptest! {
            /// Every snapshot is in exactly one group, once; groups hold snapshots of their
            /// key, newest first; reasons are given exactly for kept snapshots.
            #[test]
            fn every_snapshot_is_decided_once(
                snapshots in arb_snapshots(),
                p in arb_policy(),
                group_by in arb_group_by(),
            ) {
                prop_assume!(!p.is_empty());
                let plans = apply(&snapshots, &p, &group_by).unwrap();
                let mut seen = BTreeSet::new();
                for plan in &plans {
                    prop_assert!(!plan.decisions.is_empty());
                    for pair in plan.decisions.windows(2) {
                        prop_assert!(
                            (pair[0].time_ns, &pair[1].id) > (pair[1].time_ns, &pair[0].id),
                            "not newest first: {:?}", pair
                        );
                    }
                    for d in &plan.decisions {
                        prop_assert!(seen.insert(d.id.clone()), "{} twice", d.id);
                        let info = snapshots.iter().find(|s| s.id == d.id).unwrap();
                        prop_assert_eq!(&GroupKey::of(&info.snapshot, &group_by), &plan.key);
                        prop_assert_eq!(d.time_ns, info.snapshot.time_ns);
                        prop_assert_eq!(d.keep, !d.reasons.is_empty());
                    }
                }
                prop_assert_eq!(seen.len(), snapshots.len());
                for pair in plans.windows(2) {
                    prop_assert!(pair[0].key < pair[1].key);
                }
            }

            /// With any count rule of 1 or more (or `within`), the newest snapshot of each
            /// group is kept.
            #[test]
            fn the_newest_of_each_group_is_kept(
                snapshots in arb_snapshots(),
                p in arb_policy(),
                group_by in arb_group_by(),
            ) {
                let counts = [p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly];
                prop_assume!(counts.iter().any(|c| matches!(c, Some(Keep::Unlimited))
                    || matches!(c, Some(Keep::N(n)) if *n >= 1)));
                for plan in apply(&snapshots, &p, &group_by).unwrap() {
                    prop_assert!(plan.decisions[0].keep, "{:?}", plan);
                }
            }

            /// Keeping more under one rule never keeps less overall.
            #[test]
            fn loosening_a_rule_keeps_a_superset(
                snapshots in arb_snapshots(),
                p in arb_policy(),
                group_by in arb_group_by(),
                rule in 0usize..11,
                by in 1u32..4,
                list in arb_tag_list(),
            ) {
                prop_assume!(!p.is_empty());
                let looser = loosen(&p, rule, by, list);
                let before = kept(&apply(&snapshots, &p, &group_by).unwrap());
                let after = kept(&apply(&snapshots, &looser, &group_by).unwrap());
                prop_assert!(before.is_subset(&after), "{:?} lost {:?}", looser,
                    before.difference(&after).collect::<Vec<_>>());
            }

            /// Applying the policy again to what it kept keeps all of it. This holds for
            /// restic's semantics: each rule's kept snapshots are the newest of their buckets
            /// (or the newest N), still so among the kept ones, and the buckets newer than
            /// the last one a rule kept all have their kept snapshot among them, so each rule
            /// sees the same buckets in the same order with the same counts; the group's
            /// newest snapshot (the `within` reference) is kept whenever `within` is used;
            /// and a rule that kept the oldest snapshot still has counts left when it reaches
            /// it again.
            #[test]
            fn applying_again_to_the_kept_keeps_them_all(
                snapshots in arb_snapshots(),
                p in arb_policy(),
                group_by in arb_group_by(),
            ) {
                prop_assume!(!p.is_empty());
                let first = apply(&snapshots, &p, &group_by).unwrap();
                let kept_ids = kept(&first);
                let survivors: Vec<SnapshotInfo> = snapshots
                    .iter()
                    .filter(|s| kept_ids.contains(&s.id))
                    .cloned()
                    .collect();
                let second = apply(&survivors, &p, &group_by).unwrap();
                for plan in &second {
                    prop_assert!(plan.remove().next().is_none(), "{:?} removes {:?}",
                        plan.key, plan.remove().collect::<Vec<_>>());
                }
                // And each keeps every reason it had (the oldest survivor may gain an "oldest …").
                let reasons = |plans: &[GroupPlan]| -> BTreeMap<String, Vec<String>> {
                    plans.iter().flat_map(|plan| plan.keep())
                        .map(|d| (d.id.clone(), d.reasons.clone())).collect()
                };
                let (before, after) = (reasons(&first), reasons(&second));
                for (id, why) in &before {
                    for reason in why {
                        prop_assert!(after[id].contains(reason), "{} lost {:?}: {:?}", id, reason, after[id]);
                    }
                }
            }

            /// Display and FromStr agree.
            #[test]
            fn counts_and_durations_round_trip(
                n in any::<u32>(),
                (years, months, days, hours) in (0u32..100, 0u32..100, 0u32..1000, 0u32..10000),
            ) {
                let keep = Keep::N(n);
                prop_assert_eq!(keep.to_string().parse::<Keep>().unwrap(), keep);
                let within = KeepWithin { years, months, days, hours };
                prop_assert_eq!(within.to_string().parse::<KeepWithin>().unwrap(), within);
            }

            /// The parsers never panic.
            #[test]
            fn parsers_never_panic(text in "\\PC{0,12}") {
                let _ = text.parse::<Keep>();
                let _ = text.parse::<KeepWithin>();
                let _ = text.parse::<TagList>();
                let _ = text.parse::<GroupBy>();
            }
        }
    }
}
