//! [`Anonymous`] snapshots: a memfd shared by a parent and its children.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use super::{first_capacity, init, spec, Reader, SlowReaders, Writer};
use crate::error::{Error, Origin, Result};
use crate::file::SharedFile;
use crate::sys;

/// An anonymous snapshot (a memfd, sealed against shrinking, that can
/// still grow) for a parent and the children it spawns. Open the writer
/// and readers here, or in a child with [`Writer::from_inherited`] /
/// [`Reader::from_inherited`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::snapshot::Anonymous;
/// let snap = Anonymous::new(4096)?;
/// let mut w = snap.writer()?;
/// // A child would call `Reader::from_inherited("CONFIG_FD")` after
/// // `snap.share_with(&mut command, "CONFIG_FD")`.
/// let mut r = snap.reader()?;
/// w.publish(b"threads=4")?;
/// assert_eq!(&*r.read()?.unwrap(), b"threads=4");
/// # Ok(()) }
/// ```
pub struct Anonymous {
    memfd: File,
}

impl Anonymous {
    /// Creates an anonymous snapshot whose first slots hold `capacity`
    /// bytes (larger values grow them).
    pub fn new(capacity: u64) -> Result<Anonymous> {
        let origin = Origin::anonymous("mapshare-snapshot");
        let capacity = first_capacity(&origin, capacity)?;
        let fd =
            sys::memfd("mapshare-snapshot").map_err(|e| Error::io(&origin, "memfd_create", e))?;
        let a = Anonymous {
            memfd: File::from(fd),
        };
        drop(SharedFile::open_or_create(a.path(), &spec(), |r, h| {
            init(r, h, capacity)
        })?);
        sys::seal_against_shrink(&a.memfd).map_err(|e| Error::io(&origin, "seal", e))?;
        Ok(a)
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.memfd.as_raw_fd())
    }

    /// This process's writer.
    pub fn writer(&self) -> Result<Writer> {
        let file = SharedFile::open(
            self.path(),
            crate::format::Kind::Snapshot,
            &super::fingerprint(),
            std::time::Duration::from_secs(5),
        )?;
        Writer::attach(file, SlowReaders::default())
    }

    /// A reader in this process.
    pub fn reader(&self) -> Result<Reader> {
        Reader::open(self.path())
    }

    /// Lets `cmd`'s child inherit the snapshot, naming its descriptor in
    /// `var`.
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        crate::region::share_fd(self.memfd.as_fd(), cmd, var);
    }
}

impl Writer {
    /// The writer of an [`Anonymous`] snapshot a parent shared.
    pub fn from_inherited(var: &str) -> Result<Writer> {
        Writer::open(crate::region::inherited_fd_path(var)?)
    }
}

impl Reader {
    /// A reader of an [`Anonymous`] snapshot a parent shared.
    pub fn from_inherited(var: &str) -> Result<Reader> {
        Reader::open(crate::region::inherited_fd_path(var)?)
    }
}
