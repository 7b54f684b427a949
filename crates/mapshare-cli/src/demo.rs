//! `mapshare demo`: the chapter's classic examples, redone properly.
//!
//! 1. `mmapdemo.c`: map a file, read the byte at an offset; then change it
//!    and watch a second process, which mapped the file earlier, see the
//!    change through its own mapping.
//! 2. `mmap_anon.c`: an anonymous shared region between a parent and a
//!    child. The original has the child `sleep(1)` and hope; here the child
//!    parks on a futex word in the region and the parent wakes it.
//!
//! 3. The chapter's "you might have to lock the file or use semaphores",
//!    done: two processes increment a counter in a file under a robust
//!    process-shared mutex; one is killed while holding it; the other gets
//!    `OwnerDied`, repairs the half-done update and finishes.
//!
//! 4. A zero-copy queue: a child process streams records to its parent
//!    through an anonymous shared queue; the parent checks every one.
//!
//! 6. A broadcast log: two writer processes append at once, a live
//!    tailer sees their records as they come, and a late reader started
//!    afterwards replays the same records in the same order.
//!
//! Each scene's second process is this same executable, run as the hidden
//! `demo-child` subcommand.
//!
//! The demo works in `$TMPDIR/mapshare-demo-PID` and cleans up after
//! itself, also when interrupted: SIGINT, SIGTERM and SIGHUP are taken by a
//! thread (see `cleanup`) that kills and reaps the children, removes the
//! directory, and then lets the signal end the process as usual.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mapshare::unstable::sys::futex;
use mapshare::Region;

use crate::byte;
use crate::Failure;

/// The text scene 1 maps: a few lines of the chapter's program.
const MMAPDEMO_TEXT: &str = "#include <stdio.h>\n#include <stdlib.h>\n#include <fcntl.h>\n\
#include <unistd.h>\n#include <sys/types.h>\n#include <sys/mman.h>\n#include <sys/stat.h>\n";
const OFFSET: u64 = 30;
const FD_VAR: &str = "MAPSHARE_DEMO_FD";
const MESSAGE: &str = "Hello from shared memory!";
/// Layout of scene 2's region: word 0 is the "ready" flag and futex word,
/// word 1 the message length, the message from byte 8.
const READY: u64 = 0;
const MSG_LEN: u64 = 4;
const MSG: u64 = 8;
const REGION_LEN: usize = 4096;
/// Longest a demo child waits for its parent before giving up.
const PATIENCE: Duration = Duration::from_secs(5);

pub fn run(step: bool) -> Result<(), Failure> {
    let started = Instant::now();
    cleanup::install()?;
    let dir = tempdir()?;
    let result = pause(step, "start scene 1")
        .and_then(|()| scene_file(&dir))
        .and_then(|()| pause(step, "start scene 2"))
        .and_then(|()| scene_anonymous())
        .and_then(|()| pause(step, "start scene 3"))
        .and_then(|()| scene_robust_lock(&dir, step))
        .and_then(|()| pause(step, "start scene 4"))
        .and_then(|()| scene_queue())
        .and_then(|()| pause(step, "start scene 5"))
        .and_then(|()| scene_snapshot(&dir))
        .and_then(|()| pause(step, "start scene 6"))
        .and_then(|()| scene_log(&dir));
    // A scene that failed may have left a child running.
    cleanup::stop_children();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    println!("\ndemo finished in {:.0?}", started.elapsed());
    Ok(())
}

