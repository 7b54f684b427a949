//! Calls on ranges of mapped memory: `madvise`, `mincore`, `mlock`.
//!
//! These take a raw address range because they describe memory, not a Rust
//! object. `mincore` and `mlock` cannot change what memory holds, so they are
//! safe; `madvise` can (`MADV_DONTNEED` on private memory), so it is not.
//! The kernel returns `ENOMEM` for unmapped addresses.

use std::io;

/// Advice for a range of a mapping (`madvise(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// Back to the default (`MADV_NORMAL`).
    Normal,
    /// Read ahead aggressively, free behind (`MADV_SEQUENTIAL`).
    Sequential,
    /// Don't read ahead (`MADV_RANDOM`).
    Random,
    /// Start reading the range in now (`MADV_WILLNEED`).
    WillNeed,
    /// Drop this process's page-table entries for the range (`MADV_DONTNEED`).
    /// On a shared mapping the data stays in the file or memfd.
    DontNeed,
    /// Back the range with transparent huge pages where possible
    /// (`MADV_HUGEPAGE`).
    HugePage,
    /// Fault every page of the range in for reading (`MADV_POPULATE_READ`,
    /// Linux 5.14+).
    PopulateRead,
    /// Fault every page of the range in for writing (`MADV_POPULATE_WRITE`,
    /// Linux 5.14+).
    PopulateWrite,
}

impl Advice {
    fn raw(self) -> rustix::mm::Advice {
        use rustix::mm::Advice as A;
        match self {
            Advice::Normal => A::Normal,
            Advice::Sequential => A::Sequential,
            Advice::Random => A::Random,
            Advice::WillNeed => A::WillNeed,
            Advice::DontNeed => A::LinuxDontNeed,
            Advice::HugePage => A::LinuxHugepage,
            Advice::PopulateRead => A::LinuxPopulateRead,
            Advice::PopulateWrite => A::LinuxPopulateWrite,
        }
    }
}

/// `madvise(addr, len, advice)`. `addr` must be page-aligned.
///
/// # Safety
///
/// `[addr, addr + len)` must lie in shared mappings (file or memfd) or
/// read-only mappings: `DontNeed` on private writable memory (the heap, a
/// copy-on-write mapping) throws its contents away, which Rust code holding
/// references into it would observe as memory changing under it.
pub unsafe fn advise(addr: *const u8, len: usize, advice: Advice) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the caller guarantees the range is shared or read-only, where
    // every advice offered here is a hint, a prefault, or a drop of page-table
    // entries that the next access faults back in from the same backing
    // object. The kernel validates the range (`ENOMEM` if unmapped).
    unsafe { rustix::mm::madvise(addr as *mut _, len, advice.raw()) }.map_err(io::Error::from)
}

/// Counts the pages of `[addr, addr + len)` that are resident in memory
/// (`mincore(2)`). `addr` must be page-aligned. Returns `(resident, total)`.
pub fn resident_pages(addr: *const u8, len: usize) -> io::Result<(usize, usize)> {
    let page = super::page_size();
    let pages = len.div_ceil(page);
    if pages == 0 {
        return Ok((0, 0));
    }
    let mut vec = vec![0u8; pages];
    // SAFETY: `vec` has one byte for each page of the range, as mincore
    // requires; mincore only reads page-table state and writes into `vec`.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((vec.iter().filter(|&&b| b & 1 == 1).count(), pages))
}

/// Locks `[addr, addr + len)` into RAM (`mlock(2)`).
pub fn lock_in_ram(addr: *const u8, len: usize) -> io::Result<()> {
    // SAFETY: mlock only changes whether pages may be swapped out; it cannot
    // make any access invalid. The kernel validates the range.
    unsafe { rustix::mm::mlock(addr as *mut _, len) }.map_err(io::Error::from)
}

/// Undoes [`lock_in_ram`] (`munlock(2)`).
pub fn unlock_from_ram(addr: *const u8, len: usize) -> io::Result<()> {
    // SAFETY: as for `lock_in_ram`: munlock only affects swapping.
    unsafe { rustix::mm::munlock(addr as *mut _, len) }.map_err(io::Error::from)
}
