//! Jump boxes booted from their real user data, in the order EC2 boots an AL2023 instance.
//!
//! When ferry-build has launched an instance in moto, a test hands its user data (read back
//! from moto) to [`Jumpbox::start`] (or [`Jumpbox::boot`], which also waits for the user data).
//! The script runs unchanged, as root, in an isolated root:
//!
//! - `unshare --mount --pid --fork --mount-proc --kill-child`: a private mount namespace and
//!   PID namespace (the box's processes die with it, and it sees only its own);
//! - overlays (lower = this machine's directory, upper = the box's own) on `/etc`, `/usr/local`,
//!   `/home`, `/var/lib`, `/opt` and `/usr/lib/systemd/system`, and a private tmpfs on `/run`,
//!   so `useradd`, `rm -f /etc/ssh/ssh_host_*`, the gate install and its spool never touch the
//!   machine;
//! - `/tmp` is a tmpfs of [`JumpboxOptions::tmp_size_mib`] (default 32 MiB), as on AL2023,
//!   where `/tmp` is a tmpfs of half the RAM and large files belong in `/var/tmp`
//!   (<https://docs.aws.amazon.com/linux/al2023/ug/filesystem-slash-tmp.html>);
//! - the network is shared with the test (loopback only): the box's sshd listens on
//!   `127.0.0.1:<port>` instead of the instance's public address on port 22.
//!
//! Boot order, as on EC2 (cloud-init: sshd starts after the Network stage; user scripts run in
//! the Final stage, <https://docs.cloud-init.io/en/latest/explanation/boot.html>):
//! 1. the AMI's first boot: the machine's host keys are removed and fresh ones generated
//!    (`ssh-keygen -A`, what AL2023's `sshd-keygen` does on first boot), then sshd is started
//!    from the AMI's unit (below) with the AMI's configuration. [`Jumpbox::start`] returns as
//!    soon as that sshd answers — as the instance's public IP answers on EC2 — so a client
//!    connecting then sees a host key that is not the session's;
//! 2. the user data (cloud-init's `scripts-user`), which installs the session's host key and
//!    restarts sshd. [`JumpboxOptions::hold_user_data`] holds it until
//!    [`Jumpbox::release_user_data`], so a test can look at the box between the two.
//!
//! The AMI's sshd unit is AL2023's, with the drop-in that the preinstalled `ec2-instance-connect`
//! package puts in `/usr/lib/systemd/system/sshd.service.d/ec2-instance-connect.conf`
//! (github.com/aws/aws-ec2-instance-connect-config, `src/rpm_systemd/sshd.service.d/`): it
//! resets `ExecStart=` and starts `sshd -D -o "AuthorizedKeysCommand
//! /opt/aws/bin/eic_run_authorized_keys %%u %%f" -o "AuthorizedKeysCommandUser
//! ec2-instance-connect"`. sshd takes the first value it obtains for an option and command-line
//! options come first, so `sshd_config` alone cannot turn that off. The kit's
//! `eic_run_authorized_keys` prints [`Jumpbox::eic_key`]'s public key for any user, as if it had
//! been pushed with `ec2-instance-connect:SendSSHPublicKey`
//! (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/connect-linux-inst-eic.html>).
//!
//! Mapped onto the sandbox (the gaps, on purpose), by commands placed first on the script's
//! `PATH`:
//! - `systemctl daemon-reload` loads the sshd unit as systemd does: the unit file (the one in
//!   `/etc/systemd/system` wins over `/usr/lib/systemd/system`), then the drop-ins
//!   `sshd.service.d/*.conf` of both directories in file-name order (a same-named file in
//!   `/etc` replaces the one in `/usr/lib`; a link to `/dev/null` masks it), where an empty
//!   `ExecStart=` resets the list, and `EnvironmentFile=` supplies `$OPTIONS`. `systemctl
//!   start|restart sshd` runs what the last `daemon-reload` loaded (as systemd does when a unit
//!   changed on disk and no one reloaded), appending `-e` (log to the box's `sshd.log`),
//!   `ListenAddress`/`PidFile` for loopback, `UsePAM no` (the machine's PAM stack is not the
//!   box's), and `SetEnv` with the AWS endpoint and the jump-box role's credentials, which on
//!   EC2 the gate gets from the instance metadata service. Debian's real `/usr/sbin/sshd` runs;
//!   Debian's `sshd_config` includes `sshd_config.d/*.conf` first, as AL2023's does;
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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{KitError, Moto, Proc, answers_ssh, wait_until};

