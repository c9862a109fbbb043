//! The worst-case monthly bill a stolen backup credential can cause under the configured
//! limits (`ferry infra plan` prints it; docs/COST.md explains the formula).
//!
//! The backup VM's credential may only invoke ferry-build and ferry-clean, but it chooses the
//! site name freely: the per-site byte budget therefore bounds a thief only together with the
//! sessions per day. Per 31-day month, with `s` sessions per day of at most `m` minutes plus
//! the jump box's shutdown grace `g`, a session byte limit `b` and a site budget `d` per day:
//!
//! - instance hours `H = 31 × min(s × (m + g) / 60, 24 × concurrent sessions)`; EC2, the
//!   public IPv4 address and the 8 GiB gp3 root volume are billed for `H`;
//! - bytes per day `B = s × min(b, d)` (each session may name a new site); the bucket holds
//!   `31 × B` at the month's end, billed as `16 × B` GiB-month in that month (day `k`'s
//!   upload is stored for `32 − k` of 31 days) and `31 × B` in every later month until deleted;
//! - PUT requests: one per MiB uploaded (objects of at least the engine's smallest pack) plus
//!   one audit record per session. The gate does not limit a session's object count, so a
//!   thief sending tiny objects makes more PUTs than this, bounded only by the upload rate:
//!   the figure is labelled as that assumption;
//! - Lambda: build and clean per session, each at its time-out.
//!
//! Prices are us-east-1 on-demand list prices, as published in 2026 (named constants below,
//! each with its pricing page). They could not be fetched while this was written; they are the
//! well-known published list prices. Free tiers are not subtracted from the worst case: only
//! accounts made before 2025-07-15 have the 12-month 750 instance-hours, shown separately.

use std::fmt;

use crate::config::ValidConfig;
use crate::infra::lambda::{BUILD_TIMEOUT_S, CLEAN_TIMEOUT_S, MEMORY_MB};
use ferry_contract::limits;

/// When the prices below were taken as current.
pub const PRICES_AS_OF: &str = "2026";
/// The region the prices are for.
pub const PRICES_REGION: &str = "us-east-1";
/// Days of the month the bound is computed for (the longest month).
pub const DAYS: u32 = 31;
/// Hours in AWS's billing month for GB-month prices (<https://aws.amazon.com/ebs/pricing/>:
/// "730 hours in a month").
pub const HOURS_PER_BILLING_MONTH: f64 = 730.0;

/// Linux on-demand price per hour in us-east-1 of the instance types a jump box sensibly
/// uses (<https://aws.amazon.com/ec2/pricing/on-demand/>); `None` for any other type (the
/// bill then shows the hours without a price).
pub fn on_demand_usd_per_hour(instance_type: &str) -> Option<f64> {
    Some(match instance_type {
        "t2.micro" => 0.0116,
        "t3.nano" => 0.0052,
        "t3.micro" => 0.0104,
        "t3.small" => 0.0208,
        "t3.medium" => 0.0416,
        "t3a.nano" => 0.0047,
        "t3a.micro" => 0.0094,
        "t3a.small" => 0.0188,
        "t4g.nano" => 0.0042,
        "t4g.micro" => 0.0084,
        "t4g.small" => 0.0168,
        _ => return None,
    })
}

/// Instance types the legacy 12-month free tier's 750 hours cover
/// (<https://aws.amazon.com/free/>: t2.micro, or t3.micro where t2.micro is not offered).
pub const FREE_TIER_TYPES: &[&str] = &["t2.micro", "t3.micro"];
/// The legacy free tier's instance hours a month (accounts made before 2025-07-15).
pub const FREE_TIER_INSTANCE_HOURS: f64 = 750.0;
/// Public IPv4 address, per hour (<https://aws.amazon.com/vpc/pricing/>).
pub const PUBLIC_IPV4_USD_PER_HOUR: f64 = 0.005;
/// EBS gp3, per GB-month (<https://aws.amazon.com/ebs/pricing/>).
pub const EBS_GP3_USD_PER_GB_MONTH: f64 = 0.08;
/// The jump box's root volume (the Amazon Linux 2023 AMI's, deleted with the box), GiB.
pub const ROOT_VOLUME_GIB: f64 = 8.0;
/// S3 Standard storage, first 50 TB, per GB-month (<https://aws.amazon.com/s3/pricing/>).
pub const S3_STANDARD_USD_PER_GB_MONTH: f64 = 0.023;
/// S3 Standard PUT, COPY, POST, LIST requests, per 1,000 (<https://aws.amazon.com/s3/pricing/>).
pub const S3_PUT_USD_PER_1000: f64 = 0.005;
/// Lambda requests, per million (<https://aws.amazon.com/lambda/pricing/>).
pub const LAMBDA_USD_PER_MILLION_REQUESTS: f64 = 0.20;
/// Lambda x86 compute, per GB-second (<https://aws.amazon.com/lambda/pricing/>).
pub const LAMBDA_USD_PER_GB_SECOND: f64 = 0.000_016_666_7;

