//! The `config` object (header + JSON), read unauthenticated by every command.
#![no_main]
use ferry_repo::objects::RepoConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = RepoConfig::parse(data);
});
