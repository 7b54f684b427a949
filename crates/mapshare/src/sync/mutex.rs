//! A robust, process-shared `Mutex<T>` living inside a mapshare file.
//!
//! # Layout
//!
//! | offset | |
//! |---|---|
//! | 0 | lock word, `u64` (see `raw_mutex` for its state table) |
//! | 8 | sequence word, `u32`: waiters park on it |
//! | 12 | state word, `u32`: consistent, owner died, not recoverable, poisoned |
//! | `max(16, align_of::<T>())` | the `T` |
//!
//! Zero-filled memory is an unlocked, consistent mutex over an all-zero `T`.
//!
//! The lock word stores the holder's lease token (slot and generation), so
//! when the holder dies, however it dies, the next locker finds its lease
//! dead and takes over with [`LockError::OwnerDied`] within one
//! owner-check interval (20 ms) of parking. See `lease` for why a token
//! never names a later process, and how liveness works across PID
//! namespaces.
//!
//! See [`Mutex`] for threads, `fork()` and when a guard's references are
//! sound.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, IntoBytes};

use super::raw_mutex::{self, Acquired, Owner, RawMutex, Refused};
use super::word::{Futex, Spin};
use super::LockError;
use crate::error::{Error, Origin, Result};
use crate::file::SharedFile;
use crate::lease::{Lease, LeaseTable, Liveness, Token};
use crate::region::Region;

/// Offset of the sequence word.
const SEQ_AT: u64 = 8;
/// Offset of the state word.
const STATE_AT: u64 = 12;

/// What a mutex is doing, as an observer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexState {
    /// Nobody holds it.
    Free,
    /// Held by the process `pid`.
    Held {
        /// The holder's PID (from its lease slot, in its own PID
        /// namespace).
        pid: u32,
        /// Whether that process is alive; if not, the next locker takes
        /// over with `OwnerDied`.
        alive: bool,
    },
    /// Taken over from a dead owner and not yet marked consistent.
    OwnerDied,
    /// A holder panicked.
    Poisoned,
    /// Given up on: every lock fails.
    NotRecoverable,
}

impl std::fmt::Display for MutexState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MutexState::Free => write!(f, "free"),
            MutexState::Held { pid, alive: true } => write!(f, "held by pid {pid}"),
            MutexState::Held { pid, alive: false } => {
                write!(f, "held by pid {pid}, which died (owner died)")
            }
            MutexState::OwnerDied => write!(f, "owner died, not yet marked consistent"),
            MutexState::Poisoned => write!(f, "poisoned (a holder panicked)"),
            MutexState::NotRecoverable => write!(f, "not recoverable"),
        }
    }
}

/// Reads the state of the mutex whose lock word is at `offset` of `region`.
/// Works on read-only mappings, without a lease.
pub fn observe(region: &Region, leases: &LeaseTable<'_>, offset: u64) -> Result<MutexState> {
    observe_as(region, leases, offset, None)
}

/// [`observe`] by a process attached through `me`: its own lock (which a
/// lock probe cannot see, since a description never conflicts with
/// itself) is reported as held by it, alive.
fn observe_as(
    region: &Region,
    leases: &LeaseTable<'_>,
    offset: u64,
    me: Option<&Lease>,
) -> Result<MutexState> {
    let word = region.load_u64(offset, Acquire)?;
    let state = region.load_u32(offset + STATE_AT, Acquire)?;
    match state {
        raw_mutex::NOT_RECOVERABLE => return Ok(MutexState::NotRecoverable),
        raw_mutex::CONSISTENT | raw_mutex::OWNER_DIED | raw_mutex::POISONED => {}
        other => {
            return Err(Error::Corrupted {
                origin: region.origin().clone(),
                what: "mutex state",
                why: format!("{other:#x}"),
            })
        }
    }
    let holder = word & !raw_mutex::WAITERS;
    if holder != 0 {
        let token = Token::from_raw(holder).ok_or_else(|| Error::Corrupted {
            origin: region.origin().clone(),
            what: "lock word",
            why: format!("{word:#x} names no lease"),
        })?;
        return Ok(match leases.liveness(token, me)? {
            Liveness::Alive { pid } => MutexState::Held { pid, alive: true },
            Liveness::Dead { pid } => MutexState::Held { pid, alive: false },
            // The attached process (in a forked child that inherited the
            // lease: its parent, the real holder).
            Liveness::Me => MutexState::Held {
                pid: me.map_or_else(crate::sys::pid, |l| l.pid()),
                alive: true,
            },
        });
    }
    Ok(match state {
        raw_mutex::OWNER_DIED => MutexState::OwnerDied,
        raw_mutex::POISONED => MutexState::Poisoned,
        _ => MutexState::Free,
    })
}

