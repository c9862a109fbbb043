//! The jump box's user data: a short bash script fully determined by ferry-build. Nothing in it
//! comes from the caller except the validated site name and the re-encoded client public key;
//! every other value comes from the function's checked configuration or is generated here.
//!
//! Every value reaches the shell through one function, [`sh_quote`]: the script starts with
//! single-quoted assignments (nothing inside is expanded) and the commands use only
//! `"$variables"`; files are written with `printf '%s\n' "$var"`, never a heredoc a value could
//! end. Options take their value as `--opt=VALUE`, so a value starting with `-` stays a value.
//! A value that cannot be passed this way (a NUL byte; a line break in a one-line value) is
//! refused by [`render`].
//!
//! It fails closed: any failing command powers the instance off (and, with shutdown behaviour
//! `terminate`, destroys it) before sshd is ever restarted with the session's key.
//!
//! On EC2 the AMI's sshd is already up, with host keys of its own, when the script runs
//! (cloud-init's final stage): a client connecting early sees another host key or a refused
//! key, and must retry until the script has restarted sshd (the pinned key guarantees nothing is
//! sent to the wrong host). AL2023 specifics the script handles: `/tmp` is a small tmpfs
//! (<https://docs.aws.amazon.com/linux/al2023/ug/filesystem-slash-tmp.html>), so the gate's
//! download and spool live under `/var/lib/ferry`; the preinstalled `ec2-instance-connect`
//! package adds `AuthorizedKeysCommand` to sshd's command line through a systemd drop-in
//! (which `sshd_config` cannot override), so the script gives sshd an `ExecStart` of its own.
//!
//! The script contains the host private key. User data is readable by principals allowed
//! `ec2:DescribeInstanceAttribute` (the operator, not the backup VM) and, through IMDSv2, by
//! processes on the box itself; it is never logged by ferry-build.

use ferry_contract::gate::{BACKUP_KINDS, GateConfig};
use ferry_contract::lambda::CleanRequest;
use zeroize::Zeroizing;

/// Where things live on the jump box (shared with the gate and the test kit's boxes).
pub use ferry_contract::gate::{AUTHORIZED_KEYS, GATE_CONFIG, GATE_PATH, GATE_SPOOL};
/// The sshd drop-in that replaces the AMI's `ExecStart` (sorted after every other drop-in).
pub const SSHD_DROPIN: &str = "/etc/systemd/system/sshd.service.d/zz-ferry.conf";

/// `value` as one bash word, single-quoted: `'` becomes `'\''`; nothing inside is expanded.
/// `None` for a value bash cannot hold (a NUL byte).
pub fn sh_quote(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    Some(format!("'{}'", value.replace('\'', r"'\''")))
}

/// Everything the script depends on.
pub struct UserData<'a> {
    pub session: &'a str,
    pub site: &'a str,
    pub region: &'a str,
    pub backup_bucket: &'a str,
    pub state_bucket: &'a str,
    pub gate_key: &'a str,
    pub gate_sha256: &'a str,
    pub clean_function: &'a str,
    /// RFC 3339 and Unix seconds of the same instant.
    pub expires: &'a str,
    pub expires_unix: i64,
    pub shutdown_grace_minutes: u32,
    pub max_object_bytes: u64,
    pub max_session_bytes: u64,
    /// `ssh-ed25519 AAAA…` of the client.
    pub client_public_key: &'a str,
    /// OpenSSH private host key (PEM) and its public line.
    pub host_private_key: &'a str,
    pub host_public_key: &'a str,
}

/// The `authorized_keys` line for the client key (without its line break).
pub fn authorized_keys_line(client_public_key: &str, session: &str) -> String {
    format!(
        "restrict,command=\"{GATE_PATH} serve --config {GATE_CONFIG}\" {client_public_key} ferry-client-{session}"
    )
}

/// The gate's session config (TOML), written with the type the gate reads it with.
pub fn gate_config(u: &UserData<'_>) -> GateConfig {
    GateConfig {
        bucket: u.backup_bucket.to_string(),
        site: u.site.to_string(),
        region: Some(u.region.to_string()),
        session: u.session.to_string(),
        expires: u.expires.to_string(),
        max_object_size: u.max_object_bytes,
        max_session_bytes: u.max_session_bytes,
        allowed_kinds: BACKUP_KINDS.iter().map(|k| k.to_string()).collect(),
        spool_dir: Some(GATE_SPOOL.into()),
        // The gate's default (docs/JUMPBOX.md, "S3 retries and timeouts").
        s3_attempt_timeout_secs: None,
    }
}

