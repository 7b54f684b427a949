//! Self-describing files, leases and the process-shared primitives, with
//! real processes: concurrent create-or-open, persistence, exact counts
//! under contention, holders killed with SIGKILL, forked children, and
//! byte-range locks against Python's `fcntl.lockf`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::peer::{increment, raw, rounds, sync_spec, Pair, Peer, ENV, EVENT, SEM, VALUE};
use mapshare::sync::{Event, FileLock, LockError, LockKind, MutexState, Semaphore};
use mapshare::unstable::lease::Liveness;
use mapshare::{Error, Fingerprint, Kind, Shared, SharedFile, Spec};

#[test]
fn peer_entry() {
    if std::env::var_os(ENV).is_some() {
        common::peer::serve();
    }
}

#[test]
fn exactly_one_process_initializes_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut peers: Vec<Peer> = (0..8).map(|_| Peer::spawn()).collect();
    for round in 0..rounds(100) {
        let path = dir.path().join(format!("race-{round}"));
        for p in &mut peers {
            p.send(&format!("init {}", path.display()));
        }
        let answers: Vec<String> = peers.iter_mut().map(|p| p.answer().unwrap()).collect();
        let created = answers.iter().filter(|a| a.starts_with("created")).count();
        assert_eq!(created, 1, "round {round}: {answers:?}");
        let contents: HashSet<&str> = answers
            .iter()
            .map(|a| a.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            contents.len(),
            1,
            "round {round}: everyone sees the same content"
        );
        for p in &mut peers {
            p.ok("close");
        }
    }
}

#[test]
fn an_initializer_that_dies_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut dying = Peer::spawn();
    dying.send(&format!("initdie {}", path.display()));
    // It exits with status 7 inside its initializer, after writing part of
    // the header into its nameless new file.
    assert_eq!(dying.wait().code(), Some(7));
    // Files appear whole: nothing half-made is left at the path (or, on
    // file systems with O_TMPFILE, anywhere in the directory).
    assert!(!path.exists(), "a half-initialized file became visible");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let mut next = Peer::spawn();
    let answer = next.ok(&format!("init {}", path.display()));
    assert!(answer.starts_with("created"), "{answer}");
}

#[test]
fn bad_files_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sync_spec();
    let text = dir.path().join("text");
    std::fs::write(&text, b"just a text file, not ours").unwrap();
    assert!(matches!(
        SharedFile::open_or_create(&text, &spec, |_, _| Ok(())),
        Err(Error::NotMapshare { .. })
    ));
    // Nothing was changed.
    assert_eq!(std::fs::read(&text).unwrap(), b"just a text file, not ours");

    let path = dir.path().join("sync");
    drop(SharedFile::open_or_create(&path, &spec, |_, _| Ok(())).unwrap());
    let other = Spec::new(Kind::Raw, Fingerprint::new("tests::other", 0, 1), 4096);
    assert!(matches!(
        SharedFile::open_or_create(&path, &other, |_, _| Ok(())),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedFile::open(
            &path,
            Kind::Queue,
            &spec.fingerprint,
            Duration::from_secs(1)
        ),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Shared::<u64>::open(&path),
        Err(Error::WrongKind { .. })
    ));

    // Corrupt the checksum region on disk.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SharedFile::open_any(&path, Duration::from_secs(1)),
        Err(Error::BadChecksum { .. })
    ));
    // Byte-swapped magic: written on a machine of the other endianness.
    bytes[60] ^= 0x10;
    bytes[..8].reverse();
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SharedFile::open_any(&path, Duration::from_secs(1)),
        Err(Error::ByteOrderMismatch { .. })
    ));
    bytes[..8].reverse();
    // Truncated behind our back.
    std::fs::write(&path, &bytes[..bytes.len() - 4096]).unwrap();
    assert!(matches!(
        SharedFile::open_any(&path, Duration::from_secs(1)),
        Err(Error::Truncated { .. })
    ));
    // A file whose init state is garbage (neither in progress nor ready).
    bytes[8..12].copy_from_slice(&[1, 2, 3, 4]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SharedFile::open_or_create(&path, &spec, |_, _| Ok(())),
        Err(Error::Corrupted { .. })
    ));
}

#[test]
fn a_value_persists_after_every_process_has_exited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    {
        let mut writer = Peer::spawn();
        assert_eq!(writer.ok(&format!("pair {}", path.display())), "created");
        assert_eq!(writer.ok("incr 42"), "42 42");
    }
    let mut reader = Peer::spawn();
    assert_eq!(reader.ok(&format!("pair {}", path.display())), "existing");
    assert_eq!(reader.ok("incr 0"), "42 42");
    drop(reader);
    let here = Shared::<Pair>::open(&path).unwrap();
    assert_eq!(here.load().unwrap(), Pair { a: 42, b: 42 });
    // The wrong type is refused.
    assert!(matches!(
        Shared::<u64>::open(&path),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn two_processes_increment_a_million_times_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let n = rounds(1_000_000);
    let mut peers = [Peer::spawn(), Peer::spawn()];
    for p in &mut peers {
        p.ok(&format!("pair {}", path.display()));
    }
    for p in &mut peers {
        p.send(&format!("incr {n}"));
    }
    for p in &mut peers {
        p.answer().unwrap();
    }
    let v = Shared::<Pair>::open(&path).unwrap().load().unwrap();
    assert_eq!(
        v,
        Pair {
            a: 2 * n as u64,
            b: 2 * n as u64
        }
    );
}

#[test]
fn semaphore_counts_are_exact_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync");
    let n = rounds(1_000_000);
    let mut poster = Peer::spawn();
    let mut waiter = Peer::spawn();
    poster.ok(&format!("syncfile {}", path.display()));
    waiter.ok(&format!("syncfile {}", path.display()));
    waiter.send(&format!("waitn {n}"));
    poster.send(&format!("post {n}"));
    poster.answer().unwrap();
    waiter.answer().unwrap();
    let f = SharedFile::open_or_create(&path, &sync_spec(), |_, _| Ok(())).unwrap();
    // SAFETY: the sync file's layout reserves SEM for this semaphore.
    let sem = unsafe { Semaphore::at(raw(&f), f.object_offset() + SEM) }.unwrap();
    assert_eq!(sem.count(), 0);
    assert!(!sem.try_wait());
    sem.post_n(3).unwrap();
    assert_eq!(sem.count(), 3);
}