/// In `--step` mode, waits for Enter before going on.
fn pause(step: bool, what: &str) -> Result<(), Failure> {
    if !step {
        return Ok(());
    }
    println!("  -- press Enter to {what} --");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        return Err(Failure("standard input ended: demo stopped".into()));
    }
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("mapshare-demo-{}", std::process::id()));
    cleanup::set_dir(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Undoing the demo when it is interrupted.
///
/// The signals that would end the demo are blocked in every thread and
/// taken with `sigwait` by one thread, which does the cleanup in ordinary
/// (not signal-handler) context: kill and reap the children, remove the
/// directory, then restore the default action and re-raise the signal, so
/// the demo still ends "killed by SIGINT" as a shell expects. Children start
/// with an empty signal mask (std resets it when it spawns).
mod cleanup {
    use std::path::{Path, PathBuf};
    use std::process::Child;
    use std::sync::Mutex;

    use crate::Failure;

    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    struct State {
        children: Vec<libc::pid_t>,
        dir: Option<PathBuf>,
        stopping: bool,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        children: Vec::new(),
        dir: None,
        stopping: false,
    });

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal_set() -> libc::sigset_t {
        // SAFETY: sigemptyset initializes the set it is given; an all-zero
        // sigset_t is valid storage for it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is valid for writes; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
        }
        set
    }

    /// Blocks the signals in this (the main) thread and starts the thread
    /// that waits for them. Call before any other thread exists.
    pub fn install() -> Result<(), Failure> {
        let set = signal_set();
        // SAFETY: `set` is initialized; a null old set is allowed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(Failure(format!(
                "cannot block signals: {}",
                std::io::Error::from_raw_os_error(r)
            )));
        }
        std::thread::Builder::new()
            .name("demo-cleanup".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialized and `sig` valid for writes.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                    interrupted(sig);
                }
            })
            .map(drop)
            .map_err(|e| Failure(format!("cannot start the cleanup thread: {e}")))
    }

    fn interrupted(sig: libc::c_int) {
        stop_children();
        if let Some(dir) = state().dir.take() {
            remove_dir(&dir);
            eprintln!(
                "\nmapshare demo: interrupted; stopped the children and removed {}",
                dir.display()
            );
        }
        let set = signal_set();
        // SAFETY: restoring the default action of a valid signal, then
        // unblocking it in this thread and sending it to the process: it is
        // delivered here and ends the process the usual way.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        // In case the signal did not end us.
        std::process::exit(128 + sig);
    }

    /// Removes `dir`, retrying if the main thread was still adding a file.
    fn remove_dir(dir: &Path) {
        for _ in 0..10 {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
                _ => return,
            }
        }
    }

    /// Where the demo keeps its files.
    pub fn set_dir(dir: &Path) {
        state().dir = Some(dir.to_owned());
    }

    /// A child to kill if the demo is interrupted.
    pub fn register(child: &Child) {
        let pid = child.id() as libc::pid_t;
        let mut st = state();
        if st.stopping {
            kill_and_reap(pid);
        } else {
            st.children.push(pid);
        }
    }

    /// `child` was waited for: its PID may be reused, never signal it.
    pub fn reaped(child: &Child) {
        let pid = child.id() as libc::pid_t;
        state().children.retain(|&p| p != pid);
    }

    /// Kills and reaps every registered child; later ones are killed as
    /// they register.
    pub fn stop_children() {
        let mut st = state();
        st.stopping = true;
        for pid in std::mem::take(&mut st.children) {
            kill_and_reap(pid);
        }
    }

    fn kill_and_reap(pid: libc::pid_t) {
        // SAFETY: `pid` is our own child, not yet reaped (reaped children
        // are unregistered first), so it names no other process; waitpid
        // is given a valid status pointer.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) == -1
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
            }
        }
    }
}

fn spawn_child(scene: &str, args: &[&str], region: Option<&Region>) -> Result<Child, Failure> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-child").arg(scene).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    if let Some(r) = region {
        r.share_with(&mut cmd, FD_VAR);
    }
    let child = cmd
        .spawn()
        .map_err(|e| Failure(format!("cannot start the demo child: {e}")))?;
    cleanup::register(&child);
    Ok(child)
}

/// Relays one line of the child's output, prefixed; fails if it ended.
fn relay(from: &mut BufReader<ChildStdout>) -> Result<String, Failure> {
    let mut line = String::new();
    if from.read_line(&mut line)? == 0 {
        return Err(Failure("the demo child ended early".into()));
    }
    let line = line.trim_end().to_owned();
    println!("  child:  {line}");
    Ok(line)
}

fn finish(mut child: Child, mut out: BufReader<ChildStdout>) -> Result<(), Failure> {
    let mut rest = String::new();
    while out.read_line(&mut rest)? > 0 {
        println!("  child:  {}", rest.trim_end());
        rest.clear();
    }
    let status = child.wait()?;
    cleanup::reaped(&child);
    if !status.success() {
        return Err(Failure(format!("the demo child failed ({status})")));
    }
    Ok(())
}

