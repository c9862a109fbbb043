//! # ferry-ssh — how Ferry passes values to OpenSSH
//!
//! Every value Ferry puts on the system `ssh`'s command line must mean exactly one thing to
//! ssh, or be refused with an error that names it. OpenSSH reads `-o Keyword=value` as a
//! line of ssh_config (readconf.c `process_config_line` → misc.c `argv_split`):
//! - the value is split on spaces and tabs into several arguments, so
//!   `UserKnownHostsFile=/a b/known_hosts` is the two files `/a` and `b/known_hosts`;
//! - double and single quotes group and are removed; `\\`, `\"` and `\'` are escapes;
//! - a word that starts with `#` ends the line (a comment);
//! - then, for file options (`IdentityFile`, `UserKnownHostsFile`, …), a leading `~` is a
//!   home directory, `%x` is a token (`%%` is a literal `%`) and `${VAR}` is the environment
//!   variable VAR; there is no escape for `${`;
//! - a value of `none` (any case) means "no file".
//!
//! `-F FILE` is taken literally (no quotes, tokens or `~`), except `none`.
//! ssh_config(5), "TOKENS" and "ENVIRONMENT VARIABLES":
//! <https://man.openbsd.org/ssh_config#TOKENS>; OpenSSH's misc.c (`argv_split`,
//! `percent_dollar_expand`). The tests check every rule here against the real `ssh -G` (it
//! prints the configuration ssh would use; OpenSSH 9.2 on Debian 12 here).
//!
//! It also owns the one `ssh` command line ([`SshCommand`], module `command`: every option
//! explicit, the same defaults for every caller) and the one way ssh runs as a child process
//! ([`SshChild`], module `child`: stderr read on a thread into the last 64 KiB, exit status
//! and stderr given back naming the host, killed and reaped on drop or past a time limit).
//!
//! Depends on nothing of Ferry's, so the gate connection (`ferry-remote`), LAN hosts
//! (`ferry-collect`) and the test kit share it. Must never depend on AWS crates or an SSH library.

mod child;
mod command;

pub use child::{Finished, STDERR_CAP, SpawnError, SshChild};
pub use command::{AES_GCM_FIRST, DEFAULT_CONNECT_TIMEOUT, Keepalive, SshCommand};

use base64::Engine;
use sha2::Digest;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// A value that cannot be handed to ssh so that it means exactly itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot be passed to ssh: {why}")]
pub struct SshArgError {
    /// What the value is for (`UserKnownHostsFile`, `-F`, `user name`, …).
    pub what: String,
    /// The value, lossily as text (a path, a user or a host name: never a secret).
    pub value: String,
    /// Why ssh cannot take it.
    pub why: &'static str,
}

fn refuse(what: &str, value: &[u8], why: &'static str) -> SshArgError {
    SshArgError {
        what: what.to_string(),
        value: String::from_utf8_lossy(value).into_owned(),
        why,
    }
}

/// `Keyword="…"` for `ssh -o`, where `Keyword` takes one file path that ssh unquotes,
/// `~`-expands and `%`/`${}`-expands (`IdentityFile`, `UserKnownHostsFile`,
/// `CertificateFile`, `ControlPath`, `RevokedHostKeys`): ssh reads back exactly `path`.
///
/// The path is put in double quotes (spaces, tabs, `#` and `'` lose their meaning), with
/// `\` and `"` escaped and `%` doubled; a relative path that ssh would read as something
/// else (`~…`, `none`, `-…`) gets a `./` in front. Refused: an empty path, control
/// characters (newline, CR, NUL…: option values are lines), and `${` (an environment
/// variable reference that OpenSSH has no escape for).
pub fn path_option(keyword: &str, path: &Path) -> Result<OsString, SshArgError> {
    let b = path.as_os_str().as_bytes();
    if b.is_empty() {
        return Err(refuse(keyword, b, "the path is empty"));
    }
    if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(refuse(
            keyword,
            b,
            "it contains a control character (newline, tab, …), which ssh cannot take in an option value",
        ));
    }
    if b.windows(2).any(|w| w == b"${") {
        return Err(refuse(
            keyword,
            b,
            "it contains \"${\", which ssh always expands as an environment variable (OpenSSH has no escape for it)",
        ));
    }
    let mut out = Vec::with_capacity(keyword.len() + b.len() + 8);
    out.extend_from_slice(keyword.as_bytes());
    out.extend_from_slice(b"=\"");
    if needs_dot(b) {
        out.extend_from_slice(b"./");
    }
    for &c in b {
        match c {
            b'%' => out.extend_from_slice(b"%%"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(c),
        }
    }
    out.push(b'"');
    Ok(OsString::from_vec(out))
}