/// The limits the bill depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The jump box's instance type.
    pub instance_type: String,
    /// Sessions per UTC day, all sites together.
    pub sessions_per_day: u32,
    /// Longest session, minutes.
    pub max_session_minutes: u32,
    /// The box powers itself off this long after expiry, minutes.
    pub shutdown_grace_minutes: u32,
    /// Concurrent sessions.
    pub max_sessions: u32,
    /// The gate's limit per session, bytes.
    pub session_bytes: u64,
    /// One site's bytes per UTC day.
    pub site_bytes_per_day: u64,
}

impl Limits {
    /// The limits `ferry infra apply` deploys for `cfg` (the rest are the functions' defaults).
    pub fn of(cfg: &ValidConfig) -> Limits {
        let jb = &cfg.raw.jumpbox;
        Limits {
            instance_type: jb.instance_type.clone(),
            sessions_per_day: jb.sessions_per_day,
            max_session_minutes: jb.max_session_minutes,
            shutdown_grace_minutes: limits::DEFAULT_SHUTDOWN_GRACE_MINUTES,
            max_sessions: jb.max_sessions,
            session_bytes: jb.session_bytes(),
            site_bytes_per_day: jb.site_bytes_per_day(),
        }
    }
}

/// One line of the bill.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// What is billed (`EC2 t3.micro`, `S3 storage`, …).
    pub item: String,
    /// How much of it, in words.
    pub usage: String,
    /// Its price for the month, USD; `None` when no price is known.
    pub usd: Option<f64>,
}

/// The worst-case month.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstCase {
    /// The limits it was computed for.
    pub limits: Limits,
    /// Instance hours in the month.
    pub instance_hours: f64,
    /// GiB uploaded per day.
    pub gib_per_day: f64,
    /// GiB stored at the month's end.
    pub stored_gib: f64,
    /// The bill, line by line.
    pub lines: Vec<Line>,
    /// Sum of the lines, USD (a line without a price counts 0; see [`WorstCase::complete`]).
    pub total_usd: f64,
    /// What the legacy free tier's 750 instance-hours take off the total (0 for other types).
    pub free_tier_usd: f64,
    /// Storage in each later month, until the uploads are deleted, USD.
    pub later_months_storage_usd: f64,
}

impl WorstCase {
    /// Whether every line has a price.
    pub fn complete(&self) -> bool {
        self.lines.iter().all(|l| l.usd.is_some())
    }
}

