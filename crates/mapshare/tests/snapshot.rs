//! Snapshots between real processes: the torn-read hunt, dead and slow
//! readers, growth while pinned, writer crashes, read-only readers as
//! another user, change notification, and corrupted shared state.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::peer::{rounds, Peer};
use mapshare::snapshot::{self, Anonymous, Options, ReadOnlyReader, Reader, SlowReaders, Writer};
use mapshare::{Error, Inspection, Region};

#[test]
fn peer_entry() {
    if std::env::var_os(SPEER).is_some() {
        speer::serve();
    }
}

/// Set (with the common peer's variable) to run this file's snapshot
/// peer commands.
const SPEER: &str = "MAPSHARE_SPEER";

fn speer() -> Peer {
    Peer::spawn_with(|cmd| {
        cmd.env(SPEER, "1");
    })
}

fn speer_under(wrapper: &[&str]) -> Peer {
    // `spawn_under` sets the common peer's variable; ours rides along in
    // the environment the wrapper passes on.
    std::env::set_var(SPEER, "1");
    let p = Peer::spawn_under(wrapper);
    std::env::remove_var(SPEER);
    p
}

/// The value of generation `g`: its length varies with `g` (8 bytes to
/// about 12 KiB, so slots grow), the first 8 bytes are `g`, and every
/// other byte is derived from `g` and its offset.
fn value(g: u64) -> Vec<u8> {
    let mut v = vec![0u8; value_len(g)];
    v[..8].copy_from_slice(&g.to_le_bytes());
    for (i, b) in v.iter_mut().enumerate().skip(8) {
        *b = (g as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
    }
    v
}

/// The length of `value(g)`.
fn value_len(g: u64) -> usize {
    8 + (g.wrapping_mul(2_654_435_761) % 12_000) as usize
}

/// Checks that `bytes` is exactly `value(generation)`.
fn check_value(generation: u64, bytes: &[u8]) -> Result<(), String> {
    let want = value(generation);
    if bytes.len() != want.len() {
        return Err(format!(
            "generation {generation}: {} bytes, expected {}",
            bytes.len(),
            want.len()
        ));
    }
    if let Some(i) = bytes.iter().zip(&want).position(|(a, b)| a != b) {
        return Err(format!("generation {generation}: torn at byte {i}"));
    }
    Ok(())
}

/// This file's peer commands.
mod speer {
    use std::io::{BufRead, Write};
    use std::time::Duration;

    use super::{check_value, value, value_len};
    use mapshare::snapshot::{ReadOnlyReader, Reader, Writer};

    fn answer(r: Result<String, String>) {
        match r {
            Ok(s) => println!("@@ ok {s}"),
            Err(s) => println!("@@ err {}", s.replace('\n', " ")),
        }
        std::io::stdout().flush().unwrap();
    }

    fn variant(e: &mapshare::Error) -> String {
        format!("{e:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// Forks; the child runs `child` and `_exit`s with its status; the
    /// parent returns it.
    fn fork_and(child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only uses and drops values it inherited and
        // `_exit`s without running the parent's destructors; the parent
        // reaps it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child();
            // SAFETY: leave at once, running nothing else of the parent's.
            unsafe { libc::_exit(code) }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WEXITSTATUS(status)
    }

    pub fn serve() {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut ro: Option<ReadOnlyReader> = None;
        while let Some(Ok(line)) = lines.next() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let r: Result<String, String> = match words.as_slice() {
                ["quit"] => return,
                // Pins the current version, says which, and holds it until
                // the next line; then checks it is still intact.
                ["pin", path] => (|| {
                    let mut r = Reader::open(path).map_err(|e| variant(&e))?;
                    let g = r.read().map_err(|e| variant(&e))?.ok_or("nothing")?;
                    check_value(g.generation(), &g)?;
                    answer(Ok(g.generation().to_string()));
                    let _ = lines.next();
                    check_value(g.generation(), &g)?;
                    g.verify().map_err(|e| variant(&e))?;
                    Ok(format!("intact {}", g.generation()))
                })(),
                // Pins any value, holds it until the next line, then
                // verifies its checksum.
                ["pinany", path] => (|| {
                    let mut r = Reader::open(path).map_err(|e| variant(&e))?;
                    let g = r
                        .read_checked()
                        .map_err(|e| variant(&e))?
                        .ok_or("nothing")?;
                    answer(Ok(format!("{} {}", g.generation(), g.len())));
                    let _ = lines.next();
                    g.verify().map_err(|e| variant(&e))?;
                    Ok(format!("intact {}", g.generation()))
                })(),
                // Reads in place for `ms` milliseconds, as fast as it can (the race
                // window is a few instructions wide): every version's
                // generation, length and first word are checked each time,
                // every byte and the checksum every 64th read; generations
                // never go back.
                ["hunt", path, ms, cpu] => (|| {
                    // Sharing the writer's CPU, a reader is preempted at
                    // random points while the writer runs a whole time
                    // slice: also between its load and its pin.
                    if let Ok(cpu) = cpu.parse() {
                        let _ = mapshare::unstable::sys::pin_to_cpu(cpu);
                    }
                    let end =
                        std::time::Instant::now() + Duration::from_millis(ms.parse().unwrap());
                    let mut r = Reader::open(path).map_err(|e| variant(&e))?;
                    let (mut last, mut distinct) = (0, 0);
                    for i in 0u64.. {
                        if i % 1024 == 0 && std::time::Instant::now() > end {
                            break;
                        }
                        let Some(g) = r.read().map_err(|e| format!("read {i}: {e}"))? else {
                            continue;
                        };
                        let gen = g.generation();
                        if g.len() != value_len(gen) || g[..8] != gen.to_le_bytes() {
                            return Err(format!("generation {gen}: wrong length or stamp"));
                        }
                        if i % 64 == 0 {
                            check_value(gen, &g)?;
                            g.verify().map_err(|e| e.to_string())?;
                        }
                        if gen < last {
                            return Err(format!("went back from {last} to {gen}"));
                        }
                        distinct += u64::from(gen != last);
                        last = gen;
                    }
                    Ok(distinct.to_string())
                })(),
                // Opens the writer and publishes `value(g)` forever.
                ["writeloop", path] => (|| {
                    let mut w = Writer::open(path).map_err(|e| variant(&e))?;
                    answer(Ok(w.generation().map_err(|e| variant(&e))?.to_string()));
                    loop {
                        let g = w.generation().map_err(|e| variant(&e))? + 1;
                        let v = value(g);
                        let got = w.publish(&v).map_err(|e| variant(&e))?;
                        if got != g {
                            return Err(format!("published {got}, expected {g}"));
                        }
                    }
                })(),
                // Pins a version, then forks twice: one child tries to read
                // and publish with the inherited handles (must be refused),
                // one drops its copies of the guard, the reader and a
                // writer (must write nothing). Holds the pin until the next
                // line.
                ["forkpin", path] => (|| {
                    let mut r = Reader::open(path).map_err(|e| variant(&e))?;
                    let mut w = Writer::open(path).map_err(|e| variant(&e))?;
                    let g = r.read().map_err(|e| variant(&e))?.ok_or("nothing")?;
                    let gen = g.generation();
                    drop(g);
                    let used = fork_and(|| {
                        let refused =
                            |e: &mapshare::Error| matches!(e, mapshare::Error::ForkedChild { .. });
                        let a = r.read().err().is_some_and(|e| refused(&e));
                        let b = w.publish(b"child").err().is_some_and(|e| refused(&e));
                        i32::from(!(a && b))
                    });
                    let mut w = Some(w);
                    let g = r.read().map_err(|e| variant(&e))?.ok_or("nothing")?;
                    let mut held = Some(g);
                    // An inherited guard shows nothing (its pin is the
                    // parent's, which may go at any time: found in review).
                    let empty =
                        fork_and(|| i32::from(held.as_ref().is_some_and(|g| !g.is_empty())));
                    let dropped = fork_and(|| {
                        drop(held.take());
                        drop(w.take());
                        0
                    });
                    // Still the writer after the child's drop?
                    let insp = mapshare::Inspection::open(path).map_err(|e| variant(&e))?;
                    let state = mapshare::snapshot::observe(&insp).map_err(|e| variant(&e))?;
                    let mine = state.writer == Some((std::process::id(), true));
                    drop(w);
                    answer(Ok(format!("{used} {empty} {dropped} {gen} {mine}")));
                    let _ = lines.next();
                    let g = held.take().ok_or("no guard")?;
                    g.verify().map_err(|e| variant(&e))?;
                    Ok(format!("intact {}", g.generation()))
                })(),
                ["writer", path] => (|| {
                    let w = Writer::open(path).map_err(|e| variant(&e))?;
                    answer(Ok("writer".into()));
                    let _ = lines.next();
                    drop(w);
                    Ok("dropped".into())
                })(),
                ["reader", path] => Reader::open(path)
                    .map(|r| {
                        std::mem::forget(r);
                        "reader".to_string()
                    })
                    .map_err(|e| variant(&e)),
                ["inherit-read", var] => (|| {
                    let mut r = Reader::from_inherited(var).map_err(|e| variant(&e))?;
                    let g = r
                        .read_checked()
                        .map_err(|e| variant(&e))?
                        .ok_or("nothing")?;
                    Ok(String::from_utf8_lossy(&g).into_owned())
                })(),
                ["roopen", path] => ReadOnlyReader::open(path)
                    .map(|r| {
                        ro = Some(r);
                        "opened".to_string()
                    })
                    .map_err(|e| variant(&e)),
                // Waits for a generation newer than `g`, then copies it out
                // and checks it.
                ["rowait", g, ms] => (|| {
                    let r = ro.as_mut().ok_or("not open")?;
                    let g: u64 = g.parse().unwrap();
                    let new = r
                        .wait_newer(g, Duration::from_millis(ms.parse().unwrap()))
                        .map_err(|e| variant(&e))?;
                    let mut buf = Vec::new();
                    let got = r
                        .read_into(&mut buf)
                        .map_err(|e| variant(&e))?
                        .ok_or("nothing")?;
                    check_value(got, &buf)?;
                    Ok(format!("{new} {got}"))
                })(),
                ["rwopen", path] => Reader::open(path)
                    .map(|_| "opened".to_string())
                    .map_err(|e| variant(&e)),
                ["wopen", path] => Writer::open(path)
                    .map(|_| "opened".to_string())
                    .map_err(|e| variant(&e)),
                other => panic!("unknown snapshot peer command {other:?}"),
            };
            answer(r);
        }
    }
}

/// Sets its flag when dropped, also while a failed assertion unwinds: a
/// scoped thread looping until the flag is set then ends, and the scope
/// reports the failure instead of hanging.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A writer that never adds slots or waits: `Busy` when all are pinned.
fn failing_writer(path: &std::path::Path) -> Writer {
    Writer::open_with(
        path,
        &Options {
            slow_readers: SlowReaders::Fail,
            ..Options::default()
        },
    )
    .unwrap()
}

fn publish_value(w: &mut Writer) -> u64 {
    let g = w.generation().unwrap() + 1;
    assert_eq!(w.publish(&value(g)).unwrap(), g);
    g
}

#[test]
fn publish_then_read_in_place_and_copied_and_generations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    assert!(r.read().unwrap().is_none());
    assert!(r.read_checked().unwrap().is_none());
    assert_eq!(r.read_into(&mut Vec::new()).unwrap(), None);
    for g in 1..=5 {
        assert_eq!(publish_value(&mut w), g);
        let v = r.read_checked().unwrap().unwrap();
        assert_eq!(v.generation(), g);
        check_value(g, &v).unwrap();
    }
    drop(w);
    let mut w = Writer::open(&path).unwrap();
    assert_eq!(w.generation().unwrap(), 5);
    assert_eq!(w.publish(b"after restart").unwrap(), 6);
    let mut buf = Vec::new();
    assert_eq!(r.read_into(&mut buf).unwrap(), Some(6));
    assert_eq!(buf, b"after restart");
    // Empty values are values.
    assert_eq!(w.publish(b"").unwrap(), 7);
    assert_eq!(&*r.read().unwrap().unwrap(), b"");
    // Typed values.
    assert_eq!(w.publish_value(&0x1122_3344_5566_7788u64).unwrap(), 8);
    assert_eq!(
        r.read_value::<u64>().unwrap(),
        Some((8, 0x1122_3344_5566_7788))
    );
    assert!(matches!(
        r.read_value::<[u64; 2]>(),
        Err(Error::Corrupted { .. })
    ));
    // In place: publish_with fills the slot directly.
    let g = w.publish_with(3, |b| b.copy_from_slice(b"abc")).unwrap();
    assert_eq!(g, 9);
    assert_eq!(&*r.read().unwrap().unwrap(), b"abc");
    // A panicking fill publishes nothing.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = w.publish_with(3, |_| panic!("fill failed"));
    }));
    assert!(caught.is_err());
    assert_eq!(w.generation().unwrap(), 9);
    assert_eq!(&*r.read().unwrap().unwrap(), b"abc");
}

