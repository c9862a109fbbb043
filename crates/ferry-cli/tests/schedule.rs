//! `ferry schedule install|remove` (systemd units, checked by systemd's own
//! `systemd-analyze verify`), `ferry status` without runs, and the cloud config's errors
//! (refused before anything runs, naming the field); `ferry generate` (completions, man pages,
//! the Debian package's units).

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

/// `systemd-analyze verify` of `units`, with this ferry's man pages (`ferry generate --man`) on
/// MANPATH: man-db is installed, so systemd also checks that each `Documentation=man:` page
/// exists. Returns whether it passed, and what it said.
fn systemd_verify(env: &Env, units: &[std::path::PathBuf]) -> (bool, String) {
    ensure_systemd_analyze();
    let man = env.path("man");
    env.run(["generate", "--man", man.join("man1").to_str().unwrap()])
        .ok();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("MANPATH", &man)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    (v.status.success(), out)
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
    let (ok, out) = systemd_verify(
        &env,
        &[
            units.join("ferry-backup.service"),
            units.join("ferry-backup.timer"),
        ],
    );
    assert!(
        ok && !out.contains("ferry-backup"),
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
    let (ok, out) = systemd_verify(
        &env,
        &[
            units.join("ferry-retention.service"),
            units.join("ferry-retention.timer"),
        ],
    );
    assert!(
        ok && !out.contains("ferry-retention"),
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

/// `ferry status | grep -q .`: the reader leaves early; ferry ends quietly with 141 (as if killed
/// by SIGPIPE), not with a panic.
#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    let env = Env::new();
    env.keys();
    let cfg = config(&env, "");
    // The pipe's reader is closed before ferry starts. Another test thread's child may still
    // hold a copy of it for the moment between its fork and its exec (then the write succeeds
    // and ferry exits 0), so a few attempts, each of which must not panic, one of which must
    // meet the closed pipe.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .cmd()
            .args(["status", "--config", cfg.to_str().unwrap()])
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            matches!(out.status.code(), Some(0 | 141)),
            "{:?} {stderr}",
            out.status
        );
        codes.push(out.status.code());
        if out.status.code() == Some(141) {
            return;
        }
    }
    panic!("ferry never met the closed pipe: exit codes {codes:?}");
}

/// `runs.jsonl` in the config's spool with these (result, hours ago) records.
fn write_runs(env: &Env, runs: &[(&str, i64)]) {
    let spool = env.path("spool");
    fs::create_dir_all(&spool).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut text = String::new();
    for (result, hours) in runs {
        let at = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let finished = now - hours * 3600;
        let error = if *result == "failed" {
            serde_json::json!("no jump box; the spool keeps 1.0 MiB for the next run")
        } else {
            serde_json::Value::Null
        };
        let rec = serde_json::json!({
            "started": at(finished - 90), "finished": at(finished), "result": result,
            "error": error, "snapshot": "0123456789abcdef0123", "files": 3, "bytes": 300,
            "bytes_read": 250, "new_bytes": 20,
            "sources": [{"source": "vm", "status": "ok", "content_bytes": 250, "new_bytes": 20, "errors": []}],
            "usage": {"s3_put_requests": 4, "s3_list_requests": 1, "s3_get_requests": 1,
                      "uploaded_bytes": 1234, "uploaded_objects": 4, "lambda_invocations": 2,
                      "instance_seconds": 61},
        });
        text.push_str(&format!("{rec}\n"));
    }
    fs::write(spool.join("runs.jsonl"), text).unwrap();
}

#[test]
fn status_max_age_says_why_and_exits_non_zero() {
    let env = Env::new();
    env.keys();
    let cfg = config(&env, "");
    let cfg = cfg.to_str().unwrap();
    let check = |max: &str| env.run(["status", "--config", cfg, "--max-age", max]);

    let r = check("36h");
    assert_eq!(
        (r.code, r.stdout_str()),
        (1, "FAIL: no backup run recorded yet\n".into())
    );

    write_runs(&env, &[("failed", 2)]);
    let r = check("36h");
    assert_eq!(r.code, 1);
    assert!(
        r.stdout_str().starts_with("FAIL: last run failed at ")
            && r.stdout_str().ends_with(
                ": no jump box; the spool keeps 1.0 MiB for the next run (no successful run recorded)\n"
            ),
        "{}",
        r.stdout_str()
    );

    write_runs(&env, &[("ok", 40)]);
    let r = check("36h");
    assert_eq!(r.code, 1);
    assert!(
        r.stdout_str().contains("(1d 16h ago), older than 36h"),
        "{}",
        r.stdout_str()
    );
    // Two days is long enough for a run 40 hours old.
    let r = check("2d");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout_str().starts_with("OK: last run ok at "),
        "{}",
        r.stdout_str()
    );

    write_runs(&env, &[("ok", 40), ("partial", 1)]);
    let r = check("36h");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout_str().starts_with("OK: last run partial at ")
            && r.stdout_str().ends_with("(1h 0m ago), snapshot 01234567\n"),
        "{}",
        r.stdout_str()
    );

    let r = check("soon");
    assert_eq!(r.code, 2, "a bad duration is a usage error: {r:?}");
    assert!(r.stderr.contains("soon"), "{}", r.stderr);
}

