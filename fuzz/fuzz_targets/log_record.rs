//! The decrypted `log/` record of a forget or prune (JSON), read by `ferry log` and prune.
#![no_main]
use ferry_repo::retention::log::LogRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = LogRecord::parse(data);
});