#[test]
fn event_ping_pong_across_processes_loses_no_wakeup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync");
    let f = SharedFile::open_or_create(&path, &sync_spec(), |_, _| Ok(())).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("syncfile {}", path.display()));
    let rounds = 5000u32;
    peer.send(&format!("pingpong {rounds}"));
    // SAFETY: the sync file's layout reserves EVENT for this event.
    let ev = unsafe { Event::at(raw(&f), f.object_offset() + EVENT) }.unwrap();
    // SAFETY: VALUE is only this atomic word in this process.
    let value = unsafe { raw(&f).atomic_u32(f.object_offset() + VALUE) }.unwrap();
    use std::sync::atomic::Ordering;
    for i in 0..rounds {
        value.store(2 * i + 1, Ordering::Release);
        ev.notify_all();
        ev.wait_while(
            || value.load(Ordering::Acquire) != 2 * i + 2,
            Duration::from_secs(30),
        )
        .unwrap();
    }
    peer.answer().unwrap();
}

#[test]
fn a_killed_holder_is_detected_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    holder.ok("incr 10");
    assert_eq!(holder.ok("hold"), "holding");
    let pid = holder.pid();

    let pair = Shared::<Pair>::open(&path).unwrap();
    assert_eq!(
        pair.mutex().state().unwrap(),
        MutexState::Held { pid, alive: true }
    );
    assert!(matches!(
        pair.mutex().try_lock(),
        Err(LockError::WouldBlock { .. })
    ));
    assert!(matches!(
        pair.mutex().lock_timeout(Duration::from_millis(50)),
        Err(LockError::Timeout { .. })
    ));

    holder.kill();
    assert_eq!(
        pair.mutex().state().unwrap(),
        MutexState::Held { pid, alive: false }
    );
    let start = Instant::now();
    match pair.mutex().lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!((g.a, g.b), (11, 10), "the holder died mid-increment");
            g.a = g.b;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    eprintln!("owner death detected in {:?}", start.elapsed());
    assert_eq!(pair.mutex().state().unwrap(), MutexState::Free);
    assert_eq!(pair.load().unwrap(), Pair { a: 10, b: 10 });
}

#[test]
fn a_recovery_given_up_makes_the_mutex_not_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    holder.ok("hold");
    holder.kill();
    let pair = Shared::<Pair>::open(&path).unwrap();
    match pair.lock() {
        Err(LockError::OwnerDied(g)) => drop(g), // no mark_consistent()
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(matches!(pair.lock(), Err(LockError::NotRecoverable { .. })));
    assert!(matches!(
        pair.mutex().try_lock(),
        Err(LockError::NotRecoverable { .. })
    ));
    assert_eq!(pair.mutex().state().unwrap(), MutexState::NotRecoverable);
    // Another process agrees.
    let mut other = Peer::spawn();
    other.ok(&format!("pair {}", path.display()));
    assert_eq!(other.ok("trylock"), "NotRecoverable");
}

#[test]
fn a_panic_while_holding_poisons_until_marked_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut g = pair.lock().unwrap();
        g.a += 1;
        panic!("boom");
    }));
    assert!(result.is_err());
    match pair.lock() {
        Err(LockError::Poisoned(mut g)) => {
            assert_eq!((g.a, g.b), (1, 0));
            g.a = 0;
            g.mark_consistent();
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(pair.lock().is_ok());
}

/// Threads of one process wait for each other like `std::sync::Mutex`
/// users: `try_lock` says `WouldBlock`, `lock` waits for the guard.
#[test]
fn threads_of_one_process_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let g = pair.lock().unwrap();
    assert!(matches!(
        pair.mutex().try_lock(),
        Err(LockError::WouldBlock { .. })
    ));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut g = pair.lock().expect("waits, then locks");
            g.a += 1;
            g.b += 1;
        });
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "the other thread waits");
        drop(g);
        waiter.join().unwrap();
    });
    assert_eq!(pair.load().unwrap(), Pair { a: 1, b: 1 });
}

/// Issue 7 A3: 2 threads in each of 2 processes hammer one counter; the
/// total is exact and nobody gets an error. (Before: "busy: this process
/// already holds the mutex" on contention between threads.)
#[test]
fn two_threads_in_each_of_two_processes_count_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let n = rounds(20_000) as u64;
    let mut peers = [Peer::spawn(), Peer::spawn()];
    for p in &mut peers {
        p.ok(&format!("pair {}", path.display()));
    }
    for p in &mut peers {
        p.send(&format!("threads {n}"));
    }
    for p in &mut peers {
        let answer = p.answer().expect("threads");
        assert!(!answer.starts_with("FAILED"), "{answer}");
    }
    assert_eq!(pair.load().unwrap(), Pair { a: 4 * n, b: 4 * n });
}

/// Issue 7 A2: a forked child that drops its copy of a guard must not
/// unlock what its parent holds.
#[test]
fn a_forked_child_dropping_an_inherited_guard_does_not_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut parent = Peer::spawn();
    parent.ok(&format!("pair {}", path.display()));
    parent.send("forkdrop");
    assert_eq!(parent.answer().unwrap(), "held");
    // The child has dropped its copy and exited; the parent still holds.
    assert!(matches!(
        pair.mutex().try_lock(),
        Err(LockError::WouldBlock { .. })
    ));
    let mut other = Peer::spawn();
    other.ok(&format!("pair {}", path.display()));
    assert_eq!(other.ok("trylock"), "WouldBlock");
    assert_eq!(
        pair.mutex().state().unwrap(),
        MutexState::Held {
            pid: parent.pid(),
            alive: true
        },
        "nothing marked"
    );
    parent.send("release");
    assert_eq!(parent.answer().unwrap(), "released");
    assert_eq!(other.ok("trylock"), "locked");
    assert!(pair.lock().is_ok(), "consistent, not poisoned");
}

