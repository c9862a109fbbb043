//! Jump boxes booted from their real user data.
//!
//! When ferry-build has launched an instance in moto, a test hands its user data (read back
//! from moto) to [`Jumpbox::boot`]. The script runs unchanged, as root, in an isolated root:
//!
//! - `unshare --mount --pid --fork --mount-proc --kill-child`: a private mount namespace and
//!   PID namespace (the box's processes die with it, and it sees only its own);
//! - overlays (lower = this machine's directory, upper = the box's own) on `/etc`, `/usr/local`
//!   and `/home`, and private directories on `/run` (tmpfs) and `/tmp`, so `useradd`,
//!   `rm -f /etc/ssh/ssh_host_*`, the gate install and its spool never touch the machine;
//! - the network is shared with the test (loopback only): the box's sshd listens on
//!   `127.0.0.1:<port>` instead of the instance's public address on port 22.
//!
//! Mapped onto the sandbox (the gaps, on purpose), by commands placed first on the script's
//! `PATH`:
//! - `systemctl restart sshd` starts Debian's real `/usr/sbin/sshd` with the configuration the
//!   script wrote (Debian's `sshd_config` includes `sshd_config.d/*.conf` first, as AL2023's
//!   does), plus `ListenAddress`/`Port` for loopback, `UsePAM no` (the machine's PAM stack is not
//!   the box's), and `SetEnv` with the AWS endpoint and the jump-box role's credentials, which
//!   on EC2 the gate gets from the instance metadata service;
//! - `systemctl poweroff` records the power-off ([`Jumpbox::powered_off`]) and ends the box;
//!   with shutdown behaviour `terminate`, the test then terminates the instance in moto;
//! - `systemd-run --unit=U --on-active=Ns CMD…` records the timer; it fires after N seconds,
//!   or at once through [`Jumpbox::fire_timer`] (tests never wait for wall-clock timers);
//! - `aws s3api get-object` and `aws lambda invoke` are a small boto3 script (the project venv)
//!   with the same arguments, talking to moto and the test kit's Lambda host through the
//!   standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_LAMBDA` variables. AL2023 ships AWS CLI v2.
//! - `useradd`, `install`, `sha256sum`, `mktemp` are the machine's own (Debian), unchanged.
//!
//! Because `UsePAM no` and Debian's `useradd` leaves the password locked (`!`), which sshd
//! refuses without PAM, the `systemctl` shim unlocks the `ferry` user's password field to `*`
//! (no password can match) before starting sshd. On AL2023 PAM handles it.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Moto, Proc, wait_until};

/// How to boot a box.
pub struct JumpboxOptions {
    /// The user data script, exactly as ferry-build wrote it.
    pub user_data: String,
    /// AWS variables for the box's own AWS calls (endpoint, region, the jump-box role's
    /// credentials) and `AWS_ENDPOINT_URL_LAMBDA` for the Lambda host.
    pub aws_env: Vec<(String, String)>,
    /// How long the user data may take.
    pub boot_timeout: Duration,
}

/// A running box. Dropping it ends the PID namespace (every process of the box).
pub struct Jumpbox {
    proc: Option<Proc>,
    port: u16,
    dir: tempfile::TempDir,
}

const SHIM_SYSTEMCTL: &str = r#"#!/bin/bash
# Test-kit stand-in for systemctl inside a jump-box sandbox (see ferry-testkit jumpbox.rs).
set -euo pipefail
box="$FERRY_BOX_DIR"
case "$*" in
  "restart sshd"|"restart sshd.service"|"start sshd")
    if [ -f /run/ferry-box-sshd.pid ]; then kill "$(cat /run/ferry-box-sshd.pid)" 2>/dev/null || true; sleep 0.2; fi
    if grep -q '^ferry:!' /etc/shadow; then usermod -p '*' ferry; fi
    /usr/sbin/sshd -t -o UsePAM=no -o "ListenAddress=127.0.0.1:$FERRY_BOX_SSH_PORT"
    /usr/sbin/sshd -D -e -o UsePAM=no -o "ListenAddress=127.0.0.1:$FERRY_BOX_SSH_PORT" \
      -o PidFile=/run/ferry-box-sshd.pid -o "SetEnv=$(cat "$box/gate-env")" >>"$box/sshd.log" 2>&1 &
    echo $! > /run/ferry-box-sshd.pid
    ;;
  "poweroff"|"halt"|"poweroff --force")
    # The box's PID 1 sees this and exits, which ends every process of the box.
    date -u +%FT%TZ > "$box/poweroff"
    ;;
  *) echo "systemctl $*: not emulated in the test kit" >&2; exit 1 ;;
