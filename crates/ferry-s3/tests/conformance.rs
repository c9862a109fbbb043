//! S3Storage runs the storage conformance suite (`ferry_repo::storage::conformance`) against
//! the test kit's moto: write-once puts (`If-None-Match: *`, a 412 meaning "already present",
//! also when eight threads race for one name), listings per kind, gets and ranged gets.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use ferry_repo::storage::conformance::{Backend, run};
use ferry_s3::S3Storage;
use ferry_testkit::Moto;

#[test]
fn s3_storage_passes_the_conformance_suite() {
    let moto = Moto::start().expect("moto");
    let s3 = S3Storage::from_objects(common::objects(&moto, "ferry-conformance", "site1"))
        .expect("S3Storage");
    let report = run(&Backend::new("S3Storage", &s3));
    eprintln!("{report}");
    // S3Storage buffers packs (no streaming put) and stores any name it is given.
    assert_eq!(
        report.skipped_cases(),
        vec![
            "streaming put appears only on commit",
            "abandoned streaming put leaves nothing",
            "refused names and objects",
        ],
        "{report}"
    );
}