/// Issue 7 A4: reading a value whose holder died reports it and changes
/// nothing: any number of loads, then a locker still gets `OwnerDied`
/// (before, the second load made the mutex not recoverable).
#[test]
fn a_load_never_changes_the_recovery_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    holder.ok("incr 3");
    assert_eq!(holder.ok("hold"), "holding");
    holder.kill();
    let pair = Shared::<Pair>::open(&path).unwrap();
    for _ in 0..3 {
        let e = pair.load().unwrap_err();
        assert!(matches!(e, Error::OwnerDied { .. }), "{e}");
        assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    }
    assert_eq!(pair.state().unwrap(), MutexState::OwnerDied);
    // A panicking holder: loads report Poisoned and leave it so.
    match pair.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!((g.a, g.b), (4, 3));
            g.a = g.b;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = pair.lock().unwrap();
        panic!("boom");
    }));
    for _ in 0..2 {
        assert!(matches!(pair.load(), Err(Error::Poisoned { .. })));
    }
    assert_eq!(pair.state().unwrap(), MutexState::Poisoned);
    assert!(matches!(pair.lock(), Err(LockError::Poisoned(_))));
}

/// `?` turns a `LockError` into a `mapshare::Error` that names the file,
/// releasing an `OwnerDied` guard without making the mutex not recoverable.
#[test]
fn lock_errors_convert_with_question_mark() {
    fn bump(pair: &Shared<Pair>) -> mapshare::Result<u64> {
        let mut g = pair.lock()?;
        g.a += 1;
        g.b += 1;
        Ok(g.a)
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    let pair = Shared::<Pair>::open(&path).unwrap();
    let e = pair.mutex().try_lock().map_err(Error::from).unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e}");
    holder.kill();
    let e = bump(&pair).unwrap_err();
    assert!(matches!(e, Error::OwnerDied { .. }), "{e}");
    assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    assert_eq!(pair.state().unwrap(), MutexState::OwnerDied);
    // And into a `Box<dyn Error>` through `mapshare::Error`.
    let boxed: Box<dyn std::error::Error> = Box::new(bump(&pair).unwrap_err());
    assert!(boxed.to_string().contains("died"), "{boxed}");
}

/// Issue 7 A4: the deliberate way out: mark consistent after a check, or
/// reset a not-recoverable mutex; each refused where it does not apply.
#[test]
fn repair_marks_consistent_and_resets() {
    use mapshare::shared::{repair, Repair};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    assert!(matches!(
        repair(&path, Repair::MarkConsistent),
        Err(Error::RepairNotApplicable { .. })
    ));
    assert!(matches!(
        repair(&path, Repair::Reset),
        Err(Error::RepairNotApplicable { .. })
    ));

    // A live holder: refused.
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    assert!(matches!(
        repair(&path, Repair::MarkConsistent),
        Err(Error::Busy { .. })
    ));
    // Dead: repair takes the lock over and clears OwnerDied.
    holder.kill();
    assert_eq!(
        repair(&path, Repair::MarkConsistent).unwrap(),
        MutexState::Free
    );
    assert_eq!(pair.load().unwrap(), Pair { a: 1, b: 0 });

    // Not recoverable: only Reset applies.
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    holder.kill();
    match pair.lock() {
        Err(LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(pair.state().unwrap(), MutexState::NotRecoverable);
    assert!(matches!(
        repair(&path, Repair::MarkConsistent),
        Err(Error::RepairNotApplicable { .. })
    ));
    assert_eq!(repair(&path, Repair::Reset).unwrap(), MutexState::Free);
    assert!(pair.lock().is_ok());

    // Not a value file.
    let raw = dir.path().join("raw");
    SharedFile::open_or_create(&raw, &sync_spec(), |_, _| Ok(())).unwrap();
    assert!(matches!(
        repair(&raw, Repair::Reset),
        Err(Error::WrongKind { .. })
    ));
}

#[test]
fn more_types_are_persistent() {
    use mapshare::shared::Bool;
    let dir = tempfile::tempdir().unwrap();
    let f = Shared::<f64>::open_or_create(dir.path().join("f64"), &1.5).unwrap();
    assert_eq!(f.load().unwrap(), 1.5);
    let a = Shared::<[u32; 3]>::open_or_create(dir.path().join("arr"), &[1, 2, 3]).unwrap();
    assert_eq!(a.load().unwrap(), [1, 2, 3]);
    let b = Shared::<Bool>::open_or_create(dir.path().join("bool"), &Bool::new(true)).unwrap();
    assert!(b.load().unwrap().get());
    let w = Shared::<i128>::open_or_create(dir.path().join("i128"), &-5).unwrap();
    assert_eq!(w.load().unwrap(), -5);
    // A file of another array type is refused.
    assert!(matches!(
        Shared::<[u32; 4]>::open(dir.path().join("arr")),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        Shared::<[i32; 3]>::open(dir.path().join("arr")),
        Err(Error::TypeMismatch { .. })
    ));
}

/// SIGKILL the holder at random points, many rounds: every round must end
/// in `OwnerDied`, with the data torn by at most the one increment that
/// was in flight, and nothing that completed lost.
#[test]
fn crash_rounds_recover_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut seed = 0x9e37_79b9u32;
    let mut slowest = Duration::ZERO;
    let mut last = 0u64;
    for round in 0..rounds(200) {
        let mut worker = Peer::spawn();
        worker.ok(&format!("pair {}", path.display()));
        worker.ok("crashloop");
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_micros(u64::from(seed % 3000)));
        // Freeze it; kill it only if it holds the lock at that moment.
        let pid = worker.pid();
        loop {
            worker.signal(libc::SIGSTOP);
            let state = wait_stopped_state(&pair, pid);
            if state == (MutexState::Held { pid, alive: true }) {
                break;
            }
            worker.signal(libc::SIGCONT);
            std::thread::sleep(Duration::from_micros(50));
        }
        worker.kill();
        let start = Instant::now();
        match pair.mutex().lock_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(mut g)) => {
                slowest = slowest.max(start.elapsed());
                assert!(
                    g.a == g.b || g.a == g.b + 1,
                    "round {round}: torn {:?}",
                    (g.a, g.b)
                );
                assert!(g.b >= last, "round {round}: completed increments lost");
                g.a = g.b;
                last = g.b;
                g.mark_consistent();
            }
            other => panic!("round {round}: expected OwnerDied, got {other:?}"),
        }
    }
    assert!(last > 0);
    // One more process finishes cleanly on the recovered data.
    assert!(!increment(&pair, 0));
    eprintln!("slowest OwnerDied detection: {slowest:?}");
}

