//! mapshare: share data between processes on one machine through
//! memory-mapped files, safely and fast.
//!
//! The crate is built in layers, each a module, bottom to top:
//!
//! - `sys` (internal): the only code that calls the operating system
//!   directly (futexes on shared words, OFD byte-range locks, `fallocate`,
//!   memfd seals, `mincore`, the SIGBUS handler).
//! - [`region`]: a mapping of any window of a file, or of an anonymous
//!   shared memfd: create, grow, refresh, flush, advise, residency,
//!   prefault, and bounds-checked access that never hands out `&[u8]` over
//!   bytes another process may be writing.
//! - [`shm`]: named regions under `/dev/shm`.
//! - [`format`](mod@format): the self-describing header of mapshare files; [`file`](mod@file):
//!   the create-or-open protocol ([`SharedFile`]).
//! - `lease` (internal): which processes are attached to a file, and
//!   whether they are alive.
//! - [`sync`]: a robust process-shared [`sync::Mutex`], a
//!   [`sync::Semaphore`], an [`sync::Event`], and byte-range
//!   [`sync::FileLock`]s.
//! - [`shared`]: [`Shared<T>`], a typed value persisted in a file.
//! - [`queue`]: a zero-copy single-producer single-consumer queue of
//!   variable-length records, crash-safe and hardened against a hostile
//!   peer.
//! - [`snapshot`]: one writer publishes whole values to any number of
//!   readers, who read the latest one in place, never torn, without
//!   slowing the writer.
//! - [`log`]: a persistent broadcast log in segment files: many writers,
//!   many independent readers with durable cursors, retention.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mapshare::{Access, Region};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("greeting");
//! std::fs::write(&path, b"Hello, mmap!")?;
//!
//! let mut region = Region::open(&path)?;
//! region.write_at(0, b"J")?;
//! region.flush()?;
//! assert_eq!(std::fs::read(&path)?, b"Jello, mmap!");
//! # Ok(()) }
//! ```
//!
//! Internals that mapshare's own CLI, benchmarks and tests reach into
//! (system-call wrappers, the lease table, the lock-word and ring
//! algorithms) live under [`unstable`]: no stability promise.
//!
//! # Non-goals
//!
//! - Portability beyond Linux: mapshare relies on futexes, OFD locks,
//!   memfd seals and `fallocate`.
//! - Sharing between machines: network file systems do not keep mappings
//!   coherent.
//! - Protecting against a peer with the same privileges that unmaps,
//!   truncates or rewrites files on purpose: mapshare detects and reports
//!   what it can, and never trusts bytes in shared memory, but it cannot
//!   make another process behave.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod copy;
mod crc;
pub mod error;
pub mod file;
pub mod format;
mod lease;
pub mod log;
pub mod queue;
pub mod region;
mod role;
pub mod shared;
pub mod shm;
pub mod snapshot;
pub mod sync;
mod sys;

pub mod unstable {
    //! Internals, **not covered by any stability promise**: they change
    //! whenever the algorithms do. They are public only so that mapshare's
    //! own CLI, benchmarks, loom models and tests can reach them. Use the
    //! objects at the crate root and in [`sync`](crate::sync),
    //! [`queue`](crate::queue) and [`shared`](crate::shared) instead.

    /// System-call wrappers (futex, OFD locks, memfd, `/proc` probes).
    pub mod sys {
        pub use crate::sys::*;
    }
    /// The lease table: slots, tokens, liveness.
    ///
    /// Taking a slot is crate-private: in a full table, an attach from
    /// safe code re-took this process's own slot (its lock does not
    /// conflict with itself), which made every mutex this process held
    /// look dead to other lockers (two holders, two `&mut T`); on a
    /// `Region` the caller also reads, its stores raced plain reads.
    ///
    /// ```compile_fail,E0624
    /// # fn main() -> mapshare::Result<()> {
    /// use mapshare::{Fingerprint, Kind, SharedFile, Spec};
    /// let dir = tempfile::tempdir().unwrap();
    /// let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
    /// let file = SharedFile::open_or_create(dir.path().join("f"), &spec, |_, _| Ok(()))?;
    /// let _second = file.leases().attach_within(0..64)?;
    /// # Ok(()) }
    /// ```
    pub mod lease {
        pub use crate::lease::*;
    }
    /// The robust lock-word algorithm over any [`Word64`](crate::sync::Word64).
    pub mod raw_mutex {
        pub use crate::sync::raw_mutex::*;
    }
    /// The queue's position protocol and record format over any memory.
    pub mod ring {
        pub use crate::queue::ring::*;
    }
    /// The snapshot's pin/validate/publish protocol over any
    /// [`Word64`](crate::sync::Word64), and its control-block parser.
    pub mod pin {
        pub use crate::snapshot::protocol::*;
    }
    /// The log segment protocol (reserve, claim, commit, abort, repair)
    /// over any memory of 64-bit words.
    pub mod log_protocol {
        pub use crate::log::protocol::*;
    }
}

pub use error::{Error, Origin, Result};
pub use file::{Inspection, SharedFile, Spec};
pub use format::{Fingerprint, Kind};
pub use region::{Access, Flush, Hint, Refresh, Region, RegionOptions, Residency};
pub use shared::{Persistent, Shared};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
