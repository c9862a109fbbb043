//! Sample LAN hosts for tests and the demo: several real OpenSSH servers on loopback ports,
//! each with its own host key and its own "filesystem" (a directory with `etc/` and
//! `var/log/` sample files), reached by one read-only unprivileged account.
//!
//! The account ([`READONLY_USER`]) is created with `useradd` when missing (root needed). Its
//! password field is set to `*` (no password can match) rather than `!` (locked): sshd without
//! PAM refuses even key logins to a locked account.
//! Every host pins its key in its own known-hosts file; [`LanHost::change_host_key`] restarts a
//! host with a new key (a reinstalled host, or a man in the middle); [`LanHost::stop`] takes it
//! down. Files the account cannot read are made with [`LanHost::write_unreadable`]
//! (root-owned, mode 0600: a real `EACCES`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The read-only account used on every sample host.
pub const READONLY_USER: &str = "ferry-ro";

static USER_LOCK: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Create the read-only account if it does not exist (idempotent; needs root).
pub fn ensure_readonly_user(name: &str) -> io::Result<()> {
    let _g = USER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !exists {
        // Several test binaries may race here: a failed useradd is fine if the user exists now.
        let r = run(Command::new("useradd")
            .arg("--system")
            .arg("--no-create-home")
            .arg("--home-dir")
            .arg("/nonexistent")
            .arg("--shell")
            .arg("/bin/sh")
            .arg(name));
        let now = Command::new("id")
            .arg("-u")
            .arg(name)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !now {
            return Err(r
                .err()
                .unwrap_or_else(|| io::Error::other(format!("could not create user {name}"))));
        }
    }
    // `!` (locked) makes sshd without PAM refuse even key logins; `*` means "no password".
    run(Command::new("usermod").arg("-p").arg("*").arg(name))
}

fn mkdir(p: &Path) -> io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
}

fn write(p: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    if let Some(d) = p.parent() {
        mkdir(d)?;
    }
    std::fs::write(p, content)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// A sample host.
pub struct LanHost {
    /// The host's name as given to [`Lan::start`]: its source name in [`Lan::sources_toml`]
    /// and the name of its directory below [`Lan::base`].
    pub name: String,
    /// The host's files live below here (`etc/`, `var/log/`); paths on the "host" are
    /// absolute paths below this directory.
    pub root: PathBuf,
    /// The loopback port its sshd listens on; kept across restarts.
    pub port: u16,
    /// This host's pinned key, as an OpenSSH known-hosts file.
    pub known_hosts: PathBuf,
    authorized_keys: String,
    sshd: Option<crate::Sshd>,
}

impl std::fmt::Debug for LanHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanHost")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("up", &self.sshd.is_some())
            .finish()
    }
}

impl LanHost {
    /// The paths a config would back up on this host.
    pub fn paths(&self) -> Vec<PathBuf> {
        vec![self.root.join("etc"), self.root.join("var/log")]
    }

    /// Whether its sshd is running (false after [`stop`](Self::stop)).
    pub fn is_up(&self) -> bool {
        self.sshd.is_some()
    }

    /// Write a file on the host, readable by everyone (0644), creating parents (0755).
    pub fn write_file(&self, rel: &str, content: &[u8]) -> io::Result<PathBuf> {
        let p = self.root.join(rel);
        write(&p, content, 0o644)?;
        Ok(p)
    }

    /// Write a file the read-only account cannot read (owned by root, 0600).
    pub fn write_unreadable(&self, rel: &str, content: &[u8]) -> io::Result<PathBuf> {
        let p = self.root.join(rel);
        write(&p, content, 0o600)?;
        Ok(p)
    }

    /// Take the host down (its port then refuses connections).
    pub fn stop(&mut self) {
        self.sshd = None;
    }

    /// The running server (None when stopped).
    pub fn sshd(&self) -> Option<&crate::Sshd> {
        self.sshd.as_ref()
    }

