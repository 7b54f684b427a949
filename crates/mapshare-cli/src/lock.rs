//! `mapshare lock FILE [--range START..END] [--shared] [--timeout D] --
//! COMMAND...`: runs COMMAND while holding a byte-range lock, like
//! `flock(1)` but for ranges and interoperable with `fcntl` users.

use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mapshare::sync::{FileLock, LockKind};

use crate::Failure;

/// "Whole file": every byte below mapshare's own lock bytes, so a whole-
/// file lock never waits on a process that merely maps the file.
pub const WHOLE_FILE_END: u64 = mapshare::lease::LEASE_LOCK_BASE;

/// Parses `START..END` (numbers or sizes; END may be omitted for "to the
/// end of the lockable range").
pub fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range (use START..END, e.g. 0..4KiB)"))?;
    let start = if a.is_empty() {
        0
    } else {
        crate::units::size(a)?
    };
    let end = if b.is_empty() {
        WHOLE_FILE_END
    } else {
        crate::units::size(b)?
    };
    if end <= start {
        return Err(format!("range {s:?} is empty"));
    }
    Ok(start..end)
}

pub fn run(
    file: &Path,
    range: Option<Range<u64>>,
    shared: bool,
    timeout: Option<Duration>,
    command: &[String],
) -> Result<u8, Failure> {
    let range = range.unwrap_or(0..WHOLE_FILE_END);
    let kind = if shared {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let lock = FileLock::open(file)?;
    let _guard = match timeout {
        Some(t) => lock
            .lock_timeout(range.clone(), kind, t)
            .map_err(|e| match e {
                mapshare::Error::Timeout { .. } => Failure(format!(
                    "{}: could not lock bytes {}..{} within {t:?}; not running {}",
                    file.display(),
                    range.start,
                    range.end,
                    command[0]
                )),
                other => other.into(),
            })?,
        None => lock.lock(range.clone(), kind)?,
    };
    let status = Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|e| Failure(format!("cannot run {}: {e}", command[0])))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0..4KiB"), Ok(0..4096));
        assert_eq!(parse_range("0x10..0x20"), Ok(16..32));
        assert_eq!(parse_range("100.."), Ok(100..WHOLE_FILE_END));
        assert!(parse_range("10..5").is_err());
        assert!(parse_range("10").is_err());
    }
}
