//! The fuzz seeds kept in the repository (`fuzz/seeds/`, written by
//! `cargo run -p ferry-repo --example fuzz_seeds -- fuzz/seeds`) are still valid inputs for
//! today's parsers: a format change that leaves the corpus behind fails here, so the fuzzers
//! keep starting from inputs that reach deep into each parser.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_repo::format::{ObjectKind, check_header};
use ferry_repo::keys;
use ferry_repo::objects::{
    IndexObject, PackTrailer, RepoConfig, Snapshot, Tree, open_pack_trailer,
};
use ferry_repo::retention::log::LogRecord;
use ferry_repo::*;
use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p: PathBuf = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn every_kept_seed_is_still_a_valid_input() {
    let key = MasterKey::from_seed(&[7u8; 32]);
    for (name, b) in seeds("config") {
        RepoConfig::parse(&b).unwrap_or_else(|e| panic!("config/{name}: {e}"));
    }
    for (name, b) in seeds("header") {
        let kind = ObjectKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(&name))
            .unwrap_or_else(|| panic!("header/{name}: not a kind"));
        check_header(&b, kind).unwrap_or_else(|e| panic!("header/{name}: {e}"));
    }
    for (name, b) in seeds("index") {
        if name == "payload" {
            IndexObject::parse(&b).unwrap();
        } else {
            IndexObject::open(&key, &b, &name).unwrap_or_else(|e| panic!("index/{name}: {e}"));
        }
    }
    for (name, b) in seeds("snapshot") {
        if name == "payload" {
            Snapshot::parse(&b).unwrap();
        } else {
            Snapshot::open(&key, &b, &name).unwrap_or_else(|e| panic!("snapshot/{name}: {e}"));
        }
    }
    for (name, b) in seeds("pack") {
        if name == "trailer" {
            assert!(!PackTrailer::parse(&b).unwrap().blobs.is_empty());
        } else {
            open_pack_trailer(&key, &b, &name).unwrap_or_else(|e| panic!("pack/{name}: {e}"));
        }
    }
    for (name, b) in seeds("tree") {
        assert!(
            !Tree::parse(&b)
                .unwrap_or_else(|e| panic!("tree/{name}: {e}"))
                .nodes
                .is_empty()
        );
    }
    for (name, b) in seeds("key_file") {
        let kf = keys::parse(&b).unwrap_or_else(|e| panic!("key_file/{name}: {e}"));
        kf.unlock(None, &name).unwrap();
    }
    for (name, b) in seeds("log_record") {
        LogRecord::parse(&b).unwrap_or_else(|e| panic!("log_record/{name}: {e}"));
    }
}
