//! `mapshare create FILE --size N`: a new mapshare file holding a raw
//! object of N bytes (header, lease table, object).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use mapshare::{Error, Fingerprint, Kind, Origin, SharedFile, Spec};

use crate::Failure;

/// What the new file holds.
pub enum What {
    /// A raw area of this many bytes.
    Raw(u64),
    /// A queue with a ring of this many bytes.
    Queue(u64),
}

pub fn run(file: &Path, what: What, slots: u32, mode: u32) -> Result<(), Failure> {
    // Exclusive: never initialize over somebody's file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                origin: Origin::path(file),
            }
            .into(),
            _ => Failure(format!("{}: {e}", file.display())),
        })?;
    let opened = match what {
        What::Raw(size) => {
            let mut spec = Spec::new(Kind::Raw, Fingerprint::untyped(), size);
            spec.lease_slots = slots;
            spec.mode = mode;
            SharedFile::open_or_create(file, &spec, |_, _| Ok(()))
        }
        What::Queue(capacity) => mapshare::queue::spec(capacity).and_then(|mut spec| {
            spec.lease_slots = slots;
            spec.mode = mode;
            SharedFile::open_or_create(file, &spec, |_, _| Ok(()))
        }),
    };
    let shared = match opened {
        Ok(f) => f,
        Err(e) => {
            // Leave nothing half-made behind.
            let _ = std::fs::remove_file(file);
            return Err(e.into());
        }
    };
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