/// After SIGSTOP the process may still be running for a moment; read the
/// mutex state until two reads agree.
fn wait_stopped_state(pair: &Shared<Pair>, pid: u32) -> MutexState {
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        let state = s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("T") || state == Some("t") {
            break;
        }
        std::thread::yield_now();
    }
    pair.mutex().state().unwrap()
}

#[test]
fn leases_list_attached_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut peers = [Peer::spawn(), Peer::spawn()];
    for p in &mut peers {
        p.ok(&format!("pair {}", path.display()));
    }
    let leases = pair.file().leases();
    let me = pair.file().lease();
    let list = leases.list(Some(me)).unwrap();
    let pids: HashSet<u32> = list.iter().filter(|a| a.alive).map(|a| a.pid).collect();
    assert!(pids.contains(&std::process::id()));
    assert!(pids.contains(&peers[0].pid()) && pids.contains(&peers[1].pid()));

    let answer = peers[0].ok("token");
    let raw: u64 = answer.split(' ').next().unwrap().parse().unwrap();
    let token = mapshare::unstable::lease::Token::from_raw(raw).unwrap();
    assert_eq!(
        leases.liveness(token, Some(me)).unwrap(),
        Liveness::Alive {
            pid: peers[0].pid()
        }
    );
    peers[0].kill();
    assert!(matches!(
        leases.liveness(token, Some(me)).unwrap(),
        Liveness::Dead { .. }
    ));

    // A new process may reuse the slot, but never passes for the old owner.
    let mut again = Peer::spawn();
    again.ok(&format!("pair {}", path.display()));
    let new: u64 = again
        .ok("token")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new, raw);
    assert!(matches!(
        leases.liveness(token, Some(me)).unwrap(),
        Liveness::Dead { .. }
    ));
}

#[test]
fn a_forked_child_does_not_pass_for_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut parent = Peer::spawn();
    parent.ok(&format!("pair {}", path.display()));
    let raw: u64 = parent
        .ok("token")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = mapshare::unstable::lease::Token::from_raw(raw).unwrap();
    parent.send("forkhold");
    let answers = [parent.answer().unwrap(), parent.answer().unwrap()];
    assert!(
        answers.contains(&"child:refused".to_string()),
        "{answers:?}"
    );
    let child: i32 = answers.iter().find_map(|a| a.parse().ok()).unwrap();

    // The parent dies; the child still holds the open file description and
    // so the parent's lease lock. Unreaped, the parent is a zombie, whose
    // PID still exists: it must count as dead already.
    parent.signal(libc::SIGKILL);
    let stat = format!("/proc/{}/stat", parent.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&stat)
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .is_some_and(|r| r.trim_start().starts_with('Z'))
    {
        assert!(
            Instant::now() < deadline,
            "the parent never became a zombie"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The leader turns zombie as soon as it dies, while its other threads
    // may still be exiting; the pidfd the probe asks becomes readable only
    // when the whole thread group is gone, which under load can be a
    // little later. Dead within a bounded time is the promise.
    let leases = pair.file().leases();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(
        leases.liveness(token, Some(pair.file().lease())).unwrap(),
        Liveness::Dead { .. }
    ) {
        assert!(Instant::now() < deadline, "a zombie parent is dead");
        std::thread::sleep(Duration::from_millis(2));
    }
    parent.kill();
    let leases = pair.file().leases();
    assert!(
        matches!(
            leases.liveness(token, Some(pair.file().lease())).unwrap(),
            Liveness::Dead { .. }
        ),
        "the forked child must not keep the dead parent's lease alive"
    );
    // SAFETY: kill(2) on the forked child's pid.
    unsafe { libc::kill(child, libc::SIGKILL) };
}

/// Python holds a classic `fcntl` lock; our OFD lock must see it, and the
/// other way round.
#[test]
fn file_locks_conflict_both_ways_with_python_lockf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let script = r#"
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
mode = sys.argv[2]
if mode == "hold":
    fcntl.lockf(fd, fcntl.LOCK_EX, 100, 1000)   # bytes 1000..1100
    print("locked", flush=True)
    sys.stdin.readline()
else:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 1000)
        print("got it", flush=True)
    except OSError:
        print("refused", flush=True)
"#;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let mut py = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap(), "hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let lock = FileLock::open(&path).unwrap();
    assert!(lock
        .try_lock(1050..1060, LockKind::Exclusive)
        .unwrap()
        .is_none());
    assert!(lock
        .try_lock(1050..1060, LockKind::Shared)
        .unwrap()
        .is_none());
    let holder = lock.holder(1000..1100, LockKind::Shared).unwrap().unwrap();
    assert_eq!(holder.pid, Some(py.id()));
    assert!(matches!(
        lock.lock_timeout(1099..1200, LockKind::Exclusive, Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    // Bytes outside Python's range are free.
    assert!(lock
        .try_lock(0..1000, LockKind::Exclusive)
        .unwrap()
        .is_some());

    // Python lets go; now we hold a range and Python is refused.
    py.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    py.wait().unwrap();
    let guard = lock
        .lock_timeout(1000..1100, LockKind::Exclusive, Duration::from_secs(5))
        .unwrap();
    let probe = |expect: &str| {
        let out = Command::new("python3")
            .args(["-c", script, path.to_str().unwrap(), "probe"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expect);
    };
    probe("refused");
    drop(guard);
    probe("got it");
}

#[test]
fn a_full_lease_table_reclaims_slots_of_dead_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-slots");
    let mut spec = sync_spec();
    spec.lease_slots = 2;
    let mine = SharedFile::open_or_create(&path, &spec, |_, _| Ok(())).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("attach2 {}", path.display()));
    // Both slots are held by live processes.
    assert!(matches!(
        SharedFile::open_or_create(&path, &spec, |_, _| Ok(())),
        Err(Error::LeaseTableFull { slots: 2, .. })
    ));
    // The peer dies without releasing its slot: it is reclaimed.
    peer.kill();
    let again = SharedFile::open_or_create(&path, &spec, |_, _| Ok(())).unwrap();
    assert_ne!(again.lease().token(), mine.lease().token());
    let alive: Vec<_> = mine
        .leases()
        .list(Some(mine.lease()))
        .unwrap()
        .into_iter()
        .filter(|a| a.alive)
        .collect();
    assert_eq!(alive.len(), 2);
    assert!(alive.iter().all(|a| a.pid == std::process::id()));
}

/// A2 for byte-range locks: a forked child (of a helper process) that drops
/// an inherited `RangeGuard` must not release its parent's OFD lock, and
/// may not lock through the inherited `FileLock` either.
#[test]
fn a_forked_child_never_releases_its_parents_range_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ranges");
    std::fs::write(&path, [0u8; 4096]).unwrap();
    let mut peer = Peer::spawn();
    peer.send(&format!("rangefork {}", path.display()));
    let answers = [peer.answer().unwrap(), peer.answer().unwrap()];
    assert!(
        answers.contains(&"child:refused".to_string()),
        "{answers:?}"
    );
    assert!(answers.contains(&"parent-holds".to_string()), "{answers:?}");
    let lock = FileLock::open(&path).unwrap();
    assert!(
        lock.try_lock(0..100, LockKind::Exclusive)
            .unwrap()
            .is_none(),
        "the child's drop released the parent's lock"
    );
    assert!(lock
        .try_lock(200..300, LockKind::Exclusive)
        .unwrap()
        .is_some());
    peer.kill();
    assert!(lock
        .try_lock(0..100, LockKind::Exclusive)
        .unwrap()
        .is_some());
}