#[test]
fn a_second_live_writer_is_refused_with_its_pid_and_a_dead_ones_role_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut peer = speer();
    assert_eq!(peer.ok(&format!("writer {}", path.display())), "writer");
    match Writer::open(&path) {
        Err(Error::RoleTaken { pid, .. }) => assert_eq!(pid, peer.pid()),
        other => panic!("expected RoleTaken, got {other:?}"),
    }
    peer.kill();
    let mut w = Writer::open(&path).expect("a dead writer's role is taken over");
    assert_eq!(w.publish(b"x").unwrap(), 1);
    // And in this process, a second handle is refused too.
    assert!(matches!(Writer::open(&path), Err(Error::RoleTaken { .. })));
    drop(w);
    Writer::open(&path).expect("a writer that left gave the role back");
}

/// One writer publishes many versions of changing sizes (so slots grow
/// and are reused) while four reader processes read in place as fast as
/// they can and check each version (its stamp and length every time,
/// every byte and the checksum often) and the order. The readers are
/// stopped and continued at random instants (SIGSTOP/SIGCONT), so some
/// stop inside mmap-sync's window, between loading the version and
/// pinning it, while the writer publishes on. With the validation planted
/// out of `protocol::pin`, a 1 s run caught it about one time in three
/// (`MAPSHARE_LONG=N` hunts N seconds); the staged test in `protocol`
/// catches it every time.
#[test]
fn torn_read_hunt_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    publish_value(&mut w);
    // Milliseconds of reading (MAPSHARE_LONG=N: N seconds).
    let reads = rounds(1) * 1000;
    // More readers than CPUs: preemptions land anywhere in a read, also
    // between its load of the version and its pin.
    let mut peers: Vec<Peer> = (0..4).map(|_| speer()).collect();
    let pids: Vec<i32> = peers.iter().map(|p| p.pid() as i32).collect();
    // Two readers share the writer's CPU, two run free.
    for (i, p) in peers.iter_mut().enumerate() {
        let cpu = if i < 2 { "0" } else { "any" };
        p.send(&format!("hunt {} {reads} {cpu}", path.display()));
    }
    let done = AtomicBool::new(false);
    let published = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let _ = mapshare::unstable::sys::pin_to_cpu(0);
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                publish_value(&mut w);
                n += 1;
            }
            n
        });
        // Stops and continues the readers at random instants: a reader
        // stopped between its load of the version and its pin sleeps
        // through several publishes, which is the race to hunt.
        let stopper = s.spawn(|| {
            let mut rng = 0x853c_49e6_748f_ea9bu64;
            let mut stops = 0u64;
            while !done.load(Ordering::Relaxed) {
                for &pid in &pids {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    // SAFETY: signals to our own child processes.
                    unsafe { libc::kill(pid, libc::SIGSTOP) };
                    std::thread::sleep(Duration::from_micros(20 + rng % 200));
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGCONT) };
                    stops += 1;
                }
            }
            stops
        });
        let _stop = StopOnDrop(&done);
        for p in &mut peers {
            let distinct: u64 = p
                .answer()
                .expect("no torn or out-of-order read")
                .parse()
                .unwrap();
            eprintln!("a reader saw {distinct} versions");
            assert!(distinct >= 1);
        }
        done.store(true, Ordering::Relaxed);
        eprintln!("stopped readers {} times", stopper.join().unwrap());
        writer.join().unwrap()
    });
    eprintln!("published {published} versions");
    assert!(published > 0);
    // Readers in this process too, against the writer in a thread.
    let mut r = Reader::open(&path).unwrap();
    let v = r.read_checked().unwrap().unwrap();
    check_value(v.generation(), &v).unwrap();
}