fn scene_file(dir: &Path) -> Result<(), Failure> {
    println!("== 1. Map a file and read one byte (the chapter's mmapdemo.c) ==");
    let path = dir.join("mmapdemo.txt");
    std::fs::write(&path, MMAPDEMO_TEXT)?;
    let file = path.to_string_lossy().into_owned();
    println!(
        "  parent: wrote {} ({} bytes)",
        path.display(),
        MMAPDEMO_TEXT.len()
    );
    let b = byte::read(&path, OFFSET)?;
    println!("  parent: {}", byte::describe(OFFSET, b));

    println!("  parent: starting a second process that maps the same file");
    let mut child = spawn_child("watch", &[&file, &OFFSET.to_string()], None)?;
    let mut out = BufReader::new(
        child
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?,
    );
    relay(&mut out)?;

    let new = b.to_ascii_uppercase().max(b'!');
    let new = if new == b { b'#' } else { new };
    let mut region = mapshare::RegionOptions::new()
        .window(OFFSET, 1)
        .open(&path)?;
    region.write_at(0, &[new])?;
    region.flush()?;
    println!(
        "  parent: wrote '{}' at offset {OFFSET} through my own shared mapping",
        byte::escape(new)
    );
    // Tell the child to look again: a pipe message, not a sleep.
    let mut stdin = child.stdin.take().ok_or(Failure("no child stdin".into()))?;
    writeln!(stdin, "look")?;
    drop(stdin);
    finish(child, out)
}

fn scene_anonymous() -> Result<(), Failure> {
    println!("\n== 2. Anonymous shared memory, parent and child (the chapter's mmap_anon.c) ==");
    let mut region = Region::anonymous(REGION_LEN)?;
    println!("  parent: made a {REGION_LEN}-byte anonymous shared region (a memfd sealed against shrinking)");
    let mut child = spawn_child("anon", &[], Some(&region))?;
    let mut out = BufReader::new(
        child
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?,
    );
    relay(&mut out)?; // the child is about to park on the futex word

    println!("  parent: writing {MESSAGE:?}");
    region.write_at(MSG, MESSAGE.as_bytes())?;
    // SAFETY: READY and MSG_LEN are words of the demo region used only as
    // these atomics; the message bytes are elsewhere.
    let (msg_len, ready) = unsafe { (region.atomic_u32(MSG_LEN)?, region.atomic_u32(READY)?) };
    msg_len.store(MESSAGE.len() as u32, Ordering::Relaxed);
    ready.store(1, Ordering::Release);
    let woken = futex::wake_all(ready).map_err(|e| Failure(format!("futex wake: {e}")))?;
    println!("  parent: set the ready word and woke {woken} waiter(s); waiting for the child");
    finish(child, out)
}

/// The child side of a scene (`mapshare demo-child SCENE ARGS...`).
pub fn child(scene: &str, args: &[String]) -> Result<(), Failure> {
    match (scene, args) {
        ("watch", [file, offset]) => child_watch(Path::new(file), offset),
        ("anon", []) => child_anonymous(),
        ("count", [file, n]) => child_count(Path::new(file), n, None),
        ("stream", [n]) => child_stream(n),
        ("config-reader", [file, name, n]) => child_config_reader(Path::new(file), name, n),
        ("count-then-hold", [file, n]) => child_count(Path::new(file), n, Some(())),
        ("hold", [file]) => child_hold(Path::new(file)),
        ("log-writer", [dir, name, n]) => child_log_writer(Path::new(dir), name, n),
        ("log-reader", [dir, how, n]) => child_log_reader(Path::new(dir), how, n),
        _ => Err(Failure(format!("unknown demo scene {scene:?}"))),
    }
}

fn child_watch(path: &Path, offset: &str) -> Result<(), Failure> {
    let offset = crate::units::number(offset).map_err(Failure)?;
    let region = mapshare::RegionOptions::new()
        .access(mapshare::Access::ReadOnly)
        .open(path)?;
    let show = |when: &str| -> Result<(), Failure> {
        let mut b = [0u8; 1];
        region.read_at(offset, &mut b)?;
        println!("{when} {}", byte::describe(offset, b[0]));
        std::io::stdout().flush()?;
        Ok(())
    };
    show(&format!("(pid {}) mapped the file;", std::process::id()))?;
    // Wait for the parent's word on stdin.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    show("without remapping, my view now says")
}

