//! The binaries that run in AWS must start on Amazon Linux 2023, whose glibc is 2.34: no
//! versioned symbol of `bootstrap` (Lambda, `provided.al2023`) or `ferry-gate` (the jump box) may
//! need a newer `GLIBC_x.y`. `scripts/build-al2023.sh debug` puts them into
//! `<target dir>/x86_64-unknown-linux-gnu/debug/`: the workspace's own debug build when it needs
//! no newer glibc, else a cargo-zigbuild build against glibc 2.34
//! (`x86_64-unknown-linux-gnu.2.34`, always so for release). The test command runs that script
//! before the tests (a nested cargo build from inside a test would wait on the target
//! directory's lock). Missing binaries fail the test, naming the script.
//!
//! The requirement is read from the ELF's version-needs table (`.gnu.version_r`), which lists
//! every symbol version the dynamic loader must find, by library.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::path::{Path, PathBuf};

use object::Endianness;
use object::read::elf::{ElfFile64, FileHeader};

/// Amazon Linux 2023's glibc.
const AL2023_GLIBC: (u32, u32) = (2, 34);

/// `<target dir>`: the test executable is `<target dir>/debug/deps/al2023_glibc-<hash>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps/")
        .to_path_buf()
}

/// Where scripts/build-al2023.sh puts the binaries (override: FERRY_AL2023_DIR).
fn al2023_dir() -> PathBuf {
    match std::env::var_os("FERRY_AL2023_DIR") {
        Some(d) => PathBuf::from(d),
        None => target_dir().join("x86_64-unknown-linux-gnu/debug"),
    }
}

/// Every `GLIBC_x.y` version the ELF needs from any library, as (x, y), sorted.
fn glibc_versions_needed(data: &[u8]) -> Result<Vec<(u32, u32)>, String> {
    let elf = ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not an ELF64: {e}"))?;
    let endian = elf.endian();
    let sections = elf
        .elf_header()
        .sections(endian, data)
        .map_err(|e| format!("section table: {e}"))?;
    let (mut needs, link) = sections
        .gnu_verneed(endian, data)
        .map_err(|e| format!(".gnu.version_r: {e}"))?
        .ok_or("no .gnu.version_r section (a static binary?)")?;
    let strings = sections
        .strings(endian, data, link)
        .map_err(|e| format!("version strings: {e}"))?;
    let mut out = Vec::new();
    while let Some((_need, mut auxes)) = needs.next().map_err(|e| format!("verneed: {e}"))? {
        while let Some(aux) = auxes.next().map_err(|e| format!("vernaux: {e}"))? {
            let name = aux
                .name(endian, strings)
                .map_err(|e| format!("vernaux name: {e}"))?;
            let name = String::from_utf8_lossy(name);
            let Some(v) = name.strip_prefix("GLIBC_") else {
                continue;
            };
            if v == "PRIVATE" {
                return Err("needs GLIBC_PRIVATE (not a stable interface)".into());
            }
            let mut parts = v.split('.').map(|p| p.parse::<u32>());
            match (parts.next(), parts.next()) {
                (Some(Ok(a)), Some(Ok(b))) => out.push((a, b)),
                (Some(Ok(a)), None) => out.push((a, 0)),
                _ => return Err(format!("unparsable glibc version {name:?}")),
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The versions newer than AL2023's, or an error naming the file.
fn too_new(path: &Path) -> Result<Vec<(u32, u32)>, String> {
    let data = std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e}; build it first with scripts/build-al2023.sh (the test command runs it before cargo test)",
            path.display()
        )
    })?;
    let v = glibc_versions_needed(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    if v.is_empty() {
        return Err(format!(
            "{}: needs no GLIBC_ version at all (unexpected for a glibc binary)",
            path.display()
        ));
    }
    Ok(v.into_iter().filter(|v| *v > AL2023_GLIBC).collect())
}

#[test]
fn al2023_binaries_need_no_glibc_newer_than_2_34() {
    let dir = al2023_dir();
    for b in ["bootstrap", "ferry-gate"] {
        let path = dir.join(b);
        match too_new(&path) {
            Ok(bad) => assert!(
                bad.is_empty(),
                "{} needs glibc {:?}, newer than Amazon Linux 2023's 2.34",
                path.display(),
                bad
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn the_check_catches_a_binary_that_needs_a_newer_glibc() {
    // Negative control from a real binary: the native `bootstrap` next to this test (built on
    // this machine), with one needed version renamed in its string table to GLIBC_2.99 (same
    // length, so the ELF stays valid). The check must report exactly that version. (The native
    // build itself, on Debian 12 with glibc 2.36, happens to need nothing newer than 2.34 today:
    // measured when this test was written; see docs/INFRA.md.)
    let native = target_dir().join("debug/bootstrap");
    let mut data = std::fs::read(&native).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (cargo test --workspace builds it; or cargo build -p ferry-lambda)",
            native.display()
        )
    });
    let before = glibc_versions_needed(&data).unwrap();
    assert!(before.iter().all(|v| *v < (2, 99)), "{before:?}");
    let needle = b"GLIBC_2.2.5\0";
    let at = data
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the native bootstrap names GLIBC_2.2.5");
    data[at..at + needle.len()].copy_from_slice(b"GLIBC_2.99\0\0");
    let after = glibc_versions_needed(&data).unwrap();
    assert!(after.contains(&(2, 99)), "{after:?}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bootstrap");
    std::fs::write(&bad, &data).unwrap();
    assert_eq!(too_new(&bad).unwrap(), vec![(2, 99)]);
    // And a missing binary is an error naming the build script, not a pass.
    let e = too_new(&dir.path().join("ferry-gate")).unwrap_err();
    assert!(e.contains("scripts/build-al2023.sh"), "{e}");
}