/// [`gate_config`] as the file's text.
pub fn gate_toml(u: &UserData<'_>) -> Result<String, String> {
    gate_config(u)
        .to_toml()
        .map_err(|e| format!("user data: writing the gate's config: {e}"))
}

/// The shell variables the script assigns, in order: (name, value). Zeroized when dropped
/// (the host private key is among them).
fn values(u: &UserData<'_>) -> Result<Vec<(&'static str, Zeroizing<String>)>, String> {
    let v = vec![
        ("session", u.session.to_string()),
        ("site", u.site.to_string()),
        ("region", u.region.to_string()),
        ("state_bucket", u.state_bucket.to_string()),
        ("gate_key", u.gate_key.to_string()),
        ("gate_sha256", u.gate_sha256.to_string()),
        ("clean_function", u.clean_function.to_string()),
        ("expires_unix", u.expires_unix.to_string()),
        (
            "grace_seconds",
            (u64::from(u.shutdown_grace_minutes) * 60).to_string(),
        ),
        (
            "host_public_line",
            format!("{} ferry-host-{}", u.host_public_key.trim(), u.session),
        ),
        (
            "authorized_keys",
            authorized_keys_line(u.client_public_key, u.session),
        ),
        ("gate_toml", gate_toml(u)?.trim_end().to_string()),
        ("clean_payload", CleanRequest::session(u.session).to_json()),
        (
            "host_private_key",
            u.host_private_key.trim_end().to_string(),
        ),
    ];
    Ok(v.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
}

/// The whole script; refused when a value cannot be passed to the shell as itself.
pub fn render(u: &UserData<'_>) -> Result<Zeroizing<String>, String> {
    // One-line values: a line break would split a file's line (authorized_keys, the host key's
    // public line) or a log line.
    for (name, v) in [
        ("session", u.session),
        ("site", u.site),
        ("region", u.region),
        ("backup bucket", u.backup_bucket),
        ("state bucket", u.state_bucket),
        ("gate key", u.gate_key),
        ("gate SHA-256", u.gate_sha256),
        ("clean function", u.clean_function),
        ("expiry", u.expires),
        ("client public key", u.client_public_key),
        ("host public key", u.host_public_key.trim()),
    ] {
        if v.contains(['\n', '\r']) {
            return Err(format!("user data: the {name} {v:?} has a line break"));
        }
    }
    let mut s = Zeroizing::new(String::with_capacity(8192));
    s.push_str(
        r#"#!/bin/bash
# Ferry jump box, written by ferry-build. The session's values come first, single-quoted (nothing
# in them is expanded); the steps below use them only as "$variables".
set -euo pipefail
umask 022
trap 'echo "ferry: user data failed at line $LINENO; powering off" >&2; systemctl poweroff' ERR

"#,
    );
    for (name, v) in values(u)? {
        let q = sh_quote(&v).ok_or_else(|| format!("user data: the {name} has a NUL byte"))?;
        s.push_str(&format!("{name}={q}\n"));
    }
    s.push_str(&format!(
        r#"# (end of values)

# 1. The ferry user: its key may only run the gate.
id ferry >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --comment "Ferry gate" ferry

# 2. The host key ferry-build generated (the client pins its public half); no other host key
#    (the AMI's own, generated at first boot, are removed).
rm -f /etc/ssh/ssh_host_*
(umask 077; printf '%s\n' "$host_private_key" > /etc/ssh/ssh_host_ed25519_key)
printf '%s\n' "$host_public_line" > /etc/ssh/ssh_host_ed25519_key.pub

# 3. The client key, confined to the gate.
install -d -m 755 /etc/ferry
printf '%s\n' "$authorized_keys" > {AUTHORIZED_KEYS}

# 4. sshd: public key only, only the ferry user, no forwarding, no tty, always the gate.
install -d -m 755 /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/00-ferry.conf <<'FERRY_SSHD'
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile {AUTHORIZED_KEYS}
AuthorizedKeysCommand none
AllowUsers ferry
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
PermitUserEnvironment no
ClientAliveInterval 30
ClientAliveCountMax 4
ForceCommand {GATE_PATH} serve --config {GATE_CONFIG}
FERRY_SSHD
#    AL2023's ec2-instance-connect package starts sshd with AuthorizedKeysCommand on its
#    command line (a drop-in in /usr/lib/systemd/system/sshd.service.d), which beats the file
#    above: this drop-in, sorted last, replaces that ExecStart, so EC2 Instance Connect keys
#    (anyone allowed ec2-instance-connect:SendSSHPublicKey) cannot log in.
install -d -m 755 "$(dirname {SSHD_DROPIN})"
cat > {SSHD_DROPIN} <<'FERRY_SSHD_UNIT'
[Service]
ExecStart=
ExecStart=/usr/sbin/sshd -D -o "AuthorizedKeysCommand none" $OPTIONS
FERRY_SSHD_UNIT

# 5. The gate, from the state bucket, run only if its SHA-256 is the one ferry-build was given.
#    On disk, not in /tmp (a small tmpfs on AL2023); the spool too.
install -d -m 755 /var/lib/ferry
install -d -m 700 -o ferry -g ferry {GATE_SPOOL}
gate_tmp=$(mktemp /var/lib/ferry/gate.XXXXXXXX)
aws s3api get-object --region="$region" --bucket="$state_bucket" --key="$gate_key" "$gate_tmp" >/dev/null
if ! printf '%s  %s\n' "$gate_sha256" "$gate_tmp" | sha256sum --check --status; then
  printf 'ferry: %s does not have the expected SHA-256; refusing to run it\n' "$gate_key" >&2
  rm -f "$gate_tmp"
  systemctl poweroff
  exit 1
fi
install -m 755 "$gate_tmp" {GATE_PATH}
rm -f "$gate_tmp"

# 6. The gate's session settings.
printf '%s\n' "$gate_toml" > {GATE_CONFIG}

# 7. At expiry the box asks ferry-clean to remove the session; the grace later it powers itself
#    off (and so terminates) whatever happened to that call. (expires_unix and grace_seconds
#    are integers written by ferry-build.)
left=$(( expires_unix - $(date +%s) ))
if [ "$left" -lt 1 ]; then left=1; fi
systemd-run --unit=ferry-expire --on-active="${{left}}s" \
  aws lambda invoke --region="$region" --function-name="$clean_function" \
  --cli-binary-format=raw-in-base64-out --payload="$clean_payload" /dev/null
systemd-run --unit=ferry-backstop --on-active="$(( left + grace_seconds ))s" systemctl poweroff

# 8. sshd with the session's host key and rules (the unit reloaded for the drop-in of step 4).
systemctl daemon-reload
systemctl restart sshd
printf 'ferry: jump box for session %s ready\n' "$session"
"#,
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UserData<'static> {
        UserData {
            session: "fs-20261123-050000-abcd",
            site: "home",
            region: "us-east-1",
            backup_bucket: "b",
            state_bucket: "s",
            gate_key: "artifacts/ferry-gate",
            gate_sha256: "00",
            clean_function: "ferry-clean",
            expires: "2026-11-23T05:30:00Z",
            expires_unix: 1_795_411_800,
            shutdown_grace_minutes: 5,
            max_object_bytes: 1,
            max_session_bytes: 2,
            client_public_key: "ssh-ed25519 AAAAclient",
            host_private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nX\n-----END OPENSSH PRIVATE KEY-----\n",
            host_public_key: "ssh-ed25519 AAAAhost",
        }
    }

    #[test]
    fn the_script_confines_the_key_and_arms_both_timers() {
        let s = render(&sample()).unwrap();
        assert!(s.contains("authorized_keys='restrict,command=\"/usr/local/bin/ferry-gate serve --config /etc/ferry/gate.toml\" ssh-ed25519 AAAAclient ferry-client-fs-20261123-050000-abcd'\n"));
        assert!(s.contains(
            "printf '%s  %s\\n' \"$gate_sha256\" \"$gate_tmp\" | sha256sum --check --status"
        ));
        assert!(s.contains("clean_payload='{\"session\":\"fs-20261123-050000-abcd\"}'\n"));
        assert!(s.contains("--payload=\"$clean_payload\""));
        assert!(s.contains("grace_seconds='300'\n"));
        assert!(s.contains("--on-active=\"$(( left + grace_seconds ))s\" systemctl poweroff"));
        assert!(s.contains("rm -f /etc/ssh/ssh_host_*"));
        let toml = gate_toml(&sample()).unwrap();
        assert!(
            toml.contains(
                "session = \"fs-20261123-050000-abcd\"\nexpires = \"2026-11-23T05:30:00Z\""
            ) && toml.contains("spool_dir = \"/var/lib/ferry/spool\"\n"),
            "{toml}"
        );
        // Nothing the gate writes or downloads lands in /tmp (a small tmpfs on AL2023).
        assert!(
            s.lines()
                .filter(|l| l.contains("/tmp") || l.contains("mktemp"))
                .all(|l| l.trim_start().starts_with('#') || l.contains("mktemp /var/lib/ferry/")),
            "{}",
            &*s
        );
        // The gate is installed only after the check; the unit reloaded, then sshd restarted last.
        let check = s.find("sha256sum --check").unwrap();
        assert!(check < s.find("install -m 755 \"$gate_tmp\"").unwrap());
        let reload = s.find("systemctl daemon-reload").unwrap();
        assert!(s.find("zz-ferry.conf <<").unwrap() < reload);
        assert!(reload < s.rfind("systemctl restart sshd").unwrap());
        assert!(s.rfind("systemctl restart sshd").unwrap() > s.find("ferry-backstop").unwrap());
    }

    /// Every value, however hostile, reaches bash byte-exact: the script's assignments run
    /// under real bash, which prints each variable back; the TOML reads back the same.
    #[test]
    fn hostile_values_arrive_byte_exact_under_bash() {
        let nasty = [
            "it's \"quoted\"",
            "$(touch /tmp/ferry-pwned) `id` ${HOME} $HOME",
            "a b\tc; rm -rf / #",
            "-leading-dash",
            "back\\slash '\\'' end'",
            "%u %h %% ~root * ?",
            "FERRY_SSHD\nFERRY_GATE_TOML",
        ];
        for (i, n) in nasty.iter().enumerate() {
            let one_line = n.replace('\n', " ");
            let private = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{n}\n-----END OPENSSH PRIVATE KEY-----\n"
            );
            let u = UserData {
                session: &one_line,
                site: &one_line,
                region: &one_line,
                backup_bucket: &one_line,
                state_bucket: &one_line,
                gate_key: &one_line,
                gate_sha256: &one_line,
                clean_function: &one_line,
                expires: &one_line,
                client_public_key: &one_line,
                host_public_key: &one_line,
                host_private_key: &private,
                ..sample()
            };
            let script = render(&u).unwrap();
            let head = &script[..script.find("# (end of values)").unwrap()];
            let names: Vec<&str> = values(&u).unwrap().iter().map(|(n, _)| *n).collect();
            let probe = format!(
                "{head}\nprintf '%s\\0' {}\n",
                names
                    .iter()
                    .map(|n| format!("\"${n}\""))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let out = std::process::Command::new("bash")
                .args(["-c", &probe])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "case {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: Vec<String> = out
                .stdout
                .split(|b| *b == 0)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect();
            let want: Vec<String> = values(&u)
                .unwrap()
                .into_iter()
                .map(|(_, v)| v.to_string())
                .collect();
            assert_eq!(&got[..want.len()], &want[..], "case {i}");
            assert_eq!(got[0], one_line, "case {i}");
            assert!(got[13].contains(n), "case {i}: the private key's lines");
            // The whole script is valid bash.
            let syntax = std::process::Command::new("bash")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                syntax.status.success(),
                "case {i}: {}",
                String::from_utf8_lossy(&syntax.stderr)
            );
            // The gate's config reads back, with the gate's own type, as exactly what was meant.
            let back = GateConfig::from_toml(&gate_toml(&u).unwrap()).unwrap();
            assert_eq!(back, gate_config(&u), "case {i}");
            assert_eq!(back.site, one_line, "case {i}");
        }
        assert!(!std::path::Path::new("/tmp/ferry-pwned").exists());
    }

    #[test]
    fn values_bash_cannot_hold_as_themselves_are_refused() {
        let s = sample();
        for u in [
            UserData {
                site: "a\0b",
                ..sample()
            },
            UserData {
                session: "a\nb",
                ..sample()
            },
            UserData {
                client_public_key: "ssh-ed25519 AAAA\nssh-ed25519 BBBB",
                ..sample()
            },
            UserData {
                gate_key: "k\r",
                ..sample()
            },
            UserData {
                host_private_key: "x\0",
                ..sample()
            },
        ] {
            assert!(render(&u).is_err(), "{}", u.session);
        }
        assert!(render(&s).is_ok());
        assert_eq!(sh_quote("a'b").unwrap(), r"'a'\''b'");
        assert_eq!(sh_quote("x\0"), None);
    }
}