fn child_anonymous() -> Result<(), Failure> {
    let region = Region::from_inherited(FD_VAR)?;
    // SAFETY: READY and MSG_LEN are words of the demo region used only as these atomics; the message bytes are elsewhere.
    let ready = unsafe { region.atomic_u32(READY) }?;
    println!(
        "(pid {}) mapped the inherited region; parking on the ready word",
        std::process::id()
    );
    std::io::stdout().flush()?;
    let start = Instant::now();
    let deadline = start + PATIENCE;
    while ready.load(Ordering::Acquire) == 0 {
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure("the parent never set the ready word".into()));
        }
        futex::wait(ready, 0, Some(deadline - now))
            .map_err(|e| Failure(format!("futex wait: {e}")))?;
    }
    let waited = start.elapsed();
    // The length came from another process: check it before using it.
    // SAFETY: READY and MSG_LEN are words of the demo region used only as these atomics; the message bytes are elsewhere.
    let len = unsafe { region.atomic_u32(MSG_LEN) }?.load(Ordering::Relaxed) as usize;
    if len > REGION_LEN - MSG as usize {
        return Err(Failure(format!(
            "message length {len} does not fit the region"
        )));
    }
    let msg = region.read_vec(MSG, len)?;
    println!(
        "woke after {waited:.0?}; the region says {:?}",
        String::from_utf8_lossy(&msg)
    );
    Ok(())
}

/// The counter of scene 3: an increment sets `pending = count + 1`, then
/// `count = pending`. A holder killed in between leaves `pending` ahead.
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
#[repr(C)]
struct Counter {
    count: u64,
    pending: u64,
}

impl mapshare::Persistent for Counter {
    const NAME: &'static str = "mapshare-demo::Counter";
}

const VICTIM_INCREMENTS: u64 = 500;
const SURVIVOR_INCREMENTS: u64 = 1000;

fn scene_robust_lock(dir: &Path, step: bool) -> Result<(), Failure> {
    println!("\n== 3. A robust lock: a process dies holding it (\"you might have to lock\") ==");
    let path = dir.join("counter");
    let counter = mapshare::Shared::<Counter>::open_or_create(
        &path,
        &Counter {
            count: 0,
            pending: 0,
        },
    )?;
    let file = path.to_string_lossy().into_owned();
    println!(
        "  parent: created {} holding a Mutex<Counter>",
        path.display()
    );

    let mut victim = spawn_child(
        "count-then-hold",
        &[&file, &VICTIM_INCREMENTS.to_string()],
        None,
    )?;
    let mut victim_out = BufReader::new(
        victim
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?,
    );
    relay(&mut victim_out)?; // counted
    relay(&mut victim_out)?; // holding the lock mid-update

    let survivor = spawn_child("count", &[&file, &SURVIVOR_INCREMENTS.to_string()], None)?;
    println!(
        "  parent: mutex is {}; started a second counter (pid {})",
        counter.mutex().state()?,
        survivor.id()
    );
    pause(
        step,
        &format!("kill pid {} while it holds the lock", victim.id()),
    )?;
    println!(
        "  parent: killing pid {} with SIGKILL while it holds the lock",
        victim.id()
    );
    victim.kill()?;
    victim.wait()?;
    cleanup::reaped(&victim);
    let mut survivor = survivor;
    let out = BufReader::new(
        survivor
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?,
    );
    finish(survivor, out)?;

    let total = counter.load()?;
    let expected = VICTIM_INCREMENTS + SURVIVOR_INCREMENTS;
    println!(
        "  parent: final count {} = {VICTIM_INCREMENTS} (finished by the killed process) + {SURVIVOR_INCREMENTS} (the survivor): {}",
        total.count,
        if total.count == expected { "correct" } else { "WRONG" }
    );
    if total.count != expected || total.pending != total.count {
        return Err(Failure(format!(
            "the counter is {} (pending {}), expected {expected}",
            total.count, total.pending
        )));
    }
    Ok(())
}

fn child_count(path: &Path, n: &str, then_hold: Option<()>) -> Result<(), Failure> {
    use mapshare::sync::LockError;
    let n = crate::units::number(n).map_err(Failure)?;
    let counter = mapshare::Shared::<Counter>::open(path)?;
    let pid = std::process::id();
    for _ in 0..n {
        let mut g = match counter.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                println!(
                    "(pid {pid}) lock says OwnerDied: the holder died mid-update (count {}, pending {}); rolling back and marking consistent",
                    g.count, g.pending
                );
                g.pending = g.count;
                g.mark_consistent();
                g
            }
            Err(e) => return Err(Failure(format!("lock: {e}"))),
        };
        g.pending = g.count + 1;
        g.count = g.pending;
    }
    println!("(pid {pid}) did {n} increments");
    std::io::stdout().flush()?;
    if then_hold.is_some() {
        let mut g = counter.lock().map_err(|e| Failure(format!("lock: {e}")))?;
        g.pending = g.count + 1;
        println!("(pid {pid}) holding the lock in the middle of an update; waiting to be killed");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Err(Failure("the parent was supposed to kill me".into()));
    }
    Ok(())
}

