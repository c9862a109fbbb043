//! The operator's retention file (`ferry forget -c FILE`, `[retention.SITE]` sections in TOML):
//! any text must parse or give an error naming the file, and a parsed site always has a keep
//! rule (a policy with none would forget every snapshot).
#![no_main]
use ferry_run::retention::RetentionConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The loader reads text (a file that is not UTF-8 is refused before parsing).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RetentionConfig::parse(text, Path::new("fuzz-retention.toml")) {
        Ok(c) => {
            for (site, s) in &c.sites {
                assert!(!s.policy.is_empty(), "site {site} parsed with no keep rule");
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("fuzz-retention.toml"),
                "error without the file: {m}"
            );
        }
    }
});