/// A robust mutex over a `T` at an offset of a mapshare file.
///
/// `T` must accept any bytes ([`FromBytes`]): another process, or an old
/// version of this one, wrote them. Threads and processes contend alike.
///
/// # Threads, `fork()`
///
/// The lock word names the holding process (its lease), which all its threads share:
/// threads of one process wait for each other as with `std::sync::Mutex`,
/// and one holder at a time holds it overall. Locking again on the thread
/// that holds the guard deadlocks, as with std (`try_lock` says
/// `WouldBlock`). A guard inherited by a forked child is inert: dropping it
/// there neither unlocks nor marks anything, since the parent still holds
/// the lock.
///
/// # References into shared memory
///
/// A guard derefs to `&T` and `&mut T` over the mapped bytes. That is sound
/// only while **every** process that maps the file follows the protocol:
/// nobody touches the `T` without holding the lock. A hostile or buggy
/// peer that writes without the lock, or a holder wrongly judged dead (a
/// frozen process whose lease lock was somehow dropped), breaks Rust's
/// aliasing rules for the `&mut T` you hold, and the compiler may then
/// return stale values. When the peers are not trusted, copy the value out
/// instead: [`MutexGuard::copy_out`] and [`Shared::load`](crate::Shared::load)
/// read the bytes with volatile loads and never form a `&T` over them.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::sync::Mutex;
/// use mapshare::{Fingerprint, Kind, SharedFile, Spec};
/// let dir = tempfile::tempdir().unwrap();
/// let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
/// let file = SharedFile::open_or_create(dir.path().join("f"), &spec, |_, _| Ok(()))?;
/// // SAFETY: these bytes of the object are used only as this mutex.
/// let counter = unsafe { Mutex::<u64>::at(&file, file.object_offset())? };
///
/// // `?` turns a `LockError` into a `mapshare::Error` naming the file.
/// fn bump(counter: &Mutex<'_, u64>) -> mapshare::Result<u64> {
///     let mut n = counter.lock()?;
///     *n += 1;
///     Ok(*n)
/// }
/// assert_eq!(bump(&counter)?, 1);
/// assert_eq!(bump(&counter)?, 2);
/// # Ok(()) }
/// ```
pub struct Mutex<'f, T> {
    file: &'f SharedFile,
    offset: u64,
    word: &'f AtomicU64,
    seq: &'f AtomicU32,
    state: &'f AtomicU32,
    spin: Spin,
    /// Send and Sync exactly when `std::sync::Mutex<T>` is: the `T` is
    /// handed from thread to thread.
    _t: PhantomData<std::sync::Mutex<T>>,
}

impl<'f, T: FromBytes + IntoBytes> Mutex<'f, T> {
    /// Where the `T` starts, relative to the lock word.
    pub const fn data_offset() -> u64 {
        let align = std::mem::align_of::<T>() as u64;
        if align > 16 {
            align
        } else {
            16
        }
    }

    /// Bytes the mutex and its `T` occupy.
    pub const fn footprint() -> u64 {
        Self::data_offset() + std::mem::size_of::<T>() as u64
    }

