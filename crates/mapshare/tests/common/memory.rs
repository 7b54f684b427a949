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

/// Resident kilobytes of this process's mappings of files whose path
/// ends with `suffix` (summed from `/proc/self/smaps`).
pub fn rss_kb(suffix: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut ours = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's first line: range, perms, offset, dev, inode, path.
            ours = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|p| p.ends_with(suffix));
        } else if ours && first == "Rss:" {
            kb += fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kb
}
