//! `ferry --version` names the git commit and the build profile: `FERRY_GIT_COMMIT` (from
//! `git rev-parse`, `unknown` when building outside a git checkout, e.g. from a tarball, or
//! without git) and `FERRY_BUILD_PROFILE` (`debug` or `release`). The script reruns only when
//! HEAD or the branch it points to moves.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Only this workspace's own checkout counts (a tarball unpacked inside some other git
    // repository must not take that repository's commit).
    let workspace = std::env::var("CARGO_MANIFEST_DIR")
        .ok()
        .and_then(|d| PathBuf::from(d).join("../..").canonicalize().ok());
    let ours = git(&["rev-parse", "--show-toplevel"])
        .and_then(|t| PathBuf::from(t).canonicalize().ok())
        .is_some_and(|t| Some(t) == workspace);
    if !ours {
        println!("cargo:rustc-env=FERRY_GIT_COMMIT=unknown");
        println!(
            "cargo:rustc-env=FERRY_BUILD_PROFILE={}",
            std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into())
        );
        return;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=FERRY_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=FERRY_BUILD_PROFILE={profile}");
    // Watch only files that exist (a missing one would rerun the script on every build).
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]));
    let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
    for p in [head, branch, packed].into_iter().flatten() {
        let p = PathBuf::from(p);
        if p.is_file() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
