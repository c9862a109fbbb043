//! `index/` objects: the encrypted envelope and the decrypted payload parser.
#![no_main]
use ferry_repo::keys::MasterKey;
use ferry_repo::objects::IndexObject;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static KEY: OnceLock<MasterKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| MasterKey::from_seed(&[7u8; 32]));
    let _ = IndexObject::open(key, data, &"0".repeat(64));
    let _ = IndexObject::parse(data);
});