    /// The mutex whose lock word is at `offset` (an offset into the file's
    /// region, aligned for `T` and to 8).
    ///
    /// # Safety
    ///
    /// The [`footprint`](Self::footprint) bytes at `offset` are used by
    /// this process only as this mutex (through this or other `Mutex<T>`
    /// values at the same offset): no overlapping `Mutex`, `Event`,
    /// `Semaphore`, queue or raw region access (`SharedFile::raw_region`)
    /// touches them. Otherwise a guard's `&mut T` could alias bytes read or
    /// written through another path, which is undefined behaviour.
    ///
    /// Safe code cannot place a mutex over arbitrary bytes (issue 7, B6;
    /// this must not compile):
    ///
    /// ```compile_fail,E0133
    /// # fn main() -> Result<(), mapshare::Error> {
    /// use mapshare::{sync::Mutex, Fingerprint, Kind, SharedFile, Spec};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
    /// let file = SharedFile::open_or_create(dir.path().join("f"), &spec, |_, _| Ok(()))?;
    /// let _m = Mutex::<u64>::at(&file, file.object_offset())?;
    /// # Ok(()) }
    /// ```
    pub unsafe fn at(file: &'f SharedFile, offset: u64) -> Result<Mutex<'f, T>> {
        let region = file.region();
        let word = region.atomic64(offset)?;
        let seq = region.atomic32(offset + SEQ_AT)?;
        let state = region.atomic32(offset + STATE_AT)?;
        let data = offset + Self::data_offset();
        let len = std::mem::size_of::<T>();
        let end = data.checked_add(len as u64);
        if end.is_none_or(|e| e > region.len() as u64) {
            return Err(Error::OutOfBounds {
                origin: region.origin().clone(),
                offset: data,
                len: len as u64,
                region_len: region.len() as u64,
            });
        }
        let addr = region.as_ptr() as usize + data as usize;
        if !addr.is_multiple_of(std::mem::align_of::<T>()) {
            return Err(Error::Misaligned {
                origin: region.origin().clone(),
                offset: data,
                align: std::mem::align_of::<T>(),
                addr,
            });
        }
        Ok(Mutex {
            file,
            offset,
            word,
            seq,
            state,
            spin: Spin::default(),
            _t: PhantomData,
        })
    }

    /// Sets how long a locker spins before parking.
    pub fn with_spin(mut self, spin: Spin) -> Self {
        self.spin = spin;
        self
    }

    fn lease(&self) -> &'f Lease {
        self.file.lease()
    }

