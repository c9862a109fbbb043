//! The gate's request handling (ferry-gate's session logic without the S3 sink): any byte
//! stream a client can send after connecting, against an in-memory write-once sink. Checks
//! that nothing whose bytes do not hash to its name is ever stored.
#![no_main]
use ferry_gate::{GateConfig, MemSink, Session, Settings, Shared};
use ferry_proto::{Frame, PROTOCOL_VERSION, encode};
use ferry_repo::format::object_name;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        Settings::new(
            GateConfig {
                bucket: "fuzz".into(),
                site: "home".into(),
                region: None,
                session: "fuzz".into(),
                expires: "2999-01-01T00:00:00Z".into(),
                max_object_size: 1 << 16,
                max_session_bytes: 1 << 20,
                allowed_kinds: vec![
                    "config".into(),
                    "pack".into(),
                    "index".into(),
                    "snapshot".into(),
                ],
                spool_dir: None,
                s3_attempt_timeout_secs: None,
            },
            "fuzz",
        )
        .expect("valid fuzz config")
    })
}

fuzz_target!(|data: &[u8]| {
    // Half the inputs start with a valid HELLO so the fuzzer reaches PUT/LIST quickly.
    let mut input = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        input = encode(&Frame::Hello {
            version: PROTOCOL_VERSION,
            session: String::new(),
            site: "home".into(),
        })
        .expect("hello encodes");
        input.extend_from_slice(&data[1..]);
    } else {
        input.extend_from_slice(data);
    }
    let sink = MemSink::default();
    let shared = Shared::new(Box::new(sink.clone()), None);
    let clock = time::OffsetDateTime::now_utc;
    let mut out = Vec::new();
    let _ = Session::new(&input[..], &mut out, settings(), shared, &clock).run();
    for (key, bytes) in sink.snapshot() {
        if let Some(name) = key
            .strip_prefix("packs/")
            .or(key.strip_prefix("index/"))
            .or(key.strip_prefix("snapshots/"))
        {
            assert_eq!(
                object_name(&bytes),
                name,
                "stored {key} whose bytes do not hash to its name"
            );
        }
    }
});
