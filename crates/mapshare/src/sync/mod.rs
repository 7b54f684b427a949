//! Process-shared synchronization living inside a mapping: a robust
//! [`Mutex`], a [`Semaphore`], an [`Event`]; and [`FileLock`], byte-range
//! locks that interoperate with `fcntl` users.
//!
//! All waits spin for a bounded, tunable time ([`Spin`]), then park on a
//! shared futex; uncontended operations make no system call. The
//! algorithms (`raw_mutex`, and the `Raw*` types) are written against the
//! [`Word`] and [`Park`] seam so loom can check them and heap-memory tests
//! (and Miri) can run them without a kernel.
//!
//! Every word these primitives share is read as untrusted input: a value
//! no protocol step can produce is reported as [`Error::Corrupted`], never
//! a panic or an endless loop.
//!
//! A [`Mutex`] is process-shared *and* thread-safe: its owner is a process
//! (a lease), and threads of that process wait for each other as with
//! `std::sync::Mutex`. Its raw constructor is `unsafe`, because a guard's
//! `&mut T` must be the only path to those bytes in this process.

mod event;
pub(crate) mod fence;
mod file_lock;
mod mutex;
pub(crate) mod raw_mutex;
mod semaphore;
#[cfg(test)]
pub(crate) mod testing;
mod word;

pub use event::{Event, RawEvent, Ticket, EVENT_LEN};
pub use fence::{FenceMode, Fences, Symmetric};
pub use file_lock::{FileLock, Holder, LockKind, RangeGuard};
pub use mutex::{observe as observe_mutex, Mutex, MutexGuard, MutexState};
pub use semaphore::{RawSemaphore, Semaphore, SEMAPHORE_LEN};
pub(crate) use word::spin_until;
pub use word::{Futex, Park, Spin, Wake, Word, Word64};

use crate::error::{Error, Origin};

/// Why a lock was not granted normally. The variants that carry a guard
/// *did* lock: the caller holds the mutex and must look at the data.
///
/// `?` converts it into a [`mapshare::Error`](crate::Error) (in a function
/// returning [`mapshare::Result`](crate::Result)); a guard it carries is
/// then released *without* changing the recovery state, so the mutex stays
/// `OwnerDied` or `Poisoned` for a locker that repairs it.
#[derive(Debug)]
pub enum LockError<G> {
    /// The previous holder died while holding the lock. The guard is held;
    /// repair the data and call `mark_consistent()`, or the mutex becomes
    /// [`LockError::NotRecoverable`] when the guard drops.
    OwnerDied(G),
    /// A previous holder panicked. The guard is held.
    Poisoned(G),
    /// A taker gave up on repairing it; the mutex can never be locked again
    /// (until a deliberate [`repair`](crate::shared::repair)).
    NotRecoverable {
        /// The file.
        origin: Origin,
    },
    /// `try_lock` found it held by a live process (or another thread of
    /// this one).
    WouldBlock {
        /// The file.
        origin: Origin,
    },
    /// The wait timed out.
    Timeout {
        /// The file.
        origin: Origin,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// Anything else: corrupted shared state, a forked child using its
    /// parent's lease, an OS error.
    Failed(Error),
}

/// The result of locking.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The guard, for the variants that hold the lock.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) | LockError::Poisoned(g) => Some(g),
            _ => None,
        }
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

impl<T: zerocopy::FromBytes + zerocopy::IntoBytes> From<LockError<MutexGuard<'_, T>>> for Error {
    fn from(e: LockError<MutexGuard<'_, T>>) -> Error {
        match e {
            LockError::OwnerDied(g) => {
                let origin = g.origin().clone();
                g.release_unchanged();
                Error::OwnerDied { origin }
            }
            LockError::Poisoned(g) => {
                let origin = g.origin().clone();
                g.release_unchanged();
                Error::Poisoned { origin }
            }
            LockError::NotRecoverable { origin } => Error::NotRecoverable { origin },
            LockError::WouldBlock { origin } => Error::Busy {
                origin,
                why: "the mutex is held by another process or thread".into(),
            },
            LockError::Timeout { origin, waited } => Error::Timeout {
                origin,
                what: "waiting for the mutex",
                waited,
            },
            LockError::Failed(e) => e,
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => write!(f, "the previous holder died while holding the lock"),
            LockError::Poisoned(_) => {
                write!(f, "a previous holder panicked while holding the lock")
            }
            LockError::NotRecoverable { origin } => {
                write!(f, "{origin}: the mutex is not recoverable")
            }
            LockError::WouldBlock { origin } => {
                write!(
                    f,
                    "{origin}: the mutex is held by another process or thread"
                )
            }
            LockError::Timeout { origin, waited } => {
                write!(
                    f,
                    "{origin}: timed out after {waited:?} waiting for the mutex"
                )
            }
            LockError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl<G: std::fmt::Debug> std::error::Error for LockError<G> {}