/// How to boot a box.
pub struct JumpboxOptions {
    /// The user data script, exactly as ferry-build wrote it.
    pub user_data: String,
    /// AWS variables for the box's own AWS calls (endpoint, region, the jump-box role's
    /// credentials) and `AWS_ENDPOINT_URL_LAMBDA` for the Lambda host.
    pub aws_env: Vec<(String, String)>,
    /// How long the AMI's first boot, and then the user data, may take (each).
    pub boot_timeout: Duration,
    /// Size of the box's `/tmp` tmpfs (AL2023: half the RAM; 512 MiB on a t3.micro).
    pub tmp_size_mib: u32,
    /// Hold the user data until [`Jumpbox::release_user_data`] (the AMI's sshd runs meanwhile).
    pub hold_user_data: bool,
}

impl Default for JumpboxOptions {
    fn default() -> Self {
        JumpboxOptions {
            user_data: String::new(),
            aws_env: Vec::new(),
            boot_timeout: Duration::from_secs(60),
            tmp_size_mib: 32,
            hold_user_data: false,
        }
    }
}

/// A running box. Dropping it ends the PID namespace (every process of the box).
pub struct Jumpbox {
    proc: Option<Proc>,
    port: u16,
    boot_timeout: Duration,
    dir: tempfile::TempDir,
}

/// AL2023's `sshd.service` (from Fedora's openssh package), as the AMI ships it.
const AMI_SSHD_SERVICE: &str = "[Unit]
Description=OpenSSH server daemon
After=network.target sshd-keygen.target

[Service]
Type=notify
EnvironmentFile=-/etc/sysconfig/sshd
ExecStart=/usr/sbin/sshd -D $OPTIONS
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
";

/// The `ec2-instance-connect` package's drop-in, verbatim
/// (aws/aws-ec2-instance-connect-config `src/rpm_systemd/sshd.service.d/ec2-instance-connect.conf`).
const AMI_EIC_DROPIN: &str = "[Service]
ExecStart=
ExecStart=/usr/sbin/sshd -D -o \"AuthorizedKeysCommand /opt/aws/bin/eic_run_authorized_keys %%u %%f\" -o \"AuthorizedKeysCommandUser ec2-instance-connect\" $SSHD_OPTS
";

/// Stand-in for the package's `eic_run_authorized_keys` (which fetches keys pushed with
/// SendSSHPublicKey from the instance metadata): the kit's "pushed" key, for any user.
const AMI_EIC_COMMAND: &str = "#!/bin/sh
# Test-kit stand-in for EC2 Instance Connect's AuthorizedKeysCommand (see ferry-testkit jumpbox.rs):
# answers as if the key below had just been pushed for user $1 with SendSSHPublicKey.
cat /opt/aws/ferry-kit-eic.pub
";

const SHIM_SYSTEMCTL: &str = r#"
# Test-kit stand-in for systemctl inside a jump-box sandbox (see ferry-testkit jumpbox.rs).
import glob, json, os, re, shlex, signal, socket, subprocess, sys, time
box = os.environ['FERRY_BOX_DIR']
port = int(os.environ.get('FERRY_BOX_SSH_PORT', '0'))
# Low to high priority, as systemd reads them.
UNIT_DIRS = ['/usr/lib/systemd/system', '/etc/systemd/system']
LOADED = os.path.join(box, 'sshd.unit.json')
PIDFILE = '/run/ferry-box-sshd.pid'

def die(msg):
    sys.stderr.write('systemctl: ' + msg + '\n')
    sys.exit(1)