/// Whether `unshare --pid` works here (root, or user namespaces); prints
/// why not when it does not, so a skipped test says so.
fn unshare_works() -> bool {
    wrapper_works(&["unshare", "--pid", "--fork", "--kill-child"])
}

/// Issue 7 A1: a holder in another PID namespace, whose PID does not exist
/// in ours, is alive as long as it holds its lease: we get `WouldBlock` and
/// `Timeout`, never `OwnerDied`; once it is killed we do get `OwnerDied`.
/// (Before: `kill(pid, 0)` in our namespace declared it dead at once.)
#[test]
fn a_holder_in_another_pid_namespace_is_alive_until_it_dies() {
    if !unshare_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    // In a fresh namespace PIDs are handed out in order: `sh` is 1, the
    // `true`s take 2.., and the peer gets `target`, a PID nobody has here.
    let target = (300u32..)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let script = r#"i=2; while [ "$i" -lt "$0" ]; do /bin/true; i=$((i+1)); done; "$@""#;
    let target_arg = target.to_string();
    let mut holder = Peer::spawn_under(&[
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        script,
        &target_arg,
    ]);
    holder.ok(&format!("pair {}", path.display()));
    let their_pid: u32 = holder
        .ok("token")
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(their_pid, target, "the peer got the PID planned for it");
    assert_eq!(holder.ok("hold"), "holding");
    assert!(
        !std::path::Path::new(&format!("/proc/{target}")).exists(),
        "PID {target} must not exist in the taker's namespace for this test to mean anything"
    );

    assert_eq!(
        pair.state().unwrap(),
        MutexState::Held {
            pid: target,
            alive: true
        }
    );
    assert!(matches!(
        pair.mutex().try_lock(),
        Err(LockError::WouldBlock { .. })
    ));
    assert!(matches!(
        pair.mutex().lock_timeout(Duration::from_millis(100)),
        Err(LockError::Timeout { .. })
    ));
    let mut other = Peer::spawn();
    other.ok(&format!("pair {}", path.display()));
    assert_eq!(other.ok("locktimeout 100"), "Timeout");

    holder.kill(); // `--kill-child` takes the whole namespace down
    match pair.mutex().lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!((g.a, g.b), (1, 0));
            g.a = g.b;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    };
}

/// Issue 7 A1, the other way round: the taker runs in a new PID namespace
/// (with the host's `/proc` still mounted) and the holder's PID means
/// nothing there.
#[test]
fn a_taker_in_another_pid_namespace_waits_for_a_live_holder() {
    if !unshare_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    let mut taker = Peer::spawn_under(&["unshare", "--pid", "--fork", "--kill-child"]);
    taker.ok(&format!("pair {}", path.display()));
    assert_eq!(taker.ok("trylock"), "WouldBlock");
    assert_eq!(taker.ok("locktimeout 100"), "Timeout");
    holder.kill();
    assert_eq!(taker.ok("locktimeout 10000"), "OwnerDied");
}

/// Issue 7 A1: holder and taker share a new PID namespace whose `/proc` is
/// still the host's. The PID test must notice that `/proc/<pid>` names some
/// other process there (and use a pidfd instead): the live holder stays
/// alive, the killed one is dead.
#[test]
fn one_pid_namespace_with_a_foreign_proc_judges_its_own_pids() {
    if !unshare_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let mut taker = Peer::spawn_under(&["unshare", "--pid", "--fork", "--kill-child"]);
    taker.ok(&format!("pair {}", path.display()));
    assert_eq!(
        taker.ok(&format!("nsprobe {}", path.display())),
        "WouldBlock OwnerDied"
    );
}

/// Whether `wrapper true` runs here; prints why not when it does not.
fn wrapper_works(wrapper: &[&str]) -> bool {
    match std::process::Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg("true")
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipped: `{}` failed here: {}",
                wrapper.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run `{}`: {e}", wrapper[0]);
            false
        }
    }
}

/// `holder` (a live peer) holds `pair`'s mutex: we must see it alive and
/// be refused; once it is killed we take over with `OwnerDied` and repair.
fn refused_until_the_holder_dies(pair: &Shared<Pair>, holder: &mut Peer) {
    let state = pair.state().unwrap();
    let took = pair
        .mutex()
        .try_lock()
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert!(
        matches!(state, MutexState::Held { alive: true, .. }),
        "{state:?}, try_lock: {took:?}"
    );
    assert!(
        took.clone().is_err_and(|e| e.contains("held by another")),
        "{took:?}"
    );
    holder.kill();
    match pair.mutex().lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            g.a = g.b;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    };
}

