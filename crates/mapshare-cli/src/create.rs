//! `mapshare create FILE --size N`: a new mapshare file holding a raw
//! object of N bytes (header, lease table, object).

use std::path::Path;

use mapshare::{Fingerprint, Kind, SharedFile, Spec};

use crate::Failure;

/// What the new file holds.
pub enum What {
    /// A raw area of this many bytes.
    Raw(u64),
    /// A queue with a ring of this many bytes.
    Queue(u64),
}

pub fn run(file: &Path, what: What, slots: u32, mode: u32) -> Result<(), Failure> {
    let opened = match what {
        What::Raw(size) => {
            let mut spec = Spec::new(Kind::Raw, Fingerprint::untyped(), size);
            spec.lease_slots = slots;
            spec.mode = mode;
            SharedFile::create_new(file, &spec, |_, _| Ok(()))
        }
        What::Queue(capacity) => mapshare::queue::spec(capacity).and_then(|mut spec| {
            spec.lease_slots = slots;
            spec.mode = mode;
            SharedFile::create_new(file, &spec, |_, _| Ok(()))
        }),
    };
    // Exclusive, and nothing is left behind on failure: the file gets
    // its name only once it is complete.
    let shared = opened?;
    let h = shared.header();
    println!(
        "created {}: {} bytes ({} object bytes at offset {}, {} lease slots)",
        file.display(),
        h.file_len,
        h.object_len,
        h.object_offset,
        h.lease_slots
    );
    Ok(())
}
