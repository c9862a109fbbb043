//! `ferry schedule install|remove`: the run's systemd service and timer (`ferry-run`'s
//! `schedule`).

use super::{Global, Outcome};
use anyhow::Context;
use ferry_run::schedule::{self, Job, Units};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Write and enable the service and timer.
    Install(InstallArgs),
    /// Disable and delete them.
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct UnitArgs {
    /// Where the unit files go.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Unit name (NAME.service, NAME.timer); default `ferry-backup`, with --retention
    /// `ferry-retention`.
    #[arg(long)]
    pub name: Option<String>,
    /// The operator's retention job (`ferry forget --prune -c FILE`) instead of the backup.
    #[arg(long)]
    pub retention: bool,
    /// Only write or delete the files; do not call systemctl.
    #[arg(long)]
    pub no_enable: bool,
}

impl UnitArgs {
    fn units(&self) -> Units {
        Units {
            dir: self.unit_dir.clone(),
            name: self.name().to_string(),
            enable: !self.no_enable,
        }
    }

    fn name(&self) -> &str {
        match (&self.name, self.retention) {
            (Some(n), _) => n,
            (None, false) => "ferry-backup",
            (None, true) => "ferry-retention",
        }
    }

    fn job(&self) -> Job {
        if self.retention {
            Job::Retention
        } else {
            Job::Backup
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The backup's config file, or with --retention the retention file (made absolute).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// systemd calendar expression (`daily`, `*-*-* 02:00`, …); default `daily`, with
    /// --retention `weekly` (trashed packs then wait at most a week beyond their grace period).
    #[arg(long)]
    pub on_calendar: Option<String>,
    /// Random delay added to each run (systemd time span).
    #[arg(long, default_value = schedule::DEFAULT_RANDOMIZED_DELAY)]
    pub randomized_delay: String,
    #[command(flatten)]
    pub units: UnitArgs,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub units: UnitArgs,
}

pub fn run(g: &Global, c: &ScheduleCommand) -> anyhow::Result<Outcome> {
    match c {
        ScheduleCommand::Install(a) => {
            let ferry = std::env::current_exe().context("finding the ferry executable")?;
            let done = schedule::install(
                &a.units.units(),
                &ferry,
                &a.config,
                a.units.job(),
                a.on_calendar.as_deref().unwrap_or(if a.units.retention {
                    "weekly"
                } else {
                    "daily"
                }),
                &a.randomized_delay,
            )?;
            if !g.quiet {
                eprintln!(
                    "Wrote {} and {}{}. `systemctl list-timers {}.timer` shows the next run; \
                     `ferry status --config {}` the last ones.",
                    done.service.display(),
                    done.timer.display(),
                    if a.units.no_enable {
                        " (not enabled)"
                    } else {
                        ", timer enabled"
                    },
                    a.units.name(),
                    done.config.display()
                );
            }
        }
        ScheduleCommand::Remove(a) => {
            let removed = schedule::remove(&a.units.units())?;
            if !g.quiet {
                eprintln!("Removed {removed} unit files of {}.", a.units.name());
            }
        }
    }
    Ok(Outcome::Ok)
}
