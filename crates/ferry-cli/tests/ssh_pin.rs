//! The host-key pin cannot be bypassed through a path, and `-v`/`-vv` say enough to diagnose
//! a failed connection — the real `ferry` against real OpenSSH servers on loopback.
//!
//! The attack (issue 12): ssh splits `-o UserKnownHostsFile=/a b/known_hosts` into the two
//! files `/a` and `b/known_hosts`, so whoever can write `/a` (here: the first word of a TMPDIR
//! or of a configured known-hosts path) decides which host key is accepted. The "attacker"
//! below runs an sshd that accepts the client's key and whose forced command leaves a mark.
//! Needs root (the LAN tests use the testkit's read-only account).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_testkit::lanhost::Lan;
use ferry_testkit::{Sshd, SshdOptions, keygen};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The known-hosts line that makes `host_pub` (a `.pub` file) the key of 127.0.0.1:`port`.
fn kh_line(port: u16, host_pub: &Path) -> String {
    let text = std::fs::read_to_string(host_pub).unwrap();
    let mut f = text.split_whitespace();
    format!(
        "[127.0.0.1]:{port} {} {}\n",
        f.next().unwrap(),
        f.next().unwrap()
    )
}

/// An sshd for `user` that accepts `pubkey` and runs `touch MARK` for it.
fn marking_sshd(user: &str, pubkey: &str, mark: &Path) -> Sshd {
    let s = Sshd::start(SshdOptions {
        user: user.to_string(),
        authorized_keys: format!(
            "restrict,command=\"touch '{}'\" {}\n",
            mark.display(),
            pubkey.trim()
        ),
        ..Default::default()
    })
    .unwrap();
    // sshd reads authorized_keys as the logged-in user.
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        s.dir().join("authorized_keys"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    s
}

/// `ferry [-v…] backup --repo gate+ssh://… --identity ID --host-key HK SRC` from `cwd`.
fn gate_backup(
    env: &Env,
    cwd: &Path,
    tmpdir: &Path,
    verbose: &str,
    port: u16,
    id: &Path,
    hk: &Path,
) -> Run {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let mut c = env.cmd();
    if !verbose.is_empty() {
        c.arg(verbose);
    }
    c.args(["backup", "--repo"])
        .arg(format!("gate+ssh://root@127.0.0.1:{port}/home"))
        .arg("--key")
        .arg(&env.put)
        // `--identity=VALUE`: a value that starts with `-` is not taken for an option.
        .arg({
            let mut o = std::ffi::OsString::from("--identity=");
            o.push(id);
            o
        })
        .arg("--host-key")
        .arg(hk)
        .arg(&src)
        .env("TMPDIR", tmpdir)
        .current_dir(cwd);
    c.output().unwrap().into()
}

#[test]
fn a_tmpdir_with_a_space_cannot_choose_the_gate_host_key() {
    let env = Env::new();
    env.keys();
    let id = env.path("id");
    let pubkey = keygen(&id).unwrap();
    // The gate's real host key (pinned), and an attacker's server at the gate's address.
    let real = env.path("real_host");
    keygen(&real).unwrap();
    let mark = env.path("attacker-ran-our-session");
    let attacker = marking_sshd("root", &pubkey, &mark);
    // TMPDIR is ".../evil dir"; the attacker can write ".../evil".
    let tmpdir = env.path("evil dir");
    std::fs::create_dir_all(&tmpdir).unwrap();
    std::fs::write(
        env.path("evil"),
        kh_line(attacker.port(), &attacker.host_key_pub()),
    )
    .unwrap();
    let r = gate_backup(
        &env,
        env.dir.path(),
        &tmpdir,
        "",
        attacker.port(),
        &id,
        &real.with_extension("pub"),
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("does not match the pinned key"), "{r:?}");
    assert!(
        !mark.exists(),
        "the attacker's server ran our session: {r:?}"
    );
    assert!(
        !attacker.log().contains("Accepted publickey"),
        "{}",
        attacker.log()
    );
}

#[test]
fn verbose_logs_each_attempt_and_vv_adds_ssh_debug_lines() {
    let env = Env::new();
    env.keys();
    // A relative identity path that ssh would otherwise read as tokens and an option.
    let cwd = env.path("work dir");
    std::fs::create_dir_all(&cwd).unwrap();
    let id = cwd.join("-i %d #x");
    let pubkey = keygen(&id).unwrap();
    let mark = env.path("logged-in");
    // Not a gate: the forced command only proves that ssh logged in with that exact key.
    let sshd = marking_sshd("root", &pubkey, &mark);
    let rel = Path::new("-i %d #x");
    let tmp = env.path("tmp %h 'q'");
    std::fs::create_dir_all(&tmp).unwrap();

    let r = gate_backup(
        &env,
        &cwd,
        &tmp,
        "-vv",
        sshd.port(),
        rel,
        &sshd.host_key_pub(),
    );
    assert_ne!(r.code, 0, "not a gate: {r:?}");
    assert!(
        mark.exists(),
        "ssh did not log in with {rel:?}: {r:?}\n{}",
        sshd.log()
    );
    for want in [
        "connection attempt 1 as root (pinned host key ssh-ed25519 SHA256:",
        "debug1: ",
        "Server host key: ssh-ed25519 SHA256:",
        "ended the session before answering HELLO",
    ] {
        assert!(r.stderr.contains(want), "want {want:?} in:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("PRIVATE KEY"), "{}", r.stderr);

    // -v: the attempts, not ssh's debug lines.
    std::fs::remove_file(&mark).unwrap();
    let r = gate_backup(
        &env,
        &cwd,
        &tmp,
        "-v",
        sshd.port(),
        rel,
        &sshd.host_key_pub(),
    );
    assert!(mark.exists(), "{r:?}");
    assert!(r.stderr.contains("connection attempt 1"), "{}", r.stderr);
    assert!(!r.stderr.contains("debug1:"), "{}", r.stderr);
}

/// `ferry [-vv] sources check --config CFG --json` from `cwd`.
fn sources_check(env: &Env, cwd: &Path, cfg: &Path, vv: bool) -> Run {
    let mut c = env.cmd();
    if vv {
        c.arg("-vv");
    }
    c.args([
        OsStr::new("sources"),
        OsStr::new("check"),
        OsStr::new("--config"),
    ])
    .arg(cfg)
    .arg("--json")
    .current_dir(cwd);
    c.output().unwrap().into()
}

fn host_toml(
    name: &str,
    port: u16,
    user: &str,
    identity: &Path,
    known_hosts: &Path,
    path: &Path,
) -> String {
    format!(
        "[[sources.host]]\nname = {name:?}\naddress = \"127.0.0.1\"\nport = {port}\nuser = {user:?}\nidentity = {:?}\nknown_hosts = {:?}\npaths = [{:?}]\n",
        identity.display().to_string(),
        known_hosts.display().to_string(),
        path.display().to_string()
    )
}

#[test]
fn lan_hosts_take_awkward_paths_exactly_and_cannot_be_redirected() {
    let env = Env::new();
    let lan = Lan::start(&["web"]).unwrap();
    let web = lan.host("web");
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut toml = String::from("[sources]\nconnect_timeout = 5\n");
    // Each awkward name for the identity and the known-hosts file (relative to cwd).
    let names = [
        "with space",
        "q\"uote'",
        "pct %d %h %%",
        "#hash",
        "-oProxyCommand=x",
        "~tilde",
        "none",
    ];
    for (i, n) in names.iter().enumerate() {
        let id = Path::new(n).join(format!("{n} id"));
        let kh = Path::new(n).join(format!("{n} known_hosts"));
        std::fs::create_dir_all(cwd.join(n)).unwrap();
        std::fs::copy(&lan.client_key, cwd.join(&id)).unwrap();
        std::fs::copy(&web.known_hosts, cwd.join(&kh)).unwrap();
        toml.push_str(&host_toml(
            &format!("h{i}"),
            web.port,
            &lan.user,
            &id,
            &kh,
            &web.paths()[0],
        ));
    }
    // The attack: the pinned file is ".../evil dir/known_hosts" (the real host's key), the
    // attacker wrote ".../evil" (its own key) and listens where the config points.
    let client_pub = std::fs::read_to_string(lan.client_key.with_extension("pub")).unwrap();
    let mark = env.path("attacker-ran-our-session");
    let attacker = marking_sshd(&lan.user, &client_pub, &mark);
    std::fs::create_dir_all(env.path("evil dir")).unwrap();
    let pinned = env.path("evil dir/known_hosts");
    std::fs::write(
        &pinned,
        kh_line(attacker.port(), &web.sshd().unwrap().host_key_pub()),
    )
    .unwrap();
    std::fs::write(
        env.path("evil"),
        kh_line(attacker.port(), &attacker.host_key_pub()),
    )
    .unwrap();
    toml.push_str(&host_toml(
        "redirected",
        attacker.port(),
        &lan.user,
        &lan.client_key,
        &pinned,
        &web.paths()[0],
    ));
    let cfg = env.path("ferry.toml");
    std::fs::write(&cfg, &toml).unwrap();

    let r = sources_check(&env, &cwd, &cfg, true);
    let j = r.json();
    let by_name = |n: &str| {
        j.as_array()
            .and_then(|a| a.iter().find(|s| s["source"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {j}"))
    };
    for (i, n) in names.iter().enumerate() {
        let s = by_name(&format!("h{i}"));
        assert_eq!(s["connection"]["ok"], true, "{n:?}: {s}\n{}", r.stderr);
    }
    let s = by_name("redirected");
    assert_eq!(s["connection"]["ok"], false, "{s}");
    let m = s["connection"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("host key"), "{s}");
    assert!(!mark.exists(), "the attacker's server ran our session");
    assert!(
        !attacker.log().contains("Accepted publickey"),
        "{}",
        attacker.log()
    );
    // -vv: ssh's own debug lines, per host, and the connection lines.
    assert!(r.stderr.contains("debug1: "), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("host h0: connecting to ferry-ro@127.0.0.1"),
        "{}",
        r.stderr
    );

    // What ssh cannot take is refused when the config is read, naming the field and path.
    let bad = toml.replace("\"with space/with space id\"", "\"with ${HOME} id\"");
    assert_ne!(bad, toml);
    std::fs::write(&cfg, bad).unwrap();
    let r = sources_check(&env, &cwd, &cfg, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("identity") && r.stderr.contains("with ${HOME} id"),
        "{r:?}"
    );
}
