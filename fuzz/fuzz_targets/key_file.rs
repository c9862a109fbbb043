//! Key files (armored text, postcard body). Protected files are parsed but not
//! unlocked: argon2 with fuzzed parameters would only measure argon2.
#![no_main]
use ferry_repo::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = keys::parse(data) {
        let _ = kf.kind();
        if !kf.is_protected() {
            let _ = kf.unlock(None, "fuzz");
        }
    }
});
