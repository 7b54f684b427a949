//! Named shared memory: regions under `/dev/shm` that unrelated processes
//! find by name, as `shm_open(3)` does.
//!
//! This module owns name validation and the mapping from a name to a path;
//! the mapping itself is an ordinary file-backed [`Region`] on the tmpfs.

use std::path::PathBuf;

use crate::error::{Error, Origin, Result};
use crate::region::{Region, RegionOptions};

/// Where named regions live.
pub const SHM_DIR: &str = "/dev/shm";

/// Longest accepted name, in bytes (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// The path of the named region `name`, after validating the name.
///
/// A name is one path component: non-empty, at most [`MAX_NAME_LEN`]
/// bytes, no `/` and no NUL, and not `.` or `..`. An optional leading `/`
/// (the `shm_open` convention) is accepted and ignored.
///
/// ```
/// assert_eq!(mapshare::shm::path("/jobs").unwrap(), std::path::Path::new("/dev/shm/jobs"));
/// assert!(mapshare::shm::path("../etc/passwd").is_err());
/// ```
pub fn path(name: &str) -> Result<PathBuf> {
    let bad = |why| Error::InvalidName {
        name: name.to_owned(),
        why,
    };
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(bad("it is empty"));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 255 bytes"));
    }
    if bare.contains('/') {
        return Err(bad("it contains '/'"));
    }
    if bare.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    if bare == "." || bare == ".." {
        return Err(bad("'.' and '..' are not names"));
    }
    Ok(PathBuf::from(SHM_DIR).join(bare))
}

/// Creates the named region `name` with `size` bytes (mode 0600), failing
/// with [`Error::AlreadyExists`] if it exists.
pub fn create(name: &str, size: u64) -> Result<Region> {
    RegionOptions::new().create_new(size).open(path(name)?)
}

/// Opens the named region `name`, creating it with `size` bytes if needed.
pub fn open_or_create(name: &str, size: u64) -> Result<Region> {
    RegionOptions::new().create(size).open(path(name)?)
}

/// Opens the existing named region `name` read-write.
pub fn open(name: &str) -> Result<Region> {
    Region::open(path(name)?)
}

/// Removes the name `name`. Processes that have it mapped keep their
/// mapping; the memory is freed when the last one unmaps it.
pub fn remove(name: &str) -> Result<()> {
    let p = path(name)?;
    std::fs::remove_file(&p).map_err(|e| Error::io(&Origin::path(&p), "remove", e))
}
