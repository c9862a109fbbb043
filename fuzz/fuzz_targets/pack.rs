//! A whole pack object (header, ephemeral key, trailer length arithmetic, trailer
//! decryption) and the decrypted trailer payload parser. AEAD stops random bytes before the
//! inner parsers, so `PackTrailer::parse` is also fed the input directly.
#![no_main]
use ferry_repo::keys::MasterKey;
use ferry_repo::objects::{PackTrailer, open_pack_trailer, pack_ephemeral};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static KEY: OnceLock<MasterKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| MasterKey::from_seed(&[7u8; 32]));
    let name = "0".repeat(64);
    let _ = pack_ephemeral(data, &name);
    let _ = open_pack_trailer(key, data, &name);
    let _ = PackTrailer::parse(data);
});
