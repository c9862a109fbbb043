//! `ferry schedule install|remove`: a systemd service and timer that run `ferry backup
//! --config FILE` (daily by default, with a randomized delay, catching up missed runs).
//! cron is the documented alternative (README).

use super::{Global, Outcome};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first line of every unit file this command writes: it only removes or replaces its own.
const MARKER: &str = "# Written by `ferry schedule install`; `ferry schedule remove` deletes it.";

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Write and enable the service and timer.
    Install(InstallArgs),
    /// Disable and delete them.
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct Units {
    /// Where the unit files go.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Unit name (NAME.service, NAME.timer).
    #[arg(long, default_value = "ferry-backup")]
    pub name: String,
    /// Only write or delete the files; do not call systemctl.
    #[arg(long)]
    pub no_enable: bool,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The backup's config file (made absolute).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// systemd calendar expression (`daily`, `*-*-* 02:00`, …).
    #[arg(long, default_value = "daily")]
    pub on_calendar: String,
    /// Random delay added to each run (systemd time span).
    #[arg(long, default_value = "1h")]
    pub randomized_delay: String,
    #[command(flatten)]
    pub units: Units,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub units: Units,
}

pub fn run(g: &Global, c: &ScheduleCommand) -> anyhow::Result<Outcome> {
    match c {
        ScheduleCommand::Install(a) => install(g, a),
        ScheduleCommand::Remove(a) => remove(g, a),
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    Ok(ferry_run::config::check_name("--name", name, 64)?)
}

/// A value for a unit file line: one line, and nothing systemd would expand.
fn unit_value(what: &str, v: &str) -> anyhow::Result<()> {
    if v.is_empty() || v.chars().any(|c| c.is_control() || c == '%' || c == '\\') {
        bail!("{what} {v:?}: must be one line without '%' or '\\'");
    }
    Ok(())
}

fn quote(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))?;
    unit_value("path", s)?;
    if s.contains('"') {
        bail!("path {s:?} contains a double quote");
    }
    Ok(format!("\"{s}\""))
}

pub fn service_unit(ferry: &Path, config: &Path) -> anyhow::Result<String> {
    Ok(format!(
        "{MARKER}\n[Unit]\nDescription=Ferry backup to S3 through a temporary jump box\n\
         Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\n\
         ExecStart={} backup --config {}\n\
         # SIGTERM makes ferry remove the jump box before it exits; give it time to.\n\
         KillMode=mixed\nTimeoutStopSec=300\nNice=10\nIOSchedulingClass=idle\n\
         # Exit code 3 is a partial backup (some files unreadable): the run is recorded, not failed.\n\
         SuccessExitStatus=3\n",
        quote(ferry)?,
        quote(config)?
    ))
}

pub fn timer_unit(on_calendar: &str, delay: &str) -> anyhow::Result<String> {
    unit_value("--on-calendar", on_calendar)?;
    unit_value("--randomized-delay", delay)?;
    Ok(format!(
        "{MARKER}\n[Unit]\nDescription=Run the Ferry backup on a schedule\n\n[Timer]\n\
         OnCalendar={on_calendar}\nRandomizedDelaySec={delay}\nPersistent=true\n\n\
         [Install]\nWantedBy=timers.target\n"
    ))
}

fn ours(path: &Path) -> anyhow::Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.starts_with(MARKER)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !st.success() {
        bail!("systemctl {} failed ({st})", args.join(" "));
    }
    Ok(())
}

fn install(g: &Global, a: &InstallArgs) -> anyhow::Result<Outcome> {
    check_name(&a.units.name)?;
    // The config must be valid now, not at 3 a.m.
    let config = std::fs::canonicalize(&a.config)
        .with_context(|| format!("config file {}", a.config.display()))?;
    let cfg = super::load_config(&config)?;
    cfg.cloud_run(&config)?;
    let ferry = std::env::current_exe().context("finding the ferry executable")?;
    let service = service_unit(&ferry, &config)?;
    let timer = timer_unit(&a.on_calendar, &a.randomized_delay)?;
    let dir = &a.units.unit_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let svc_path = dir.join(format!("{}.service", a.units.name));
    let tmr_path = dir.join(format!("{}.timer", a.units.name));
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
    if !a.units.no_enable {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", &format!("{}.timer", a.units.name)])?;
    }
    if !g.quiet {
        eprintln!(
            "Wrote {} and {}{}. `systemctl list-timers {}.timer` shows the next run; \
             `ferry status --config {}` the last ones.",
            svc_path.display(),
            tmr_path.display(),
            if a.units.no_enable {
                " (not enabled)"
            } else {
                ", timer enabled"
            },
            a.units.name,
            config.display()
        );
    }
    Ok(Outcome::Ok)
}

fn remove(g: &Global, a: &RemoveArgs) -> anyhow::Result<Outcome> {
    check_name(&a.units.name)?;
    let dir = &a.units.unit_dir;
    let svc_path = dir.join(format!("{}.service", a.units.name));
    let tmr_path = dir.join(format!("{}.timer", a.units.name));
    for p in [&svc_path, &tmr_path] {
        if !ours(p)? {
            bail!("{} was not written by ferry: not removing it", p.display());
        }
    }
    if !a.units.no_enable && tmr_path.exists() {
        systemctl(&["disable", "--now", &format!("{}.timer", a.units.name)])?;
    }
    let mut removed = 0;
    for p in [&svc_path, &tmr_path] {
        match std::fs::remove_file(p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    if !a.units.no_enable && removed > 0 {
        systemctl(&["daemon-reload"])?;
    }
    if !g.quiet {
        eprintln!("Removed {removed} unit files of {}.", a.units.name);
    }
    Ok(Outcome::Ok)
}
