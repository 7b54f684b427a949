//! Durable named cursors, in `meta`.
//!
//! # Slot layout (128 bytes, 64 slots from `meta` offset 128)
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | state: 0 free; `name length << 8 \| 2` in use | written last when a slot is taken |
//! | 8 | position: the next sequence number to deliver | stored by `Reader::commit` |
//! | 16 | tether: the lease token (in `meta`) of the tethered reader, 0 if none | |
//! | 24 | tether limit: how many numbers writers may run ahead of it | |
//! | 32 | tether position: the reader's live position | stored on every read |
//! | 64 | name bytes (up to 48), zero-padded, as six `u64` words | |
//!
//! Slots are taken under an exclusive OFD lock on the first cursor byte
//! of `meta` (released by the kernel if the taker dies), so two processes
//! that open the same new name agree on one slot. Slots are never freed.
//! A shared lock on that byte is another program's, never a taker's: a
//! new name is then refused with `Busy` at once instead of waiting.
//!
//! # Tethers (state table of the tether word)
//!
//! | tether | meaning |
//! |---|---|
//! | 0 | untethered: writers never look at this cursor |
//! | token of a live lease | writers wait (up to their deadline) while they are `limit` or more numbers ahead of the tether position |
//! | token of a dead lease | released: the first writer that finds it behind CASes it to 0 |
//!
//! `meta`'s tether count (offset 56) counts tethers set; while it is 0 a
//! writer's whole tether check is one relaxed load.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use super::{Meta, CURSORS, CURSOR_LEN, MAX_CURSORS, TETHERS};
use crate::error::{Error, Result};
use crate::lease::{Liveness, Token};
use crate::sys;
use crate::sys::lock::LockKind;

/// Longest cursor name, in bytes.
pub const MAX_NAME: usize = 48;
const IN_USE: u64 = 2;
const POS: u64 = 8;
const TETHER: u64 = 16;
const LIMIT: u64 = 24;
const LIVE: u64 = 32;
const NAME: u64 = 64;

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
        bytes.extend_from_slice(
            &meta
                .word(slot(i) + NAME + 8 * w)?
                .load(Relaxed)
                .to_ne_bytes(),
        );
    }
    bytes.truncate(len);
    Ok(String::from_utf8(bytes).ok())
}

/// Finds the slot of cursor `name`, taking a free one (at position
/// `start`) if there is none. Returns the slot and its stored position.
pub(crate) fn find_or_create(meta: &Meta, name: &str, start: u64) -> Result<(u64, u64)> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::InvalidArgument {
            origin: meta.origin(),
            what: "cursor name",
            why: format!(
                "{name:?} has {} bytes; a cursor name has 1 to {MAX_NAME}",
                name.len()
            ),
        });
    }
    if let Some(found) = find(meta, name)? {
        return Ok(found);
    }
    let file = meta.file.region().file();
    let byte = meta.file.object_offset() + CURSORS;
    lock_table(meta, byte)?;
    let taken = take(meta, name, start);
    let _ = sys::lock::unlock(file, byte, 1);
    taken
}

