//! The gate connection's SSH side against real OpenSSH servers: every path Ferry hands to ssh
//! means exactly that file (spaces, quotes, `%` tokens, `#`, dashes), and a jump box that is
//! still booting (sshd up with the AMI's own host keys, the session's key not installed yet)
//! is retried until the budget while the pinned key keeps the wrong host from ever seeing a
//! byte. The gate runs with `--sink null` (no S3 here: these tests are about ssh).
//!
//! Why a booting box looks like this on EC2: cloud-init runs user scripts in its final stage,
//! after sshd started with the host keys cloud-init generated at first boot
//! (https://docs.cloud-init.io/en/latest/explanation/boot.html).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_remote::{GateOptions, GateStorage};
use ferry_testkit::{Sshd, SshdOptions, keygen, wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SITE: &str = "home";

/// The forced command of a gate that accepts any session (objects go nowhere).
fn gate_line(dir: &Path, pubkey: &str) -> String {
    let cfg = dir.join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "bucket = \"b\"\nsite = \"{SITE}\"\nsession = \"s-test\"\nexpires = \"2999-01-01T00:00:00Z\"\n\
             max_object_size = 4194304\nmax_session_bytes = 67108864\n\
             allowed_kinds = [\"config\", \"pack\", \"index\", \"snapshot\"]\nspool_dir = \"{}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    format!(
        "restrict,command=\"{} serve --sink null --config {}\" {}\n",
        env!("CARGO_BIN_EXE_ferry-gate"),
        cfg.display(),
        pubkey.trim()
    )
}

/// An ECDSA key pair at `path` (the "booting box" servers present it next to their own
/// ed25519 key; the client pins ECDSA, so the key it gets is the one under test).
fn ecdsa(path: &Path) -> PathBuf {
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-C", "t", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    path.with_extension("pub")
}

fn url(port: u16) -> String {
    format!("gate+ssh://root@127.0.0.1:{port}/{SITE}")
}

fn quick(mut o: GateOptions, budget: u64) -> GateOptions {
    o.backoff = Duration::from_millis(200);
    o.max_backoff = Duration::from_secs(1);
    o.attempts = 1000;
    o.retry_budget = Duration::from_secs(budget);
    o
}

#[test]
fn awkward_paths_reach_ssh_as_exactly_those_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let pubkey = keygen(&key).unwrap();
    let stranger = dir.path().join("stranger");
    keygen(&stranger).unwrap();
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: gate_line(dir.path(), &pubkey),
        ..Default::default()
    })
    .unwrap();
    for weird in [
        "with space",
        "q\"uote'",
        "pct %d %h %% %",
        "#hash",
        "-oProxyCommand=touch x",
        "back\\slash",
        "~tilde",
        "none",
    ] {
        let d = dir.path().join(weird);
        std::fs::create_dir_all(&d).unwrap();
        let id = d.join(format!("{weird} id"));
        std::fs::copy(&key, &id).unwrap();
        let host_key = d.join(format!("{weird} host.pub"));
        std::fs::copy(sshd.host_key_pub(), &host_key).unwrap();
        // The config file is needed to log in: it names the right identity, while the
        // command line's identity is a stranger's key (both are offered).
        let config = d.join(format!("{weird} ssh_config"));
        std::fs::write(&config, format!("IdentityFile \"{}\"\n", key.display())).unwrap();

        let mut o = quick(GateOptions::new(&id, &host_key), 3);
        let gate = GateStorage::connect(&url(sshd.port()), &o)
            .unwrap_or_else(|e| panic!("{weird:?}: {e}\n{}", sshd.log()));
        assert_eq!(gate.session(), "s-test");
        gate.close().unwrap();

        o.identity = stranger.clone();
        o.ssh_config = Some(config.clone());
        let gate = GateStorage::connect(&url(sshd.port()), &o)
            .unwrap_or_else(|e| panic!("{weird:?} as ssh_config: {e}\n{}", sshd.log()));
        gate.close().unwrap();
    }
    // What ssh cannot take is refused at once, naming the path.
    for bad in ["new\nline", "env ${HOME}"] {
        let id = dir.path().join(bad);
        std::fs::copy(&key, &id).unwrap();
        let o = quick(GateOptions::new(&id, sshd.host_key_pub()), 30);
        let started = std::time::Instant::now();
        let err = GateStorage::connect(&url(sshd.port()), &o)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("the SSH identity")
                && err.contains(&format!("{:?}", id.display().to_string())),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused, not retried"
        );
    }
}

