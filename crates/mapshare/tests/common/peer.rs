//! A scriptable peer process for multi-process tests.
//!
//! The test binary re-executes itself running only the `peer_entry` test,
//! with `MAPSHARE_PEER=1`. That process reads one command per line on stdin
//! and answers each with one line starting `@@ ` on stdout, so a test can
//! drive a `Region` in a real, separate process. No `fork()` happens inside
//! the multi-threaded test harness: the peer is a fresh `exec`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mapshare::sync::{Event, FileLock, LockError, LockKind, LockResult, MutexGuard, Semaphore};
use mapshare::{
    Access, Fingerprint, Kind, Persistent, Region, RegionOptions, Shared, SharedFile, Spec,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The value the lock tests protect: `a == b` whenever the lock is free;
/// an increment does `a += 1`, then `b += 1`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Pair {
    pub a: u64,
    pub b: u64,
}

impl Persistent for Pair {
    const NAME: &'static str = "tests::Pair";
}

/// Round count for a stress test: `ci` unless `MAPSHARE_LONG` says more.
pub fn rounds(ci: usize) -> usize {
    std::env::var("MAPSHARE_LONG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// The raw sync file: a semaphore at object+0, an event at +64, a value
/// word at +128.
pub fn sync_spec() -> Spec {
    Spec::new(Kind::Raw, Fingerprint::new("tests::sync", 0, 1), 4096)
}
pub const SEM: u64 = 0;
pub const EVENT: u64 = 64;
pub const VALUE: u64 = 128;

/// A test record: sequence number, filler, FNV-1a checksum of the rest.
pub fn test_record(seq: u64) -> Vec<u8> {
    let fill = (seq * 37 % 300) as usize;
    let mut v = Vec::with_capacity(16 + fill);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..fill).map(|i| (seq as usize + i) as u8));
    let sum = mapshare::format::fnv1a(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Checks a test record; returns its sequence number.
pub fn check_record(r: &[u8]) -> Result<u64, String> {
    if r.len() < 16 {
        return Err(format!("record of {} bytes is too short", r.len()));
    }
    let (body, sum) = r.split_at(r.len() - 8);
    if mapshare::format::fnv1a(body).to_le_bytes() != sum {
        return Err("bad checksum".into());
    }
    let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
    if test_record(seq) != r {
        return Err(format!("record {seq} has the wrong contents"));
    }
    Ok(seq)
}

/// One increment under the lock; repairs a half-done increment left by a
/// dead holder. Returns whether a repair happened.
pub fn increment(pair: &Shared<Pair>, spin_inside: u32) -> bool {
    let (mut g, repaired) = match pair.lock() {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(mut g)) => {
            assert!(
                g.a == g.b || g.a == g.b + 1,
                "torn beyond one step: {:?}",
                *g
            );
            g.a = g.b;
            g.mark_consistent();
            (g, true)
        }
        Err(e) => panic!("lock failed: {e}"),
    };
    g.a += 1;
    for _ in 0..spin_inside {
        std::hint::spin_loop();
    }
    g.b += 1;
    repaired
}

pub const ENV: &str = "MAPSHARE_PEER";

/// The parent's handle on a peer process.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts a peer; `setup` may add environment or inherited descriptors.
    pub fn spawn_with(setup: impl FnOnce(&mut Command)) -> Peer {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "peer_entry",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("spawn peer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    pub fn spawn() -> Peer {
        Self::spawn_with(|_| {})
    }

    /// Starts a peer as the last arguments of `wrapper` (e.g. `unshare
    /// --pid --fork --kill-child`): `wrapper... test-binary peer-args...`.
    pub fn spawn_under(wrapper: &[&str]) -> Peer {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(exe)
            .args([
                "--exact",
                "peer_entry",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wrapped peer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns the peer's answer: `Ok(rest)` for
    /// `@@ ok rest`, `Err(name)` for `@@ err name`.
    pub fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.send(line);
        self.answer()
    }

    /// Reads the next answer without sending anything.
    pub fn answer(&mut self) -> Result<String, String> {
        loop {
            let mut answer = String::new();
            let n = self.stdout.read_line(&mut answer).expect("read from peer");
            assert!(n > 0, "peer exited");
            if let Some(rest) = answer.trim_end().strip_prefix("@@ ") {
                return match rest.split_once(' ').unwrap_or((rest, "")) {
                    ("ok", r) => Ok(r.to_owned()),
                    ("err", r) => Err(r.to_owned()),
                    _ => panic!("bad answer {answer:?}"),
                };
            }
        }
    }

    /// Sends a command without waiting for its answer.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer stdin open");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().unwrap();
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for peer")
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Like `cmd`, but the command must succeed.
    pub fn ok(&mut self, line: &str) -> String {
        self.cmd(line)
            .unwrap_or_else(|e| panic!("peer command {line:?} failed: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
            let _ = stdin.flush();
            // Closing stdin also ends commands that hold until EOF.
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole mapping of a raw sync file. The tests use its semaphore,
/// event and value words at disjoint offsets, never through a mutex.
pub fn raw(f: &SharedFile) -> &Region {
    // SAFETY: no typed object of these files hands out references to the
    // bytes the tests touch through the region (see `sync_spec`).
    unsafe { f.raw_region() }
}

/// The error variant's name, e.g. `Truncated`.
pub fn variant(e: &mapshare::Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split([' ', '{', '(']).next().unwrap_or("").to_owned()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn access(s: &str) -> Access {
    match s {
        "ro" => Access::ReadOnly,
        "rw" => Access::ReadWrite,
        "cow" => Access::CopyOnWrite,
        _ => panic!("bad access {s}"),
    }
}

/// How a lock attempt on the pair ended, by name. With `repair`, an
/// `OwnerDied` guard is repaired (a = b) and marked consistent; without,
/// it is dropped as it is (so the mutex becomes not recoverable).
fn lock_outcome(r: LockResult<MutexGuard<'_, Pair>>, repair: bool) -> String {
    match r {
        Ok(_) => "locked".into(),
        Err(LockError::OwnerDied(mut g)) => {
            if repair {
                g.a = g.b;
                g.mark_consistent();
            }
            "OwnerDied".into()
        }
        Err(LockError::Poisoned(_)) => "Poisoned".into(),
        Err(LockError::NotRecoverable { .. }) => "NotRecoverable".into(),
        Err(LockError::WouldBlock { .. }) => "WouldBlock".into(),
        Err(LockError::Timeout { .. }) => "Timeout".into(),
        Err(LockError::Failed(e)) => variant(&e),
    }
}

/// The peer's command loop.
pub fn serve() {
    let mut region: Option<Region> = None;
    let mut pair: Option<Shared<Pair>> = None;
    let mut sync_file: Option<SharedFile> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer: Result<String, mapshare::Error> = (|| {
            Ok(match words.as_slice() {
                ["quit"] => return Ok("quit".into()),
                ["open", path, acc] => {
                    region = Some(RegionOptions::new().access(access(acc)).open(path)?);
                    String::new()
                }
                ["window", path, acc, off, len] => {
                    region = Some(
                        RegionOptions::new()
                            .access(access(acc))
                            .window(off.parse().unwrap(), len.parse().unwrap())
                            .open(path)?,
                    );
                    String::new()
                }
                ["inherit", var] => {
                    region = Some(Region::from_inherited(var)?);
                    String::new()
                }
                ["close"] => {
                    region = None;
                    pair = None;
                    sync_file = None;
                    String::new()
                }
                ["pair", path] => {
                    let p = Shared::<Pair>::open_or_create(path, &Pair { a: 0, b: 0 })?;
                    let created = p.file().created();
                    pair = Some(p);
                    if created {
                        "created".into()
                    } else {
                        "existing".into()
                    }
                }
                ["incr", n] => {
                    let p = pair.as_ref().expect("no pair open");
                    let n: u64 = n.parse().unwrap();
                    for _ in 0..n {
                        increment(p, 0);
                    }
                    let v = p.load()?;
                    format!("{} {}", v.a, v.b)
                }
                ["hold"] => {
                    let p = pair.as_ref().expect("no pair open");
                    let mut g = p.lock().expect("lock");
                    g.a += 1;
                    println!("@@ ok holding");
                    std::io::stdout().flush().unwrap();
                    // Hold until killed (or the parent closes stdin).
                    let mut sink = String::new();
                    while std::io::stdin()
                        .read_line(&mut sink)
                        .map(|n| n > 0)
                        .unwrap_or(false)
                    {}
                    std::process::exit(0);
                }
                ["crashloop"] => {
                    let p = pair.as_ref().expect("no pair open");
                    println!("@@ ok looping");
                    std::io::stdout().flush().unwrap();
                    let mut x = std::process::id();
                    loop {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        increment(p, x % 2000);
                    }
                }
                ["trylock"] => {
                    // How a try_lock of the pair's mutex ends, by name.
                    let p = pair.as_ref().expect("no pair open");
                    lock_outcome(p.mutex().try_lock(), false)
                }
                ["locktimeout", ms] => {
                    // How a lock with a timeout ends, by name; an OwnerDied
                    // guard is repaired (a = b) and marked consistent.
                    let p = pair.as_ref().expect("no pair open");
                    let ms = Duration::from_millis(ms.parse().unwrap());
                    lock_outcome(p.mutex().lock_timeout(ms), true)
                }
                ["threads", n] => {
                    // Two threads of this process increment the pair n
                    // times each, contending with each other.
                    let p = pair.as_ref().expect("no pair open");
                    let n: u64 = n.parse().unwrap();
                    let failed = std::thread::scope(|s| {
                        let workers: Vec<_> = (0..2)
                            .map(|_| {
                                s.spawn(move || {
                                    for _ in 0..n {
                                        increment(p, 0);
                                    }
                                })
                            })
                            .collect();
                        workers.into_iter().filter_map(|w| w.join().err()).count()
                    });
                    if failed > 0 {
                        return Ok(format!("FAILED {failed}"));
                    }
                    let v = p.load()?;
                    format!("{} {}", v.a, v.b)
                }
                ["nsprobe", path] => {
                    // Start a holder of the pair as our own child (so in
                    // our PID namespace), then report how a try_lock ends
                    // while it holds, and how a lock ends once it is killed.
                    let p = pair.as_ref().expect("no pair open");
                    let mut holder = Peer::spawn();
                    holder.ok(&format!("pair {path}"));
                    assert_eq!(holder.ok("hold"), "holding");
                    let held = match p.mutex().try_lock() {
                        Ok(_) => "locked".to_string(),
                        Err(LockError::OwnerDied(_)) => "OwnerDied".into(),
                        Err(LockError::WouldBlock { .. }) => "WouldBlock".into(),
                        Err(e) => format!("other:{e}"),
                    };
                    holder.kill();
                    let after = match p.mutex().lock_timeout(Duration::from_secs(10)) {
                        Err(LockError::OwnerDied(mut g)) => {
                            g.a = g.b;
                            g.mark_consistent();
                            "OwnerDied".to_string()
                        }
                        Ok(_) => "locked".into(),
                        Err(e) => format!("other:{e}"),
                    };
                    format!("{held} {after}")
                }
                ["forkdrop"] => {
                    // Lock, fork; the child drops its copy of the guard and
                    // exits; the parent holds on until told to release.
                    let p = pair.as_ref().expect("no pair open");
                    let g = p.lock().expect("lock");
                    // SAFETY: the child only runs the guard's drop (atomic
                    // loads, no allocation), then _exits.
                    let child = unsafe { libc::fork() };
                    if child == 0 {
                        drop(g);
                        // SAFETY: exit without running the parent's destructors.
                        unsafe { libc::_exit(0) }
                    }
                    let mut status = 0;
                    // SAFETY: waiting for our own forked child.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    println!("@@ ok held");
                    std::io::stdout().flush().unwrap();
                    // Wait for one more line. Not through `std::io::stdin()`:
                    // this loop holds its lock. Nothing is buffered yet: the
                    // test sends the line only after reading "held".
                    let mut byte = [0u8; 1];
                    // SAFETY: reading one byte from fd 0 into a local buffer.
                    while unsafe { libc::read(0, byte.as_mut_ptr().cast(), 1) } == 1
                        && byte[0] != b'\n'
                    {}
                    drop(g);
                    "released".into()
                }
                ["token"] => {
                    let f = pair
                        .as_ref()
                        .map(|p| p.file())
                        .or(sync_file.as_ref())
                        .expect("no file");
                    format!("{} {}", f.lease().token().raw(), f.lease().pid())
                }
                ["attach2", path] => {
                    let mut spec = sync_spec();
                    spec.lease_slots = 2;
                    sync_file = Some(SharedFile::open_or_create(path, &spec, |_, _| Ok(()))?);
                    String::new()
                }
                ["syncfile", path] => {
                    sync_file = Some(SharedFile::open_or_create(path, &sync_spec(), |_, _| {
                        Ok(())
                    })?);
                    String::new()
                }
                ["post", n] => {
                    let f = sync_file.as_ref().expect("no sync file");
                    // SAFETY: the sync file's layout reserves SEM for it.
                    let sem = unsafe { Semaphore::at(raw(f), f.object_offset() + SEM)? };
                    for _ in 0..n.parse::<u64>().unwrap() {
                        sem.post()?;
                    }
                    String::new()
                }
                ["waitn", n] => {
                    let f = sync_file.as_ref().expect("no sync file");
                    // SAFETY: the sync file's layout reserves SEM for it.
                    let sem = unsafe { Semaphore::at(raw(f), f.object_offset() + SEM)? };
                    for _ in 0..n.parse::<u64>().unwrap() {
                        sem.wait_timeout(Duration::from_secs(30))?;
                    }
                    String::new()
                }
                ["pingpong", n] => {
                    // Answer odd values with the next even one, n times.
                    let f = sync_file.as_ref().expect("no sync file");
                    // SAFETY: the sync file's layout reserves EVENT for it.
                    let ev = unsafe { Event::at(raw(f), f.object_offset() + EVENT)? };
                    // SAFETY: the test gives the word at this offset no other use in this process.
                    let value = unsafe { raw(f).atomic_u32(f.object_offset() + VALUE) }?;
                    for i in 0..n.parse::<u32>().unwrap() {
                        ev.wait_while(
                            || value.load(Ordering::Acquire) != 2 * i + 1,
                            Duration::from_secs(30),
                        )?;
                        value.store(2 * i + 2, Ordering::Release);
                        ev.notify_all();
                    }
                    String::new()
                }
                ["qsend", path, start] => {
                    // Send test records from `start` on, forever.
                    let mut tx = mapshare::queue::Producer::open(path)?;
                    println!("@@ ok sending");
                    std::io::stdout().flush().unwrap();
                    let mut seq: u64 = start.parse().unwrap();
                    loop {
                        let rec = test_record(seq);
                        let mut g = tx.reserve(rec.len())?;
                        // Write in two halves so a kill can land mid-record.
                        let half = rec.len() / 2;
                        g[..half].copy_from_slice(&rec[..half]);
                        std::hint::black_box(&mut g);
                        g[half..].copy_from_slice(&rec[half..]);
                        g.commit();
                        seq += 1;
                    }
                }
                ["qsendn", path, start, n] => {
                    let mut tx = mapshare::queue::Producer::open(path)?;
                    let start: u64 = start.parse().unwrap();
                    for seq in start..start + n.parse::<u64>().unwrap() {
                        let rec = test_record(seq);
                        match tx.send(&rec) {
                            Ok(()) => {}
                            Err(mapshare::queue::SendError::Disconnected(_)) => {
                                return Ok("disconnected".into())
                            }
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                    "sent".into()
                }
                ["qforkcheck", path] => {
                    // Fork with a producer open; the child must be refused.
                    let mut tx = mapshare::queue::Producer::open(path)?;
                    // SAFETY: the child only tries one send (no allocation
                    // on the refusal path beyond the error), prints and
                    // _exits.
                    let child = unsafe { libc::fork() };
                    if child == 0 {
                        let refused = matches!(
                            tx.try_send(b"from the child"),
                            Err(mapshare::queue::SendError::Failed(
                                mapshare::Error::ForkedChild { .. },
                                _
                            ))
                        );
                        println!("@@ ok child:{}", if refused { "refused" } else { "SENT" });
                        std::io::stdout().flush().ok();
                        // SAFETY: exit without running the parent's destructors.
                        unsafe { libc::_exit(0) }
                    }
                    let mut status = 0;
                    // SAFETY: waiting for our own forked child.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    tx.send(b"from the parent")
                        .map_err(|e| mapshare::Error::Corrupted {
                            origin: mapshare::Origin::anonymous("test"),
                            what: "send",
                            why: e.to_string(),
                        })?;
                    "parent-sent".into()
                }
                ["qholdproducer", path] => {
                    let tx = mapshare::queue::Producer::open(path)?;
                    println!("@@ ok holding");
                    std::io::stdout().flush().unwrap();
                    let mut sink = String::new();
                    while std::io::stdin()
                        .read_line(&mut sink)
                        .map(|n| n > 0)
                        .unwrap_or(false)
                    {}
                    drop(tx);
                    std::process::exit(0);
                }
                ["nomembarrier"] => {
                    forbid_membarrier();
                    "ok".into()
                }
                ["qrecv", path, n] => {
                    let mut rx = mapshare::queue::Consumer::open(path)?;
                    let mut last = None;
                    for _ in 0..n.parse::<u64>().unwrap() {
                        let r = rx.recv_timeout(Duration::from_secs(30))?;
                        last = Some(check_record(&r).unwrap());
                    }
                    format!("{last:?}")
                }
                ["qrecv-inherited", var, n] => {
                    let mut rx = mapshare::queue::Consumer::from_inherited(var)?;
                    let mut last = None;
                    for _ in 0..n.parse::<u64>().unwrap() {
                        let r = rx.recv_timeout(Duration::from_secs(30))?;
                        last = Some(check_record(&r).unwrap());
                    }
                    format!("{last:?}")
                }
                ["qholdconsumer", path] => {
                    let rx = mapshare::queue::Consumer::open(path)?;
                    println!("@@ ok holding");
                    std::io::stdout().flush().unwrap();
                    let mut sink = String::new();
                    while std::io::stdin()
                        .read_line(&mut sink)
                        .map(|n| n > 0)
                        .unwrap_or(false)
                    {}
                    drop(rx);
                    std::process::exit(0);
                }
                ["scribble", path, ms] => {
                    // A hostile peer: random bytes over the queue's control
                    // block and ring, through its own mapping.
                    let mut region = Region::open(path)?;
                    let insp = mapshare::Inspection::open(path)?;
                    let (start, len) = (insp.header.object_offset, insp.header.object_len);
                    let deadline = Instant::now() + Duration::from_millis(ms.parse().unwrap());
                    let mut x = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
                    let mut writes = 0u64;
                    while Instant::now() < deadline {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Half the time hit the control block (positions,
                        // events, roles), else anywhere in the object.
                        let off = if x & 1 == 0 { x % 512 } else { x % len };
                        let n = (1 + (x >> 40) % 16).min(len - off);
                        let bytes: Vec<u8> = (0..n).map(|i| (x >> (i % 8 * 8)) as u8).collect();
                        region.write_at(start + off, &bytes)?;
                        writes += 1;
                    }
                    writes.to_string()
                }
                ["init", path] => {
                    let spec = Spec::new(Kind::Raw, Fingerprint::new("tests::race", 0, 1), 4096);
                    let f = SharedFile::open_or_create(path, &spec, |r, h| {
                        r.write_at(h.object_offset, &std::process::id().to_le_bytes())
                    })?;
                    let who = raw(&f).read_vec(f.object_offset(), 4)?;
                    format!(
                        "{} {}",
                        if f.created() { "created" } else { "existing" },
                        hex(&who)
                    )
                }
                ["initdie", path] => {
                    let spec = Spec::new(Kind::Raw, Fingerprint::new("tests::race", 0, 1), 4096);
                    let _ = SharedFile::open_or_create(path, &spec, |_, _| {
                        // Die in the middle of initializing.
                        std::process::exit(7)
                    });
                    unreachable!("the initializer exits")
                }
                ["rangefork", path] => {
                    // Hold bytes 0..100 of `path`, fork; the child drops the
                    // inherited guard and tries to lock through the
                    // inherited `FileLock`, then reports. The parent keeps
                    // its lock until this peer exits.
                    let lock: &'static FileLock = Box::leak(Box::new(FileLock::open(path)?));
                    let guard = lock.lock(0..100, LockKind::Exclusive)?;
                    // SAFETY: the child only locks (a failing fcntl), drops
                    // the guard, prints and _exits.
                    let child = unsafe { libc::fork() };
                    if child == 0 {
                        let refused = matches!(
                            lock.try_lock(200..300, LockKind::Exclusive),
                            Err(mapshare::Error::ForkedChild { .. })
                        );
                        drop(guard);
                        println!("@@ ok child:{}", if refused { "refused" } else { "LOCKED" });
                        std::io::stdout().flush().ok();
                        // SAFETY: exit without running the parent's destructors.
                        unsafe { libc::_exit(0) }
                    }
                    let mut status = 0;
                    // SAFETY: waiting for our own forked child.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    std::mem::forget(guard);
                    "parent-holds".into()
                }
                ["holdexitmain"] => {
                    // Lock the pair, then make the process's main thread
                    // (libtest's, not this one) exit on its own while this
                    // thread keeps the process alive, holding the lock,
                    // until stdin closes. The thread-group leader is then a
                    // zombie in `/proc` although the process lives.
                    let p = pair.as_ref().expect("no pair open");
                    std::mem::forget(p.lock().expect("lock"));
                    extern "C" fn exit_thread(_: libc::c_int) {
                        // SAFETY: the raw `exit` system call ends only the
                        // calling thread, without unwinding; it is
                        // async-signal-safe.
                        unsafe { libc::syscall(libc::SYS_exit, 0) };
                    }
                    let pid = std::process::id() as libc::pid_t;
                    // SAFETY: installs a handler that only makes a system
                    // call, then sends its signal to the main thread
                    // (tid == pid) alone.
                    unsafe {
                        libc::signal(
                            libc::SIGUSR1,
                            exit_thread as *const () as libc::sighandler_t,
                        );
                        libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1);
                    }
                    println!("@@ ok holding");
                    std::io::stdout().flush().unwrap();
                    let mut sink = String::new();
                    while std::io::stdin()
                        .read_line(&mut sink)
                        .map(|n| n > 0)
                        .unwrap_or(false)
                    {}
                    std::process::exit(0);
                }
                ["forkhold"] => {
                    // Fork a child that keeps the parent's descriptions (and
                    // so its OFD locks) open, then reports whether it may act
                    // under the parent's lease.
                    let p = pair.as_ref().expect("no pair open");
                    // SAFETY: the child only calls getpid, writes to a pipe
                    // and sleeps in async-signal-safe calls, then _exits.
                    let child = unsafe { libc::fork() };
                    if child == 0 {
                        let forked = matches!(
                            p.lock(),
                            Err(LockError::Failed(mapshare::Error::ForkedChild { .. }))
                        );
                        println!("@@ ok child:{}", if forked { "refused" } else { "LOCKED" });
                        std::io::stdout().flush().ok();
                        // SAFETY: plain sleep, then exit without running
                        // the parent's destructors.
                        unsafe {
                            libc::sleep(60);
                            libc::_exit(0)
                        }
                    }
                    child.to_string()
                }
                [cmd, rest @ ..] => {
                    let r = region.as_mut().expect("no region open");
                    match (*cmd, rest) {
                        ("read", [off, len]) => {
                            hex(&r.read_vec(off.parse().unwrap(), len.parse().unwrap())?)
                        }
                        ("write", [off, data]) => {
                            r.write_at(off.parse().unwrap(), &unhex(data))?;
                            String::new()
                        }
                        ("len", []) => r.len().to_string(),
                        ("refresh", []) => format!("{:?}", r.refresh()?),
                        ("check", []) => {
                            r.check()?;
                            String::new()
                        }
                        ("grow", [n]) => {
                            r.grow(n.parse().unwrap())?;
                            String::new()
                        }
                        ("shrink", [n]) => {
                            r.shrink(n.parse().unwrap())?;
                            String::new()
                        }
                        ("wait32", [off, value]) => {
                            // SAFETY: the test gives the word at this offset no other use in this process.
                            let word = unsafe { r.atomic_u32(off.parse().unwrap()) }?;
                            let want: u32 = value.parse().unwrap();
                            let deadline = Instant::now() + Duration::from_secs(10);
                            loop {
                                let seen = word.load(Ordering::Acquire);
                                if seen == want {
                                    break;
                                }
                                let now = Instant::now();
                                assert!(now < deadline, "timed out waiting for {want}");
                                mapshare::unstable::sys::futex::wait(
                                    word,
                                    seen,
                                    Some(deadline - now),
                                )
                                .unwrap();
                            }
                            String::new()
                        }
                        ("store32", [off, value]) => {
                            // SAFETY: the test gives the word at this offset no other use in this process.
                            let word = unsafe { r.atomic_u32(off.parse().unwrap()) }?;
                            word.store(value.parse().unwrap(), Ordering::Release);
                            mapshare::unstable::sys::futex::wake_all(word).unwrap();
                            String::new()
                        }
                        _ => panic!("unknown command {line:?}"),
                    }
                }
                [] => String::new(),
            })
        })();
        match answer {
            Ok(s) if s == "quit" => return,
            Ok(s) => println!("@@ ok {s}"),
            Err(e) => println!("@@ err {}", variant(&e)),
        }
        std::io::stdout().flush().unwrap();
    }
}

/// Installs a seccomp filter that makes `membarrier(2)` fail with `EPERM`
/// in this process, as a container's profile may: mapshare must fall back
/// to full fences.
pub fn forbid_membarrier() {
    use libc::{sock_filter, sock_fprog};
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // The system call number (`seccomp_data.nr`, offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_membarrier as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `prog` points at a valid filter that
    // outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog
            ),
            0
        );
    }
    assert!(mapshare::unstable::sys::membarrier::register_global_expedited().is_err());
}