esac
"#;

const SHIM_SYSTEMD_RUN: &str = r#"#!/bin/bash
# Test-kit stand-in for systemd-run --unit=U --on-active=Ns CMD... (see jumpbox.rs).
set -euo pipefail
box="$FERRY_BOX_DIR"
unit=""; secs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --unit=*) unit="${1#--unit=}"; shift ;;
    --on-active=*) secs="${1#--on-active=}"; secs="${secs%s}"; shift ;;
    --timer-property=*|--quiet|-q) shift ;;
    --*) echo "systemd-run $1: not emulated in the test kit" >&2; exit 1 ;;
    *) break ;;
  esac
done
[ -n "$unit" ] && [ -n "$secs" ] || { echo "systemd-run: need --unit and --on-active" >&2; exit 1; }
mkdir -p "$box/timers"
printf '%q ' "$@" > "$box/timers/$unit.cmd"
echo "$secs" > "$box/timers/$unit.secs"
( sleep "$secs"; bash "$box/run-timer" "$unit" ) >/dev/null 2>&1 &
"#;

const RUN_TIMER: &str = r#"#!/bin/bash
# Fire a recorded timer once (its output in timers/U.log, its exit code in timers/U.rc).
box="$FERRY_BOX_DIR"; unit="$1"
mkdir "$box/timers/$unit.fired" 2>/dev/null || exit 0
set +e
eval "$(cat "$box/timers/$unit.cmd")" >"$box/timers/$unit.log" 2>&1
echo $? > "$box/timers/$unit.rc"
"#;

const SHIM_AWS: &str = r#"
# Test-kit stand-in for the two AWS CLI v2 commands the user data runs (see jumpbox.rs).
import argparse, sys
import boto3
args = sys.argv[1:]
def opts(spec, argv):
    p = argparse.ArgumentParser(prog='aws ' + ' '.join(args[:2]))
    for o in spec: p.add_argument(o, required=o not in ('--region', '--cli-binary-format'))
    p.add_argument('outfile')
    return p.parse_args(argv)
if args[:2] == ['s3api', 'get-object']:
    o = opts(['--region', '--bucket', '--key'], args[2:])
    body = boto3.client('s3', region_name=o.region).get_object(Bucket=o.bucket, Key=o.key)['Body'].read()
    open(o.outfile, 'wb').write(body)
elif args[:2] == ['lambda', 'invoke']:
    o = opts(['--region', '--function-name', '--cli-binary-format', '--payload'], args[2:])
    r = boto3.client('lambda', region_name=o.region).invoke(FunctionName=o.function_name, Payload=o.payload.encode())
    open(o.outfile, 'wb').write(r['Payload'].read())
    print('{"StatusCode": %d%s}' % (r['StatusCode'], ', "FunctionError": "%s"' % r['FunctionError'] if 'FunctionError' in r else ''))
    if 'FunctionError' in r: sys.exit(255)
else:
    sys.exit('aws %s: not emulated in the test kit' % ' '.join(args[:2]))
"#;

const INIT: &str = r#"#!/bin/bash
# PID 1 of the box: private mounts, then the user data, then run until powered off or killed.
set -euo pipefail
box="$FERRY_BOX_DIR"
mount --make-rprivate /
for d in etc usr/local home; do
  mkdir -p "$box/upper/$d" "$box/work/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$box/upper/$d,workdir=$box/work/$d" "/$d"
