//! Tree blobs (directory listings) after decryption, and lookups in them.
#![no_main]
use ferry_repo::objects::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::parse(data) {
        if let Some(n) = t.nodes.first() {
            let _ = t.find(&n.name);
        }
        let _ = t.find(b"x");
    }
});