def is_masked(p):
    return os.path.realpath(p) == '/dev/null'

def load(unit):
    main = None
    for d in UNIT_DIRS:
        p = os.path.join(d, unit)
        if os.path.exists(p):
            main = p
    if main is None or is_masked(main):
        die('Unit %s not found.' % unit)
    dropins = {}
    for d in UNIT_DIRS:
        for p in glob.glob(os.path.join(d, unit + '.d', '*.conf')):
            dropins[os.path.basename(p)] = p
    files = [main] + [dropins[k] for k in sorted(dropins)]
    exec_start, env_files = [], []
    for f in files:
        if is_masked(f):
            continue
        section = None
        for line in open(f):
            line = line.strip()
            if not line or line[0] in '#;':
                continue
            if line.startswith('['):
                section = line
                continue
            if section != '[Service]' or '=' not in line:
                continue
            k, v = (x.strip() for x in line.split('=', 1))
            if k == 'ExecStart':
                exec_start = [] if v == '' else exec_start + [v]
            elif k == 'EnvironmentFile':
                env_files.append(v)
    if len(exec_start) != 1:
        die('%s: %d ExecStart= lines in effect (a simple service needs one): %r' % (unit, len(exec_start), files))
    return {'files': files, 'exec_start': exec_start[0], 'env_files': env_files}

def environment(env_files):
    env = {}
    for f in env_files:
        optional = f.startswith('-')
        f = f.lstrip('-')
        if not os.path.exists(f):
            if optional:
                continue
            die('EnvironmentFile %s is missing' % f)
        for line in open(f):
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                k, v = line.split('=', 1)
                env[k.strip()] = v.strip().strip('"')
    return env

def command_line(text, env):
    # systemd.service(5) "Command lines": quoted words, "%%" is "%", "$VAR" alone is split
    # into words at whitespace, "${VAR}" is one word.
    words = []
    for w in shlex.split(text):
        m = re.fullmatch(r'\$([A-Za-z_][A-Za-z0-9_]*)', w)
        if m:
            words += env.get(m.group(1), '').split()
            continue
        w = re.sub(r'\$\{([A-Za-z_][A-Za-z0-9_]*)\}', lambda m: env.get(m.group(1), ''), w)
        words.append(w.replace('%%', '%'))
    return words

def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False

def stop():
    if not os.path.exists(PIDFILE):
        return
    pid = int(open(PIDFILE).read().strip() or 0)
    if pid > 0 and alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.05)
    os.unlink(PIDFILE)

def answers():
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(8) == b'SSH-2.0-'
    except OSError:
        return False

def start():
    if not os.path.exists(LOADED):
        die('sshd.service: not loaded (no daemon-reload yet)')
    unit = json.load(open(LOADED))
    argv = command_line(unit['exec_start'], environment(unit['env_files']))
    if re.search(r'^ferry:!', open('/etc/shadow').read(), re.M):
        subprocess.run(['usermod', '-p', '*', 'ferry'], check=True)
    gate_env = open(os.path.join(box, 'gate-env')).read().strip()
    argv += ['-e', '-o', 'UsePAM=no', '-o', 'ListenAddress=127.0.0.1:%d' % port,
             '-o', 'PidFile=none', '-o', 'SetEnv=' + gate_env]
    log = open(os.path.join(box, 'sshd.log'), 'ab')
    log.write(('--- systemctl: %s\n' % ' '.join(shlex.quote(a) for a in argv[:argv.index('-e')])).encode())
    log.flush()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    open(PIDFILE, 'w').write(str(p.pid))
    for _ in range(200):
        if p.poll() is not None:
            die('sshd.service failed (exit %d); see sshd.log' % p.returncode)
        if answers():
            return
        time.sleep(0.05)
    die('sshd.service did not answer on 127.0.0.1:%d' % port)

args = sys.argv[1:]
if args == ['daemon-reload']:
    json.dump(load('sshd.service'), open(LOADED, 'w'))