/// A holder in another *time* namespace (same PID namespace) whose boot
/// clock is offset: `/proc/<pid>/stat` shows each reader the start time
/// shifted by the reader's own boot-time offset, so the start time the
/// holder recorded differs from the one the taker reads. The live holder
/// must still be alive.
#[test]
fn a_holder_in_another_time_namespace_is_alive_until_it_dies() {
    let wrapper = [
        "unshare",
        "--time",
        "--boottime",
        "100000",
        "--fork",
        "--kill-child",
    ];
    if !wrapper_works(&wrapper) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut holder = Peer::spawn_under(&wrapper);
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    let mut other = Peer::spawn();
    other.ok(&format!("pair {}", path.display()));
    assert_eq!(other.ok("locktimeout 100"), "Timeout");
    refused_until_the_holder_dies(&pair, &mut holder);
}

/// A taker that cannot see the holder in `/proc` (`hidepid=2`, another
/// user): a missing `/proc/<pid>` is not proof of death there. The live
/// holder must still be alive; once killed, it is dead.
#[test]
fn a_holder_hidden_by_hidepid_is_alive_until_it_dies() {
    let holder_wrapper = [
        "setpriv",
        "--reuid",
        "1000",
        "--regid",
        "1000",
        "--clear-groups",
    ];
    let script = "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid 65534 --regid 65534 --clear-groups \"$@\"";
    let taker_wrapper = ["unshare", "--mount", "sh", "-c", script, "sh"];
    if !wrapper_works(&holder_wrapper) || !wrapper_works(&taker_wrapper) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("pair");
    drop(Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut holder = Peer::spawn_under(&holder_wrapper);
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    let mut taker = Peer::spawn_under(&taker_wrapper);
    taker.ok(&format!("pair {}", path.display()));
    assert_eq!(taker.ok("trylock"), "WouldBlock");
    assert_eq!(taker.ok("locktimeout 100"), "Timeout");
    holder.kill();
    assert_eq!(taker.ok("locktimeout 10000"), "OwnerDied");
}

/// A holder whose main thread left with `pthread_exit` while another
/// thread keeps the process (and its lease) alive: `/proc/<pid>/stat`
/// shows the thread-group leader as a zombie, yet the process holds the
/// mutex. It must stay alive until it is killed.
#[test]
fn a_holder_whose_main_thread_exited_is_alive_until_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut holder = Peer::spawn();
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("holdexitmain"), "holding");
    let stat = format!("/proc/{}/stat", holder.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&stat)
        .unwrap()
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        assert!(
            Instant::now() < deadline,
            "the leader never became a zombie"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let threads = std::fs::read_dir(format!("/proc/{}/task", holder.pid()))
        .unwrap()
        .count();
    assert!(threads >= 2, "the holder must still run another thread");
    refused_until_the_holder_dies(&pair, &mut holder);
}

/// Hostile words: random lock, sequence and state words, and random lease
/// slots (generations, PIDs, namespace ids, start times), in a file a live
/// peer also holds a lease on. Every call ends, with a typed answer, and
/// never panics; a bounded lock never waits much past its timeout.
#[test]
fn garbage_in_the_mutex_and_lease_words_is_a_typed_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("pair {}", path.display()));
    let f = pair.file();
    let (lease_at, slots) = (f.header().lease_offset, f.header().lease_slots);
    let obj = f.object_offset();
    // SAFETY: no guard lives while the test writes these words.
    let r = unsafe { f.raw_region() };
    let me = mapshare::unstable::sys::proc::Identity::current();
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: this thread is the only one in this process touching these
    // words while the test scribbles, and no view outlives its store.
    let store64 = |at: u64, v: u64| unsafe { r.atomic_u64(at) }.unwrap().store(v, SeqCst);
    // SAFETY: as for `store64`.
    let store32 = |at: u64, v: u32| unsafe { r.atomic_u32(at) }.unwrap().store(v, SeqCst);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..rounds(300) {
        let slot = next() % u64::from(slots + 2);
        let generation = next() % 4;
        let word = match next() % 4 {
            0 => next(),
            1 => generation << 10 | slot,
            2 => 1 << 63 | generation << 10 | slot,
            _ => 0,
        };
        store64(obj, word);
        store32(obj + 8, next() as u32);
        let state = if next() % 2 == 0 {
            (next() % 5) as u32
        } else {
            next() as u32
        };
        store32(obj + 12, state);
        let s = lease_at + (slot % u64::from(slots)) * 64;
        let gen = if next() % 2 == 0 { generation } else { next() };
        let fields: [u64; 6] = [
            if next() % 2 == 0 {
                u64::from(me.pid) | next() << 32
            } else {
                next()
            },
            next() % 2,
            if next() % 2 == 0 { me.ns_dev } else { next() },
            if next() % 2 == 0 { me.ns_ino } else { next() },
            if next() % 2 == 0 { me.start } else { next() },
            if next() % 2 == 0 { me.time_dev } else { next() },
        ];
        // Leave our own slot (0) and the peer's (1) alone except for the
        // generation word sometimes: a peer may scribble anywhere.
        if slot >= 2 {
            store64(s, gen);
            for (i, v) in fields.iter().enumerate() {
                store64(s + 8 + 8 * i as u64, *v);
            }
        }
        let _ = pair.state();
        let start = Instant::now();
        match pair.mutex().lock_timeout(Duration::from_millis(30)) {
            Ok(g) => drop(g),
            Err(LockError::OwnerDied(mut g)) | Err(LockError::Poisoned(mut g)) => {
                g.mark_consistent()
            }
            Err(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a bounded lock hung"
        );
        match pair.mutex().try_lock() {
            Ok(g) => drop(g),
            Err(e) => drop(e.into_guard()),
        }
        // (Not `load`: it waits without a deadline, and a forged word
        // naming a live process is a holder that never lets go.)
        assert!(!peer.ok("trylock").is_empty());
    }
}

#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
#[repr(C, align(32))]
struct Align32 {
    v: [u64; 4],
}