/// Holds the mutex of a `u64` value file (made if missing) until standard
/// input ends or the process is killed: a holder to kill, for the tests of
/// `info` and `repair`.
fn child_hold(path: &Path) -> Result<(), Failure> {
    let value = mapshare::Shared::<u64>::open_or_create(path, &0)?;
    let guard = value.lock().map_err(|e| Failure(format!("lock: {e}")))?;
    println!(
        "(pid {}) holding the lock of {}",
        std::process::id(),
        path.display()
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(guard);
    Ok(())
}

const QUEUE_VAR: &str = "MAPSHARE_DEMO_QUEUE";
const STREAM_RECORDS: u64 = 200_000;

fn scene_queue() -> Result<(), Failure> {
    println!("\n== 4. A zero-copy queue: a child streams records to its parent ==");
    let queue = mapshare::queue::Anonymous::new(256 * 1024)?;
    let mut rx = queue.consumer()?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["demo-child", "stream", &STREAM_RECORDS.to_string()]);
    queue.share_with(&mut cmd, QUEUE_VAR);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| Failure(format!("cannot start the demo child: {e}")))?;
    cleanup::register(&child);
    println!(
        "  parent: made a 256 KiB anonymous queue; child pid {} is producing {STREAM_RECORDS} records",
        child.id()
    );
    let mut expected = 0u64;
    let mut bytes = 0u64;
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok(r) => {
                let text =
                    std::str::from_utf8(&r).map_err(|_| Failure("a record is not UTF-8".into()))?;
                let n: u64 = text
                    .strip_prefix("record ")
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| Failure(format!("unexpected record {text:?}")))?;
                if n != expected {
                    return Err(Failure(format!(
                        "record {n} arrived where {expected} was due"
                    )));
                }
                if n == 0 || n + 1 == STREAM_RECORDS {
                    println!("  parent: received {text:?} in place, no copy");
                }
                bytes += r.len() as u64;
                expected += 1;
            }
            Err(mapshare::Error::Disconnected { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = started.elapsed();
    let mut child = child;
    child.wait()?;
    cleanup::reaped(&child);
    println!(
        "  parent: the child finished; got all {expected} records ({bytes} bytes) in order, then Disconnected, in {elapsed:.0?}"
    );
    if expected != STREAM_RECORDS {
        return Err(Failure(format!(
            "got {expected} of {STREAM_RECORDS} records"
        )));
    }
    Ok(())
}

fn child_stream(n: &str) -> Result<(), Failure> {
    let n = crate::units::number(n).map_err(Failure)?;
    let mut tx = mapshare::queue::Producer::from_inherited(QUEUE_VAR)?;
    let mut text = String::new();
    for i in 0..n {
        use std::fmt::Write as _;
        text.clear();
        let _ = write!(text, "record {i}");
        // Write the record straight into shared memory.
        let mut grant = tx.reserve(text.len())?;
        grant.copy_from_slice(text.as_bytes());
        grant.commit();
    }
    Ok(())
}

/// The versions scene 5 publishes.
const CONFIGS: [&str; 3] = [
    "mode=fast retries=3",
    "mode=safe retries=5",
    "mode=safe retries=5 log=verbose",
];

fn scene_snapshot(dir: &Path) -> Result<(), Failure> {
    println!("\n== 5. A snapshot: one publisher, two readers that react to each version ==");
    let path = dir.join("config.snap");
    let file = path.to_string_lossy().into_owned();
    let mut writer = mapshare::snapshot::Writer::open(&path)?;
    println!("  parent: created {file}; starting two reader processes");
    let n = CONFIGS.len().to_string();
    let mut readers = Vec::new();
    for name in ["A", "B"] {
        let mut child = spawn_child("config-reader", &[&file, name, &n], None)?;
        let out = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| Failure("no child stdout".into()))?,
        );
        readers.push((child, out));
    }
    for (_, out) in &mut readers {
        relay(out)?; // "ready"
    }
    for config in CONFIGS {
        let generation = writer.publish(config.as_bytes())?;
        println!("  parent: published generation {generation}: {config:?}");
        // Each reader was parked on the snapshot's futex; one wake-all
        // call woke both. Wait for both to say what they saw.
        for (_, out) in &mut readers {
            relay(out)?;
        }
    }
    for (child, out) in readers {
        finish(child, out)?;
    }
    println!("  parent: both readers saw every version whole, in place, with no lock and no copy");
    Ok(())
}