    fn raw(&self) -> RawMutex<'f, AtomicU64, AtomicU32> {
        RawMutex {
            word: self.word,
            seq: self.seq,
            state: self.state,
        }
    }

    fn run(
        &self,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> super::LockResult<MutexGuard<'f, T>> {
        let file = self.file;
        let lease = self.lease();
        lease.check_owner(file.region())?;
        let raw = self.raw();
        // Only the slow path asks about owners: build the table view there.
        // Our own token means another thread of this process: wait.
        let owner = |holder: u64| match Token::from_raw(holder) {
            None => Owner::Invalid,
            Some(t) => match file.leases().liveness(t, Some(lease)) {
                Ok(Liveness::Me | Liveness::Alive { .. }) => Owner::Alive,
                Ok(Liveness::Dead { .. }) => Owner::Dead,
                Err(_) => Owner::Invalid,
            },
        };
        let me = lease.token().raw();
        let start = deadline.map(|_| Instant::now());
        let outcome = if try_only {
            raw.try_lock(me, owner, &Futex)
        } else {
            raw.lock(me, deadline, self.spin, owner, &Futex)
        };
        let guard = |recovering| self.guard(recovering);
        if outcome == Ok(Acquired::Clean) {
            return Ok(guard(false));
        }
        Self::unusual(file, outcome, start, guard)
    }

    #[cold]
    fn unusual(
        file: &'f SharedFile,
        outcome: std::result::Result<Acquired, Refused>,
        start: Option<Instant>,
        guard: impl Fn(bool) -> MutexGuard<'f, T>,
    ) -> super::LockResult<MutexGuard<'f, T>> {
        let origin = || file.region().origin().clone();
        match outcome {
            Ok(Acquired::Clean) => Ok(guard(false)),
            Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(guard(true))),
            Ok(Acquired::Poisoned) => Err(LockError::Poisoned(guard(false))),
            Err(Refused::WouldBlock) => Err(LockError::WouldBlock { origin: origin() }),
            Err(Refused::Timeout) => Err(LockError::Timeout {
                origin: origin(),
                waited: start.map(|s| s.elapsed()).unwrap_or_default(),
            }),
            Err(Refused::NotRecoverable) => Err(LockError::NotRecoverable { origin: origin() }),
            Err(Refused::Corrupted(why)) => Err(LockError::Failed(Error::Corrupted {
                origin: origin(),
                what: "mutex",
                why,
            })),
        }
    }

    /// Locks, waiting as long as it takes. A dead holder is detected and
    /// taken over ([`LockError::OwnerDied`]). Another thread of this
    /// process holding it is waited for; this thread holding it deadlocks.
    #[inline(always)]
    pub fn lock(&self) -> super::LockResult<MutexGuard<'f, T>> {
        // Fast path, inline: not a forked child, one CAS on a free word,
        // a consistent state. Everything else is out of line. (The same
        // steps as `RawMutex::lock` + `acquired`, written out here because
        // going through `run` costs 1.5-1.9x std instead of 1.1x: measured
        // with `cargo bench -p mapshare --bench lock`.)
        let lease = self.lease();
        let me = lease.token().raw();
        if lease.is_mine() && self.word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
            if self.state.load(Acquire) == raw_mutex::CONSISTENT {
                return Ok(self.guard(false));
            }
            return self.locked_unusual(me);
        }
        self.run(None, false)
    }

    #[inline]
    fn guard(&self, recovering: bool) -> MutexGuard<'f, T> {
        // Derived from the mapping's own pointer, not from `self.word`: a
        // pointer taken from a `&AtomicU64` may only reach those 8 bytes
        // (Stacked Borrows), and the guard reaches the state word and the
        // data from it.
        let word = self
            .file
            .region()
            .as_ptr()
            .wrapping_add(self.offset as usize)
            .cast::<AtomicU64>();
        MutexGuard {
            file: self.file,
            word,
            recovering,
            _t: PhantomData,
        }
    }

    /// The fast path took the word but the state is not consistent: let
    /// the algorithm decide (owner died, poisoned, or not recoverable,
    /// which releases the lock again).
    #[cold]
    fn locked_unusual(&self, me: u64) -> super::LockResult<MutexGuard<'f, T>> {
        let outcome = self.raw().acquired(me, &Futex);
        Self::unusual(self.file, outcome, None, |recovering| {
            self.guard(recovering)
        })
    }

    /// Locks if that is possible without waiting for a live holder (this
    /// process's other threads included).
    pub fn try_lock(&self) -> super::LockResult<MutexGuard<'f, T>> {
        self.run(None, true)
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> super::LockResult<MutexGuard<'f, T>> {
        self.run(Instant::now().checked_add(timeout), false)
    }

    /// What the mutex is doing now.
    pub fn state(&self) -> Result<MutexState> {
        observe_as(
            self.file.region(),
            &self.file.leases(),
            self.offset,
            Some(self.lease()),
        )
    }

    /// Turns a NOT_RECOVERABLE mutex back into a consistent, free one: the
    /// deliberate way out after a person has checked the data. Fails with
    /// [`Error::RepairNotApplicable`] in any other state.
    pub(crate) fn reset_not_recoverable(&self) -> Result<MutexState> {
        // Nobody can hold a NOT_RECOVERABLE mutex for long (lockers give
        // it back at once), so the state CAS decides alone.
        match self.state.compare_exchange(
            raw_mutex::NOT_RECOVERABLE,
            raw_mutex::CONSISTENT,
            Release,
            Acquire,
        ) {
            Ok(_) => self.state(),
            Err(_) => Err(Error::RepairNotApplicable {
                origin: self.file.region().origin().clone(),
                repair: "reset",
                state: self.state()?.to_string(),
            }),
        }
    }
}

/// Exclusive access to the `T` while the lock is held. Dropping it unlocks
/// (in the process that locked; in a forked child it does nothing).
pub struct MutexGuard<'f, T: FromBytes + IntoBytes> {
    // Three words on purpose: a guard is moved through every `LockResult`,
    // and a small one keeps the uncontended path cheap. The sequence and
    // state words, the data and our token are derived from these.
    file: &'f SharedFile,
    /// The lock word, a pointer into `file`'s mapping with the whole
    /// mapping's provenance; the sequence and state words and the data
    /// follow it (`Mutex::at` checked all three and the data).
    word: *const AtomicU64,
    /// Given out with `OwnerDied` and not yet marked consistent.
    recovering: bool,
    _t: PhantomData<*mut T>,
}

