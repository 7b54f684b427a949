//! Futex wait and wake on a word that other *processes* may share.
//!
//! `futex(2)` with `FUTEX_WAIT` / `FUTEX_WAKE` and never
//! `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the virtual address in
//! one process and would never see a waker in another process. A shared
//! futex is keyed by the page's backing object and offset, so it works for
//! any `MAP_SHARED` mapping of the same file or memfd, wherever each process
//! maps it.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Why [`wait`] returned. Any of them may be spurious: callers re-check the
/// word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken by [`wake`] (or spuriously, or by a signal).
    Woken,
    /// The word did not hold `expected` when the kernel looked.
    Changed,
    /// `timeout` elapsed.
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (`None`: no limit).
///
/// `futex(word, FUTEX_WAIT, expected, timeout)`; see `futex(2)`.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<Wake> {
    let ts = timeout.map(|d| rustix::thread::futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => Ok(Wake::Woken),
        Err(rustix::io::Errno::AGAIN) => Ok(Wake::Changed),
        Err(rustix::io::Errno::TIMEDOUT) => Ok(Wake::TimedOut),
        Err(rustix::io::Errno::INTR) => Ok(Wake::Woken),
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `count` processes or threads sleeping in [`wait`] on `word`;
/// returns how many were woken.
///
/// `futex(word, FUTEX_WAKE, count)`; see `futex(2)`.
pub fn wake(word: &AtomicU32, count: u32) -> io::Result<usize> {
    futex::wake(word, futex::Flags::empty(), count).map_err(io::Error::from)
}

/// Wakes every sleeper on `word`.
pub fn wake_all(word: &AtomicU32) -> io::Result<usize> {
    wake(word, i32::MAX as u32)
}