fn child_config_reader(path: &Path, name: &str, n: &str) -> Result<(), Failure> {
    let n = crate::units::number(n).map_err(Failure)?;
    let mut reader = mapshare::snapshot::Reader::open(path)?;
    // The generation before saying "ready": the publisher starts then.
    let mut seen = reader.generation()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "reader {name} (pid {}) ready", std::process::id())?;
    out.flush()?;
    for _ in 0..n {
        reader.wait_newer(seen, PATIENCE)?;
        let text = match reader.read()? {
            Some(version) => {
                seen = version.generation();
                String::from_utf8_lossy(&version).into_owned()
            }
            None => return Err(Failure("woken with nothing published".into())),
        };
        writeln!(out, "reader {name} sees generation {seen}: {text:?}")?;
        out.flush()?;
    }
    Ok(())
}

const LOG_EVENTS: u64 = 3;

fn scene_log(dir: &Path) -> Result<(), Failure> {
    println!("\n== 6. A broadcast log: two writers, a live tailer, a late reader that replays ==");
    let path = dir.join("events.log");
    let d = path.to_string_lossy().into_owned();
    mapshare::log::Log::create(&path, &mapshare::log::Options::default())?;
    let total = (2 * LOG_EVENTS).to_string();
    let out_of = |mut child: Child| -> Result<(Child, BufReader<ChildStdout>), Failure> {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| Failure("no child stdout".into()))?;
        Ok((child, BufReader::new(out)))
    };
    println!("  parent: created {d}; starting a tailer, then two writers");
    let (tailer, mut tail_out) = out_of(spawn_child("log-reader", &[&d, "live", &total], None)?)?;
    relay(&mut tail_out)?; // "ready"
    let n = LOG_EVENTS.to_string();
    let writers = ["A", "B"]
        .iter()
        .map(|w| out_of(spawn_child("log-writer", &[&d, w, &n], None)?))
        .collect::<Result<Vec<_>, _>>()?;
    for (child, out) in writers {
        finish(child, out)?;
    }
    finish(tailer, tail_out)?;
    println!("  parent: starting a late reader at the start of the log");
    let (late, late_out) = out_of(spawn_child("log-reader", &[&d, "late", &total], None)?)?;
    finish(late, late_out)?;
    println!("  parent: the late reader replayed the records the tailer saw, in the same order");
    Ok(())
}

fn child_log_writer(dir: &Path, name: &str, n: &str) -> Result<(), Failure> {
    let n = crate::units::number(n).map_err(Failure)?;
    let log = mapshare::log::Log::open(dir)?;
    let mut w = log.writer()?;
    let mut out = std::io::stdout().lock();
    for i in 1..=n {
        let seq = w.append(format!("{name}: event {i}").as_bytes())?;
        writeln!(
            out,
            "writer {name} (pid {}) appended seq {seq}",
            std::process::id()
        )?;
        out.flush()?;
    }
    Ok(())
}

fn child_log_reader(dir: &Path, how: &str, n: &str) -> Result<(), Failure> {
    let n = crate::units::number(n).map_err(Failure)?;
    let log = mapshare::log::Log::open(dir)?;
    let mut r = log.reader(mapshare::log::Start::Earliest)?;
    let mut out = std::io::stdout().lock();
    if how == "live" {
        writeln!(out, "tailer (pid {}) ready", std::process::id())?;
        out.flush()?;
    }
    for _ in 0..n {
        let Some(rec) = r.next_timeout(PATIENCE)? else {
            return Err(Failure("no record came".into()));
        };
        writeln!(
            out,
            "{how} reader sees seq {}: {}",
            rec.seq(),
            String::from_utf8_lossy(rec.bytes())
        )?;
        out.flush()?;
    }
    Ok(())
}
