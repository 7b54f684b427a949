//! `mapshare lock FILE [--range START..END] [--shared] [--timeout D] --
//! COMMAND...`: runs COMMAND while holding a byte-range lock, like
//! `flock(1)` but for ranges and interoperable with `fcntl` users.
//!
//! The lock is held until COMMAND exits, however `mapshare lock` is asked
//! to stop: SIGTERM, SIGINT and SIGHUP are passed on to COMMAND (see
//! `forward`). Only SIGKILL can end it early, and then the lock goes with
//! it.

use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mapshare::sync::{FileLock, LockKind};

use crate::Failure;

/// "Whole file": every byte below mapshare's own lock bytes, so a whole-
/// file lock never waits on a process that merely maps the file.
pub const WHOLE_FILE_END: u64 = mapshare::unstable::lease::LEASE_LOCK_BASE;

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
    if end > WHOLE_FILE_END {
        return Err(format!(
            "range {s:?} reaches past {WHOLE_FILE_END:#x}: the bytes from there up are mapshare's own lock bytes"
        ));
    }
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
    // From here until COMMAND has exited, a signal that would end us is
    // passed on to COMMAND instead: dying now would release the lock while
    // COMMAND still works under it.
    forward::install()?;
    let mut child = match Command::new(&command[0]).args(&command[1..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            // As shells do: 127 for "not found", 126 for "found but cannot
            // be run".
            let (code, why) = match e.kind() {
                ErrorKind::NotFound => (127, "command not found".to_owned()),
                ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
                _ => (126, e.to_string()),
            };
            eprintln!("mapshare: cannot run {}: {why}", command[0]);
            return Ok(code);
        }
    };
    let status = forward::wait(&mut child)?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    })
}

/// Passing SIGTERM, SIGINT and SIGHUP on to COMMAND.
///
/// The handler only loads and stores atomics and calls `kill`, all
/// async-signal-safe. A signal that comes before COMMAND's PID is known is
/// kept and sent once it is. Signals the kernel generated (`si_code ==
/// SI_KERNEL`: Ctrl-C, a terminal hang-up) are not passed on: the terminal
/// sends those to the whole foreground process group, COMMAND included,
/// and a second copy would make a program see Ctrl-C twice. A signal
/// ignored when `mapshare` started (`nohup`) stays ignored, and COMMAND
/// inherits that.
mod forward {
    use std::io;
    use std::process::{Child, ExitStatus};
    use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

    const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

    /// COMMAND's PID while it may be signalled; 0 before it starts and
    /// once it has exited (so a reused PID is never signalled).
    static CHILD: AtomicI32 = AtomicI32::new(0);
    /// A signal that came before `CHILD` was set.
    static PENDING: AtomicI32 = AtomicI32::new(0);

    extern "C" fn handle(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let code = if info.is_null() {
            0
        } else {
            // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t
            // for the duration of the handler (null was checked).
            unsafe { (*info).si_code }
        };
        if code == libc::SI_KERNEL {
            return;
        }
        let pid = CHILD.load(SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe and takes no pointers.
            unsafe { libc::kill(pid, sig) };
        } else {
            PENDING.store(sig, SeqCst);
        }
    }

    pub fn install() -> io::Result<()> {
        for sig in SIGNALS {
            // SAFETY: an all-zero sigaction is a valid value (no handler,
            // empty mask, no flags); it is only an output here.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a null new action only reads the current one into
            // `old`, which is valid for writes.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
                return Err(io::Error::last_os_error());
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            // SAFETY: as above, all-zero is a valid sigaction to fill in.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                handle;
            act.sa_sigaction = handler as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            // SAFETY: `handle` has the SA_SIGINFO signature and does only
            // async-signal-safe work; `act` is initialized.
            if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Waits for `child` with signals forwarded to it, then reaps it.
    pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
        let pid = child.id() as libc::pid_t;
        CHILD.store(pid, SeqCst);
        let early = PENDING.swap(0, SeqCst);
        if early != 0 {
            // SAFETY: kill takes no pointers; `pid` is our unreaped child.
            unsafe { libc::kill(pid, early) };
        }
        // Wait without reaping, stop forwarding, then reap: the PID cannot
        // be reused while a signal might still be sent to it.
        loop {
            // SAFETY: an all-zero siginfo_t is valid output space.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is valid for writes; `pid` is our child.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        CHILD.store(0, SeqCst);
        child.wait()
    }
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
        assert!(parse_range("0..0x8000000000000000").is_err());
        assert!(parse_range(&format!("0..{}", WHOLE_FILE_END + 1)).is_err());
        assert_eq!(
            parse_range(&format!("0..{WHOLE_FILE_END}")),
            Ok(0..WHOLE_FILE_END)
        );
    }
}
