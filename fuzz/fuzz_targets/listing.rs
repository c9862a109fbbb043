//! A LAN host's listing (`find -printf` records up to the end record), read by the collector
//! from a host it does not trust.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if let Ok(l) = ferry_collect::listing::read_listing(&mut r) {
        let _ = ferry_collect::listing::parse_find(&l.bytes);
    }
    let _ = ferry_collect::listing::parse_find(data);
});