    /// Start a server for this host ([`crate::Sshd`], which makes a fresh host key), also
    /// listening on `port` when given (a restart keeps the host's address).
    fn spawn(
        authorized_keys: &str,
        port: Option<u16>,
        set_env: &[(&str, &str)],
    ) -> io::Result<crate::Sshd> {
        let sshd = crate::Sshd::start(crate::SshdOptions {
            user: READONLY_USER.to_string(),
            authorized_keys: authorized_keys.to_string(),
            extra_config: port.map(|p| format!("Port {p}\n")).unwrap_or_default(),
            set_env: set_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .map_err(io::Error::other)?;
        // sshd reads authorized_keys as the logged-in user: let the account reach it.
        std::fs::set_permissions(sshd.dir(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(
            sshd.dir().join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        Ok(sshd)
    }

    /// Restart the host with a new host key on the same port; its known-hosts file keeps the
    /// old key, so a strict client must now refuse it (a reinstalled host, or a man in the
    /// middle).
    pub fn change_host_key(&mut self) -> io::Result<()> {
        self.sshd = None;
        self.sshd = Some(Self::spawn(&self.authorized_keys, Some(self.port), &[])?);
        Ok(())
    }

    /// Restart the host on the same port with `set_env` in every session (e.g. a `PATH`
    /// whose tools differ: a host without GNU find) and pin its new host key, as an
    /// administrator would after reinstalling it.
    pub fn restart_with_env(&mut self, set_env: &[(&str, &str)]) -> io::Result<()> {
        self.sshd = None;
        let sshd = Self::spawn(&self.authorized_keys, Some(self.port), set_env)?;
        let host_pub = std::fs::read_to_string(sshd.host_key_pub())?;
        self.sshd = Some(sshd);
        write(
            &self.known_hosts,
            known_hosts_line(self.port, &host_pub)?.as_bytes(),
            0o644,
        )
    }
}

/// The known-hosts line that pins `host_pub` (an OpenSSH public key line) at loopback `port`.
fn known_hosts_line(port: u16, host_pub: &str) -> io::Result<String> {
    let mut fields = host_pub.split_whitespace();
    let (Some(kt), Some(kb)) = (fields.next(), fields.next()) else {
        return Err(io::Error::other(
            "sshd's host key file is not a public key line",
        ));
    };
    Ok(format!("[127.0.0.1]:{port} {kt} {kb}\n"))
}

/// Several sample hosts sharing a client key and the read-only account.
pub struct Lan {
    _dir: tempfile::TempDir,
    /// The temp directory holding everything (client key, known-hosts files, one directory
    /// per host); mode 0755, removed when the `Lan` drops.
    pub base: PathBuf,
    /// The client's private key (0600) that every host accepts for [`READONLY_USER`].
    pub client_key: PathBuf,
    /// The login user on every host: [`READONLY_USER`].
    pub user: String,
    /// The hosts, in the order their names were given to [`Lan::start`].
    pub hosts: Vec<LanHost>,
}

impl std::fmt::Debug for Lan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lan").field("hosts", &self.hosts).finish()
    }
}

impl Lan {
    /// Start one host per name, each with sample files (see [`sample_files`]).
    pub fn start(names: &[&str]) -> io::Result<Lan> {
        ensure_readonly_user(READONLY_USER)?;
        let dir = tempfile::Builder::new().prefix("ferry-lan-").tempdir()?;
        let base = dir.path().to_path_buf();
        // The account must be able to walk down to each host's files.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))?;
        let client_key = base.join("client_key");
        let client_pub = crate::keygen(&client_key).map_err(io::Error::other)?;
        let client_pub = client_pub.trim();
        let mut hosts = Vec::new();
        for name in names {
            let authorized_keys = format!("{client_pub}\n");
            let sshd = LanHost::spawn(&authorized_keys, None, &[])?;
            let port = sshd.port();
            let host_pub = std::fs::read_to_string(sshd.host_key_pub())?;
            let known_hosts = base.join(format!("{name}.known_hosts"));
            write(
                &known_hosts,
                known_hosts_line(port, &host_pub)?.as_bytes(),
                0o644,
            )?;
            let root = base.join(name);
            mkdir(&root)?;
            for (rel, content) in sample_files(name) {
                write(&root.join(rel), &content, 0o644)?;
            }
            std::os::unix::fs::symlink("app.log", root.join("var/log/current.log"))?;
            hosts.push(LanHost {
                name: name.to_string(),
                root,
                port,
                known_hosts,
                authorized_keys,
                sshd: Some(sshd),
            });
        }
        Ok(Lan {
            _dir: dir,
            base,
            client_key,
            user: READONLY_USER.to_string(),
            hosts,
        })
    }

    /// The host called `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &LanHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no sample host {name}"))
    }

    /// The host called `name`, to stop or restart it; panics if there is none.
    pub fn host_mut(&mut self, name: &str) -> &mut LanHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no sample host {name}"))
    }

    /// A `[sources]` config section for all hosts (TOML), `parallel` at a time.
    pub fn sources_toml(&self, parallel: usize) -> String {
        let mut s = format!("[sources]\nparallel = {parallel}\nconnect_timeout = 5\n");
        for h in &self.hosts {
            let paths: Vec<String> = h
                .paths()
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect();
            s.push_str(&format!(
                "\n[[sources.host]]\nname = {:?}\naddress = \"127.0.0.1\"\nport = {}\nuser = {:?}\nidentity = {:?}\nknown_hosts = {:?}\npaths = [{}]\n",
                h.name,
                h.port,
                self.user,
                self.client_key.display().to_string(),
                h.known_hosts.display().to_string(),
                paths.join(", ")
            ));
        }
        s
    }
}

/// Deterministic sample files of a host: a few config files and logs (some KiB each).
pub fn sample_files(host: &str) -> Vec<(String, Vec<u8>)> {
    let log = |what: &str, lines: usize| -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..lines {
            v.extend_from_slice(
                format!(
                    "2026-11-2{} 0{}:{:02}:{:02} {host} {what}[{}]: request {i} served in {} ms\n",
                    i % 7,
                    i % 10,
                    i % 60,
                    (i * 7) % 60,
                    1000 + i % 17,
                    (i * 31) % 997
                )
                .as_bytes(),
            );
        }
        v
    };
    vec![
        ("etc/hostname".into(), format!("{host}\n").into_bytes()),
        (
            "etc/app/app.conf".into(),
            format!("[server]\nname = {host}\nlisten = 0.0.0.0:8080\nworkers = 4\n").into_bytes(),
        ),
        ("etc/app/empty.conf".into(), Vec::new()),
        ("var/log/app.log".into(), log("app", 400)),
        ("var/log/app.log.1".into(), log("app-old", 900)),
        ("var/log/syslog".into(), log("syslog", 1500)),
        ("var/log/nginx/access.log".into(), log("nginx", 700)),
    ]
}