impl<'f, T: FromBytes + IntoBytes> MutexGuard<'f, T> {
    #[inline]
    fn lease(&self) -> &'f Lease {
        self.file.lease()
    }

    /// The token this process stores in the lock word.
    #[inline]
    fn me(&self) -> u64 {
        self.file.lease().token().raw()
    }

    #[inline]
    fn state(&self) -> &'f AtomicU32 {
        // SAFETY: `self.word` was checked by `Mutex::at` and the mapping
        // lives for `'f` (the guard borrows `file`).
        unsafe { word32(self.word, STATE_AT) }
    }

    #[inline]
    fn word(&self) -> &'f AtomicU64 {
        // SAFETY: `Mutex::at` checked the lock word: in bounds, 8-aligned,
        // only ever accessed as an `AtomicU64`; the mapping lives for `'f`.
        unsafe { &*self.word }
    }

    /// Declares the protected data repaired after [`LockError::OwnerDied`]
    /// or [`LockError::Poisoned`]: the mutex is normal again. If a guard
    /// given out with `OwnerDied` is dropped without this, the mutex
    /// becomes not recoverable. Does nothing in a forked child.
    pub fn mark_consistent(&mut self) {
        if !self.lease().is_mine() {
            return;
        }
        self.state().store(raw_mutex::CONSISTENT, Release);
        self.recovering = false;
    }

    /// The file the mutex lives in (for error messages).
    pub fn origin(&self) -> &Origin {
        self.file.region().origin()
    }

    /// A copy of the `T`, read with volatile byte loads: sound even if a
    /// peer that ignores the lock writes the bytes meanwhile (the copy may
    /// then mix old and new bytes, which `FromBytes` makes a valid `T`).
    pub fn copy_out(&self) -> T {
        let mut value = T::new_zeroed();
        let dst = value.as_mut_bytes();
        let src = self.data().cast::<u8>();
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: `src..src + size_of::<T>()` is inside the mapping
            // (checked in `Mutex::at`), which outlives `'f`; a volatile read
            // of a byte creates no reference to shared memory.
            *b = unsafe { std::ptr::read_volatile(src.add(i)) };
        }
        value
    }

    /// Unlocks without touching the recovery state: an `OwnerDied` or
    /// `Poisoned` mutex stays so, for a locker that means to repair it.
    pub(crate) fn release_unchanged(mut self) {
        self.recovering = false;
        // `Drop` unlocks; outside a panic it marks nothing else.
    }

    fn data(&self) -> *mut T {
        // In bounds and aligned: checked in `Mutex::at`.
        self.word
            .cast::<u8>()
            .wrapping_add(Mutex::<T>::data_offset() as usize)
            .cast::<T>()
            .cast_mut()
    }
}

impl<T: FromBytes + IntoBytes> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `data()` is in bounds and aligned for `T` (checked in
        // `Mutex::at`) in a read-write mapping that outlives `'f`; `T` is
        // valid for any bytes (`FromBytes`); `Mutex::at`'s contract keeps
        // every other path of this process off these bytes, and while this
        // guard lives the lock keeps processes that follow the protocol off
        // them (see the module docs for peers that do not).
        unsafe { &*self.data() }
    }
}

impl<T: FromBytes + IntoBytes> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // from this process.
        unsafe { &mut *self.data() }
    }
}

impl<T: FromBytes + IntoBytes> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Fast path, inline: a normal unlock by the process that locked,
        // with nobody parked.
        if !self.recovering
            && self.lease().is_mine()
            && !std::thread::panicking()
            && self
                .word()
                .compare_exchange(self.me(), 0, Release, Relaxed)
                .is_ok()
        {
            return;
        }
        drop_slow(self.file, self.word, self.recovering);
    }
}

/// A guard's unusual drop: a forked child's copy (does nothing), a
/// recovering or panicking holder (marks the state first), or waiters to
/// wake. Takes the guard's parts by value, not the guard, so that the
/// guard's address never escapes the inlined fast path and it can live in
/// registers.
#[cold]
#[inline(never)]
fn drop_slow(file: &SharedFile, word: *const AtomicU64, recovering: bool) {
    let lease = file.lease();
    if !lease.is_mine() {
        // A forked child's copy: the parent still holds the lock.
        return;
    }
    // SAFETY: `word` is a guard's lock word, checked by `Mutex::at`, and
    // `file` (its mapping) is borrowed for this call.
    let raw = unsafe { raw_at(word) };
    if recovering {
        raw.state.store(raw_mutex::NOT_RECOVERABLE, Release);
    } else if std::thread::panicking() {
        // Never overwrite OWNER_DIED or NOT_RECOVERABLE with POISONED.
        let _ = raw.state.compare_exchange(
            raw_mutex::CONSISTENT,
            raw_mutex::POISONED,
            Release,
            Acquire,
        );
    }
    raw.unlock(lease.token().raw(), &Futex);
}

