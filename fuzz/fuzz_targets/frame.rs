//! The gate protocol's frame decoder (ferry-proto): any byte stream from the network.
#![no_main]
use ferry_proto::{FrameReader, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    let mut r = FrameReader::new(data);
    // Bounded: every frame consumes at least 5 bytes.
    for _ in 0..=data.len() / 5 {
        match r.read() {
            Ok(Some(f)) => {
                // What decodes re-encodes to a frame that decodes to the same thing.
                let bytes = encode(&f).expect("a decoded frame re-encodes");
                let mut again = FrameReader::new(&bytes[..]);
                assert_eq!(again.read().expect("re-decodes").expect("one frame"), f);
            }
            _ => break,
        }
    }
});