/// A reader killed while pinned: its slot is reclaimed after its death,
/// not before. With the `Fail` policy and two slots, a pinned old version
/// blocks the writer until the pinning process is dead.
#[test]
fn a_dead_readers_pin_is_reclaimed_after_its_death_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = failing_writer(&path);
    assert_eq!(publish_value(&mut w), 1);
    let mut peer = speer();
    assert_eq!(peer.ok(&format!("pin {}", path.display())), "1");
    assert_eq!(publish_value(&mut w), 2);
    // Slot of 1: pinned by a live reader; slot of 2: current.
    for _ in 0..3 {
        assert!(matches!(w.publish(b"x"), Err(Error::Busy { .. })));
    }
    let info = snapshot::observe(&Inspection::open(&path).unwrap()).unwrap();
    assert!(info
        .readers
        .iter()
        .any(|&(pid, alive, g)| pid == peer.pid() && alive && g == 1));
    peer.kill();
    assert_eq!(publish_value(&mut w), 3, "the dead reader's slot is reused");
    assert_eq!(publish_value(&mut w), 4);
    let info = snapshot::observe(&Inspection::open(&path).unwrap()).unwrap();
    assert_eq!(info.slots.len(), 2);
    // A new reader takes a fresh or the dead entry and reads.
    let mut r = Reader::open(&path).unwrap();
    assert_eq!(r.read_checked().unwrap().unwrap().generation(), 4);
}