#[test]
fn status_prometheus_prints_the_metrics_of_the_runs() {
    let env = Env::new();
    env.keys();
    let cfg = config(&env, "");
    write_runs(&env, &[("ok", 30), ("failed", 2)]);
    let r = env
        .run(["status", "--config", cfg.to_str().unwrap(), "--prometheus"])
        .ok();
    let text = r.stdout_str();
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert_eq!(value("ferry_last_run_success"), 0.0);
    assert!((now - 2.0 * 3600.0 - value("ferry_last_run_timestamp_seconds")).abs() < 120.0);
    assert!((now - 30.0 * 3600.0 - value("ferry_last_success_timestamp_seconds")).abs() < 120.0);
    assert_eq!(value("ferry_last_run_duration_seconds"), 90.0);
    assert_eq!(value("ferry_last_run_uploaded_bytes"), 1234.0);
    assert_eq!(value(r#"ferry_last_run_s3_requests{type="put"}"#), 4.0);
    assert_eq!(value("ferry_last_run_jump_box_seconds"), 61.0);
    assert_eq!(value(r#"ferry_source_success{source="vm"}"#), 1.0);
    assert!(
        text.contains("# TYPE ferry_last_run_success gauge\n"),
        "{text}"
    );
}

/// `ferry generate`: the three completions, a man page for every subcommand (nested ones
/// included), and the Debian package's units, which run as the `ferry` account with one
/// capability and are the same backup service `schedule install` writes.
#[test]
fn generate_writes_completions_a_man_page_per_subcommand_and_the_packaged_units() {
    let env = Env::new();
    let (c, m, u) = (env.path("c"), env.path("m"), env.path("u"));
    env.run([
        "generate",
        "--completions",
        c.to_str().unwrap(),
        "--man",
        m.to_str().unwrap(),
        "--units",
        u.to_str().unwrap(),
    ])
    .ok();
    let bash = fs::read_to_string(c.join("ferry.bash")).unwrap();
    assert!(
        bash.contains("_ferry()") && bash.contains("backup"),
        "{bash}"
    );
    assert!(
        fs::read_to_string(c.join("_ferry"))
            .unwrap()
            .starts_with("#compdef ferry")
    );
    assert!(
        fs::read_to_string(c.join("ferry.fish"))
            .unwrap()
            .contains("complete -c ferry")
    );

    let pages: Vec<String> = fs::read_dir(&m)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in [
        "ferry.1",
        "ferry-backup.1",
        "ferry-restore.1",
        "ferry-key-init.1",
        "ferry-infra-apply.1",
        "ferry-schedule-install.1",
        "ferry-generate.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "no {want} in {pages:?}");
    }
    let backup = fs::read_to_string(m.join("ferry-backup.1")).unwrap();
    assert!(
        backup.contains(".TH ferry-backup") && backup.contains("config"),
        "{backup}"
    );

    let service = fs::read_to_string(u.join("ferry-backup.service")).unwrap();
    let timer = fs::read_to_string(u.join("ferry-backup.timer")).unwrap();
    for line in [
        "User=ferry",
        "ExecStart=/usr/bin/ferry backup --config /etc/ferry/ferry.toml",
        "AmbientCapabilities=CAP_DAC_READ_SEARCH",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
        "NoNewPrivileges=yes",
        // The interrupt's whole budget (180 s for ferry-build, 150 s for ferry-clean) + 60 s.
        "TimeoutStopSec=390",
        "SuccessExitStatus=3",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "no {line:?} in\n{service}"
        );
    }
    assert!(timer.contains("OnCalendar=daily") && timer.contains("WantedBy=timers.target"));
    // `ferry schedule remove` never deletes the package's units.
    let r = env.run([
        "schedule",
        "remove",
        "--unit-dir",
        u.to_str().unwrap(),
        "--no-enable",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(u.join("ferry-backup.service").exists());
    // With no output named, it says what it can write.
    assert_eq!(env.run(["generate"]).code, 2);
}
