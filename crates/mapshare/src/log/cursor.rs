//! Durable named cursors, in `meta`.
//!
//! # Slot layout (64 bytes, 64 slots from `meta` offset 128)
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | state: 0 free; `name length << 8 \| 2` in use | written last when a slot is taken |
//! | 8 | position: the next sequence number to deliver | stored by `Reader::commit` |
//! | 16 | name bytes (up to 48), zero-padded, as six `u64` words | |
//!
//! Slots are taken under an exclusive OFD lock on the first cursor byte
//! of `meta` (released by the kernel if the taker dies), so two processes
//! that open the same new name agree on one slot. Slots are never freed.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::{Meta, CURSORS, CURSOR_LEN, MAX_CURSORS};
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::lock::LockKind;

/// Longest cursor name, in bytes.
pub const MAX_NAME: usize = 48;
const IN_USE: u64 = 2;

fn slot(i: u64) -> u64 {
    CURSORS + i * CURSOR_LEN
}

/// The name in slot `i`, if it is in use and well-formed (garbage is
/// skipped, never trusted).
fn name_at(meta: &Meta, i: u64) -> Result<Option<String>> {
    let state = meta.load(slot(i))?;
    if state & 0xff != IN_USE {
        return Ok(None);
    }
    let len = (state >> 8) as usize;
    if len == 0 || len > MAX_NAME {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(MAX_NAME);
    for w in 0..6 {
        bytes.extend_from_slice(&meta.word(slot(i) + 16 + 8 * w)?.load(Relaxed).to_ne_bytes());
    }
    bytes.truncate(len);
    Ok(String::from_utf8(bytes).ok())
}

/// Finds the slot of cursor `name`, taking a free one (at position
/// `start`) if there is none. Returns the slot and its stored position.
pub(crate) fn find_or_create(meta: &Meta, name: &str, start: u64) -> Result<(u64, u64)> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::Unsupported {
            origin: meta.origin(),
            what: "this cursor name",
            why: "a cursor name has 1 to 48 bytes",
        });
    }
    if let Some(found) = find(meta, name)? {
        return Ok(found);
    }
    let file = meta.file.region().file();
    let byte = meta.file.object_offset() + CURSORS;
    sys::lock::lock(file, LockKind::Exclusive, byte, 1)
        .map_err(|e| Error::io(&meta.origin(), "lock cursor table", e))?;
    let taken = take(meta, name, start);
    let _ = sys::lock::unlock(file, byte, 1);
    taken
}

fn find(meta: &Meta, name: &str) -> Result<Option<(u64, u64)>> {
    for i in 0..MAX_CURSORS {
        if name_at(meta, i)?.as_deref() == Some(name) {
            return Ok(Some((i, meta.load(slot(i) + 8)?)));
        }
    }
    Ok(None)
}

/// Under the table lock.
fn take(meta: &Meta, name: &str, start: u64) -> Result<(u64, u64)> {
    if let Some(found) = find(meta, name)? {
        return Ok(found);
    }
    for i in 0..MAX_CURSORS {
        let state = meta.word(slot(i))?;
        if state.load(Acquire) != 0 {
            continue;
        }
        let mut bytes = [0u8; MAX_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        for (w, chunk) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
            meta.word(slot(i) + 16 + 8 * w as u64)?.store(v, Relaxed);
        }
        meta.word(slot(i) + 8)?.store(start, Relaxed);
        state.store((name.len() as u64) << 8 | IN_USE, Release);
        return Ok((i, start));
    }
    Err(Error::Busy {
        origin: meta.origin(),
        why: format!("all {MAX_CURSORS} durable cursor slots are taken"),
    })
}

/// Stores `pos` as slot `i`'s position (durable: the file is shared and
/// persists; `msync` is the caller's choice).
pub(crate) fn store(meta: &Meta, i: u64, pos: u64) -> Result<()> {
    meta.word(slot(i) + 8)?.store(pos, Release);
    Ok(())
}

/// Every well-formed cursor: name and position.
pub(crate) fn list(meta: &Meta) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for i in 0..MAX_CURSORS {
        if let Some(name) = name_at(meta, i)? {
            out.push((name, meta.load(slot(i) + 8)?));
        }
    }
    Ok(out)
}
