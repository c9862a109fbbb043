//! The run's schedule: a systemd service and timer that run `ferry backup --config FILE`
//! (daily by default, with a randomized delay, catching up missed runs), or on the operator's
//! machine `ferry forget --prune -c RETENTION_FILE` (weekly by default). Only unit files this
//! module wrote (they start with its marker) are ever replaced or removed. cron is the
//! documented alternative (README).

use crate::config::FerryConfig;
use crate::error::{Context, Error, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first line of every unit file this module writes: it only removes or replaces its own.
const MARKER: &str = "# Written by `ferry schedule install`; `ferry schedule remove` deletes it.";

/// What the scheduled service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `ferry backup --config FILE` (the backup VM).
    Backup,
    /// `ferry forget --prune -c FILE` (the operator's retention file).
    Retention,
}

/// Where the units go and what they are called.
#[derive(Debug, Clone)]
pub struct Units {
    /// The unit directory (`/etc/systemd/system`).
    pub dir: PathBuf,
    /// NAME.service and NAME.timer.
    pub name: String,
    /// Call systemctl (daemon-reload, enable/disable --now the timer).
    pub enable: bool,
}

impl Units {
    fn paths(&self) -> Result<(PathBuf, PathBuf), Error> {
        crate::config::check_name("--name", &self.name, 64)?;
        Ok((
            self.dir.join(format!("{}.service", self.name)),
            self.dir.join(format!("{}.timer", self.name)),
        ))
    }
}

/// What [`install`] wrote.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Path of the systemd service unit written (`<dir>/<name>.service`).
    pub service: PathBuf,
    /// Path of the systemd timer unit written (`<dir>/<name>.timer`).
    pub timer: PathBuf,
    /// The config file, made absolute.
    pub config: PathBuf,
}

/// A value for a unit file line: one line, and nothing systemd would expand.
fn unit_value(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.chars().any(|c| c.is_control() || c == '%' || c == '\\') {
        bail!("{what} {v:?}: must be one line without '%' or '\\'");
    }
    Ok(())
}

fn quote(p: &Path) -> Result<String, Error> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::msg(format!("{} is not valid UTF-8", p.display())))?;
    unit_value("path", s)?;
    if s.contains('"') {
        bail!("path {s:?} contains a double quote");
    }
    Ok(format!("\"{s}\""))
}

/// systemd's stop timeout for a backup service: the interrupt's whole budget (waiting for
/// ferry-build, then ferry-clean) plus a minute for the hooks, the ping and the metrics.
pub const STOP_TIMEOUT_SECS: u64 = crate::run::INTERRUPT_BUDGET.as_secs() + 60;

/// The `[Service]` lines every backup service has, whoever installed it: a oneshot run that
/// SIGTERM stops with time to remove its jump box, at low CPU and I/O priority.
fn backup_service_tail() -> String {
    format!(
        "# SIGTERM makes ferry remove the jump box before it exits; give it time to.\n\
         KillMode=mixed\nTimeoutStopSec={STOP_TIMEOUT_SECS}\nNice=10\nIOSchedulingClass=idle\n\
         # Exit code 3 is a partial backup (some files unreadable): the run is recorded, not failed.\n\
         SuccessExitStatus=3\n"
    )
}
const BACKUP_UNIT_HEAD: &str = "[Unit]\nDescription=Ferry backup to S3 through a temporary jump box\n\
     Documentation=man:ferry-backup(1)\n\
     Wants=network-online.target\nAfter=network-online.target\n";
const RETENTION_UNIT_HEAD: &str = "[Unit]\nDescription=Ferry retention: forget by each site's policy, then prune\n\
     Documentation=man:ferry-forget(1) man:ferry-prune(1)\n\
     Wants=network-online.target\nAfter=network-online.target\n";
const RETENTION_SERVICE_TAIL: &str = "# A prune stopped at any point leaves a valid repository; the next one finishes it.\n\
     Nice=10\nIOSchedulingClass=idle\n";

