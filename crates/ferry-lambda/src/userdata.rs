//! The jump box's user data: a short bash script fully determined by ferry-build. Nothing in it
//! comes from the caller except the validated site name and the re-encoded client public key;
//! every other value comes from the function's checked configuration or is generated here.
//!
//! It fails closed: any failing command powers the instance off (and, with shutdown behaviour
//! `terminate`, destroys it) before sshd is ever restarted with the session's key.
//!
//! The script contains the host private key. User data is readable by principals allowed
//! `ec2:DescribeInstanceAttribute` (the operator, not the backup VM) and, through IMDSv2, by
//! processes on the box itself; it is never logged by ferry-build.

use zeroize::Zeroizing;

/// Where the gate binary and its session config go on the jump box.
pub const GATE_PATH: &str = "/usr/local/bin/ferry-gate";
pub const GATE_CONFIG: &str = "/etc/ferry/gate.toml";
pub const AUTHORIZED_KEYS: &str = "/etc/ferry/authorized_keys";

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

/// The `authorized_keys` line for the client key.
pub fn authorized_keys_line(client_public_key: &str, session: &str) -> String {
    format!(
        "restrict,command=\"{GATE_PATH} serve --config {GATE_CONFIG}\" {client_public_key} ferry-client-{session}\n"
    )
}

/// The gate's session config (TOML; every value checked by ferry-build before it gets here).
pub fn gate_toml(u: &UserData<'_>) -> String {
    format!(
        "bucket = \"{}\"\nsite = \"{}\"\nregion = \"{}\"\nsession = \"{}\"\nexpires = \"{}\"\n\
         max_object_size = {}\nmax_session_bytes = {}\nallowed_kinds = [\"config\", \"pack\", \"index\", \"snapshot\"]\n",
        u.backup_bucket,
        u.site,
        u.region,
        u.session,
        u.expires,
        u.max_object_bytes,
        u.max_session_bytes
    )
}

/// The whole script.
pub fn render(u: &UserData<'_>) -> Zeroizing<String> {
    let host_private = u.host_private_key.trim_end();
    let auth = authorized_keys_line(u.client_public_key, u.session);
    let gate = gate_toml(u);
    let grace = u64::from(u.shutdown_grace_minutes) * 60;
    let mut s = String::with_capacity(4096);
    s.push_str(&format!(
        r#"#!/bin/bash
# Ferry jump box for session {session} (site {site}), written by ferry-build.
set -euo pipefail
umask 022
trap 'echo "ferry: user data failed at line $LINENO; powering off" >&2; systemctl poweroff' ERR

# 1. The ferry user: its key may only run the gate.
id ferry >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --comment "Ferry gate" ferry

# 2. The host key ferry-build generated (the client pins its public half); no other host key.
rm -f /etc/ssh/ssh_host_*
(umask 077; cat > /etc/ssh/ssh_host_ed25519_key <<'FERRY_HOST_KEY'
{host_private}
FERRY_HOST_KEY
)
cat > /etc/ssh/ssh_host_ed25519_key.pub <<'FERRY_HOST_PUB'
{host_public} ferry-host-{session}
FERRY_HOST_PUB

# 3. The client key, confined to the gate.
install -d -m 755 /etc/ferry
cat > {AUTHORIZED_KEYS} <<'FERRY_AUTHORIZED_KEYS'
{auth}FERRY_AUTHORIZED_KEYS

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

# 5. The gate, from the state bucket, run only if its SHA-256 is the one ferry-build was given.
gate_tmp=$(mktemp)
aws s3api get-object --region {region} --bucket {state_bucket} --key {gate_key} "$gate_tmp" >/dev/null
if ! echo "{gate_sha256}  $gate_tmp" | sha256sum --check --status; then
  echo "ferry: {gate_key} does not have the expected SHA-256; refusing to run it" >&2
  rm -f "$gate_tmp"
  systemctl poweroff
  exit 1
fi
install -m 755 "$gate_tmp" {GATE_PATH}
rm -f "$gate_tmp"

# 6. The gate's session settings.
cat > {GATE_CONFIG} <<'FERRY_GATE_TOML'
{gate}FERRY_GATE_TOML

# 7. At expiry the box asks ferry-clean to remove the session; {grace_min} minutes later it
#    powers itself off (and so terminates) whatever happened to that call.
left=$(( {expires_unix} - $(date +%s) ))
if [ "$left" -lt 1 ]; then left=1; fi
systemd-run --unit=ferry-expire --on-active="${{left}}s" \
  aws lambda invoke --region {region} --function-name {clean_function} \
  --cli-binary-format raw-in-base64-out --payload '{{"session":"{session}"}}' /dev/null
systemd-run --unit=ferry-backstop --on-active="$(( left + {grace} ))s" systemctl poweroff

# 8. sshd with the session's host key and rules.
systemctl restart sshd
echo "ferry: jump box for session {session} ready"
"#,
        session = u.session,
        site = u.site,
        region = u.region,
        state_bucket = u.state_bucket,
        gate_key = u.gate_key,
        gate_sha256 = u.gate_sha256,
        host_public = u.host_public_key.trim(),
        clean_function = u.clean_function,
        expires_unix = u.expires_unix,
        grace_min = u.shutdown_grace_minutes,
    ));
    Zeroizing::new(s)
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
        let s = render(&sample());
        assert!(s.contains("restrict,command=\"/usr/local/bin/ferry-gate serve --config /etc/ferry/gate.toml\" ssh-ed25519 AAAAclient"));
        assert!(s.contains("echo \"00  $gate_tmp\" | sha256sum --check --status"));
        assert!(s.contains("--payload '{\"session\":\"fs-20261123-050000-abcd\"}'"));
        assert!(s.contains("--on-active=\"$(( left + 300 ))s\" systemctl poweroff"));
        assert!(s.contains("rm -f /etc/ssh/ssh_host_*"));
        assert!(
            s.contains("session = \"fs-20261123-050000-abcd\"\nexpires = \"2026-11-23T05:30:00Z\"")
        );
        // The gate is installed only after the check, and sshd restarted last.
        let check = s.find("sha256sum --check").unwrap();
        assert!(check < s.find("install -m 755 \"$gate_tmp\"").unwrap());
        assert!(s.rfind("systemctl restart sshd").unwrap() > s.find("ferry-backstop").unwrap());
    }
}