/// The guard reaches its `T` from the lock word (found in review): a
/// 32-aligned `T` sits 32 bytes after it, lock words that would misalign it
/// are refused, threads with timeouts stay exclusive, and a panic while
/// poisoned leaves it poisoned (never overwritten by the fast paths).
#[test]
fn a_32_aligned_value_is_aligned_exclusive_and_poisoned_once() {
    use mapshare::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 8192);
    let f = SharedFile::open_or_create(dir.path().join("f"), &spec, |_, _| Ok(())).unwrap();
    let off = f.object_offset();
    let fits: Vec<u64> = (0..4)
        .map(|k| off + 8 * k)
        // SAFETY: these bytes are used only as this mutex (the probes
        // never lock).
        .filter(|o| unsafe { Mutex::<Align32>::at(&f, *o) }.is_ok())
        .collect();
    assert_eq!(fits.len(), 1, "exactly one of four 8-aligned words fits");
    // SAFETY: these bytes are used only as this mutex.
    let m = unsafe { Mutex::<Align32>::at(&f, fits[0]) }.unwrap();
    let per_thread = 500;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let mut g = loop {
                        match m.lock_timeout(Duration::from_micros(50)) {
                            Ok(g) => break g,
                            Err(LockError::Timeout { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    assert_eq!(&*g as *const Align32 as usize % 32, 0);
                    let first = g.v[0];
                    for x in g.v.iter_mut() {
                        assert_eq!(*x, first, "another holder wrote meanwhile");
                        *x += 1;
                    }
                }
            });
        }
    });
    assert_eq!(m.lock().unwrap().copy_out().v, [4 * per_thread; 4]);
    let panicked = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = m.lock().unwrap();
            panic!("holder panics");
        })
        .join()
    });
    assert!(panicked.is_err());
    let again = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = m.lock();
            panic!("a poisoned guard's holder panics too");
        })
        .join()
    });
    assert!(again.is_err());
    assert_eq!(m.state().unwrap(), MutexState::Poisoned);
    match m.lock() {
        Err(LockError::Poisoned(mut g)) => g.mark_consistent(),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(m.state().unwrap(), MutexState::Free);
    assert!(m.lock().is_ok());
}

/// Found in review: a process that may only read a file can take shared
/// locks on every lease byte; dead holders then looked alive for ever (a
/// mutex never recovered, a snapshot's pins never reclaimed). Holders
/// lock exclusively, so a shared lock is never a holder's.
#[test]
fn shared_locks_on_lease_bytes_never_keep_a_dead_holder_alive() {
    use mapshare::unstable::lease::lock_byte;
    use mapshare::unstable::sys::lock::try_lock;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let slots = mapshare::Inspection::open(&path)
        .unwrap()
        .header
        .lease_slots;
    // In another PID namespace, so that only the lease lock tells whether
    // the holder lives (no PID test applies).
    if !unshare_works() {
        return;
    }
    let mut holder = Peer::spawn_under(&["unshare", "--pid", "--fork", "--kill-child"]);
    holder.ok(&format!("pair {}", path.display()));
    assert_eq!(holder.ok("hold"), "holding");
    holder.kill();
    // A reader's own open file description, read-only, locking shared
    // every lease byte it can (all but this process's own slot).
    // (The holder's own process in the namespace dies a moment after the
    // peer: retry until its byte is free too.)
    let reader = std::fs::File::open(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let taken = (0..slots)
            .filter(|&i| try_lock(&reader, LockKind::Shared, lock_byte(i), 1).unwrap())
            .count() as u32;
        if taken + 1 >= slots {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{taken} of {slots} lease bytes locked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    match pair.mutex().lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            g.a = g.b;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    };
}

/// Found in review: a process that may only *read* the file took a shared
/// lock on every lease byte, and from then on nobody could open the file
/// and the error blamed "live processes". No lock can stop that (any
/// exclusive lock is blocked by a shared one, and a reader may take
/// shared locks), so: slots blocked by shared locks are skipped, any
/// other slot is taken, a full block is `LeaseSlotsBlocked` naming the
/// cause, and opening works again once the locks go.
#[test]
fn a_read_only_process_cannot_lock_everyone_out_of_opening() {
    use mapshare::unstable::lease::lock_byte;
    use mapshare::unstable::sys::lock::{try_lock, unlock};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let pair = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let slots = mapshare::Inspection::open(&path)
        .unwrap()
        .header
        .lease_slots;
    let mine = pair.file().lease().token().slot();
    let reader = std::fs::File::open(&path).unwrap();
    let taken = (0..slots)
        .filter(|&i| try_lock(&reader, LockKind::Shared, lock_byte(i), 1).unwrap())
        .count() as u32;
    assert_eq!(
        taken,
        slots - 1,
        "every lease byte but the holder's locks shared"
    );
    // Every slot is held (one) or blocked (the rest): a typed error that
    // names the shared locks, not "held by live processes".
    match Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }) {
        Err(Error::LeaseSlotsBlocked {
            slots: s,
            blocked,
            pid: None,
            ..
        }) => assert_eq!((s, blocked), (slots, slots - 1)),
        other => panic!("expected LeaseSlotsBlocked, got {other:?}"),
    }
    // The holder is still alive, and its mutex works.
    *pair.lock().unwrap() = Pair { a: 1, b: 1 };
    // One slot unblocked: that one is taken, whichever it is.
    let free = (mine + 7) % slots;
    unlock(&reader, lock_byte(free), 1).unwrap();
    let second = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    assert_eq!(second.file().lease().token().slot(), free);
    assert_eq!(pair.lock().unwrap().a, 1);
    // The reader goes: opening works as ever.
    drop(reader);
    let third = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    let used: HashSet<u32> = [&pair, &second, &third]
        .iter()
        .map(|p| p.file().lease().token().slot())
        .collect();
    assert_eq!(used.len(), 3);
}