elif len(args) == 2 and args[0] in ('start', 'restart') and args[1] in ('sshd', 'sshd.service'):
    stop()
    start()
elif args in (['poweroff'], ['halt'], ['poweroff', '--force']):
    # The box's PID 1 sees this and exits, which ends every process of the box.
    open(os.path.join(box, 'poweroff'), 'w').write(time.strftime('%Y-%m-%dT%H:%M:%SZ\n', time.gmtime()))
else:
    die('%s: not emulated in the test kit' % ' '.join(args))
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
# PID 1 of the box: private mounts, the AMI's first boot (sshd with host keys of its own), then
# the user data (cloud-init's final stage), then run until powered off or killed.
set -euo pipefail
box="$FERRY_BOX_DIR"
mount --make-rprivate /
for d in etc usr/local home var/lib opt usr/lib/systemd/system; do
  mkdir -p "$box/upper/$d" "$box/work/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$box/upper/$d,workdir=$box/work/$d" "/$d"
done
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
# AL2023: /tmp is a tmpfs (half the RAM there; small here, so what must not land in /tmp fails).
# The `aws` shim runs the project venv's python. When the checkout lives under /tmp (as a CI
# clone may), the tmpfs would hide it: carry it across the mount at the same path.
venv="$FERRY_BOX_VENV"
mkdir -p "$box/venv" && mount --bind "$venv" "$box/venv"
mount -t tmpfs -o "size=${FERRY_BOX_TMP_MIB}m,mode=1777" tmpfs /tmp
if [ ! -e "$venv/bin/python3" ]; then mkdir -p "$venv" && mount --bind "$box/venv" "$venv"; fi
export PATH="$box/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The box's account files are its own from now on (touch copies them up into the overlay), so
# accounts this machine adds later (the package test's `ferry`) do not appear in the box.
for f in passwd group shadow gshadow; do if [ -e "/etc/$f" ]; then touch "/etc/$f"; fi; done
# The AMI has no `ferry` account: the user data makes it. This machine may have one (the Debian
# package's system user, shell nologin, which sshd would run the gate through): drop the
# overlay's copy, as an AL2023 instance never had it.
if id ferry >/dev/null 2>&1; then userdel ferry >/dev/null 2>&1 || true; fi
if getent group ferry >/dev/null; then groupdel ferry >/dev/null 2>&1 || true; fi
# The AMI: AL2023's sshd unit, the ec2-instance-connect package (drop-in, command, user).
install -m 644 "$box/ami/sshd.service" /usr/lib/systemd/system/sshd.service
install -d -m 755 /usr/lib/systemd/system/sshd.service.d
install -m 644 "$box/ami/ec2-instance-connect.conf" /usr/lib/systemd/system/sshd.service.d/
install -d -m 755 /opt/aws /opt/aws/bin
install -m 755 "$box/ami/eic_run_authorized_keys" /opt/aws/bin/
install -m 644 "$box/eic.pub" /opt/aws/ferry-kit-eic.pub
id ec2-instance-connect >/dev/null 2>&1 || useradd --system --no-create-home --shell /sbin/nologin ec2-instance-connect
# cloud-init's init stage creates the default user (no key pair here; its password locked as `*`,
# which sshd without PAM accepts for key logins as AL2023's PAM does for `!`).
id ec2-user >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ec2-user
usermod -p '*' ec2-user
# First boot: host keys of the instance's own (sshd-keygen), then sshd (before cloud-init's
# final stage), with the AMI's configuration.
rm -f /etc/ssh/ssh_host_*
ssh-keygen -A >/dev/null
systemctl daemon-reload
systemctl start sshd
touch "$box/ami-sshd-up"
# The runner checks that this sshd answers before the user data may replace its host keys (each
# connection re-execs sshd, which reads the keys anew); at most 30 s.
for _ in $(seq 300); do [ -e "$box/ami-sshd-checked" ] && break; sleep 0.1; done
# cloud-init's final stage: the user data.
while [ -e "$box/hold" ]; do sleep 0.1; done
set +e
bash "$box/user-data" >"$box/user-data.log" 2>&1
echo $? > "$box/user-data.rc"
while [ ! -e "$box/poweroff" ]; do sleep 0.2; done
"#;