/// Takes the cursor table's lock. A live taker holds it for microseconds:
/// wait for it, up to [`TABLE_WAIT`]. A *shared* lock there is no
/// taker's (takers lock exclusively) but another program's, one that may
/// only read `meta` can take it: `Busy` at once, naming it, rather than
/// a wait without end (a blocking lock would hang here for as long as
/// that program likes).
fn lock_table(meta: &Meta, byte: u64) -> Result<()> {
    let file = meta.file.region().file();
    let err = |e| Error::io(&meta.origin(), "lock cursor table", e);
    let start = Instant::now();
    let mut backoff = Duration::from_micros(20);
    loop {
        if sys::lock::try_lock(file, LockKind::Exclusive, byte, 1).map_err(err)? {
            return Ok(());
        }
        let holder = sys::lock::holder(file, LockKind::Exclusive, byte, 1).map_err(err)?;
        if let Some(h) = holder.filter(|h| h.kind == LockKind::Shared) {
            let who = h
                .pid
                .map_or("another program".to_string(), |p| format!("process {p}"));
            return Err(Error::Busy {
                origin: meta.origin(),
                why: format!(
                    "{who} holds a shared lock on the cursor table's lock byte (mapshare locks it exclusively), so no cursor can be created"
                ),
            });
        }
        if start.elapsed() > TABLE_WAIT {
            return Err(Error::Timeout {
                origin: meta.origin(),
                what: "the durable cursor table's lock",
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(2));
    }
}

/// The longest wait for another process that creates a cursor.
const TABLE_WAIT: Duration = Duration::from_secs(5);

fn find(meta: &Meta, name: &str) -> Result<Option<(u64, u64)>> {
    for i in 0..MAX_CURSORS {
        if name_at(meta, i)?.as_deref() == Some(name) {
            return Ok(Some((i, meta.load(slot(i) + POS)?)));
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
            meta.word(slot(i) + NAME + 8 * w as u64)?.store(v, Relaxed);
        }
        meta.word(slot(i) + POS)?.store(start, Relaxed);
        state.store((name.len() as u64) << 8 | IN_USE, Release);
        meta.file.check_faults()?;
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
    meta.word(slot(i) + POS)?.store(pos, Release);
    // A `meta` cut behind our back takes the store into a zero page the
    // SIGBUS handler put there: report it, never "stored".
    meta.file.check_faults()
}

/// Tethers slot `i` to this process's lease in `meta`, at `pos`, letting
/// writers run at most `limit` numbers ahead. `Busy` if a live reader
/// holds the tether.
pub(crate) fn tether(meta: &Meta, i: u64, pos: u64, limit: u64) -> Result<()> {
    meta.file.lease().check_owner(meta.file.region())?;
    let me = meta.file.lease().token().raw();
    let t = meta.word(slot(i) + TETHER)?;
    let count = meta.word(TETHERS)?;
    for _ in 0..16 {
        let cur = t.load(Acquire);
        // Before any store: a reader refused here must not change the
        // live holder's position or limit (found in review).
        if cur != 0 && alive(meta, cur)? {
            return Err(Error::Busy {
                origin: meta.origin(),
                why: "another live reader holds this cursor's tether".into(),
            });
        }
        meta.word(slot(i) + LIVE)?.store(pos, Release);
        meta.word(slot(i) + LIMIT)?.store(limit.max(1), Release);
        // Counted before the token shows: every visible token has its
        // count, so writers that see 0 tethers skip nothing (counted
        // after, a reader killed in between left a live tether uncounted
        // and the next take-over of its slot none: found in review). A
        // reader killed right here leaves one too many, which only costs
        // writers the full check.
        count.fetch_add(1, AcqRel);
        if t.compare_exchange(cur, me, AcqRel, Acquire).is_ok() {
            if cur != 0 {
                // A dead holder's count is ours now.
                let _ = count.fetch_update(AcqRel, Acquire, |v| v.checked_sub(1));
            }
            return meta.file.check_faults();
        }
        let _ = count.fetch_update(AcqRel, Acquire, |v| v.checked_sub(1));
    }
    Err(Error::Busy {
        origin: meta.origin(),
        why: "the cursor's tether keeps changing".into(),
    })
}

/// Stores a tethered reader's live position.
pub(crate) fn tether_moved(meta: &Meta, i: u64, pos: u64) {
    if let Ok(w) = meta.word(slot(i) + LIVE) {
        w.store(pos, Release);
    }
}

/// Gives a tether back (a reader that is dropped).
pub(crate) fn untether(meta: &Meta, i: u64) {
    if !meta.file.lease().is_mine() {
        return; // a forked child: the tether is its parent's
    }
    let me = meta.file.lease().token().raw();
    if let Ok(t) = meta.word(slot(i) + TETHER) {
        if t.compare_exchange(me, 0, AcqRel, Acquire).is_ok() {
            if let Ok(n) = meta.word(TETHERS) {
                let _ = n.fetch_update(AcqRel, Acquire, |v| v.checked_sub(1));
            }
        }
    }
}

fn alive(meta: &Meta, token: u64) -> Result<bool> {
    let Some(t) = Token::from_raw(token) else {
        return Ok(false);
    };
    Ok(!matches!(
        meta.file.leases().liveness(t, Some(meta.file.lease()))?,
        Liveness::Dead { .. }
    ))
}

/// Whether any cursor may be tethered (one relaxed load).
#[inline]
pub(crate) fn any_tether(meta: &Meta) -> Result<bool> {
    Ok(meta.word(TETHERS)?.load(Relaxed) != 0)
}

/// The first live tether that `next_seq` is `limit` or more numbers ahead
/// of, as `(name, position)`; releases dead tethers it finds behind. One
/// relaxed load while no tether is set.
pub(crate) fn holding_back(meta: &Meta, next_seq: u64) -> Result<Option<(String, u64)>> {
    if !any_tether(meta)? {
        return Ok(None);
    }
    for i in 0..MAX_CURSORS {
        let t = meta.word(slot(i) + TETHER)?;
        let token = t.load(Acquire);
        if token == 0 {
            continue;
        }
        let live = meta.load(slot(i) + LIVE)?;
        let limit = meta.load(slot(i) + LIMIT)?.max(1);
        if next_seq.saturating_sub(live) < limit {
            continue;
        }
        if alive(meta, token)? {
            return Ok(Some((name_at(meta, i)?.unwrap_or_default(), live)));
        }
        // A dead tethered reader holds nothing back.
        if t.compare_exchange(token, 0, AcqRel, Acquire).is_ok() {
            let _ = meta
                .word(TETHERS)?
                .fetch_update(AcqRel, Acquire, |v| v.checked_sub(1));
        }
    }
    Ok(None)
}

/// Every well-formed cursor: name and position.
pub(crate) fn list(meta: &Meta) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for i in 0..MAX_CURSORS {
        if let Some(name) = name_at(meta, i)? {
            out.push((name, meta.load(slot(i) + POS)?));
        }
    }
    Ok(out)
}