/// The worst case under `l` (see the module documentation for the formula).
pub fn worst_case(l: &Limits) -> WorstCase {
    let days = f64::from(DAYS);
    let session_hours = f64::from(l.max_session_minutes + l.shutdown_grace_minutes) / 60.0;
    let hours_per_day =
        (f64::from(l.sessions_per_day) * session_hours).min(24.0 * f64::from(l.max_sessions));
    let hours = hours_per_day * days;
    let price = on_demand_usd_per_hour(&l.instance_type);
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let per_session = l.session_bytes.min(l.site_bytes_per_day);
    let gib_per_day = f64::from(l.sessions_per_day) * gib(per_session);
    let stored = gib_per_day * days;
    let gib_months = gib_per_day * (days + 1.0) / 2.0;
    let sessions = f64::from(l.sessions_per_day) * days;
    let puts = gib_per_day * 1024.0 * days + sessions;
    // Build and clean per session, each running to its time-out. (The six-hourly sweep is the
    // installation's own, thief or not: about 124 one-second invocations a month.)
    let requests = 2.0 * sessions;
    let gb_s =
        f64::from(MEMORY_MB) / 1024.0 * sessions * f64::from(BUILD_TIMEOUT_S + CLEAN_TIMEOUT_S);

    let ec2 = price.map(|p| p * hours);
    let lines = vec![
        Line {
            item: format!("EC2 {}", l.instance_type),
            usage: match price {
                Some(p) => format!("{hours:.1} h × ${p}/h"),
                None => format!("{hours:.1} h (no price known for this type)"),
            },
            usd: ec2,
        },
        Line {
            item: "public IPv4".into(),
            usage: format!("{hours:.1} h × ${PUBLIC_IPV4_USD_PER_HOUR}/h"),
            usd: Some(hours * PUBLIC_IPV4_USD_PER_HOUR),
        },
        Line {
            item: "EBS gp3 root".into(),
            usage: format!("{ROOT_VOLUME_GIB} GiB for {hours:.1} h"),
            usd: Some(ROOT_VOLUME_GIB * hours / HOURS_PER_BILLING_MONTH * EBS_GP3_USD_PER_GB_MONTH),
        },
        Line {
            item: "S3 storage".into(),
            usage: format!(
                "{gib_per_day:.0} GiB/day, {stored:.0} GiB by day {DAYS}: {gib_months:.0} GiB-month"
            ),
            usd: Some(gib_months * S3_STANDARD_USD_PER_GB_MONTH),
        },
        Line {
            item: "S3 PUT".into(),
            usage: format!("{puts:.0} (one per MiB, one audit record per session)"),
            usd: Some(puts / 1000.0 * S3_PUT_USD_PER_1000),
        },
        Line {
            item: "Lambda".into(),
            usage: format!("{requests:.0} invocations, {gb_s:.0} GB-s at the time-outs"),
            usd: Some(
                requests / 1e6 * LAMBDA_USD_PER_MILLION_REQUESTS + gb_s * LAMBDA_USD_PER_GB_SECOND,
            ),
        },
    ];
    let total_usd = lines.iter().filter_map(|l| l.usd).sum();
    let free_tier_usd = match price {
        Some(p) if FREE_TIER_TYPES.contains(&l.instance_type.as_str()) => {
            // The legacy free tier also covers 750 h of public IPv4.
            hours.min(FREE_TIER_INSTANCE_HOURS) * (p + PUBLIC_IPV4_USD_PER_HOUR)
        }
        _ => 0.0,
    };
    WorstCase {
        limits: l.clone(),
        instance_hours: hours,
        gib_per_day,
        stored_gib: stored,
        lines,
        total_usd,
        free_tier_usd,
        later_months_storage_usd: stored * S3_STANDARD_USD_PER_GB_MONTH,
    }
}

