//! [`Anonymous`] queues: a memfd shared by a parent and its children.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use super::{check_capacity, open_or_create, Consumer, Producer};
use crate::error::{Error, Origin, Result};
use crate::sys;

/// An anonymous queue (a memfd, sealed against shrinking) for a parent and
/// the children it spawns. Open the two ends with [`Anonymous::producer`]
/// and [`Anonymous::consumer`] here, or in a child with
/// [`Producer::from_inherited`] / [`Consumer::from_inherited`].
///
/// The queue has no name in the file system: it lives as long as some
/// process holds its descriptor or a mapping of it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::queue::Anonymous;
/// use std::process::Command;
///
/// let q = Anonymous::new(64 * 1024)?;
/// let mut tx = q.producer()?;
///
/// // A child would call `Consumer::from_inherited("JOBS_FD")`:
/// let mut child = Command::new("my-worker");
/// q.share_with(&mut child, "JOBS_FD");
///
/// // Here both ends live in one process.
/// let mut rx = q.consumer()?;
/// tx.send(b"job 1").map_err(|e| e.to_string())?;
/// assert_eq!(&*rx.recv()?, b"job 1");
/// # Ok(()) }
/// ```
pub struct Anonymous {
    memfd: File,
    _not_sync: PhantomData<*const ()>,
}

impl Anonymous {
    /// Creates an anonymous queue with `capacity` bytes of ring.
    pub fn new(capacity: u64) -> Result<Anonymous> {
        let origin = Origin::anonymous("mapshare-queue");
        check_capacity(&origin, capacity)?;
        let fd = sys::memfd("mapshare-queue").map_err(|e| Error::io(&origin, "memfd_create", e))?;
        let memfd = File::from(fd);
        let a = Anonymous {
            memfd,
            _not_sync: PhantomData,
        };
        // Initialize through a path to the memfd (a new open file
        // description, as a child's will be), then seal it.
        drop(open_or_create(a.path(), capacity)?);
        sys::seal_against_shrink(&a.memfd).map_err(|e| Error::io(&origin, "seal", e))?;
        Ok(a)
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.memfd.as_raw_fd())
    }

    /// This process's producer end.
    pub fn producer(&self) -> Result<Producer> {
        Producer::open(self.path())
    }

    /// This process's consumer end.
    pub fn consumer(&self) -> Result<Consumer> {
        Consumer::open(self.path())
    }

    /// Lets `cmd`'s child inherit the queue, naming its descriptor in `var`.
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        crate::region::share_fd(self.memfd.as_fd(), cmd, var);
    }
}

impl Producer {
    /// The producer end of an [`Anonymous`] queue a parent shared.
    pub fn from_inherited(var: &str) -> Result<Producer> {
        Producer::open(crate::region::inherited_fd_path(var)?)
    }
}

impl Consumer {
    /// The consumer end of an [`Anonymous`] queue a parent shared.
    pub fn from_inherited(var: &str) -> Result<Consumer> {
        Consumer::open(crate::region::inherited_fd_path(var)?)
    }
}
