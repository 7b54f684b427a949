//! Process identity: who a PID names, in which PID namespace, since when.
//!
//! A PID alone names a process only inside one PID namespace and only until
//! it is reused. [`Identity`] adds the namespace (device and inode of
//! `/proc/self/ns/pid`) and the start time (field 22 of
//! `/proc/<pid>/stat`, clock ticks since boot), which together name one
//! process for the life of the machine.
//!
//! `/proc` may be mounted from another PID namespace than the caller's
//! (`unshare --pid --fork` without `--mount-proc`, some containers). Then
//! `/proc/<pid>` names some other process: [`proc_is_ours`] detects this
//! (`/proc/self` then is not `getpid()`), and [`probe`] falls back to a
//! pidfd, which is resolved in the caller's own namespace.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// Who a process is, beyond its PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    /// The PID in its own namespace.
    pub pid: u32,
    /// Device of `/proc/self/ns/pid`; 0 with `ns_ino` when unknown.
    pub ns_dev: u64,
    /// Inode of `/proc/self/ns/pid`; 0 when unknown.
    pub ns_ino: u64,
    /// Start time in clock ticks after boot, as this process's time
    /// namespace shows it; 0 when unknown.
    pub start: u64,
    /// Device of `/proc/self/ns/time`; 0 with `time_ino` when unknown.
    pub time_dev: u64,
    /// Inode of `/proc/self/ns/time`: start times read by processes in
    /// different time namespaces may be shifted by different boot-time
    /// offsets, so they compare only within one. 0 when unknown.
    pub time_ino: u64,
}

impl Identity {
    /// This process (`getpid(2)`, `stat(2)` of `/proc/self/ns/pid`,
    /// `/proc/self/stat`). Fields that cannot be read are 0.
    pub fn current() -> Identity {
        let pid = super::pid();
        let (ns_dev, ns_ino) = pid_namespace().unwrap_or((0, 0));
        let start = read_stat("/proc/self/stat").map(|s| s.start).unwrap_or(0);
        let (time_dev, time_ino) = time_namespace().unwrap_or((0, 0));
        Identity {
            pid,
            ns_dev,
            ns_ino,
            start,
            time_dev,
            time_ino,
        }
    }

    /// Whether the namespace is known.
    pub fn ns_known(&self) -> bool {
        self.ns_ino != 0
    }
}

/// Device and inode of this process's PID namespace.
pub fn pid_namespace() -> io::Result<(u64, u64)> {
    let m = std::fs::metadata("/proc/self/ns/pid")?;
    Ok((m.dev(), m.ino()))
}

/// Device and inode of this process's time namespace.
///
/// `/proc/<pid>/stat` shows the start time shifted by the *reader's*
/// boot-time offset (`unshare --time --boottime`), so a start time recorded
/// by one process may be compared with one read by another only when both
/// read it in the same time namespace.
pub fn time_namespace() -> io::Result<(u64, u64)> {
    let m = std::fs::metadata("/proc/self/ns/time")?;
    Ok((m.dev(), m.ino()))
}

/// Whether `/proc` is mounted from this process's PID namespace, i.e.
/// whether `/proc/<pid>` names the process this process calls `pid`.
pub fn proc_is_ours() -> bool {
    match std::fs::read_link("/proc/self") {
        Ok(p) => p.to_str().and_then(|s| s.parse::<u32>().ok()) == Some(super::pid()),
        Err(_) => false,
    }
}

/// What [`probe`] found about a PID in the caller's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A running (not zombie) process whose start time matches, or whose
    /// start time cannot be checked here.
    Running,
    /// No such process, a zombie, or a different process reusing the PID.
    Gone,
}

struct Stat {
    state: u8,
    start: u64,
}

fn read_stat(path: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so
    // fields are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // `state` is field 3; `starttime` is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start })
}

/// Whether the process `pid` of the caller's PID namespace, started at
/// `start` (0: unknown), is still running. Zombies count as gone.
///
/// With `/proc` from this namespace: `/proc/<pid>/stat` (state and start
/// time). Otherwise, or when `/proc/<pid>` cannot be read (it is hidden
/// from other users with `hidepid=2`, or the process is gone), or shows a
/// zombie (which may be a thread-group leader whose other threads run on): `pidfd_open(2)` and a zero-timeout `poll(2)` (a pidfd
/// is readable once the process has exited, zombie or not); PID reuse
/// cannot be told apart there, so the answer errs towards `Running`.
pub fn probe(pid: u32, start: u64) -> Probe {
    probe_via(pid, start, proc_is_ours())
}

fn probe_via(pid: u32, start: u64, use_proc: bool) -> Probe {
    let Ok(raw) = i32::try_from(pid) else {
        return Probe::Gone;
    };
    let Some(p) = rustix::process::Pid::from_raw(raw) else {
        return Probe::Gone;
    };
    if use_proc {
        match read_stat(&format!("/proc/{pid}/stat")) {
            Some(s) if start != 0 && s.start != start => return Probe::Gone,
            // A zombie *leader* is not proof of death either: its main
            // thread may have left with `pthread_exit` while other
            // threads run on. The pidfd below is readable only once the
            // whole thread group has exited.
            Some(s) if s.state == b'Z' || s.state == b'X' => {}
            Some(_) => return Probe::Running,
            // Not proof of death: `/proc` mounted with `hidepid=2` hides
            // other users' processes. Ask the pidfd below.
            None => {}
        }
    }
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Err(rustix::io::Errno::SRCH) => Probe::Gone,
        Err(_) => {
            // No pidfd (old kernel, seccomp): existence is all we can ask.
            if super::process_exists(pid) {
                Probe::Running
            } else {
                Probe::Gone
            }
        }
        Ok(fd) => {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid, initialized pollfd that lives
            // across the call; timeout 0 never blocks.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n > 0 && pfd.revents & libc::POLLIN != 0 {
                Probe::Gone
            } else {
                Probe::Running
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "real system calls and /proc")]
    fn this_process_is_running_and_identified() {
        let me = Identity::current();
        assert_eq!(me.pid, super::super::pid());
        assert!(me.ns_known());
        assert_ne!(me.start, 0);
        assert_eq!(probe(me.pid, me.start), Probe::Running);
        assert_eq!(
            probe(me.pid, me.start + 1),
            Probe::Gone,
            "start time differs"
        );
        assert_eq!(probe(0, 0), Probe::Gone);
        assert_eq!(probe(u32::MAX, 0), Probe::Gone);
    }

    #[test]
    #[cfg_attr(miri, ignore = "real system calls and /proc")]
    fn zombies_are_gone_by_proc_and_by_pidfd() {
        let me = super::super::pid();
        assert_eq!(probe_via(me, 0, false), Probe::Running, "pidfd path");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while read_stat(&format!("/proc/{pid}/stat")).is_some_and(|s| s.state != b'Z') {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            super::super::process_exists(pid),
            "kill(pid, 0) still sees it"
        );
        assert_eq!(probe_via(pid, 0, true), Probe::Gone);
        assert_eq!(probe_via(pid, 0, false), Probe::Gone);
        child.wait().unwrap();
        assert_eq!(probe_via(pid, 0, false), Probe::Gone);
    }

    #[test]
    #[cfg_attr(miri, ignore = "real system calls and /proc")]
    fn comm_with_parentheses_parses() {
        let dir = std::env::temp_dir().join(format!("mapshare-stat-{}", std::process::id()));
        let line = "12 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20\n";
        std::fs::write(&dir, line).unwrap();
        let s = read_stat(dir.to_str().unwrap()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.start, 777);
    }
}