/// A live reader pinned for seconds is never overwritten, however many
/// versions follow (the default policy adds a slot when it must).
#[test]
fn a_slow_live_reader_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    publish_value(&mut w);
    let mut peer = speer();
    assert_eq!(peer.ok(&format!("pin {}", path.display())), "1");
    let end = Instant::now() + Duration::from_secs(2);
    let mut n = 0;
    while Instant::now() < end {
        publish_value(&mut w);
        n += 1;
        if n % 64 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(peer.ok("unpin"), "intact 1");
    let info = snapshot::observe(&Inspection::open(&path).unwrap()).unwrap();
    assert_eq!(info.slots.len(), 3, "one more slot for the pinned reader");
}

/// Values grow from 8 B to 64 MiB while older versions stay pinned (one
/// in this process, one in a peer): each new size goes into a larger
/// segment, the pinned versions stay intact, and nothing is truncated.
#[test]
fn growth_from_8_bytes_to_64_mib_while_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    assert_eq!(w.publish(&value(1)[..8]).unwrap(), 1);
    let mut pinned = Reader::open(&path).unwrap();
    let first = pinned.read().unwrap().unwrap();
    assert_eq!(&*first, &value(1)[..8]);
    let mut peer = speer();
    let mut r = Reader::open(&path).unwrap();
    let mut len = 8usize;
    let mut peer_pinned = None;
    while len <= 64 << 20 {
        let fill = (len % 251) as u8;
        let g = w.publish_with(len, |b| b.fill(fill)).unwrap();
        let v = r.read_checked().unwrap().unwrap();
        assert_eq!((v.generation(), v.len()), (g, len));
        assert!(v.iter().all(|&b| b == fill));
        drop(v);
        if len == 4096 {
            peer_pinned = Some(peer.ok(&format!("pinany {}", path.display())));
        }
        len *= 8;
        if len > 64 << 20 && len / 8 < 64 << 20 {
            len = 64 << 20;
        }
    }
    assert_eq!(peer_pinned.as_deref(), Some("5 4096"));
    assert_eq!(peer.ok("unpin"), "intact 5");
    assert_eq!(
        &*first,
        &value(1)[..8],
        "the pinned first version is intact"
    );
    first.verify().unwrap();
    drop(first);
    let info = snapshot::observe(&Inspection::open(&path).unwrap()).unwrap();
    assert_eq!(info.value_len, 64 << 20);
    let insp = Inspection::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        insp.header.file_len + info.segment_bytes,
        "the file is the object plus the segments, reserved"
    );
    eprintln!(
        "segments: {} bytes, slots {:?}",
        info.segment_bytes, info.slots
    );
    assert!(
        info.segment_bytes < 4 * (64 << 20),
        "outgrown segments stay bounded"
    );
}

/// The writer is SIGKILLed at random points while it publishes (often
/// mid-copy: values are up to 12 KiB and slots grow), 200 rounds. A
/// reader thread here checks every version it sees the whole time; after
/// each kill the current version is complete, and the next writer
/// continues the generation count.
#[test]
fn a_writer_killed_mid_publish_leaves_the_previous_version_and_the_next_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    drop(Writer::open(&path).unwrap());
    let stop = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    std::thread::scope(|s| {
        let hunter = s.spawn(|| {
            let mut r = Reader::open(&path).unwrap();
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(v) = r.read().unwrap() {
                    let g = v.generation();
                    check_value(g, &v).unwrap();
                    assert!(g >= last, "went back from {last} to {g}");
                    last = g;
                }
            }
            seen.store(last, Ordering::Relaxed);
        });
        let _stop = StopOnDrop(&stop);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut last = 0;
        let mut r = Reader::open(&path).unwrap();
        for round in 0..rounds(200) {
            let mut p = speer();
            let start: u64 = p
                .ok(&format!("writeloop {}", path.display()))
                .parse()
                .unwrap();
            assert!(start >= last, "round {round}: generation went back");
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(Duration::from_micros(rng % 3000));
            p.kill();
            match r.read_checked().unwrap() {
                Some(v) => {
                    check_value(v.generation(), &v).unwrap();
                    assert!(v.generation() >= start);
                    last = v.generation();
                }
                None => assert_eq!(start, 0),
            }
            if hunter.is_finished() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        hunter.join().unwrap();
        let mut w = Writer::open(&path).unwrap();
        assert_eq!(w.generation().unwrap(), last);
        assert_eq!(publish_value(&mut w), last + 1);
    });
    assert!(seen.load(Ordering::Relaxed) > 0);
}

fn wrapper_works(wrapper: &[&str]) -> bool {
    let ok = std::process::Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    ok || {
        eprintln!("skipped: `{}` does not work here", wrapper.join(" "));
        false
    }
}