/// The argument for `ssh -F`: ssh opens it literally, except that `none` (any case) means
/// "no config file"; a relative `none` (and anything starting with `-`) gets a `./`.
pub fn config_file_arg(path: &Path) -> Result<OsString, SshArgError> {
    let b = path.as_os_str().as_bytes();
    if b.is_empty() {
        return Err(refuse("-F", b, "the path is empty"));
    }
    let mut out = Vec::with_capacity(b.len() + 2);
    if needs_dot(b) {
        out.extend_from_slice(b"./");
    }
    out.extend_from_slice(b);
    Ok(OsString::from_vec(out))
}

/// A relative path ssh would not read as that file: `~…` (home), `none`, `-…` (an option
/// look-alike wherever a value is read as a word).
fn needs_dot(b: &[u8]) -> bool {
    b.first() != Some(&b'/')
        && (b.starts_with(b"~") || b.starts_with(b"-") || b.eq_ignore_ascii_case(b"none"))
}

/// A word that may only contain `A-Z a-z 0-9 . _ -` (and `:` when `colon`), not start with
/// `-`: what is left of a user or host name that cannot become an option, a token or a
/// shell metacharacter for any OpenSSH (9.6 and later refuse most metacharacters in them).
fn word<'a>(what: &str, v: &'a str, colon: bool) -> Result<&'a str, SshArgError> {
    if v.is_empty() {
        return Err(refuse(what, v.as_bytes(), "it is empty"));
    }
    if v.starts_with('-') {
        return Err(refuse(
            what,
            v.as_bytes(),
            "it starts with '-' (ssh would read an option)",
        ));
    }
    if !v
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c) || (colon && c == b':'))
    {
        return Err(refuse(
            what,
            v.as_bytes(),
            if colon {
                "only A-Z a-z 0-9 . _ - : are allowed"
            } else {
                "only A-Z a-z 0-9 . _ - are allowed"
            },
        ));
    }
    Ok(v)
}

/// A user name for `ssh -l`.
pub fn user_arg(user: &str) -> Result<&str, SshArgError> {
    word("user name", user, false)
}

/// A host name or address (IPv6 without brackets) for the destination after `--`.
pub fn host_arg(host: &str) -> Result<&str, SshArgError> {
    word("host name", host, true)
}

/// OpenSSH's fingerprint of a public key blob given as base64 (`SHA256:…`, as `ssh-keygen
/// -l` and ssh's own logs print it); `None` if it is not base64.
pub fn fingerprint(key_base64: &str) -> Option<String> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .ok()?;
    let digest = sha2::Sha256::digest(&blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// The `LogLevel` to run ssh with: `DEBUG1` (what `ssh -v` prints: each step of the
/// connection, the host key's fingerprint, which keys are offered; never key material) when
/// the caller wants ssh's own diagnostics, else `INFO` (OpenSSH's default): errors, and the
/// notices that say why a connection ended — `Timeout, server … not responding.` when the
/// keepalives went unanswered is logged at INFO, so `ERROR` would hide the one line that
/// tells a stalled link from a gate that hung up.
pub fn log_level(debug: bool) -> &'static str {
    if debug { "DEBUG1" } else { "INFO" }
}

/// Whether a line of ssh's stderr is one of its debug lines (`debug1: …`).
pub fn is_debug_line(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("debug1:") || l.starts_with("debug2:") || l.starts_with("debug3:")
}

