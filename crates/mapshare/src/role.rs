//! Roles held through a lease: a shared `u64` word that names its holder
//! by lease token (0: nobody). Claimed by CAS, taken over from a holder
//! whose lease is dead, given back by CAS. Used by the queue's producer
//! and consumer roles and by the snapshot's writer role and reader
//! entries.
//!
//! # States of a role word
//!
//! | word | meaning | a claimant |
//! |---|---|---|
//! | 0 | free | CAS 0 → its token |
//! | token of a live lease | held | is refused ([`Error::RoleTaken`] naming the PID), or skips it |
//! | token of a dead lease | the holder died | CAS that token → its own |
//! | anything else | not a token: corrupted | gets [`Error::Corrupted`] |
//!
//! A word is read as untrusted input: loaded once, validated, then used.
//! "Dead" is the lease's verdict (its OFD lock is gone, or a PID in our
//! namespace no longer runs), never a timeout: a slow holder stays live.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

use crate::error::{Error, Result};
use crate::file::SharedFile;
use crate::lease::{Liveness, Token};
use crate::sys;

/// `(pid, alive)` of the process `token` names, this one included.
/// `what` names the word in the error for a value that is no token.
pub(crate) fn liveness(file: &SharedFile, token: u64, what: &'static str) -> Result<(u32, bool)> {
    let Some(t) = Token::from_raw(token) else {
        return Err(Error::Corrupted {
            origin: file.region().origin().clone(),
            what,
            why: format!("{token:#x} is not a lease token"),
        });
    };
    Ok(match file.leases().liveness(t, Some(file.lease()))? {
        Liveness::Me => (sys::pid(), true),
        Liveness::Alive { pid } => (pid, true),
        Liveness::Dead { pid } => (pid, false),
    })
}

/// Claims `word` for this process's lease: from 0, or from a dead holder.
/// A live holder (another process, or this one through another handle)
/// is [`Error::RoleTaken`] naming its PID. Bounded: each failed CAS means
/// another claimant moved the word, and after a few the claim gives up
/// with [`Error::Busy`].
pub(crate) fn claim(file: &SharedFile, word: &AtomicU64, role: &'static str) -> Result<()> {
    let me = file.lease().token().raw();
    for _ in 0..64 {
        let cur = word.load(Acquire);
        if cur != 0 {
            if let (pid, true) = liveness(file, cur, role)? {
                return Err(Error::RoleTaken {
                    origin: file.region().origin().clone(),
                    role,
                    pid,
                });
            }
        }
        if word.compare_exchange(cur, me, SeqCst, Relaxed).is_ok() {
            return Ok(());
        }
    }
    Err(Error::Busy {
        origin: file.region().origin().clone(),
        why: format!("the {role} role keeps changing hands"),
    })
}

/// Claims `word` only if it is free: no system call. `Ok(false)` if it is
/// held (live or dead).
pub(crate) fn claim_free(file: &SharedFile, word: &AtomicU64) -> bool {
    let me = file.lease().token().raw();
    word.load(Relaxed) == 0 && word.compare_exchange(0, me, SeqCst, Relaxed).is_ok()
}

/// Claims `word` if its holder is dead (checks the lease); `Ok(false)` if
/// it is free, live, or was taken first by someone else.
pub(crate) fn claim_dead(file: &SharedFile, word: &AtomicU64, what: &'static str) -> Result<bool> {
    let me = file.lease().token().raw();
    let cur = word.load(Acquire);
    if cur == 0 || cur == me {
        return Ok(false);
    }
    if liveness(file, cur, what)?.1 {
        return Ok(false);
    }
    Ok(word.compare_exchange(cur, me, SeqCst, Relaxed).is_ok())
}

/// Gives `word` back if this lease holds it. Never in a forked child
/// (the word names the parent).
pub(crate) fn unclaim(file: &SharedFile, word: &AtomicU64) {
    if !file.lease().is_mine() {
        return;
    }
    let me = file.lease().token().raw();
    let _ = word.compare_exchange(me, 0, SeqCst, Relaxed);
}

/// Whether this lease holds `word` now (it may have been taken over if we
/// were judged dead).
#[inline]
pub(crate) fn holds(file: &SharedFile, word: &AtomicU64) -> bool {
    word.load(Relaxed) == file.lease().token().raw()
}
