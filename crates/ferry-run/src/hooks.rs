//! `[hooks]`: the user's commands around a run (rustic's names `run-before`, `run-after`,
//! `run-failed`, `run-finally`). Each is an argv array run without a shell, in its own
//! process group, with stdin closed and its stdout and stderr going to Ferry's stderr (the
//! log: the journal under systemd; stdout stays free for `--json`). The run's result is in
//! its environment (names in [`ferry_contract::hooks`]). A hook past `hooks.timeout` is
//! killed with its process group.

use crate::config::HooksPlan;
use ferry_contract::hooks as env;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One of the four hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `run-before`: before anything else; failing, it skips the run.
    Before,
    /// `run-after`: after a successful (or partial) run.
    After,
    /// `run-failed`: after a failed, skipped or interrupted run.
    Failed,
    /// `run-finally`: after every run.
    Finally,
}

impl Hook {
    /// The config key and `FERRY_HOOK` value: `run-before` …
    pub fn name(self) -> &'static str {
        match self {
            Hook::Before => "run-before",
            Hook::After => "run-after",
            Hook::Failed => "run-failed",
            Hook::Finally => "run-finally",
        }
    }

    /// The configured command of this hook.
    pub fn command(self, plan: &HooksPlan) -> Option<&[String]> {
        match self {
            Hook::Before => plan.run_before.as_deref(),
            Hook::After => plan.run_after.as_deref(),
            Hook::Failed => plan.run_failed.as_deref(),
            Hook::Finally => plan.run_finally.as_deref(),
        }
    }
}

/// Run `hook` if it is configured (`None` if not) with `vars` (names from
/// [`ferry_contract::hooks`]; any other `FERRY_*` of those names Ferry inherited is removed).
/// `Err` is a sentence naming the hook, its program and what happened.
pub fn run(
    plan: &HooksPlan,
    hook: Hook,
    vars: &[(&'static str, String)],
) -> Option<Result<(), String>> {
    let argv = hook.command(plan)?;
    Some(run_argv(hook, argv, plan.timeout, vars))
}

fn run_argv(
    hook: Hook,
    argv: &[String],
    timeout: Duration,
    vars: &[(&'static str, String)],
) -> Result<(), String> {
    let program = argv.first().map(String::as_str).unwrap_or("");
    let what = format!("hook {} ({program})", hook.name());
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]);
    for name in env::ALL {
        cmd.env_remove(name);
    }
    cmd.env(env::HOOK, hook.name());
    cmd.envs(vars.iter().map(|(k, v)| (*k, v)));
    let out = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("{what}: duplicating stderr: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what} could not be started: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(format!(
                    "{what} did not finish within {} s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(format!("{what}: waiting for it: {e}"));
            }
        }
    };
    if status.success() {
        Ok(())
    } else if let Some(code) = status.code() {
        Err(format!("{what} exited with status {code}"))
    } else {
        Err(format!(
            "{what} was killed by signal {}",
            status.signal().unwrap_or(0)
        ))
    }
}

/// SIGKILL the process group `pid` leads (the hook and whatever it started).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on the process group of our own child (it is its leader:
        // `process_group(0)`), not yet reaped, so the id is not reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(before: &[&str], timeout: u64) -> HooksPlan {
        HooksPlan {
            run_before: Some(before.iter().map(|s| s.to_string()).collect()),
            timeout: Duration::from_secs(timeout),
            ..HooksPlan::default()
        }
    }

    #[test]
    fn status_signal_timeout_and_missing_program_are_named() {
        assert_eq!(run(&HooksPlan::default(), Hook::Before, &[]), None);
        assert_eq!(run(&plan(&["true"], 5), Hook::Before, &[]), Some(Ok(())));
        let e = run(&plan(&["sh", "-c", "exit 3"], 5), Hook::Before, &[]);
        assert_eq!(
            e,
            Some(Err("hook run-before (sh) exited with status 3".into()))
        );
        let e = run(&plan(&["sh", "-c", "kill -TERM $$"], 5), Hook::Before, &[]);
        assert_eq!(
            e,
            Some(Err("hook run-before (sh) was killed by signal 15".into()))
        );
        let e = run(&plan(&["/nonexistent/hook"], 5), Hook::Before, &[])
            .unwrap()
            .unwrap_err();
        assert!(
            e.starts_with("hook run-before (/nonexistent/hook) could not be started: "),
            "{e}"
        );
        // A hook past its timeout is killed with what it started (the sleep in the
        // background holds no pipe of ours: it is killed with the group).
        let t = Instant::now();
        let e = run(
            &plan(&["sh", "-c", "sleep 30 & sleep 30"], 1),
            Hook::Before,
            &[],
        );
        assert_eq!(
            e,
            Some(Err(
                "hook run-before (sh) did not finish within 1 s and was killed".into()
            ))
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