/// The service unit: `ferry backup --config CONFIG`, stopped with time to clean up; or
/// `ferry forget --prune -c CONFIG` for [`Job::Retention`]. It runs as root (`ferry schedule
/// install` on a source install); the Debian package's units ([`packaged_units`]) run as the
/// `ferry` system user instead.
pub fn service_unit(ferry: &Path, config: &Path, job: Job) -> Result<String, Error> {
    let (ferry, config) = (quote(ferry)?, quote(config)?);
    Ok(match job {
        Job::Backup => format!(
            "{MARKER}\n{BACKUP_UNIT_HEAD}\n[Service]\nType=oneshot\n\
             ExecStart={ferry} backup --config {config}\n{}",
            backup_service_tail()
        ),
        Job::Retention => format!(
            "{MARKER}\n{RETENTION_UNIT_HEAD}\n[Service]\nType=oneshot\n\
             ExecStart={ferry} forget --prune --config {config}\n{RETENTION_SERVICE_TAIL}"
        ),
    })
}

fn timer_body(on_calendar: &str, delay: &str) -> String {
    format!(
        "[Unit]\nDescription=Run Ferry on a schedule\n\n[Timer]\n\
         OnCalendar={on_calendar}\nRandomizedDelaySec={delay}\nPersistent=true\n\n\
         [Install]\nWantedBy=timers.target\n"
    )
}

/// The timer unit.
pub fn timer_unit(on_calendar: &str, delay: &str) -> Result<String, Error> {
    unit_value("--on-calendar", on_calendar)?;
    unit_value("--randomized-delay", delay)?;
    Ok(format!("{MARKER}\n{}", timer_body(on_calendar, delay)))
}

/// Where the Debian package puts things (scripts/package-deb.sh builds it; its maintainer
/// scripts create the account and the directories). The package's units are made from these.
pub mod packaged {
    /// The system account the packaged service runs as (no login, no home of its own to log
    /// into; created by the package's postinst, left by a purge as Debian does with accounts).
    pub const USER: &str = "ferry";
    /// `/usr/bin/ferry`: a symlink to [`LIB_DIR`]`/ferry`, so `ferry infra apply` finds the
    /// Amazon Linux artifacts next to the real executable without `--artifacts`.
    pub const EXE: &str = "/usr/bin/ferry";
    /// The real executable and the two AL2023 artifacts (`bootstrap`, `ferry-gate`).
    pub const LIB_DIR: &str = "/usr/lib/ferry";
    /// The backup VM's config (a conffile: the package ships a commented example).
    pub const CONFIG: &str = "/etc/ferry/ferry.toml";
    /// Config, keys and credentials: root-owned directory, group `ferry`, mode 0750.
    pub const ETC_DIR: &str = "/etc/ferry";
    /// The spool (`[backup] spool` in the example config): the runs waiting for upload.
    pub const SPOOL_DIR: &str = "/var/spool/ferry";
    /// The repository cache (`$FERRY_CACHE_DIR` in the service).
    pub const CACHE_DIR: &str = "/var/cache/ferry";
    /// The account's home and `$XDG_STATE_HOME/ferry`.
    pub const STATE_DIR: &str = "/var/lib/ferry";
    /// The only capability the service keeps: read and list any file (restic documents the
    /// same for a non-root backup user). No write, no ownership, no other privilege.
    pub const CAPABILITY: &str = "CAP_DAC_READ_SEARCH";
}

/// The package's first line in each unit: `ferry schedule remove` never touches these.
const PACKAGED_MARKER: &str = "# Installed by the ferry package; override with `systemctl edit`, enable with\n\
     # `systemctl enable --now ferry-backup.timer` once /etc/ferry/ferry.toml is written.";

