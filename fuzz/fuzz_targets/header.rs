//! The common object header every storage reader (and the gate) checks first.
#![no_main]
use ferry_repo::format::{ObjectKind, check_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in ObjectKind::ALL {
        let _ = check_header(data, kind);
    }
});
