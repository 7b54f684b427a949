//! The two halves of the sleeper handshake, symmetric or asymmetric.
//!
//! A notifier changes a condition, then asks whether a waiter may be
//! parked (and skips the wake-up call if not); a waiter counts itself in a
//! `sleepers` word, then re-checks the condition, then parks. Each side
//! needs a full fence between its two steps, or both can miss each other
//! (the store-buffering shape; see `word::sleepers`).
//!
//! - [`Symmetric`]: each side pays. The notifier's check is a `SeqCst`
//!   read-modify-write of `sleepers` (a `lock`ed instruction on x86-64),
//!   once per notify, so once per record on a queue's hot path.
//! - [`Asymmetric`]: the notifier, which runs once per record, pays a
//!   compiler fence and a plain load; the waiter, which runs only when it
//!   is about to sleep (after spinning), pays
//!   `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every CPU
//!   running a registered process execute a full barrier before it
//!   returns. Why that is enough: the notifier's store and its load of
//!   `sleepers` stay in program order (the compiler fence), and the
//!   barrier the kernel forces on the notifier's CPU falls somewhere in
//!   its instruction stream. If it falls after the store, the waiter's
//!   re-check (after the syscall) sees the new condition; if before, the
//!   notifier's later load sees the waiter in `sleepers`. A notifier that
//!   was not running is past a context switch, a full barrier too. This is
//!   the pairing Linux's own RCU and folly's `asymmetricHeavyBarrier` use.
//!   It needs both processes registered ([`FenceMode::detect`]).
//!
//! The choice is made once per process when a queue is attached
//! ([`FenceMode::detect`]): asymmetric when this kernel has
//! `membarrier` (4.16 or later) and no seccomp filter forbids it, full
//! otherwise, or when the environment says `MAPSHARE_FENCES=full`. The
//! *notifier* takes the light half only if its peer is asymmetric too; a
//! queue stores each side's mode in the file for that.
//!
//! In the loom and Miri models the compiler fence of the light half is a
//! `SeqCst` fence (what the kernel's barrier makes of it at the one point
//! that matters, between the store and the load) and the heavy half is a
//! `SeqCst` fence; a model with the light half and no fence at all finds
//! the lost wake-up.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::word::{sleepers, Word};

/// One way of ordering the sleeper handshake.
pub trait Fences {
    /// Notifier, after changing the condition: whether a waiter may be
    /// parked on `sleepers` (then the caller wakes it).
    fn sleepers_present<W: Word>(&self, sleepers: &W) -> bool;
    /// Waiter, after counting itself in `sleepers` (a `SeqCst`
    /// read-modify-write) and before re-checking the condition.
    fn after_enter(&self);
}

/// Both halves pay a fence: the notifier's check is a `SeqCst` RMW.
#[derive(Debug, Clone, Copy, Default)]
pub struct Symmetric;

impl Fences for Symmetric {
    #[inline]
    fn sleepers_present<W: Word>(&self, s: &W) -> bool {
        sleepers::present(s)
    }
    #[inline]
    fn after_enter(&self) {}
}

/// The light half is a compiler fence, the heavy half `membarrier`. Only
/// sound between processes that both registered (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asymmetric;

impl Fences for Asymmetric {
    #[inline]
    fn sleepers_present<W: Word>(&self, s: &W) -> bool {
        std::sync::atomic::compiler_fence(SeqCst);
        s.load(Relaxed) != 0
    }
    #[inline]
    fn after_enter(&self) {
        // Registration succeeded when this mode was chosen, so the call
        // cannot fail for want of it; if it failed all the same, the
        // queue's waits are sliced (`PEER_CHECK`), so a missed wake-up
        // costs at most one slice, never a hang.
        let _ = crate::sys::membarrier::global_expedited();
    }
}

/// Which fences a process uses, chosen once when it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceMode {
    /// `membarrier` on the waiting side, a compiler fence on the hot path.
    Asymmetric,
    /// A `SeqCst` read-modify-write on each side.
    Full,
}

impl FenceMode {
    /// Registers this process for `membarrier` and says which mode it can
    /// use. `MAPSHARE_FENCES=full` in the environment forces [`FenceMode::Full`].
    pub fn detect() -> FenceMode {
        if std::env::var_os("MAPSHARE_FENCES").is_some_and(|v| v == "full") {
            return FenceMode::Full;
        }
        match crate::sys::membarrier::register_global_expedited() {
            Ok(()) => FenceMode::Asymmetric,
            Err(_) => FenceMode::Full,
        }
    }

    /// The code stored in shared memory (0 is "nobody has said").
    pub fn code(self) -> u64 {
        match self {
            FenceMode::Asymmetric => 1,
            FenceMode::Full => 2,
        }
    }

    /// The mode a stored code names; `None` for 0 or garbage.
    pub fn from_code(code: u64) -> Option<FenceMode> {
        match code {
            1 => Some(FenceMode::Asymmetric),
            2 => Some(FenceMode::Full),
            _ => None,
        }
    }

    /// What `mapshare info` prints.
    pub fn name(self) -> &'static str {
        match self {
            FenceMode::Asymmetric => "asymmetric (membarrier)",
            FenceMode::Full => "full fences",
        }
    }
}

/// The fences one side of a pair uses for a notify: asymmetric only if
/// both this process and its peer are (a peer whose mode is unknown, or
/// garbage, gets full fences).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<'a, P: super::Word64> {
    /// This process's mode.
    pub mine: FenceMode,
    /// The peer's mode word in shared memory.
    pub peer: &'a P,
}

impl<P: super::Word64> Fences for Pair<'_, P> {
    #[inline]
    fn sleepers_present<W: Word>(&self, s: &W) -> bool {
        if self.mine == FenceMode::Asymmetric
            && self.peer.load(Relaxed) == FenceMode::Asymmetric.code()
        {
            Asymmetric.sleepers_present(s)
        } else {
            Symmetric.sleepers_present(s)
        }
    }
    #[inline]
    fn after_enter(&self) {
        if self.mine == FenceMode::Asymmetric {
            Asymmetric.after_enter();
        }
    }
}