/// The units the Debian package ships (file name, contents): `ferry-backup.service` and its
/// daily timer, as `ferry schedule install` writes them, but run as the [`packaged::USER`]
/// account with only [`packaged::CAPABILITY`], in a read-only view of the system but for its
/// own directories. Not enabled by the package: the operator enables the timer once the
/// config is written.
pub fn packaged_units() -> Vec<(&'static str, String)> {
    use packaged::*;
    let service = format!(
        "{PACKAGED_MARKER}\n{BACKUP_UNIT_HEAD}ConditionPathExists={CONFIG}\n\n[Service]\n\
         Type=oneshot\nUser={USER}\nGroup={USER}\n\
         ExecStart={EXE} backup --config {CONFIG}\n\
         Environment=HOME={STATE_DIR} XDG_STATE_HOME={STATE_DIR_PARENT} FERRY_CACHE_DIR={CACHE_DIR}\n\
         # Read every local source without being root: only {CAPABILITY}, nothing else.\n\
         AmbientCapabilities={CAPABILITY}\nCapabilityBoundingSet={CAPABILITY}\n\
         NoNewPrivileges=yes\nUMask=0077\n\
         # /usr, /boot and /etc read-only; the spool, cache and state stay writable by the account.\n\
         ProtectSystem=full\nPrivateTmp=yes\nPrivateDevices=yes\nProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\nProtectControlGroups=yes\nRestrictSUIDSGID=yes\n\
         LockPersonality=yes\n{}",
        backup_service_tail(),
        STATE_DIR_PARENT = "/var/lib",
    );
    let timer = format!(
        "{PACKAGED_MARKER}\n{}",
        timer_body("daily", DEFAULT_RANDOMIZED_DELAY)
    );
    vec![
        ("ferry-backup.service", service),
        ("ferry-backup.timer", timer),
    ]
}

/// The timer's default random delay (`ferry schedule install --randomized-delay`).
pub const DEFAULT_RANDOMIZED_DELAY: &str = "1h";

fn ours(path: &Path) -> Result<bool, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.starts_with(MARKER)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn systemctl(args: &[&str]) -> Result<(), Error> {
    let st = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !st.success() {
        bail!("systemctl {} failed ({st})", args.join(" "));
    }
    Ok(())
}

/// Write (and with `units.enable`, enable) the service running `job` with the executable
/// `ferry` and the file `config`, and its timer. The config must be valid now, not at 3 a.m.
pub fn install(
    units: &Units,
    ferry: &Path,
    config: &Path,
    job: Job,
    on_calendar: &str,
    delay: &str,
) -> Result<Installed, Error> {
    let (svc_path, tmr_path) = units.paths()?;
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("config file {}", config.display()))?;
    match job {
        Job::Backup => {
            FerryConfig::load(&config)?.cloud_run(&config)?;
        }
        Job::Retention => {
            if crate::RetentionConfig::load(&config)?.sites.is_empty() {
                bail!("{}: no [retention.SITE] section", config.display());
            }
        }
    }
    let service = service_unit(ferry, &config, job)?;
    let timer = timer_unit(on_calendar, delay)?;
    let dir = &units.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for p in [&svc_path, &tmr_path] {
        if !ours(p)? {
            bail!(
                "{} exists and was not written by ferry: choose another --name",
                p.display()
            );
        }
    }
    std::fs::write(&svc_path, service)
        .with_context(|| format!("writing {}", svc_path.display()))?;
    std::fs::write(&tmr_path, timer).with_context(|| format!("writing {}", tmr_path.display()))?;
    if units.enable {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", &format!("{}.timer", units.name)])?;
    }
    Ok(Installed {
        service: svc_path,
        timer: tmr_path,
        config,
    })
}

/// Disable (with `units.enable`) and delete the units; how many files were removed.
pub fn remove(units: &Units) -> Result<usize, Error> {
    let (svc_path, tmr_path) = units.paths()?;
    for p in [&svc_path, &tmr_path] {
        if !ours(p)? {
            bail!("{} was not written by ferry: not removing it", p.display());
        }
    }
    if units.enable && tmr_path.exists() {
        systemctl(&["disable", "--now", &format!("{}.timer", units.name)])?;
    }
    let mut removed = 0;
    for p in [&svc_path, &tmr_path] {
        match std::fs::remove_file(p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    if units.enable && removed > 0 {
        systemctl(&["daemon-reload"])?;
    }
    Ok(removed)
}