impl fmt::Display for WorstCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(
            f,
            "Worst case with a stolen backup credential: {} session(s)/day × ({} + {} min), \
             {} MiB/day per site, {} MiB per session, a {DAYS}-day month; on-demand list \
             prices of {PRICES_REGION}, {PRICES_AS_OF}, no free tier:",
            l.sessions_per_day,
            l.max_session_minutes,
            l.shutdown_grace_minutes,
            l.site_bytes_per_day >> 20,
            l.session_bytes >> 20,
        )?;
        for line in &self.lines {
            let usd = line
                .usd
                .map(|u| format!("${u:.2}"))
                .unwrap_or_else(|| "?".into());
            writeln!(f, "  {:<16} {:>9}  {}", line.item, usd, line.usage)?;
        }
        let more = if self.complete() {
            ""
        } else {
            " (plus the EC2 line)"
        };
        writeln!(
            f,
            "  {:<16} {:>9}  a month{more}; then ${:.2} a month for the stored uploads until deleted",
            "total",
            format!("${:.2}", self.total_usd),
            self.later_months_storage_usd,
        )?;
        if self.free_tier_usd > 0.0 {
            writeln!(
                f,
                "  An account with the 12-month free tier (made before 2025-07-15): ${:.2} \
                 (750 instance-hours free).",
                (self.total_usd - self.free_tier_usd).max(0.0)
            )?;
        }
        write!(
            f,
            "  PUTs assume objects of at least 1 MiB: the gate does not cap a session's object \
             count. Refused invocations are not bounded by these limits."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EXAMPLE_CONFIG, InfraConfig};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn the_default_limits_bound_the_month() {
        let cfg = InfraConfig::parse(EXAMPLE_CONFIG).unwrap();
        let l = Limits::of(&cfg);
        assert_eq!(
            (
                l.sessions_per_day,
                l.max_session_minutes,
                l.site_bytes_per_day
            ),
            (4, 60, 4 << 30)
        );
        let w = worst_case(&l);
        // 4 sessions × 65 min × 31 days.
        assert!(close(w.instance_hours, 4.0 * 65.0 / 60.0 * 31.0));
        // min(1 GiB per session, 4 GiB per site) × 4 sessions a day.
        assert!(close(w.gib_per_day, 4.0));
        assert!(close(w.stored_gib, 124.0));
        let usd = |item: &str| {
            w.lines
                .iter()
                .find(|l| l.item == item)
                .and_then(|l| l.usd)
                .unwrap()
        };
        let h = 4.0 * 65.0 / 60.0 * 31.0;
        assert!(close(usd("EC2 t3.micro"), h * 0.0104));
        assert!(close(usd("public IPv4"), h * 0.005));
        assert!(close(usd("EBS gp3 root"), 8.0 * h / 730.0 * 0.08));
        // 4 GiB a day: days 1..=31 stored for 31..=1 days of 31 → 4 × 16 GiB-month.
        assert!(close(usd("S3 storage"), 64.0 * 0.023));
        assert!(close(
            usd("S3 PUT"),
            (4.0 * 1024.0 * 31.0 + 124.0) / 1000.0 * 0.005
        ));
        assert!(usd("Lambda") < 0.5, "{}", usd("Lambda"));
        let sum: f64 = w.lines.iter().filter_map(|l| l.usd).sum();
        assert!(close(w.total_usd, sum));
        assert!(w.total_usd > 4.0 && w.total_usd < 5.0, "{}", w.total_usd);
        // The instance hours (134 h) are inside the legacy free tier's 750.
        assert!(close(w.free_tier_usd, h * (0.0104 + 0.005)));
        assert!(close(w.later_months_storage_usd, 124.0 * 0.023));
        let text = w.to_string();
        assert!(text.contains("4 session(s)/day × (60 + 5 min)"), "{text}");
        assert!(text.contains(&format!("${:.2}", w.total_usd)), "{text}");
    }

    #[test]
    fn the_limits_drive_the_bill() {
        let base = Limits::of(&InfraConfig::parse(EXAMPLE_CONFIG).unwrap());
        let w = worst_case(&base);
        // One session a day bounds everything; a site budget above the session limit does not
        // raise the bytes (each session may name another site), one below it lowers them.
        let one = worst_case(&Limits {
            sessions_per_day: 1,
            ..base.clone()
        });
        assert!(close(one.instance_hours * 4.0, w.instance_hours));
        assert!(close(one.gib_per_day * 4.0, w.gib_per_day));
        let big = worst_case(&Limits {
            site_bytes_per_day: 64 << 30,
            ..base.clone()
        });
        assert!(close(big.gib_per_day, 4.0), "the session limit caps it");
        let small = worst_case(&Limits {
            site_bytes_per_day: 256 << 20,
            ..base.clone()
        });
        assert!(close(small.gib_per_day, 1.0));
        // One concurrent session: never more than 24 h a day.
        let all_day = worst_case(&Limits {
            sessions_per_day: 48,
            max_session_minutes: 720,
            ..base.clone()
        });
        assert!(close(all_day.instance_hours, 24.0 * 31.0));
        // `jumpbox.max_sessions` of the config is what bounds the hours a day: 8 sessions at
        // once, 48 sessions of 12 h 5 min a day, are 8 × 24 h a day.
        let eight = Limits::of(
            &InfraConfig::parse(&EXAMPLE_CONFIG.replace("max_sessions = 1", "max_sessions = 8"))
                .unwrap(),
        );
        assert_eq!(eight.max_sessions, 8);
        let eight_all_day = worst_case(&Limits {
            sessions_per_day: 48,
            max_session_minutes: 720,
            ..eight
        });
        assert!(close(eight_all_day.instance_hours, 8.0 * 24.0 * 31.0));
        // A type without a known price: the EC2 line has none, and the text says so.
        let odd = worst_case(&Limits {
            instance_type: "m5.large".into(),
            ..base
        });
        assert!(!odd.complete() && odd.free_tier_usd == 0.0);
        assert!(odd.to_string().contains("no price known"), "{odd}");
    }
}