/// A read-only reader as another user (the writer runs as root, the file
/// is 0644): it reads the current value, waits for the next on the same
/// futex word and is woken by the publish, and cannot open the file as a
/// pinning reader or as the writer.
#[test]
fn a_read_only_reader_of_another_user_reads_and_waits() {
    let wrapper = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ];
    if sys_uid() != 0 || !wrapper_works(&wrapper) {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open_with(
        &path,
        &Options {
            mode: 0o644,
            ..Options::default()
        },
    )
    .unwrap();
    publish_value(&mut w);
    let mut peer = speer_under(&wrapper);
    assert_eq!(peer.ok(&format!("roopen {}", path.display())), "opened");
    assert_eq!(peer.ok("rowait 0 5000"), "1 1");
    assert!(peer.cmd(&format!("rwopen {}", path.display())).is_err());
    assert!(peer.cmd(&format!("wopen {}", path.display())).is_err());
    for round in 0..20 {
        let g = w.generation().unwrap();
        peer.send(&format!("rowait {g} 10000"));
        // Let it park (or not: either way it must see the new version).
        std::thread::sleep(Duration::from_millis(if round % 2 == 0 { 20 } else { 0 }));
        let new = publish_value(&mut w);
        let got = peer.answer().unwrap();
        let first: u64 = got.split(' ').next().unwrap().parse().unwrap();
        assert!(
            first >= new,
            "round {round}: woke with {got}, published {new}"
        );
    }
    // Versions published under its copies: it retries, never tears.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                publish_value(&mut w);
            }
        });
        let _stop = StopOnDrop(&stop);
        for _ in 0..50 {
            peer.ok("rowait 0 1000");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

fn sys_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

#[test]
fn wait_newer_wakes_a_parked_reader_and_times_out_without_a_publish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    let r = Reader::open(&path).unwrap();
    match r.wait_newer(0, Duration::from_millis(20)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    for round in 0..50u64 {
        std::thread::scope(|s| {
            let waiter = s.spawn(|| r.wait_newer(round, Duration::from_secs(10)));
            if round % 2 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(w.publish(b"tick").unwrap(), round + 1);
            assert_eq!(waiter.join().unwrap().unwrap(), round + 1);
        });
    }
    // Several parked readers, one publish.
    let readers: Vec<Reader> = (0..4).map(|_| Reader::open(&path).unwrap()).collect();
    std::thread::scope(|s| {
        let waiters: Vec<_> = readers
            .iter()
            .map(|r| s.spawn(move || r.wait_newer(50, Duration::from_secs(10))))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        w.publish(b"all").unwrap();
        for t in waiters {
            assert_eq!(t.join().unwrap().unwrap(), 51);
        }
    });
}

#[test]
fn at_least_256_readers_at_once_and_then_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    w.publish(b"many").unwrap();
    let mut readers: Vec<Reader> = (0..snapshot::READERS)
        .map(|_| Reader::open(&path).unwrap())
        .collect();
    assert!(matches!(Reader::open(&path), Err(Error::Busy { .. })));
    for r in &mut readers {
        assert_eq!(&*r.read().unwrap().unwrap(), b"many");
    }
    readers.pop();
    Reader::open(&path).expect("a freed entry is taken again");
}

#[test]
fn an_anonymous_snapshot_is_shared_with_a_child() {
    let snap = Anonymous::new(4096).unwrap();
    let mut w = snap.writer().unwrap();
    w.publish(b"from the parent").unwrap();
    let mut child = Peer::spawn_with(|cmd| {
        cmd.env(SPEER, "1");
        snap.share_with(cmd, "SNAP_FD");
    });
    assert_eq!(child.ok("inherit-read SNAP_FD"), "from the parent");
    let mut r = snap.reader().unwrap();
    // Growth works on a memfd too (sealed against shrinking only).
    w.publish(&vec![7u8; 100_000]).unwrap();
    assert_eq!(r.read_checked().unwrap().unwrap().len(), 100_000);
}

/// The object's bytes through a plain mapping: the tests scribble there.
fn scribble(path: &std::path::Path) -> (Region, u64) {
    let insp = Inspection::open(path).unwrap();
    let obj = insp.header.object_offset;
    (Region::open(path).unwrap(), obj)
}

fn put(r: &mut Region, at: u64, v: u64) {
    r.write_at(at, &v.to_ne_bytes()).unwrap();
}

fn corrupted<T>(e: &Result<T, Error>) -> bool {
    matches!(e, Err(Error::Corrupted { .. }))
}

/// Offsets from the module's layout table.
const CURRENT: u64 = 0;
const SLOTS_IN_USE: u64 = 136;
const DATA_END: u64 = 144;
const READERS_HIGH: u64 = 160;
const SLOT_TABLE: u64 = 256;

