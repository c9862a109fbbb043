//! The files a local cloud keeps in its directory, and the process checks `up`, `down` and
//! `status` make by PID.
//!
//! - `localcloud.pid`: the daemon's PID (written by the daemon once it holds `localcloud.lock`);
//! - `state.json`: what runs ([`State`]), rewritten atomically by the daemon when it changes;
//! - `env`: the shell file to `source` (written by `up`, removed by `down`);
//! - `ssh_config`: one `Host <public IP>` block per jump box (see [`render_ssh_config`]);
//! - `sources.toml`: the sample LAN's `[sources]` section (with `--lan`);
//! - `localcloud.log`: the daemon's events in plain words; `moto.log`, `functions/NAME.log`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const PID_FILE: &str = "localcloud.pid";
pub const LOCK_FILE: &str = "localcloud.lock";
pub const STATE_FILE: &str = "state.json";
pub const ENV_FILE: &str = "env";
pub const SSH_CONFIG: &str = "ssh_config";
pub const SOURCES_FILE: &str = "sources.toml";
pub const LOG_FILE: &str = "localcloud.log";

/// What the daemon runs (state.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub pid: u32,
    pub started: String,
    pub ready: bool,
    pub moto_endpoint: String,
    pub moto_pid: u32,
    pub lambda_endpoint: String,
    pub region: String,
    pub functions: Vec<FunctionState>,
    pub boxes: Vec<BoxState>,
    pub lan: Vec<LanState>,
    pub schedules: Vec<ScheduleState>,
    /// The operator's access key in moto (an IAM user with every permission; IAM checks are
    /// off anyway). Empty: moto's default `testing` keys.
    #[serde(default)]
    pub operator_key_id: String,
    #[serde(default)]
    pub operator_secret: String,
    /// Every process the daemon started, with its start time (`/proc/PID/stat` field 22), so
    /// that `down` can tell a leftover from a new process that reused the PID.
    pub children: Vec<ChildState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FunctionState {
    pub name: String,
    pub code_sha256: String,
    pub pid: Option<u32>,
    pub loaded: String,
    pub timeout_secs: u64,
    pub init_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BoxState {
    pub instance: String,
    pub session: String,
    pub public_ip: Option<String>,
    /// `booting` (the AMI's first boot), then `running` once its sshd answers — as the
    /// instance's public IP does on EC2, before the user data has finished.
    pub status: String,
    /// The user data (cloud-init's final stage): `running` or `done` (a box whose user data
    /// fails is powered off and gone); empty while booting.
    #[serde(default)]
    pub user_data: String,
    /// The box's sshd on 127.0.0.1 (once running).
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub since: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LanState {
    pub name: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// The host's files (its `etc/` and `var/log/`) live below here.
    pub root: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleState {
    pub rule: String,
    pub schedule: String,
    pub function: String,
    pub input: String,
    pub next: String,
    pub last: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChildState {
    pub pid: u32,
    pub starttime: u64,
    pub what: String,
}

/// Write `text` to `path` atomically (a temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

pub fn read_state(dir: &Path) -> Option<State> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Fields of `/proc/PID/stat` after the command name: (state, starttime).
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The process's start time (clock ticks after boot), if it exists.
pub fn starttime(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, s)| s)
}

/// Whether `pid` runs (a zombie does not: it has exited and only waits to be reaped).
pub fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// Whether `pid` is the local-cloud daemon serving `dir`.
pub fn is_daemon(pid: u32, dir: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    alive(pid) && args.iter().any(|a| a == "serve") && args.iter().any(|a| Path::new(a) == dir)
}

/// The running daemon of `dir`, if any.
pub fn running_daemon(dir: &Path) -> Option<u32> {
    read_pid(dir).filter(|p| is_daemon(*p, dir))
}

/// Single-quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell file to `source`: the SDK-standard variables pointing at the local cloud.
fn or_testing(v: &str) -> String {
    if v.is_empty() {
        "testing".into()
    } else {
        v.to_string()
    }
}

pub fn render_env(dir: &Path, st: &State) -> String {
    let ssh = dir.join(SSH_CONFIG);
    let mut s = String::new();
    s.push_str(&format!(
        "# Written by `ferry-localcloud up --dir {}`. Source it (`. {}/env`) to point Ferry, the\n\
         # AWS CLI and the AWS SDKs at the local cloud. Removed by `ferry-localcloud down`.\n",
        dir.display(),
        dir.display()
    ));
    let vars = [
        ("AWS_ENDPOINT_URL", st.moto_endpoint.clone()),
        ("AWS_ENDPOINT_URL_LAMBDA", st.lambda_endpoint.clone()),
        ("AWS_REGION", st.region.clone()),
        ("AWS_DEFAULT_REGION", st.region.clone()),
        // The operator's credentials: an IAM user in moto (IAM checks are off in the local cloud).
        ("AWS_ACCESS_KEY_ID", or_testing(&st.operator_key_id)),
        ("AWS_SECRET_ACCESS_KEY", or_testing(&st.operator_secret)),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (ferry_contract::env::SSH_CONFIG, ssh.display().to_string()),
    ];
    for (k, v) in vars {
        s.push_str(&format!("export {k}={}\n", shell_quote(&v)));
    }
    s.push_str("# A session token or profile from the real AWS would override the keys above.\n");
    s.push_str("unset AWS_SESSION_TOKEN AWS_PROFILE\n");
    s
}

/// One jump box in ssh_config.
#[derive(Debug, Clone, PartialEq)]
pub struct SshEntry {
    pub public_ip: String,
    pub instance: String,
    pub session: String,
    /// The box's loopback sshd port; `None` while it boots.
    pub port: Option<u16>,
}

/// The client-side bridge: the client connects to the instance's public IP on port 22 (what
/// ferry-build answers); `ProxyCommand` carries that connection to the box's sshd on loopback.
/// The host name stays the public IP, so the client's pinned host key is checked against it.
/// A box still booting gets a ProxyCommand that fails at once (ssh exits 255, a connection
/// failure the client retries) instead of a connection to the real public address.
pub fn render_ssh_config(dir: &Path, entries: &[SshEntry]) -> String {
    let mut s = format!(
        "# Written by ferry-localcloud ({}); rewritten whenever a jump box starts or stops.\n\
         # Each jump box's sshd listens on 127.0.0.1; the client names the instance's public IP\n\
         # (port 22) and ProxyCommand carries the connection there, so the host key check stays\n\
         # bound to the public IP the client pinned. Used by `ssh -F` (FERRY_SSH_CONFIG).\n",
        dir.display()
    );
    let mut sorted = entries.to_vec();
    sorted.sort_by(|a, b| a.public_ip.cmp(&b.public_ip));
    for e in sorted {
        s.push_str(&format!("\nHost {}\n", e.public_ip));
        match e.port {
            Some(p) => s.push_str(&format!(
                "  # instance {}, session {}\n  ProxyCommand nc 127.0.0.1 {p}\n",
                e.instance, e.session
            )),
            None => s.push_str(&format!(
                "  # instance {}, session {}: the jump box is still booting\n  \
                 ProxyCommand sh -c 'echo \"ferry-localcloud: the jump box of {} is still booting\" >&2; exit 1'\n",
                e.instance, e.session, e.instance
            )),
        }
    }
    s.push_str(&format!(
        "\n# moto hands out public IPs in {MOTO_PUBLIC_IPS}.0.0/16 (real AWS addresses). One without a\n\
         # box above (not seen yet, or gone) must not be reached on the internet: refuse at once.\n\
         Host {MOTO_PUBLIC_IPS}.*\n  \
         ProxyCommand sh -c 'echo \"ferry-localcloud: no jump box (yet) for %h\" >&2; exit 1'\n"
    ));
    s
}

/// The /16 moto 5.2.5 draws instances' public IPs from (`moto/ec2/utils.py`, random_public_ip).
pub const MOTO_PUBLIC_IPS: &str = "54.214";

/// `dir` made absolute (created if missing).
pub fn prepare_dir(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    dir.canonicalize()
        .map_err(|e| format!("resolving {}: {e}", dir.display()))
}

/// Now, UTC, to the second (`2026-11-23T07:40:57Z`).
pub fn now() -> String {
    at(std::time::SystemTime::now())
}

pub fn at(t: std::time::SystemTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_config_has_a_proxy_block_per_running_box_and_a_refusal_while_booting() {
        let text = render_ssh_config(
            Path::new("/lc"),
            &[
                SshEntry {
                    public_ip: "54.0.0.9".into(),
                    instance: "i-2".into(),
                    session: "fs-2".into(),
                    port: None,
                },
                SshEntry {
                    public_ip: "54.0.0.1".into(),
                    instance: "i-1".into(),
                    session: "fs-1".into(),
                    port: Some(40123),
                },
            ],
        );
        let first = text.find("Host 54.0.0.1\n").unwrap();
        let second = text.find("Host 54.0.0.9\n").unwrap();
        assert!(first < second);
        assert!(text[first..second].contains("ProxyCommand nc 127.0.0.1 40123\n"));
        let rest = text.find("Host 54.214.*\n").unwrap();
        assert!(second < rest);
        assert!(text[second..rest].contains("exit 1'"));
        assert!(!text[second..].contains("nc 127.0.0.1"));
    }

    #[test]
    fn ssh_to_a_box_still_booting_fails_as_a_connection_failure_without_leaving_loopback() {
        // The real OpenSSH client with the rendered file: exit 255 (which clients retry), the
        // reason on stderr, and no connection attempt to the (unreachable) public address.
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ssh_config");
        let text = render_ssh_config(
            dir.path(),
            &[SshEntry {
                public_ip: "203.0.113.77".into(),
                instance: "i-0abc".into(),
                session: "fs-1".into(),
                port: None,
            }],
        );
        std::fs::write(&conf, text).unwrap();
        // The client's own command line (ferry-ssh), with the rendered file as `-F`; nothing
        // pinned (the known-hosts file is empty) and a key that is never offered.
        let ssh = |host: &str| {
            ferry_ssh::SshCommand::new("ferry", host, 22, dir.path().join("no-key"), "/dev/null")
                .config_file(Some(conf.clone()))
                .connect_timeout(5)
                .remote_command("true")
                .command()
                .unwrap()
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        };
        // A moto address with no box at all is refused the same way.
        let out = ssh("54.214.3.4");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{err}");
        assert!(err.contains("no jump box (yet) for 54.214.3.4"), "{err}");
        let out = ssh("203.0.113.77");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{err}");
        assert!(
            err.contains("the jump box of i-0abc is still booting"),
            "{err}"
        );
    }

    #[test]
    fn env_values_are_shell_quoted() {
        let st = State {
            moto_endpoint: "http://127.0.0.1:5000".into(),
            lambda_endpoint: "http://127.0.0.1:6000".into(),
            region: "us-east-1".into(),
            ..Default::default()
        };
        let text = render_env(Path::new("/tmp/it's here"), &st);
        assert!(text.contains("export AWS_ENDPOINT_URL='http://127.0.0.1:5000'\n"));
        assert!(text.contains("export FERRY_SSH_CONFIG='/tmp/it'\\''s here/ssh_config'\n"));
    }

    #[test]
    fn our_own_process_is_alive_and_has_a_start_time() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(starttime(me).is_some());
        assert!(!is_daemon(me, Path::new("/nonexistent")));
    }
}