#[test]
fn a_box_that_presents_its_ami_keys_first_is_retried_until_it_presents_the_pinned_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let pubkey = keygen(&key).unwrap();
    let ami_key = dir.path().join("ami_ecdsa");
    ecdsa(&ami_key);
    let session_key = dir.path().join("session_ecdsa");
    let pinned = ecdsa(&session_key);
    // Before the user data runs: the AMI's host keys, and our key is not authorised yet.
    let ami = Sshd::start(SshdOptions {
        authorized_keys: String::new(),
        extra_config: format!("HostKey {}\n", ami_key.display()),
        ..Default::default()
    })
    .unwrap();
    let port = ami.port();
    let o = quick(GateOptions::new(&key, &pinned), 60);
    let client = std::thread::spawn(move || GateStorage::connect(&url(port), &o));
    // Let the client be turned away at least twice by the wrong host key.
    wait_until("two refused attempts", Duration::from_secs(30), || {
        ami.log().matches("Connection from 127.0.0.1").count() >= 2
    })
    .unwrap();
    let ami_log = ami.log();
    drop(ami);
    // The user data installed the session's host key and restarted sshd.
    let real = Sshd::start(SshdOptions {
        authorized_keys: gate_line(dir.path(), &pubkey),
        extra_config: format!("Port {port}\nHostKey {}\n", session_key.display()),
        ..Default::default()
    })
    .unwrap();
    let gate = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", real.log()));
    gate.close().unwrap();
    // The box with the wrong key never got as far as authentication.
    assert!(!ami_log.contains("publickey"), "{ami_log}");
    assert!(real.log().contains("Accepted publickey"), "{}", real.log());
}

#[test]
fn a_box_that_refuses_our_key_at_first_is_retried_until_the_key_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let pubkey = keygen(&key).unwrap();
    // cloud-config `ssh_keys` case: the right host key from the start, our key not yet.
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let o = quick(GateOptions::new(&key, sshd.host_key_pub()), 60);
    let port = sshd.port();
    let client = std::thread::spawn(move || GateStorage::connect(&url(port), &o));
    wait_until("two refused logins", Duration::from_secs(30), || {
        sshd.log().matches("Connection from 127.0.0.1").count() >= 2
    })
    .unwrap();
    sshd.set_authorized_keys(&gate_line(dir.path(), &pubkey))
        .unwrap();
    let gate = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    gate.close().unwrap();
}

#[test]
fn a_box_that_never_presents_the_pinned_key_fails_clearly_after_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let pubkey = keygen(&key).unwrap();
    let other = dir.path().join("other");
    let pinned = ecdsa(&other);
    let ami_key = dir.path().join("ami_ecdsa");
    ecdsa(&ami_key);
    let ami = Sshd::start(SshdOptions {
        authorized_keys: gate_line(dir.path(), &pubkey),
        extra_config: format!("HostKey {}\n", ami_key.display()),
        ..Default::default()
    })
    .unwrap();
    let o = quick(GateOptions::new(&key, &pinned), 3);
    let err = GateStorage::connect(&url(ami.port()), &o)
        .err()
        .unwrap()
        .to_string();
    let want = format!(
        "host key for 127.0.0.1:{} does not match the pinned key in {}",
        ami.port(),
        pinned.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("of the 3 s allowed"), "{err}");
    let tried: u32 = err
        .split("gave up after retries: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(tried >= 2, "{err}");
    // Nothing reached authentication on the wrong host.
    assert!(!ami.log().contains("publickey"), "{}", ami.log());
}