#[test]
fn corrupted_words_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    w.publish(b"good value").unwrap();
    w.publish(b"newer value").unwrap();
    drop(w);
    let (mut raw, obj) = scribble(&path);
    let good_current = raw.load_u64(obj + CURRENT, Ordering::SeqCst).unwrap();

    // A version word naming slot 200.
    put(&mut raw, obj + CURRENT, 1 << 8 | 200);
    let mut r = Reader::open(&path).unwrap();
    assert!(corrupted(&r.read().map(|_| ())));
    assert!(corrupted(
        &snapshot::observe(&Inspection::open(&path).unwrap()).map(|_| ())
    ));
    assert!(corrupted(&Writer::open(&path).map(|_| ())));
    put(&mut raw, obj + CURRENT, good_current);

    // The slot's generation disagrees with the version word.
    let slot = good_current & 0xff;
    let entry = obj + SLOT_TABLE + slot * 64;
    let gen = raw.load_u64(entry + 16, Ordering::SeqCst).unwrap();
    put(&mut raw, entry + 16, gen + 5);
    assert!(corrupted(&r.read().map(|_| ())));
    put(&mut raw, entry + 16, gen);

    // A segment past the end of the file, or misaligned, or absurd.
    let off = raw.load_u64(entry, Ordering::SeqCst).unwrap();
    for bad in [1 << 40, off + 1, 0, 4096] {
        put(&mut raw, entry, bad);
        assert!(corrupted(&r.read().map(|_| ())), "segment at {bad}");
    }
    put(&mut raw, entry, off);
    let cap = raw.load_u64(entry + 8, Ordering::SeqCst).unwrap();
    put(&mut raw, entry + 8, u64::MAX);
    assert!(corrupted(&r.read().map(|_| ())));
    put(&mut raw, entry + 8, cap);
    // A length past the capacity.
    put(&mut raw, entry + 24, cap + 1);
    assert!(corrupted(&r.read().map(|_| ())));
    put(&mut raw, entry + 24, 11);

    // A flipped byte of the value: the checksum catches it.
    let byte = raw.read_vec(off, 1).unwrap()[0];
    raw.write_at(off, &[byte ^ 0x40]).unwrap();
    assert!(
        r.read().unwrap().is_some(),
        "the unchecked read does not look"
    );
    assert!(corrupted(&r.read_checked().map(|_| ())));
    assert!(corrupted(&r.read_into(&mut Vec::new())));
    assert!(corrupted(
        &ReadOnlyReader::open(&path)
            .unwrap()
            .read_into(&mut Vec::new())
    ));
    raw.write_at(off, &[byte]).unwrap();
    assert_eq!(r.read_checked().unwrap().unwrap().generation(), 2);

    // Writer-side words: the slot count and the data end.
    put(&mut raw, obj + SLOTS_IN_USE, 1000);
    assert!(corrupted(&Writer::open(&path).map(|_| ())));
    put(&mut raw, obj + SLOTS_IN_USE, 2);
    let end = raw.load_u64(obj + DATA_END, Ordering::SeqCst).unwrap();
    put(&mut raw, obj + DATA_END, u64::MAX - 4095);
    let mut w = Writer::open(&path).unwrap();
    // Fits the existing slot: no allocation, fine.
    w.publish(b"small").unwrap();
    // Needs a new segment: the data end is checked.
    assert!(corrupted(&w.publish(&vec![1u8; 1 << 20]).map(|_| ())));
    put(&mut raw, obj + DATA_END, end);
    w.publish(&vec![1u8; 1 << 20]).unwrap();
    // A huge reader high-water mark is clamped to the table.
    put(&mut raw, obj + READERS_HIGH, u64::MAX);
    w.publish(b"still fine").unwrap();
    assert_eq!(&*r.read_checked().unwrap().unwrap(), b"still fine");
}

/// Random bytes over the control block and slot table, again and again:
/// every call returns a value or a typed error, never panics or hangs.
#[test]
fn a_hostile_control_block_never_panics_or_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    w.publish(b"seed").unwrap();
    drop(w);
    let (mut raw, obj) = scribble(&path);
    let pristine = raw.read_vec(obj, 4352).unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..rounds(300) {
        raw.write_at(obj, &pristine).unwrap();
        for _ in 0..(next() % 8 + 1) {
            // A word among the ones that matter, with a nasty value.
            let at = [
                0, 136, 144, 152, 160, 256, 264, 272, 280, 288, 320, 328, 336, 344,
            ][(next() % 14) as usize];
            let v = match next() % 5 {
                0 => next(),
                1 => next() % 64,
                2 => ((next() % 16) << 8) | (next() % 4),
                3 => (next() % 64) * 4096,
                _ => 0,
            };
            put(&mut raw, obj + at, v);
        }
        if let Ok(mut r) = Reader::open(&path) {
            let _ = r.read().map(|g| g.map(|g| g.verify()));
            let _ = r.read_into(&mut Vec::new());
            let _ = r.wait_newer(u64::MAX >> 9, Duration::ZERO);
        }
        if let Ok(mut r) = ReadOnlyReader::open(&path) {
            let _ = r.read_into(&mut Vec::new());
        }
        let _ = snapshot::observe(&Inspection::open(&path).unwrap());
        if let Ok(mut w) = Writer::open_with(
            &path,
            &Options {
                slow_readers: SlowReaders::Fail,
                ..Options::default()
            },
        ) {
            let _ = w.publish(b"after");
            let _ = w.publish(&[3u8; 10_000]);
        }
    }
}

/// The slow-readers policies, with a version pinned in this process:
/// `AddSlots` stops at its maximum, `Wait` times out or gets the slot
/// when the reader lets go, `Fail` fails at once.
#[test]
fn slow_reader_policies_add_wait_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open_with(
        &path,
        &Options {
            slow_readers: SlowReaders::AddSlots { max: 3 },
            ..Options::default()
        },
    )
    .unwrap();
    w.publish(b"1").unwrap();
    let mut r1 = Reader::open(&path).unwrap();
    let mut r2 = Reader::open(&path).unwrap();
    let g1 = r1.read().unwrap().unwrap();
    w.publish(b"2").unwrap();
    let g2 = r2.read().unwrap().unwrap();
    w.publish(b"3").unwrap(); // a third slot
    assert!(
        matches!(w.publish(b"4"), Err(Error::Busy { .. })),
        "at the maximum"
    );
    assert_eq!(w.generation().unwrap(), 3);

    w.set_slow_readers(SlowReaders::Wait {
        timeout: Duration::from_millis(30),
    });
    assert!(matches!(w.publish(b"4"), Err(Error::Timeout { .. })));
    // No deadline at all (found in review: `Duration::MAX` overflowed
    // the deadline and panicked).
    w.set_slow_readers(SlowReaders::Wait {
        timeout: Duration::MAX,
    });
    std::thread::scope(|s| {
        let publisher = s.spawn(|| w.publish(b"4"));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            (&*g1, &*g2),
            (&b"1"[..], &b"2"[..]),
            "pinned versions intact"
        );
        drop(g1);
        assert_eq!(publisher.join().unwrap().unwrap(), 4);
    });
    w.set_slow_readers(SlowReaders::Fail);
    let g4 = r1.read().unwrap().unwrap();
    assert_eq!(w.publish(b"5").unwrap(), 5, "the slot of 3 was free");
    // Now 4 and 2 are pinned and 5 is current.
    assert!(matches!(w.publish(b"6"), Err(Error::Busy { .. })));
    assert_eq!((&*g2, &*g4), (&b"2"[..], &b"4"[..]));
    drop(g2);
    drop(g4);
    assert_eq!(w.publish(b"6").unwrap(), 6);
    assert_eq!(&*r1.read_checked().unwrap().unwrap(), b"6");
}