fn write_exec(path: &Path, text: &str) -> Result<(), KitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(KitError::io("writing", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(KitError::io("making executable", path))
}

impl Jumpbox {
    /// Boot and wait for the user data: [`Jumpbox::start`], then [`Jumpbox::wait_user_data`]
    /// (each bounded by `boot_timeout`). A script that fails is an error carrying its output.
    pub fn boot(opts: JumpboxOptions) -> Result<Jumpbox, KitError> {
        let limit = opts.boot_timeout;
        let mut bx = Self::start(opts)?;
        bx.wait_user_data(limit)?;
        Ok(bx)
    }

    /// Start the box: the AMI's first boot, until its sshd (with host keys of its own) answers
    /// on [`Jumpbox::port`], as the instance's public IP does on EC2. The user data then runs
    /// (or waits for [`Jumpbox::release_user_data`]); this does not wait for it.
    ///
    /// A port taken by another program between the pick and the box's sshd bind ("Address
    /// already in use" in the box's logs) boots a new box on a new port, at most
    /// [`crate::PORT_TRIES`] times.
    pub fn start(opts: JumpboxOptions) -> Result<Jumpbox, KitError> {
        crate::retry_taken_port(|| Self::start_once(&opts))
    }

    fn start_once(opts: &JumpboxOptions) -> Result<Jumpbox, KitError> {
        // Not under /tmp: the box mounts its own /tmp.
        let dir = tempfile::Builder::new()
            .prefix("ferry-box-")
            .tempdir_in("/var/tmp")
            .map_err(KitError::temp_dir)?;
        let d = dir.path();
        let bin = d.join("bin");
        let ami = d.join("ami");
        for p in [&bin, &ami] {
            std::fs::create_dir_all(p).map_err(KitError::io("creating", p))?;
        }
        let py = Moto::venv().join("bin/python3");
        write_exec(
            &bin.join("systemctl"),
            &format!("#!{}\n{SHIM_SYSTEMCTL}", py.display()),
        )?;
        write_exec(&bin.join("systemd-run"), SHIM_SYSTEMD_RUN)?;
        write_exec(&bin.join("aws"), &format!("#!{}\n{SHIM_AWS}", py.display()))?;
        write_exec(&d.join("run-timer"), RUN_TIMER)?;
        write_exec(&d.join("init"), INIT)?;
        write_exec(&ami.join("eic_run_authorized_keys"), AMI_EIC_COMMAND)?;
        let write =
            |p: PathBuf, text: &str| std::fs::write(&p, text).map_err(KitError::io("writing", &p));
        write(ami.join("sshd.service"), AMI_SSHD_SERVICE)?;
        write(ami.join("ec2-instance-connect.conf"), AMI_EIC_DROPIN)?;
        crate::keygen(&d.join("eic"))?;
        write(d.join("user-data"), &opts.user_data)?;
        if opts.hold_user_data {
            write(d.join("hold"), "")?;
        }
        // sshd's SetEnv for the gate's sessions (the instance role, on EC2).
        let gate_env: Vec<String> = opts
            .aws_env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write(d.join("gate-env"), &gate_env.join(" "))?;
        let port = crate::free_port();
        let log_path = d.join("init.log");
        let log = std::fs::File::create(&log_path).map_err(KitError::io("creating", &log_path))?;
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
            .env("FERRY_BOX_TMP_MIB", opts.tmp_size_mib.max(1).to_string())
            .envs(opts.aws_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(KitError::io("duplicating the handle of", &log_path))?,
            )
            .stderr(log)
            .spawn()
            .map_err(KitError::spawn("unshare"))?;
        let mut bx = Jumpbox {
            proc: Some(Proc {
                child,
                name: "jumpbox".into(),
            }),
            port,
            boot_timeout: opts.boot_timeout,
            dir,
        };
        let up = bx.dir.path().join("ami-sshd-up");
        let mut ended = false;
        wait_until(
            "jump box sshd (the AMI's first boot)",
            opts.boot_timeout,
            || {
                ended = !bx.running();
                up.exists() || ended
            },
        )
        .map_err(|e| e.with_log(bx.logs()))?;
        let answers = !ended && answers_ssh(port);
        // Only now may the user data run (and remove the AMI's host keys).
        let _ = std::fs::write(bx.dir.path().join("ami-sshd-checked"), b"");
        if !answers {
            return Err(KitError::BootFailed { logs: bx.logs() });
        }
        Ok(bx)
    }

    /// Let a held user data run (see [`JumpboxOptions::hold_user_data`]).
    pub fn release_user_data(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("hold"));
    }

    /// The user data's outcome: `None` while it runs (or is held), else `Ok` or the exit code
    /// with the box's logs.
    pub fn user_data_result(&self) -> Option<Result<(), KitError>> {
        let rc = std::fs::read_to_string(self.dir.path().join("user-data.rc")).ok()?;
        Some(if rc.trim() == "0" {
            Ok(())
        } else {
            Err(KitError::UserData {
                rc: rc.trim().to_string(),
                logs: self.logs(),
            })
        })
    }

    /// Wait (bounded) until the user data has finished; then its sshd must answer.
    pub fn wait_user_data(&mut self, limit: Duration) -> Result<(), KitError> {
        let rc_path = self.dir.path().join("user-data.rc");
        let mut ended = false;
        wait_until("jump box user data", limit, || {
            ended = !self.running();
            rc_path.exists() || ended
        })
        .map_err(|e| e.with_log(self.logs()))?;
        match self.user_data_result() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(KitError::BoxEnded { logs: self.logs() }),
        }
        let port = self.port;
        wait_until("jump box sshd", Duration::from_secs(20), || {
            answers_ssh(port)
        })
        .map_err(|e| e.with_log(self.logs()))?;
        if !self.running() {
            return Err(KitError::BoxEnded { logs: self.logs() });
        }
        Ok(())
    }

    /// How long this box's boot stages may each take.
    pub fn boot_timeout(&self) -> Duration {
        self.boot_timeout
    }

    /// The private key the kit's EC2 Instance Connect stand-in authorizes for every user (as if
    /// pushed with SendSSHPublicKey); the box must refuse it.
    pub fn eic_key(&self) -> PathBuf {
        self.dir.path().join("eic")
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

    /// A file the box wrote below one of its overlays (`etc/`, `usr/local/`, `home/`,
    /// `var/lib/`, `opt/`, `usr/lib/systemd/system/`), e.g. `etc/ferry/gate.toml`.
    pub fn read_file(&self, rel_in_root: &str) -> Option<String> {
        if rel_in_root.starts_with('/') || rel_in_root.split('/').any(|c| c == "..") {
            return None;
        }
        std::fs::read_to_string(self.dir.path().join("upper").join(rel_in_root)).ok()
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
    pub fn fire_timer(&self, unit: &str) -> Result<(i32, String), KitError> {
        let pid = self
            .proc
            .as_ref()
            .map(|p| p.pid())
            .ok_or(KitError::BoxNotRunning { why: "no process" })?;
        // The box's PID 1 is the child of `unshare`; enter its namespaces through it.
        let children = format!("/proc/{pid}/task/{pid}/children");
        let inner = std::fs::read_to_string(&children)
            .map_err(KitError::io("reading", &children))?
            .split_whitespace()
            .next()
            .ok_or(KitError::BoxNotRunning {
                why: "no init process",
            })?
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
            .map_err(KitError::spawn("nsenter"))?;
        if !out.status.success() {
            return Err(KitError::TimerFailed {
                unit: unit.to_string(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let t = d.join("timers");
        let rc = std::fs::read_to_string(t.join(format!("{unit}.rc"))).map_err(|source| {
            KitError::TimerDidNotRun {
                unit: unit.to_string(),
                source,
            }
        })?;
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
) -> Result<String, KitError> {
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
