//! `ferry schedule install|remove` (systemd units, checked by systemd's own
//! `systemd-analyze verify`), `ferry status` without runs, and the cloud config's errors
//! (refused before anything runs, naming the field).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn config(env: &Env, extra: &str) -> std::path::PathBuf {
    let p = env.path("ferry.toml");
    fs::write(
        &p,
        format!(
            "[sources]\n[sources.local]\npaths = [\"/etc/hostname\"]\n\n[backup]\nsite = \"home\"\n\
             key = {:?}\nspool = {:?}\n\n[cloud]\nregion = \"eu-west-1\"\n{extra}",
            env.put.display().to_string(),
            env.path("spool").display().to_string()
        ),
    )
    .unwrap();
    p
}

/// Installs systemd (for `systemd-analyze`) when missing: the test needs it, it does not skip.
fn ensure_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let st = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "systemd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get");
    assert!(st.success(), "installing systemd (systemd-analyze) failed");
}

#[test]
fn schedule_install_writes_valid_units_and_remove_deletes_only_ours() {
    let env = Env::new();
    env.keys();
    let cfg = config(&env, "");
    let units = env.path("units");
    let u = units.to_str().unwrap();
    env.run([
        "schedule",
        "install",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
        "--on-calendar",
        "*-*-* 03:00",
        "--randomized-delay",
        "30min",
    ])
    .ok();
    let service = fs::read_to_string(units.join("ferry-backup.service")).unwrap();
    let timer = fs::read_to_string(units.join("ferry-backup.timer")).unwrap();
    let canon = fs::canonicalize(&cfg).unwrap();
    assert!(
        service.contains(&format!("backup --config \"{}\"", canon.display())),
        "{service}"
    );
    assert!(service.contains("Type=oneshot") && service.contains("TimeoutStopSec="));
    assert!(timer.contains("OnCalendar=*-*-* 03:00"), "{timer}");
    assert!(timer.contains("RandomizedDelaySec=30min") && timer.contains("Persistent=true"));

    // systemd itself accepts both units (the ExecStart binary exists: it is this ferry).
    ensure_systemd_analyze();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("ferry-backup.service"))
        .arg(units.join("ferry-backup.timer"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        v.status.success() && !out.contains("ferry-backup"),
        "systemd-analyze verify: {out}"
    );

    // Installing again replaces our own files; a foreign unit of that name is never touched.
    env.run([
        "schedule",
        "install",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
    ])
    .ok();
    fs::write(units.join("other.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    let r = env.run([
        "schedule",
        "install",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
        "--name",
        "other",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not written by ferry"), "{}", r.stderr);
    let r = env.run([
        "schedule",
        "remove",
        "--unit-dir",
        u,
        "--no-enable",
        "--name",
        "other",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(units.join("other.timer").exists());

    env.run(["schedule", "remove", "--unit-dir", u, "--no-enable"])
        .ok();
    assert!(!units.join("ferry-backup.service").exists());
    assert!(!units.join("ferry-backup.timer").exists());

    // A value systemd would expand is refused.
    let r = env.run([
        "schedule",
        "install",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
        "--on-calendar",
        "daily\nExecStart=/bin/evil",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--on-calendar"), "{}", r.stderr);
}

#[test]
fn schedule_install_retention_writes_a_weekly_forget_prune_that_systemd_accepts() {
    let env = Env::new();
    env.keys();
    let units = env.path("units");
    let u = units.to_str().unwrap();
    // A retention file without a site, or with an empty policy, is refused before anything
    // is written.
    let bad = env.path("bad-retention.toml");
    fs::write(&bad, "[retention.home]\nrepo = \"/r\"\nkey = \"/k\"\n").unwrap();
    let r = env.run([
        "schedule",
        "install",
        "--retention",
        "-c",
        bad.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no keep_* rule"), "{}", r.stderr);
    assert!(!units.join("ferry-retention.service").exists());

    let cfg = env.path("retention.toml");
    fs::write(
        &cfg,
        format!(
            "[retention.home]\nrepo = \"{}\"\nkey = \"{}\"\nkeep_daily = 7\nkeep_monthly = 6\n",
            env.repo.display(),
            env.master.display()
        ),
    )
    .unwrap();
    env.run([
        "schedule",
        "install",
        "--retention",
        "-c",
        cfg.to_str().unwrap(),
        "--unit-dir",
        u,
        "--no-enable",
    ])
    .ok();
    let service = fs::read_to_string(units.join("ferry-retention.service")).unwrap();
    let timer = fs::read_to_string(units.join("ferry-retention.timer")).unwrap();
    let canon = fs::canonicalize(&cfg).unwrap();
    assert!(
        service.contains(&format!("forget --prune --config \"{}\"", canon.display())),
        "{service}"
    );
    assert!(timer.contains("OnCalendar=weekly"), "{timer}");
    ensure_systemd_analyze();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("ferry-retention.service"))
        .arg(units.join("ferry-retention.timer"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        v.status.success() && !out.contains("ferry-retention"),
        "systemd-analyze verify: {out}"
    );
    env.run([
        "schedule",
        "remove",
        "--retention",
        "--unit-dir",
        u,
        "--no-enable",
    ])
    .ok();
    assert!(!units.join("ferry-retention.timer").exists());
}

#[test]
fn cloud_config_errors_name_the_field_before_anything_runs() {
    let env = Env::new();
    env.keys();
    for (extra, field) in [
        ("session_minutes = 0\n", "cloud.session_minutes"),
        ("connect_timeout = 999999\n", "cloud.connect_timeout"),
        ("profile = \"a b\"\n", "cloud.profile"),
        ("surprise = 1\n", "surprise"),
    ] {
        let cfg = config(&env, extra);
        let r = env.run(["backup", "--config", cfg.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{extra}: {}", r.stderr);
        assert!(r.stderr.contains(field), "{extra}: {}", r.stderr);
        assert!(r.stderr.contains("ferry.toml"), "{}", r.stderr);
        // Nothing was created: the spool comes only after a valid config.
        assert!(!env.path("spool").exists());
    }
    // Without [backup]/[cloud] and without --repo, the error says what is missing.
    let p = env.path("plain.toml");
    fs::write(
        &p,
        "[sources]\n[sources.local]\npaths = [\"/etc/hostname\"]\n",
    )
    .unwrap();
    let r = env.run(["backup", "--config", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[backup]"), "{}", r.stderr);
}

#[test]
fn status_without_runs_says_so() {
    let env = Env::new();
    env.keys();
    let cfg = config(&env, "");
    let r = env.run(["status", "--config", cfg.to_str().unwrap()]).ok();
    assert!(
        r.stdout_str().contains("No backup runs"),
        "{}",
        r.stdout_str()
    );
    let j = env
        .run(["status", "--config", cfg.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(j["runs"].as_array().map(Vec::len), Some(0));
}