#[test]
fn a_snapshot_named_under_dev_shm() {
    let name = format!("mapshare-test-snapshot-{}", std::process::id());
    let path = mapshare::shm::path(&name).unwrap();
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    w.publish(b"in RAM").unwrap();
    assert_eq!(&*r.read_checked().unwrap().unwrap(), b"in RAM");
    drop((w, r));
    mapshare::shm::remove(&name).unwrap();
}

/// A forked child of a reader and writer cannot use their handles
/// (`ForkedChild`), and its drops release nothing: the parent's pin and
/// writer role stand.
#[test]
fn a_forked_child_neither_uses_nor_releases_its_parents_pins_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    drop(Writer::open(&path).unwrap());
    let mut w0 = Writer::open(&path).unwrap();
    w0.publish(b"one").unwrap();
    drop(w0);
    let mut peer = speer();
    assert_eq!(
        peer.ok(&format!("forkpin {}", path.display())),
        "0 0 0 1 true"
    );
    // The peer's writer was dropped by the peer itself (not by the child):
    // the role is free now; the pin on generation 1 stands.
    let mut w = failing_writer(&path);
    assert_eq!(w.publish(b"two").unwrap(), 2);
    assert!(
        matches!(w.publish(b"three"), Err(Error::Busy { .. })),
        "the pin the child dropped a copy of still stands"
    );
    assert_eq!(peer.ok("unpin"), "intact 1");
    assert_eq!(w.publish(b"three").unwrap(), 3);
}

/// Found in review: control words lowered behind the writer's back (the
/// slot count below the current slot, the data end below a segment, a
/// segment overlapping another) made it write into a version readers
/// hold; now each is `Corrupted`, and the reader's view stays intact.
#[test]
fn a_writer_refuses_control_words_that_would_overwrite_a_held_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    for v in [&b"one"[..], b"two", b"three"] {
        w.publish(v).unwrap();
    }
    let (mut raw, obj) = scribble(&path);
    let mut r = Reader::open(&path).unwrap();
    let g = r.read().unwrap().unwrap();
    assert_eq!(&*g, b"three");
    let current = raw.load_u64(obj + CURRENT, Ordering::SeqCst).unwrap();
    let slot = current & 0xff;

    // The slot count below the current slot.
    let count = raw.load_u64(obj + 136, Ordering::SeqCst).unwrap();
    put(&mut raw, obj + 136, slot);
    for _ in 0..3 {
        assert!(corrupted(&w.publish(b"four").map(|_| ())));
    }
    put(&mut raw, obj + 136, count);

    // Another slot's segment moved over the current one.
    let other = (slot + 1) % count;
    let entry = |s: u64| obj + SLOT_TABLE + s * 64;
    let (o_off, o_cap) = (
        raw.load_u64(entry(other), Ordering::SeqCst).unwrap(),
        raw.load_u64(entry(other) + 8, Ordering::SeqCst).unwrap(),
    );
    let cur_off = raw.load_u64(entry(slot), Ordering::SeqCst).unwrap();
    put(&mut raw, entry(other), cur_off);
    for _ in 0..count {
        let _ = w.publish(b"x");
    }
    assert_eq!(&*g, b"three", "the held version was never written");
    put(&mut raw, entry(other), o_off);
    put(&mut raw, entry(other) + 8, o_cap);

    // The data end below the segments: growth must not reuse them.
    let end = raw.load_u64(obj + 144, Ordering::SeqCst).unwrap();
    put(&mut raw, obj + 144, cur_off);
    assert!(corrupted(&w.publish(&vec![7u8; 1 << 20]).map(|_| ())));
    put(&mut raw, obj + 144, end);
    assert_eq!(&*g, b"three");
    g.verify().unwrap();
}

/// Found in review: a copy-out read of a version whose pages an outside
/// truncate cut away reported a checksum mismatch; it is `Truncated`.
#[test]
fn a_copy_out_read_of_a_cut_version_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    w.publish(&vec![5u8; 256 << 10]).unwrap();
    let mut r = Reader::open(&path).unwrap();
    let mut buf = Vec::new();
    assert!(r.read_into(&mut buf).unwrap().is_some());
    let len = std::fs::metadata(&path).unwrap().len();
    common::truncate_behind_our_back(&path, len - (128 << 10));
    match r.read_into(&mut buf) {
        Err(Error::Truncated { .. }) => {}
        other => panic!(
            "expected Truncated, got {:?}",
            other.map(|g| g.map(|_| buf.len()))
        ),
    }
}

fn cut(path: &std::path::Path, to: u64) {
    common::truncate_behind_our_back(path, to);
}

fn truncated<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(Error::Truncated { .. }) => {}
        other => panic!("{what}: expected Truncated, got {other:?}"),
    }
}

/// Found in review: `truncate -s 0` under an open reader and writer made
/// `read` say "nothing published" (`Ok(None)`) and `publish` say the
/// writer role was "taken by live process 0". Both are `Truncated`, and
/// stay so; so do `generation`, `wait_newer` and the copy-out reads.
#[test]
fn a_snapshot_truncated_to_nothing_is_truncated_for_reader_and_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    w.publish(b"before").unwrap();
    assert_eq!(&*r.read().unwrap().unwrap(), b"before");
    cut(&path, 0);
    for _ in 0..2 {
        truncated("read", r.read().map(|g| g.map(|g| g.to_vec())));
        truncated("read_into", r.read_into(&mut Vec::new()));
        truncated("generation", r.generation());
        truncated("wait_newer", r.wait_newer(1, Duration::from_millis(30)));
        truncated("publish", w.publish(b"after"));
        truncated("writer generation", w.generation());
    }
}

