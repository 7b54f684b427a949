//! What this process has mapped in, for tests of what the library maps
//! ahead of use.

#![allow(dead_code)]

/// Minor page faults the calling thread has taken so far
/// (`getrusage(RUSAGE_THREAD)`). Pages populated by `madvise` count too.
pub fn minor_faults() -> i64 {
    // SAFETY: `rusage` is plain integers, for which zeros are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid `rusage` for the call to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_minflt
}

/// Resident kilobytes of this process's mappings of the file at `path`
/// (summed from `/proc/self/smaps`, matched by device and inode: a file
/// made under a temporary name shows that name in the mappings of the
/// process that made it). `None` if no mapping matches: on some file
/// systems (an old overlayfs, btrfs subvolumes) `stat` and `smaps`
/// disagree on the numbers, and a test cannot see the mapping there.
pub fn rss_kb(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("the mapped file");
    let dev = format!(
        "{:02x}:{:02x}",
        libc::major(meta.dev()),
        libc::minor(meta.dev())
    );
    let ino = meta.ino().to_string();
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut ours = false;
    let mut found = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let first = fields.first().copied().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's first line: range, perms, offset, dev, inode, path.
            ours = fields.get(3) == Some(&dev.as_str()) && fields.get(4) == Some(&ino.as_str());
            found |= ours;
        } else if ours && first == "Rss:" {
            kb += fields
                .get(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    found.then_some(kb)
}

/// Whether `path` is on tmpfs (`statfs(2)`).
pub fn on_tmpfs(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: `statfs` is plain integers, for which zeros are valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a valid `statfs`.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statfs: {}", std::io::Error::last_os_error());
    st.f_type == 0x0102_1994
}