done
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
mkdir -p "$box/tmp" && chmod 1777 "$box/tmp"
# The `aws` shim runs the project venv's python. When the checkout lives under /tmp (as a CI
# clone may), the private /tmp would hide it: carry it across the mount at the same path.
venv="$FERRY_BOX_VENV"
mkdir -p "$box/venv" && mount --bind "$venv" "$box/venv"
mount --bind "$box/tmp" /tmp
if [ ! -e "$venv/bin/python3" ]; then mkdir -p "$venv" && mount --bind "$box/venv" "$venv"; fi
export PATH="$box/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
set +e
bash "$box/user-data" >"$box/user-data.log" 2>&1
echo $? > "$box/user-data.rc"
while [ ! -e "$box/poweroff" ]; do sleep 0.2; done
"#;

fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Jumpbox {
    /// Boot: run the user data in a fresh sandbox, wait (bounded) until it has finished and the
    /// box's sshd answers. A script that fails is an error carrying its output.
    pub fn boot(opts: JumpboxOptions) -> Result<Jumpbox, String> {
        // Not under /tmp: the box mounts its own /tmp.
        let dir = tempfile::Builder::new()
            .prefix("ferry-box-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
        write_exec(&bin.join("systemctl"), SHIM_SYSTEMCTL)?;
        write_exec(&bin.join("systemd-run"), SHIM_SYSTEMD_RUN)?;
        let py = Moto::venv().join("bin/python3");
        write_exec(&bin.join("aws"), &format!("#!{}\n{SHIM_AWS}", py.display()))?;
        write_exec(&d.join("run-timer"), RUN_TIMER)?;
        write_exec(&d.join("init"), INIT)?;
        std::fs::write(d.join("user-data"), &opts.user_data).map_err(|e| e.to_string())?;
        // sshd's SetEnv for the gate's sessions (the instance role, on EC2).
        let gate_env: Vec<String> = opts
            .aws_env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        std::fs::write(d.join("gate-env"), gate_env.join(" ")).map_err(|e| e.to_string())?;
        let port = crate::free_port();
        let log = std::fs::File::create(d.join("init.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child=SIGKILL",
                "bash",
            ])
            .arg(d.join("init"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("FERRY_BOX_DIR", d)
            .env("FERRY_BOX_VENV", Moto::venv())
            .env("FERRY_BOX_SSH_PORT", port.to_string())
            .envs(opts.aws_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut proc = Proc {
            child,
            name: "jumpbox".into(),
        };
        let rc_path = d.join("user-data.rc");
        wait_until("jump box user data", opts.boot_timeout, || {
            rc_path.exists() || !proc.running()
        })
        .map_err(|e| format!("{e}\n{}", Self::describe(d)))?;
        let rc = std::fs::read_to_string(&rc_path).unwrap_or_default();
        if rc.trim() != "0" {
            return Err(format!(
                "user data exited with {:?}\n{}",
                rc.trim(),
                Self::describe(d)
            ));
        }
        let mut bx = Jumpbox {
            proc: Some(proc),
            port,
            dir,
        };
        wait_until("jump box sshd", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b)?;
                    Ok(&b == b"SSH-2.0-")
                })
                .unwrap_or(false)
        })
        .map_err(|e| format!("{e}\n{}", Self::describe(bx.dir.path())))?;
        if !bx.proc.as_mut().is_some_and(|p| p.running()) {
            return Err(format!("jump box ended\n{}", Self::describe(bx.dir.path())));
        }
        Ok(bx)
    }

    fn describe(d: &Path) -> String {
        let r = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_default();
        format!(
            "--- init.log\n{}--- user-data.log\n{}--- sshd.log\n{}",
            r("init.log"),
            r("user-data.log"),
            r("sshd.log")
        )
    }

    /// The loopback port of the box's sshd (port 22 of the instance).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user data's output, sshd's log, and the init log.
    pub fn logs(&self) -> String {
        Self::describe(self.dir.path())
    }

    /// A file of the box's root, read through its overlay (e.g. `etc/ferry/gate.toml`).
    pub fn read_file(&self, rel_in_root: &str) -> Option<String> {
        let (top, rest) = rel_in_root.split_once('/')?;
        let p = match top {
            "etc" | "home" => self.dir.path().join("upper").join(top).join(rest),
            "usr" => self.dir.path().join("upper").join(rel_in_root),
            _ => return None,
        };
        std::fs::read_to_string(p).ok()
    }

    /// Timers the user data armed: (unit, seconds, command line).
    pub fn timers(&self) -> Vec<(String, u64, String)> {
        let t = self.dir.path().join("timers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&t).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(unit) = name.strip_suffix(".cmd") {
                let secs = std::fs::read_to_string(t.join(format!("{unit}.secs")))
                    .unwrap_or_default()
                    .trim()
                    .parse()
                    .unwrap_or(0);
                let cmd = std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                out.push((unit.to_string(), secs, cmd));
            }
        }
        out.sort();
        out
    }

    /// Fire a recorded timer now, inside the box; returns (exit code, output).
    pub fn fire_timer(&self, unit: &str) -> Result<(i32, String), String> {
        let pid = self
            .proc
            .as_ref()
            .map(|p| p.pid())
            .ok_or("the box is not running")?;
        // The box's PID 1 is the child of `unshare`; enter its namespaces through it.
        let inner = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map_err(|e| format!("children of {pid}: {e}"))?
            .split_whitespace()
            .next()
            .ok_or("the box has no init process")?
            .to_string();
        let d = self.dir.path();
        let out = Command::new("nsenter")
            .args(["-t", &inner, "--mount", "--pid", "--", "bash"])
            .arg(d.join("run-timer"))
            .arg(unit)
            .env("FERRY_BOX_DIR", d)
            .env("FERRY_BOX_VENV", Moto::venv())
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    d.join("bin").display()
                ),
            )
            .envs(self.box_env())
            .output()
            .map_err(|e| format!("nsenter: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "firing {unit}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let t = d.join("timers");
        let rc = std::fs::read_to_string(t.join(format!("{unit}.rc")))
            .map_err(|_| format!("timer {unit} did not run (already fired?)"))?;
        let log = std::fs::read_to_string(t.join(format!("{unit}.log"))).unwrap_or_default();
        Ok((rc.trim().parse().unwrap_or(-1), log))
    }

    fn box_env(&self) -> Vec<(String, String)> {
        // The AWS variables the box was booted with, from its PID 1's environment file.
        let env = std::fs::read_to_string(self.dir.path().join("gate-env")).unwrap_or_default();
        env.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// When the box powered itself off (`systemctl poweroff`), if it did.
    pub fn powered_off(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("poweroff"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The PID of the box's `unshare` process (killing it ends the whole box).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    /// Whether the box (its PID namespace) is still running.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.running())
    }
}

impl Drop for Jumpbox {
    fn drop(&mut self) {
        // The box's PID 1 exits when it sees the power-off mark, which ends every process in the
        // box's PID namespace (the mounts go with the namespace) and then `unshare`. Should that
        // not happen in time, dropping the process kills `unshare` and so PID 1 (--kill-child).
        let _ = std::fs::write(self.dir.path().join("poweroff"), "test kit: box dropped\n");
        if let Some(mut p) = self.proc.take() {
            let _ = wait_until("jump box exit", Duration::from_secs(5), || !p.running());
        }
    }
}

/// The user data of `instance` in `moto` (base64-decoded), read like an operator would.
pub fn user_data_from_moto(
    moto: &Moto,
    instance: &str,
    creds: &[(String, String)],
) -> Result<String, String> {
    let script = r#"
import base64, sys, boto3
a = boto3.client('ec2').describe_instance_attribute(InstanceId=sys.argv[1], Attribute='userData')
sys.stdout.write(base64.b64decode(a['UserData']['Value']).decode())
"#;
    moto.python(script, &[instance], creds)
}

/// The path of a file under the box directory (for diagnostics in tests).
pub fn box_path(bx: &Jumpbox, rel: &str) -> PathBuf {
    bx.dir.path().join(rel)
}