/// The `u32` word `at` bytes past a lock word that `Mutex::at` checked.
///
/// # Safety
///
/// `word` points at the lock word of a mutex that `Mutex::at` checked, with
/// the provenance of the whole mapping (not derived from a `&AtomicU64`),
/// and the mapping outlives `'a`.
#[inline]
unsafe fn word32<'a>(word: *const AtomicU64, at: u64) -> &'a AtomicU32 {
    let p = word
        .cast::<u8>()
        .wrapping_add(at as usize)
        .cast::<AtomicU32>();
    // SAFETY: `Mutex::at` checked that the sequence (+8) and state (+12)
    // words lie in the mapping, 4-aligned (the lock word is 8-aligned);
    // the caller vouches for provenance and lifetime, and these words are
    // only ever accessed as `AtomicU32`s.
    unsafe { &*p }
}

/// The algorithm's view of the mutex whose checked lock word is `word`.
///
/// # Safety
///
/// As for [`word32`].
#[inline]
unsafe fn raw_at<'a>(word: *const AtomicU64) -> RawMutex<'a, AtomicU64, AtomicU32> {
    // SAFETY: the caller's contract is `word32`'s, which covers the lock
    // word too (8-aligned, in bounds, only accessed as an `AtomicU64`).
    unsafe {
        RawMutex {
            word: &*word,
            seq: word32(word, SEQ_AT),
            state: word32(word, STATE_AT),
        }
    }
}

impl<T: FromBytes + IntoBytes> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexGuard")
            .field("word", &self.word)
            .field("recovering", &self.recovering)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock probe cannot see this process's own lease lock (a
    /// description never conflicts with itself): `state()` once reported
    /// a mutex this process held as held by a dead process.
    #[test]
    #[cfg_attr(miri, ignore)] // OFD locks
    fn a_mutex_this_process_holds_is_held_by_a_live_process() {
        use crate::format::{Fingerprint, Kind};
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::file::Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
        let file = SharedFile::open_or_create(dir.path().join("m"), &spec, |_, _| Ok(())).unwrap();
        // SAFETY: nothing else uses these bytes.
        let m = unsafe { Mutex::<u64>::at(&file, file.object_offset()) }.unwrap();
        assert_eq!(m.state().unwrap(), MutexState::Free);
        let g = m.lock().unwrap();
        let me = crate::sys::pid();
        assert_eq!(
            m.state().unwrap(),
            MutexState::Held {
                pid: me,
                alive: true
            }
        );
        drop(g);
        assert_eq!(m.state().unwrap(), MutexState::Free);
    }

    /// The guard reaches the sequence word, the state word and the data
    /// from its lock-word pointer. Under Miri (Stacked Borrows) this is
    /// sound only if that pointer carries the whole mapping's provenance;
    /// one taken from a `&AtomicU64` (as the guard once did) may only reach
    /// those 8 bytes, and Miri reports the retag of the state word.
    #[test]
    fn words_derived_from_the_lock_word_pointer_are_reachable() {
        let mut buf = vec![0u64; 8];
        let base = buf.as_mut_ptr().cast::<u8>();
        // As `Mutex::at` would: a checked lock word, here at offset 16.
        let word = base.wrapping_add(16).cast::<AtomicU64>().cast_const();
        // SAFETY: `word` is 8-aligned and in bounds with 16 more bytes, has
        // the buffer's provenance, and `buf` outlives `raw`; nothing else
        // touches these bytes meanwhile.
        let raw = unsafe { raw_at(word) };
        raw.word.store(7, Release);
        raw.seq.store(8, Release);
        raw.state.store(raw_mutex::POISONED, Release);
        assert_eq!(raw.word.load(Acquire), 7);
        assert_eq!(raw.seq.load(Acquire), 8);
        assert_eq!(raw.state.load(Acquire), raw_mutex::POISONED);
        drop(buf);
    }
}