/// The same with the file cut to half: the control block survives, the
/// value's segment does not.
#[test]
fn a_snapshot_truncated_to_half_is_truncated_for_reader_and_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    w.publish(&vec![3u8; 64 << 10]).unwrap();
    assert_eq!(r.read().unwrap().unwrap().len(), 64 << 10);
    let len = std::fs::metadata(&path).unwrap().len();
    cut(&path, len / 2);
    for _ in 0..2 {
        truncated("read", r.read().map(|g| g.map(|g| g.to_vec())));
        truncated("read_checked", r.read_checked().map(|g| g.map(|g| g.len())));
        truncated("publish", w.publish(&vec![4u8; 64 << 10]));
    }
    // A new reader cannot read it either (its segment lies past the end).
    let mut late = Reader::open(&path).unwrap();
    truncated("new reader", late.read().map(|g| g.map(|g| g.to_vec())));
}

/// A guard taken before the truncate shows zeros where the pages were;
/// `ReadGuard::check` (and `verify`) say so with `Truncated`.
#[test]
fn a_guard_taken_before_a_truncate_can_find_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    w.publish(&vec![9u8; 64 << 10]).unwrap();
    let g = r.read().unwrap().unwrap();
    g.check().unwrap();
    cut(&path, 0);
    truncated("check before touching", g.check());
    assert!(g.iter().all(|&b| b == 0), "the cut pages read as zeros");
    truncated("check", g.check());
    truncated("verify", g.verify());
    truncated("copy_to", g.copy_to(&mut Vec::new()));
}

/// A waiter parked in `wait_newer(g, 10 s)` on its own thread (a
/// read-only one registered as a waiter first, its short first slices
/// passed), then `disturb` run under it: its result and how long it
/// waited. 10 s is the bound that tells a hang from an answer; no test
/// asserts a speed.
fn park_then(
    path: &std::path::Path,
    read_only: bool,
    g: u64,
    disturb: impl FnOnce(),
) -> (Result<u64, Error>, Duration) {
    let limit = Duration::from_secs(10);
    let waiter = if read_only {
        let mut r = ReadOnlyReader::open(path).unwrap();
        assert!(matches!(
            r.wait_newer(g, Duration::from_millis(20)),
            Err(Error::Timeout { .. })
        ));
        std::thread::spawn(move || {
            let start = Instant::now();
            (r.wait_newer(g, limit), start.elapsed())
        })
    } else {
        let r = Reader::open(path).unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            (r.wait_newer(g, limit), start.elapsed())
        })
    };
    // Let it park (its spin is 20 µs), then disturb it.
    std::thread::sleep(Duration::from_millis(200));
    disturb();
    let (got, waited) = waiter.join().unwrap();
    assert!(waited < limit, "answered only at its deadline: {got:?}");
    (got, waited)
}

/// Raises the version word of the snapshot at `path` to generation
/// `g + 1` by hand, the way a publish does, with no wake-up call after
/// it (a writer killed between its store and its wake-up).
fn raise_without_wake(path: &std::path::Path, g: u64) {
    let insp = Inspection::open(path).unwrap();
    let region = Region::open(path).unwrap();
    // SAFETY: the version word at the object's start is only ever accessed
    // as an AtomicU64; the writer publishes nothing meanwhile.
    let current = unsafe { region.atomic_u64(insp.header.object_offset) }.unwrap();
    let c = current.load(Ordering::SeqCst);
    let bits = c & ((1 << mapshare::unstable::pin::SLOT_BITS) - 1);
    current.store(
        ((g + 1) << mapshare::unstable::pin::SLOT_BITS) | bits,
        Ordering::SeqCst,
    );
}

/// A writer killed between storing a new version and waking the readers
/// (simulated by `raise_without_wake`) leaves a parked `wait_newer` asleep
/// until its own deadline, unless it looks at the version word now and
/// then (it parks in 50 ms slices). Both kinds of reader.
#[test]
fn a_publish_whose_wake_up_never_comes_is_still_seen_by_a_waiter() {
    for read_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open(&path).unwrap();
        let g = w.publish(b"one").unwrap();
        let (got, _) = park_then(&path, read_only, g, || raise_without_wake(&path, g));
        assert_eq!(got.unwrap(), g + 1, "read_only: {read_only}");
        drop(w);
    }
}

/// Review (issue 9), fixed: a file cut under a parked waiter was
/// `Truncated` only when its whole timeout had passed (with
/// `Duration::MAX`, never: it waited forever on zeros); a read-only
/// waiter also parked until its deadline after its first 4 ms. Both
/// kinds now check faults after each slice.
#[test]
fn a_file_cut_under_a_parked_waiter_is_truncated_before_its_deadline() {
    for read_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open(&path).unwrap();
        let g = w.publish(b"one").unwrap();
        let (got, _) = park_then(&path, read_only, g, || cut(&path, 0));
        truncated(
            if read_only {
                "read-only wait_newer"
            } else {
                "wait_newer"
            },
            got,
        );
        drop(w);
    }
}

/// Review (issue 9): `publish` of bytes borrowed from a guard of the same
/// file in the same process (the kernel's source is another mapping of
/// the same file): the writer picks a slot the guard does not pin, and
/// the new version is an exact copy with the right checksum, at lengths
/// on both sides of the kernel's threshold and across page ends.
#[test]
fn publishing_a_guards_own_bytes_copies_them_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open(&path).unwrap();
    let mut r = Reader::open(&path).unwrap();
    for len in [0usize, 511, 512, 4095, 4097, 70_001, 1 << 20] {
        let v: Vec<u8> = (0..len).map(|i| (i * 131 % 253) as u8).collect();
        let g1 = w.publish(&v).unwrap();
        let g = r.read().unwrap().unwrap();
        assert_eq!(g.generation(), g1);
        let g2 = w.publish(&g).unwrap();
        assert_eq!(&*g, &v[..], "the pinned source changed under the copy");
        drop(g);
        let g = r.read_checked().unwrap().unwrap();
        assert_eq!(g.generation(), g2);
        assert_eq!(&*g, &v[..]);
        assert_eq!(g.stored_checksum(), snapshot::checksum(&v));
    }
}