/// A program that read-locks a whole mapshare file with Python's
/// `fcntl.lockf` (a classic POSIX lock from offset 0 to infinity, so over
/// every lease byte) while nobody is attached (it would wait for an
/// attached process's exclusive lease lock otherwise) makes opening fail
/// with `LeaseSlotsBlocked` naming its PID while it holds the lock; once
/// it lets go, opening works.
#[test]
fn a_whole_file_read_lock_by_another_program_is_named_in_the_open_error() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    drop(Shared::<Pair>::open_or_create(&path, &Pair { a: 2, b: 2 }).unwrap());
    let script = r#"
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.lockf(fd, fcntl.LOCK_SH, 0, 0)
print("locked", flush=True)
sys.stdin.readline()
"#;
    let mut py = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    match Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }) {
        Err(e @ Error::LeaseSlotsBlocked { .. }) => {
            let Error::LeaseSlotsBlocked {
                pid,
                blocked,
                slots,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*pid, Some(py.id()));
            assert_eq!(blocked, slots, "every slot");
            assert!(
                e.to_string().contains(&format!("process {}", py.id())),
                "{e}"
            );
        }
        other => panic!("expected LeaseSlotsBlocked, got {other:?}"),
    }
    py.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    py.wait().unwrap();
    let again = Shared::<Pair>::open_or_create(&path, &Pair { a: 0, b: 0 }).unwrap();
    assert_eq!(again.lock().unwrap().a, 2);
}

/// A nameless empty file is initialized in place under an exclusive lock
/// on its init byte. Another program's *shared* lock there is no
/// initializer: after the timeout the error says so (`Busy`, naming the
/// shared lock) rather than "waiting for another process to initialize".
#[test]
fn a_shared_lock_on_the_init_byte_is_not_reported_as_an_initializer() {
    use mapshare::unstable::lease::INIT_BYTE;
    use mapshare::unstable::sys::lock::try_lock;
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nameless");
    let keep = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let via = format!("/proc/self/fd/{}", keep.as_raw_fd());
    let reader = std::fs::File::open(&via).unwrap();
    assert!(try_lock(&reader, LockKind::Shared, INIT_BYTE, 1).unwrap());
    let mut spec = sync_spec();
    spec.timeout = Duration::from_millis(50);
    match SharedFile::open_or_create(&via, &spec, |_, _| Ok(())) {
        Err(Error::Busy { why, .. }) => {
            assert!(why.contains("shared lock on the init byte"), "{why}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Without it, the file is initialized in place.
    drop(reader);
    let f = SharedFile::open_or_create(&via, &spec, |_, _| Ok(())).unwrap();
    assert!(f.created());
}

/// A post that would overflow the count is refused as the caller's
/// argument (nothing added), not reported as a corrupted semaphore.
#[test]
fn an_overflowing_post_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let f = SharedFile::open_or_create(dir.path().join("s"), &sync_spec(), |_, _| Ok(())).unwrap();
    // SAFETY: the sync file's layout reserves SEM for this semaphore.
    let sem = unsafe { Semaphore::at(raw(&f), f.object_offset() + SEM) }.unwrap();
    sem.set_count(u32::MAX - 1);
    sem.post().unwrap();
    let e = sem.post_n(2).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                what: "semaphore post",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("would overflow"), "{e}");
    assert_eq!(sem.count(), u32::MAX);
}

/// A `Spec` with a lease slot count outside 1..=1024, or with mode bits
/// beyond 0o777 (setuid, setgid, sticky, file type), is refused with
/// `InvalidArgument` before anything is created, and also when the file
/// already exists (the arguments are wrong either way).
#[test]
fn bad_spec_arguments_are_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let base = Spec::new(Kind::Raw, Fingerprint::new("t::Spec", 8, 8), 64);
    let mut bad = Vec::new();
    for slots in [0, 1025, u32::MAX] {
        let mut s = base.clone();
        s.lease_slots = slots;
        bad.push(("lease slot count", s));
    }
    for mode in [0o4600, 0o2600, 0o1600, 0o7777, 0o100600] {
        let mut s = base.clone();
        s.mode = mode;
        bad.push(("file mode", s));
    }
    let existing = dir.path().join("existing");
    drop(SharedFile::open_or_create(&existing, &base, |_, _| Ok(())).unwrap());
    for (i, (what, spec)) in bad.iter().enumerate() {
        let new = dir.path().join(format!("f{i}"));
        let errors = [
            SharedFile::open_or_create(&new, spec, |_, _| Ok(())).unwrap_err(),
            SharedFile::create_new(&new, spec, |_, _| Ok(())).unwrap_err(),
            SharedFile::open_or_create(&existing, spec, |_, _| Ok(())).unwrap_err(),
        ];
        for e in errors {
            match &e {
                Error::InvalidArgument { what: w, .. } if w == what => {}
                other => panic!("{what}: {other:?}"),
            }
            assert!(!e.to_string().contains("corrupted"), "{e}");
        }
        assert!(!new.exists());
    }
    let mut sticky = base.clone();
    sticky.mode = 0o1644;
    let e = SharedFile::open_or_create(dir.path().join("x"), &sticky, |_, _| Ok(())).unwrap_err();
    assert!(e.to_string().contains("setuid, setgid and sticky"), "{e}");
    // Plain permission bits, all of them, are fine.
    let mut open = base.clone();
    open.mode = 0o777;
    drop(SharedFile::open_or_create(dir.path().join("y"), &open, |_, _| Ok(())).unwrap());
}

/// A timeout too long for the clock (`Duration::MAX`, a caller's "no
/// limit") waits without limit; it never panics adding it to the clock.
#[test]
fn timeouts_past_the_clock_mean_no_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f =
        SharedFile::open_or_create(dir.path().join("sync"), &sync_spec(), |_, _| Ok(())).unwrap();
    // SAFETY: the sync file's layout reserves SEM for the semaphore.
    let sem = unsafe { Semaphore::at(raw(&f), f.object_offset() + SEM) }.unwrap();
    // SAFETY: and EVENT for the event.
    let ev = unsafe { Event::at(raw(&f), f.object_offset() + EVENT) }.unwrap();
    sem.post_n(1).unwrap();
    sem.wait_timeout(Duration::MAX).unwrap();
    let ticket = ev.listen();
    ev.notify_all();
    ev.wait(ticket, Duration::MAX).unwrap();
    ev.wait_while(|| false, Duration::MAX).unwrap();
    let pair =
        Shared::<Pair>::open_or_create(dir.path().join("pair"), &Pair { a: 0, b: 0 }).unwrap();
    drop(pair.mutex().lock_timeout(Duration::MAX).unwrap());
    // And one that has to wait: a post from another thread ends it.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            sem.post_n(1).unwrap();
        });
        sem.wait_timeout(Duration::MAX).unwrap();
    });
}