/// ssh's stderr without its debug lines (what error messages quote).
pub fn without_debug(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !is_debug_line(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// `ssh -G` (the configuration ssh would use) with one `-o` option: its stdout, or its
    /// stderr when it refused the option.
    fn ssh_g(opt: &OsString) -> Result<Vec<u8>, String> {
        let out = Command::new("ssh")
            .args(["-G", "-F", "/dev/null", "-o"])
            .arg(opt)
            .arg("somehost")
            .env("HOME", "/nonexistent-home")
            .output()
            .map_err(|e| format!("running ssh -G: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(out.stdout)
    }

    /// The values of `key` in `ssh -G`'s output (one line each, `key value`).
    fn values(out: &[u8], key: &str) -> Vec<Vec<u8>> {
        let prefix = format!("{key} ");
        out.split(|&c| c == b'\n')
            .filter_map(|l| l.strip_prefix(prefix.as_bytes()))
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// What the real ssh makes of `path` as an identity file (one argument, quotes and
    /// escapes removed, printed before `%` expansion) and as a known-hosts file (printed
    /// after `~`, `%` and `${}` expansion; several files are joined by spaces, which is why
    /// the identity check, that refuses a second argument, is needed too).
    fn ssh_reads(path: &Path) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let id = ssh_g(&path_option("IdentityFile", path).unwrap())
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let kh = ssh_g(&path_option("UserKnownHostsFile", path).unwrap())
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        (
            values(&id, "identityfile"),
            values(&kh, "userknownhostsfile"),
        )
    }

    fn doubled_percent(b: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for &c in b {
            v.push(c);
            if c == b'%' {
                v.push(b'%');
            }
        }
        v
    }

    fn check_exact(p: &str) {
        let path = Path::new(p);
        let (id, kh) = ssh_reads(path);
        let expect: Vec<u8> = if needs_dot(p.as_bytes()) {
            [b"./".as_slice(), p.as_bytes()].concat()
        } else {
            p.as_bytes().to_vec()
        };
        assert_eq!(id, vec![doubled_percent(&expect)], "IdentityFile for {p:?}");
        assert_eq!(kh, vec![expect.clone()], "UserKnownHostsFile for {p:?}");
    }

    #[test]
    fn the_unquoted_form_is_what_the_issue_says() {
        // Without this crate: `UserKnownHostsFile=/a b/known_hosts` is two files.
        let out = ssh_g(&OsString::from("IdentityFile=/a b/known_hosts")).unwrap_err();
        assert!(out.contains("extra arguments"), "{out}");
        // … and `%d` is the home directory, not those two characters.
        let out = ssh_g(&OsString::from("UserKnownHostsFile=/x/%d/k")).unwrap();
        let v = values(&out, "userknownhostsfile");
        assert_eq!(v.len(), 1);
        assert!(!v[0].windows(2).any(|w| w == b"%d"), "{v:?}");
    }

    #[test]
    fn awkward_paths_come_back_exactly() {
        for p in [
            "/a b/known_hosts",
            "/tmp/with space/ferry-ssh-x/known_hosts",
            "/q\"uote/it's",
            "/back\\slash\\",
            "/pct/%d/%h/%%/%",
            "/hash #x/#y",
            "#start",
            "/dollar/$HOME/$",
            "/brace/{x}/$ {y}",
            "/eq=/k",
            "~user/k",
            "~",
            "-oProxyCommand=x",
            "none",
            "NONE",
            "/none",
            "rel/ative file",
            "/ünï cödé",
            "'",
            "\"",
            "\\",
            " lead and trail ",
        ] {
            check_exact(p);
        }
    }

    #[test]
    fn what_cannot_be_expressed_is_refused_naming_the_path() {
        for (p, why) in [
            ("", "empty"),
            ("/a\nb", "control character"),
            ("/a\rb", "control character"),
            ("/a\tb", "control character"),
            ("/a/${HOME}/k", "${"),
        ] {
            let e = path_option("UserKnownHostsFile", Path::new(p)).unwrap_err();
            let m = e.to_string();
            assert!(m.contains(why) && m.contains("UserKnownHostsFile"), "{m}");
            assert!(m.contains(&format!("{p:?}")), "{m}");
        }
    }

    #[test]
    fn config_file_argument_is_literal_except_none() {
        assert_eq!(
            config_file_arg(Path::new("/a b/%d ~c")).unwrap(),
            "/a b/%d ~c"
        );
        assert_eq!(config_file_arg(Path::new("none")).unwrap(), "./none");
        assert_eq!(config_file_arg(Path::new("None")).unwrap(), "./None");
        assert_eq!(config_file_arg(Path::new("-x")).unwrap(), "./-x");
        assert!(config_file_arg(Path::new("")).is_err());
        // The real ssh reads the file under that exact name (and `none` as no file).
        let dir = std::env::temp_dir().join(format!("ferry-ssh-F {} %d ~", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["none", "%d #x", "-x"] {
            let f = dir.join(name);
            std::fs::write(&f, "User zed-from-file\n").unwrap();
            let out = Command::new("ssh")
                .arg("-G")
                .arg("-F")
                .arg(config_file_arg(Path::new(name)).unwrap())
                .arg("h")
                .current_dir(&dir)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.contains("\nuser zed-from-file\n"), "{name}: {out}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn users_and_hosts_cannot_become_options() {
        assert_eq!(user_arg("ferry-ro").unwrap(), "ferry-ro");
        assert_eq!(host_arg("::1").unwrap(), "::1");
        assert_eq!(host_arg("jump.example.org").unwrap(), "jump.example.org");
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "a%d",
            "a'b",
            "x;y",
            "u@h",
            "a\nb",
        ] {
            let e = user_arg(bad).unwrap_err().to_string();
            assert!(e.contains("user name"), "{e}");
            assert!(host_arg(bad).is_err(), "{bad}");
        }
        assert!(user_arg("a:b").is_err());
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile_dir();
        let key = dir.join("k");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let b64 = pubkey.split_whitespace().nth(1).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-l", "-f"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let fp = fingerprint(b64).unwrap();
        assert!(printed.contains(&fp), "{printed} vs {fp}");
        assert_eq!(fingerprint("not base64!"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_lines_are_told_apart() {
        let e = "debug1: Connecting to h\nuser@h: Permission denied (publickey).\ndebug3: x\n";
        assert_eq!(without_debug(e), "user@h: Permission denied (publickey).");
        assert_eq!(log_level(true), "DEBUG1");
    }

    /// Every option [`SshCommand`] emits, as the real `ssh -G` reads it, with the three
    /// files under a directory whose name holds a space, `%`, `~` and `#`.
    #[test]
    fn the_command_builder_means_to_ssh_what_it_says() {
        let dir = tempfile_dir().join("a b %d ~x #y");
        std::fs::create_dir_all(&dir).unwrap();
        let (config, kh, id) = (
            dir.join("ssh %h config"),
            dir.join("known #hosts"),
            dir.join("~id %%"),
        );
        std::fs::write(&config, "HashKnownHosts yes\n").unwrap();
        let full = SshCommand::new("ferry-ro", "gate.example", 2222, &id, &kh)
            .config_file(Some(config.clone()))
            .connect_timeout(7)
            .host_key_algorithms("ssh-ed25519")
            .prefer_aes_gcm()
            .debug(true)
            .remote_command("true");
        let run = |c: &SshCommand| {
            let out = Command::new("ssh")
                .arg("-G")
                .args(c.args().unwrap())
                .env("HOME", "/nonexistent-home")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_lowercase()
        };
        let out = run(&full);
        let id_s = id.to_str().unwrap().to_lowercase();
        let kh_s = kh.to_str().unwrap().to_lowercase();
        for line in [
            "user ferry-ro".to_string(),
            "hostname gate.example".into(),
            "port 2222".into(),
            // From the -F file, read under its exact name.
            "hashknownhosts yes".into(),
            "batchmode yes".into(),
            "stricthostkeychecking true".into(),
            "globalknownhostsfile /dev/null".into(),
            "verifyhostkeydns false".into(),
            "checkhostip no".into(),
            "updatehostkeys false".into(),
            "identitiesonly yes".into(),
            "identityagent none".into(),
            "passwordauthentication no".into(),
            "kbdinteractiveauthentication no".into(),
            "forwardagent no".into(),
            "forwardx11 no".into(),
            "clearallforwardings yes".into(),
            "compression no".into(),
            "requesttty false".into(),
            "connecttimeout 7".into(),
            "serveraliveinterval 15".into(),
            "serveralivecountmax 4".into(),
            "hostkeyalgorithms ssh-ed25519".into(),
            "ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"
                .into(),
            // ssh -G prints DEBUG1 as DEBUG.
            "loglevel debug".into(),
            // Printed after expansion: exactly the file.
            format!("userknownhostsfile {kh_s}"),
            // Printed before %-expansion: the file with `%` doubled (ssh then reads `%`).
            format!("identityfile {}", id_s.replace('%', "%%")),
        ] {
            assert!(
                out.lines()
                    .any(|l| l == line || l.starts_with(&format!("{line},"))),
                "ssh -G lacks {line:?}:\n{out}"
            );
        }
        assert_eq!(out.matches("\nidentityfile ").count(), 1, "{out}");
        // The defaults: no config file at all, the default timeout and keepalives, INFO,
        // OpenSSH's ciphers.
        let out = run(&SshCommand::new("u", "h", 22, &id, &kh));
        for line in [
            "hashknownhosts no",
            "connecttimeout 10",
            "serveraliveinterval 15",
            "serveralivecountmax 4",
            "loglevel info",
            "ciphers chacha20-poly1305@openssh.com",
        ] {
            assert!(
                out.lines()
                    .any(|l| l == line || l.starts_with(&format!("{line},"))),
                "ssh -G lacks {line:?}:\n{out}"
            );
        }
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ferry-ssh-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Characters that mean something to ssh's option parser, plus ordinary ones.
    fn path_strategy() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "a", "Z", "0", "/", " ", "%", "%d", "%h", "%%", "~", "#", "\"", "'", "\\", "$", "{",
            "}", "=", "-", "none", ".", "é", ",",
        ]);
        prop::collection::vec(atoms, 1..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The real `ssh -G` reads back exactly the path (or the path is refused, and then
        /// only for `${`).
        #[test]
        fn ssh_reads_back_exactly_the_path(p in path_strategy()) {
            match path_option("UserKnownHostsFile", Path::new(&p)) {
                Ok(_) => check_exact(&p),
                Err(e) => prop_assert!(p.contains("${"), "{p:?} refused: {e}"),
            }
        }
    }
}
