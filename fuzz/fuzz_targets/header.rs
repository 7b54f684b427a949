//! Fuzz the header parser with arbitrary bytes: it must never panic, and
//! whatever it accepts must encode back to a header that parses the same.
//!
//! Run: `cargo +nightly fuzz run header` from this directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapshare::format::{Header, READY};
use mapshare::Origin;

fuzz_target!(|data: &[u8]| {
    let origin = Origin::anonymous("fuzz");
    // The claimed file size is the input's length, or taken from its tail.
    let size = data.len() as u64;
    if let Ok(header) = Header::parse(&origin, data, size) {
        let again = header.encode(READY);
        let reparsed = Header::parse(&origin, &again, header.file_len).expect("round trip");
        assert_eq!(reparsed, header);
    }
});
