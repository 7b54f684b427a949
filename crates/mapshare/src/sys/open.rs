//! Opening files for writing without a window between the check and the
//! open, and making new files appear whole.
//!
//! - [`path_handle`] opens a path with `O_PATH`: no side effects (a device
//!   is not opened, a FIFO does not block), but the descriptor pins the
//!   inode, so `fstat`/`fstatfs` on it describe exactly what a later
//!   [`reopen`] through `/proc/self/fd/N` opens.
//! - [`special_fs`] names the file system of a descriptor if it is one
//!   whose files are not data (procfs, sysfs, ...).
//! - [`new_unnamed`] and [`link_into_place`] build a file with no name
//!   (`O_TMPFILE`, or a temporary name as a fallback) and give it its name
//!   only once it is complete (`linkat`, which fails with `EEXIST` instead
//!   of replacing anything).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};

/// Opens `path` with `O_PATH | O_CLOEXEC`, following symbolic links.
pub fn path_handle(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Opens the inode behind `handle` again, for reading and optionally
/// writing (`open("/proc/self/fd/N")`, `O_NONBLOCK | O_CLOEXEC`). The
/// kernel checks permissions afresh, as for any open.
pub fn reopen(handle: &impl AsFd, write: bool) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// File systems whose files are interfaces to the kernel, not data: writing
/// them changes the system, and mapping them means nothing.
const SPECIAL: &[(i64, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0x6265_6570, "configfs"),
    (0x6573_5543, "fusectl"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6e73_6673, "nsfs"),
    (0x0904_1934, "anon_inodefs"),
    (0x1373, "devfs"),
];

/// The name of the special file system `fd` lives on (`fstatfs(2)`), or
/// `None` for an ordinary one. `devtmpfs` reports itself as tmpfs and
/// cannot be told apart; its entries are device nodes, refused anyway as
/// not regular files.
pub fn special_fs(fd: &impl AsFd) -> io::Result<Option<&'static str>> {
    let kind = fs_magic(fd)?;
    Ok(SPECIAL
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name))
}

/// Whether `fd` is a file whose pages live only in memory (`fstatfs(2)`
/// says tmpfs, which memfds and `/dev/shm` are, or hugetlbfs).
pub fn in_memory(fd: &impl AsFd) -> io::Result<bool> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let kind = fs_magic(fd)?;
    Ok(kind == TMPFS_MAGIC || kind == HUGETLBFS_MAGIC)
}

/// The magic number of the file system `fd` is on (`fstatfs(2)`).
fn fs_magic(fd: &impl AsFd) -> io::Result<i64> {
    // The magic numbers are 32-bit; `f_type` is a signed long, which
    // sign-extends the high ones on 32-bit targets.
    Ok(i64::from(rustix::fs::fstatfs(fd)?.f_type as u32))
}

/// A new, empty, nameless file in `dir`, opened read-write: `O_TMPFILE`
/// where the file system has it, otherwise a new file under a temporary
/// name (returned, to be removed after [`link_into_place`]).
pub fn new_unnamed(dir: &Path, stem: &str, mode: u32) -> io::Result<(File, Option<PathBuf>)> {
    let tmpfile = rustix::fs::openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    );
    match tmpfile {
        Ok(fd) => return Ok((File::from(fd), None)),
        Err(e)
            if e == rustix::io::Errno::OPNOTSUPP
                || e == rustix::io::Errno::ISDIR
                || e == rustix::io::Errno::INVAL => {}
        Err(e) => return Err(e.into()),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Keep the temporary name well inside NAME_MAX.
    let stem: String = stem.chars().take(40).collect();
    for attempt in 0u32..100 {
        let name = dir.join(format!(
            ".{stem}.{}.{nanos:x}.{attempt}.mapshare-new",
            super::pid()
        ));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&name)
        {
            Ok(f) => return Ok((f, Some(name))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}

/// Gives the file made by [`new_unnamed`] the name `path`, atomically and
/// never over an existing file: `EEXIST` (as `ErrorKind::AlreadyExists`)
/// if `path` exists. The temporary name, if any, is removed either way.
pub fn link_into_place(file: &File, tmp_name: Option<&Path>, path: &Path) -> io::Result<()> {
    match tmp_name {
        None => {
            let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
            rustix::fs::linkat(
                CWD,
                proc.as_str(),
                CWD,
                path,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        }
        Some(tmp) => {
            let r = std::fs::hard_link(tmp, path);
            let _ = std::fs::remove_file(tmp);
            r
        }
    }
}
