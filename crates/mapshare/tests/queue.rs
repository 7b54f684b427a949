//! The queue between real processes: order and integrity, roles, peer
//! death, persistence, SIGKILL mid-write, and a hostile peer scribbling
//! over the shared state.

mod common;

use std::time::{Duration, Instant};

use common::memory::{minor_faults, on_tmpfs, rss_kb};
use common::peer::{check_record, rounds, test_record, Peer, ENV};
use mapshare::queue::{self, Anonymous, Consumer, Producer, SendError};
use mapshare::Error;

#[test]
fn peer_entry() {
    if std::env::var_os(QPEER).is_some() {
        qpeer::serve();
    } else if std::env::var_os(ENV).is_some() {
        common::peer::serve();
    }
}

/// Set (with the common peer's variable) to run this file's own queue
/// peer commands instead of the common ones.
const QPEER: &str = "MAPSHARE_QPEER";

fn qpeer() -> Peer {
    Peer::spawn_with(|cmd| {
        cmd.env(QPEER, "1");
    })
}

/// Queue peer commands that fork (the peer is a fresh process, never the
/// test harness) or report errors by name.
mod qpeer {
    use std::io::{BufRead, Write};
    use std::time::Duration;

    use super::common::peer::{test_record, variant};
    use mapshare::queue::{self, Consumer, Producer, SendError};

    fn answer(s: &str) {
        println!("@@ ok {s}");
        std::io::stdout().flush().unwrap();
    }

    /// Forks; the child runs `child` (which must only drop things) and
    /// `_exit`s; the parent waits for it.
    fn fork_and(child: impl FnOnce()) {
        // SAFETY: the child only drops values it inherited (their drops
        // make no allocation-heavy calls) and `_exit`s without running
        // the parent's destructors; the parent reaps it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child();
            // SAFETY: leave at once, running nothing else of the parent's.
            unsafe { libc::_exit(0) }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(status, 0, "the forked child failed");
    }

    /// `used records consumer-alive` of the queue at `path`.
    fn state(path: &str) -> String {
        let st = queue::observe(&mapshare::Inspection::open(path).unwrap()).unwrap();
        format!(
            "{} {} {}",
            st.used,
            st.records,
            st.consumer.is_some_and(|(_, alive)| alive)
        )
    }

    fn hold_until_eof() {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    }

    pub fn serve() {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["quit"] => return,
                ["fork-drop-producer", path] => {
                    // The child drops its copy of our producer; we keep ours.
                    let tx = Producer::open(path).unwrap();
                    let mut tx = Some(tx);
                    fork_and(|| drop(tx.take()));
                    answer("holding");
                    hold_until_eof();
                    drop(tx);
                    return;
                }
                ["fork-drop-record", path] => {
                    // The child drops its copies of a received record and of
                    // the consumer; we report the queue's state, then release.
                    let mut rx = Consumer::open(path).unwrap();
                    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                    let mut both = Some(r);
                    fork_and(|| drop(both.take()));
                    let child_dropped = state(path);
                    drop(both);
                    let after = state(path);
                    let mut rx = Some(rx);
                    fork_and(|| drop(rx.take()));
                    answer(&format!("{child_dropped} / {after} / {}", state(path)));
                }
                ["fork-drop-batch", path] => {
                    let mut rx = Consumer::open(path).unwrap();
                    let b = rx.recv_batch(10, Duration::from_secs(10)).unwrap();
                    let mut b = Some(b);
                    fork_and(|| drop(b.take()));
                    let child_dropped = state(path);
                    drop(b);
                    answer(&format!("{child_dropped} / {}", state(path)));
                }
                ["fork-commit-grant", path] => {
                    // The child commits its copy of our grant: nothing may
                    // be published.
                    let mut tx = Producer::open(path).unwrap();
                    let mut g = tx.reserve(5).unwrap();
                    g.copy_from_slice(b"grant");
                    let mut g = Some(g);
                    fork_and(|| {
                        if let Some(g) = g.take() {
                            g.commit()
                        }
                    });
                    let child_committed = state(path);
                    g.take().unwrap().commit();
                    answer(&format!("{child_committed} / {}", state(path)));
                }
                ["send-until-error", path] => {
                    // Sends test records until a send fails; answers with
                    // the error's name.
                    let mut tx = Producer::open(path).unwrap();
                    answer("sending");
                    let mut seq = 0;
                    let name = loop {
                        match tx.send(&test_record(seq)) {
                            Ok(()) => seq += 1,
                            Err(SendError::Failed(e, _)) => break variant(&e),
                            Err(e) => break format!("{e:?}"),
                        }
                    };
                    answer(&name);
                }
                ["batch-forever", path] => {
                    // 56-byte records (64 in the ring) in batches of 1000,
                    // until killed.
                    let mut tx = Producer::open(path).unwrap();
                    answer("sending");
                    let mut seq = 0u64;
                    loop {
                        let recs: Vec<Vec<u8>> = (seq..seq + 1000).map(super::rec56).collect();
                        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                        tx.send_batch(&refs).unwrap();
                        seq += 1000;
                    }
                }
                _ => panic!("unknown queue peer command {line:?}"),
            }
        }
    }
}

/// Where the ring of the queue file at `path` starts, in the file.
fn ring_offset(path: &std::path::Path) -> u64 {
    mapshare::Inspection::open(path)
        .unwrap()
        .header
        .object_offset
        + queue::CONTROL_LEN
}

fn new_queue(capacity: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    drop(queue::open_or_create(&path, capacity).unwrap());
    (dir, path)
}

/// Each side maps the ring in when it attaches, so a new queue's first
/// lap takes no page fault per page (docs/design.md, "Queue").
#[test]
fn the_first_lap_through_a_new_queue_takes_no_page_faults() {
    let q = Anonymous::new(1 << 20).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let record = [0x5au8; 64];
    let before = minor_faults();
    // 72 bytes a record: one lap and a little more, over 256 pages
    // mapped twice (the producer's mapping and the consumer's).
    for _ in 0..(1 << 20) / 72 + 100 {
        tx.send(&record).unwrap();
        assert_eq!(rx.recv().unwrap()[63], 0x5a);
    }
    let faults = minor_faults() - before;
    assert!(faults < 32, "{faults} page faults in the first lap");
}

/// Only a ring in memory is mapped in when a side attaches: on disk a
/// producer's first writes fault anyway, and populating would first read
/// the ring from the disk.
#[test]
fn a_ring_is_mapped_in_at_attach_only_in_memory() {
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shm = std::path::Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").unwrap());
    let dirs = shm.iter().map(|d| d.path()).chain([disk.path()]);
    for dir in dirs {
        let path = dir.join("q");
        let tx = Producer::open_or_create(&path, 4 << 20).unwrap();
        match (on_tmpfs(dir), rss_kb(&path)) {
            (true, kb) => assert!(
                kb.unwrap_or(0) >= 4 << 10,
                "{}: {kb:?} KiB mapped",
                dir.display()
            ),
            (false, Some(kb)) => assert!(kb < 1 << 10, "{}: {kb} KiB mapped", dir.display()),
            (false, None) => eprintln!("{}: mapping not found in smaps", dir.display()),
        }
        drop(tx);
    }
}

#[test]
fn records_cross_processes_in_order_through_a_small_ring() {
    // 4 KiB of ring for ~1.7 MB of records: it wraps hundreds of times.
    let (_dir, path) = new_queue(4096);
    let mut producer = Peer::spawn();
    producer.send(&format!("qsendn {} 0 10000", path.display()));
    let mut rx = Consumer::open(&path).unwrap();
    for seq in 0..10_000u64 {
        let r = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_record(&r), Ok(seq));
    }
    assert_eq!(producer.answer().unwrap(), "sent");
    drop(producer);
    // Drained and the producer is gone.
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected { .. })
    ));
}

#[test]
fn the_consumer_can_start_first_and_batches_work() {
    let (_dir, path) = new_queue(1 << 16);
    let mut rx = Consumer::open(&path).unwrap();
    // No producer has ever attached: waiting, not disconnected.
    assert!(matches!(rx.try_recv(), Ok(None)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    let mut tx = Producer::open(&path).unwrap();
    let recs: Vec<Vec<u8>> = (0..100).map(test_record).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    tx.send_batch(&refs).unwrap();
    let batch = rx.recv_batch(64, Duration::from_secs(1)).unwrap();
    assert_eq!(batch.len(), 64);
    for (i, r) in batch.iter().enumerate() {
        assert_eq!(check_record(r), Ok(i as u64));
    }
    drop(batch);
    let batch = rx.recv_batch(1000, Duration::from_secs(1)).unwrap();
    assert_eq!(batch.len(), 36);
    drop(batch);
    // A grant dropped without commit publishes nothing; commit_len trims.
    {
        let mut g = tx.reserve(100).unwrap();
        g[..3].copy_from_slice(b"abc");
    }
    let mut g = tx.reserve(100).unwrap();
    g[..3].copy_from_slice(b"xyz");
    g.commit_len(3);
    assert_eq!(&*rx.recv_timeout(Duration::from_secs(1)).unwrap(), b"xyz");
    assert!(matches!(rx.try_recv(), Ok(None)));
    // Limits.
    assert!(matches!(
        tx.reserve(0),
        Err(Error::ZeroLength {
            what: "queue record",
            ..
        })
    ));
    let max = tx.max_record() as usize;
    // Lengths whose record size would overflow too (found in review: the
    // reserve fast path computed the size first, a panic in debug builds).
    for len in [max + 1, usize::MAX - 10, usize::MAX - 7, usize::MAX] {
        assert!(
            matches!(
                tx.try_reserve(len),
                Err(Error::TooLarge {
                    what: "queue record",
                    ..
                })
            ),
            "try_reserve({len})"
        );
        assert!(
            matches!(tx.reserve(len), Err(Error::TooLarge { .. })),
            "reserve({len})"
        );
    }
    // The largest record needs the whole ring: the consumer must release
    // the padding first, so send from another thread.
    let big = vec![7u8; max];
    std::thread::scope(|s| {
        s.spawn(|| tx.send(&big).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().len(), max);
    });
}

/// A second producer is refused with `RoleTaken` naming `pid`.
fn assert_producer_role_held_by(path: &std::path::Path, pid: u32) {
    match Producer::open(path) {
        Err(Error::RoleTaken {
            role: "producer",
            pid: holder,
            ..
        }) => assert_eq!(holder, pid),
        other => panic!("expected RoleTaken, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn roles_are_exclusive_until_the_holder_dies() {
    let (_dir, path) = new_queue(4096);
    let mut holder = Peer::spawn();
    assert_eq!(
        holder.ok(&format!("qholdproducer {}", path.display())),
        "holding"
    );
    assert_producer_role_held_by(&path, holder.pid());
    // The consumer role is separate.
    let rx = Consumer::open(&path).unwrap();
    assert!(matches!(
        Consumer::open(&path),
        Err(Error::RoleTaken {
            role: "consumer",
            ..
        })
    ));
    drop(rx);
    holder.kill();
    let _tx = Producer::open(&path).expect("a dead holder's role is taken over");
}

#[test]
fn a_killed_producer_leaves_every_committed_record_then_peer_died() {
    let (_dir, path) = new_queue(1 << 20);
    let mut producer = Peer::spawn();
    assert_eq!(
        producer.ok(&format!("qsendn {} 0 500", path.display())),
        "sent"
    );
    producer.ok(&format!("qholdproducer {}", path.display()));
    let pid = producer.pid();
    producer.kill();
    let mut rx = Consumer::open(&path).unwrap();
    for seq in 0..500 {
        assert_eq!(check_record(&rx.recv().unwrap()), Ok(seq));
    }
    match rx.recv() {
        Err(e @ Error::PeerDied { .. }) => {
            assert!(
                matches!(e, Error::PeerDied { peer: "producer", pid: p, .. } if p == pid),
                "{e}"
            );
            assert!(e.to_string().contains(&pid.to_string()), "{e}");
        }
        other => panic!("expected PeerDied, got {:?}", other.map(|r| r.len())),
    };
}

#[test]
fn a_producer_gets_its_record_back_when_the_consumer_is_gone() {
    let (_dir, path) = new_queue(4096);
    let mut consumer = Peer::spawn();
    consumer.ok(&format!("qholdconsumer {}", path.display()));
    let mut tx = Producer::open(&path).unwrap();
    // Fill the ring while the consumer is alive (it never reads).
    let rec = test_record(1);
    while tx.try_send(&rec).is_ok() {}
    assert!(matches!(tx.try_send(&rec), Err(SendError::Full(_))));
    assert!(matches!(
        tx.send_timeout(&rec, Duration::from_millis(50)),
        Err(SendError::Timeout(_))
    ));
    consumer.kill();
    match tx.send(&rec) {
        Err(SendError::Disconnected(back)) => assert_eq!(back, rec.as_slice()),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[test]
fn a_restarted_consumer_resumes_where_it_stopped() {
    let (_dir, path) = new_queue(1 << 20);
    {
        let mut tx = Producer::open(&path).unwrap();
        for seq in 0..300 {
            tx.send(&test_record(seq)).unwrap();
        }
    }
    let mut first = Peer::spawn();
    assert_eq!(
        first.ok(&format!("qrecv {} 120", path.display())),
        "Some(119)"
    );
    drop(first);
    let mut second = Peer::spawn();
    assert_eq!(
        second.ok(&format!("qrecv {} 180", path.display())),
        "Some(299)"
    );
    drop(second);
    // Drained, and its producer left before this consumer's session: a
    // new consumer waits for the next producer.
    let mut rx = Consumer::open(&path).unwrap();
    assert!(matches!(rx.try_recv(), Ok(None)));
    let state = queue::observe(&mapshare::Inspection::open(&path).unwrap()).unwrap();
    assert_eq!(state.used, 0);
    assert_eq!(state.records, 0);
}

/// SIGKILL the producer at random points mid-write, many rounds: the
/// consumer never sees a partial record, and every committed record
/// arrives exactly once, in order.
#[test]
fn producer_crashes_lose_and_repeat_nothing() {
    let (_dir, path) = new_queue(8192);
    let mut rx = Consumer::open(&path).unwrap();
    let mut next = 0u64;
    let mut seed = 0x1234_5678u32;
    for round in 0..rounds(200) {
        let mut producer = Peer::spawn();
        producer.ok(&format!("qsend {} {next}", path.display()));
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        // Consume for a random while, concurrently with the producer.
        let until = Instant::now() + Duration::from_micros(u64::from(seed % 4000));
        while Instant::now() < until {
            if let Ok(Some(r)) = rx.try_recv() {
                assert_eq!(check_record(&r), Ok(next), "round {round}");
                next += 1;
            }
        }
        let pid = producer.pid();
        producer.kill();
        // Drain what was committed; then the producer died.
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(r) => {
                    assert_eq!(check_record(&r), Ok(next), "round {round}");
                    next += 1;
                }
                Err(Error::PeerDied { pid: p, .. }) if p == pid => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
    assert!(next > 0);
    eprintln!("{next} records over the crash rounds");
}

/// A peer writes random bytes over the queue's control block and ring
/// while a consumer runs: every result is a record (of any content) or a
/// typed error; no panic, no out-of-bounds access, no hang.
#[test]
fn a_hostile_peer_cannot_crash_or_hang_the_consumer() {
    let (_dir, path) = new_queue(4096);
    let mut producer = Peer::spawn();
    producer.ok(&format!("qsend {} 0", path.display()));
    // Attach before the scribbling starts (opening validates the state),
    // and see the producer stream before the attack: on a loaded machine
    // the scribbler could otherwise wreck the ring before the first send.
    let mut rx = Consumer::open(&path).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the producer streams before the attack"
    );
    let mut scribbler = Peer::spawn();
    scribbler.send(&format!("scribble {} 3000", path.display()));
    let start = Instant::now();
    let (mut records, mut corrupted, mut other) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let mut copy_out = false;
    while start.elapsed() < Duration::from_millis(3000) {
        let t = Instant::now();
        // Alternately in place and through the copy-out path.
        copy_out = !copy_out;
        let got = if copy_out {
            rx.recv_into_timeout(&mut buf, Duration::from_millis(5))
        } else {
            rx.recv_timeout(Duration::from_millis(5)).map(|r| {
                std::hint::black_box(r.iter().map(|&b| b as u64).sum::<u64>());
                r.len()
            })
        };
        match got {
            Ok(len) => {
                records += 1;
                assert!(len <= 4096);
            }
            Err(Error::Corrupted { .. }) => corrupted += 1,
            Err(Error::Timeout { .. } | Error::Disconnected { .. } | Error::PeerDied { .. }) => {
                other += 1
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "a receive hung");
    }
    let writes: u64 = scribbler.answer().unwrap().parse().unwrap();
    eprintln!(
        "{writes} hostile writes: {records} records, {corrupted} Corrupted, {other} timeouts; {:?}",
        start.elapsed()
    );
    producer.kill();
    assert!(writes > 1000);
    assert!(corrupted > 0, "the scribbling must have been noticed");
    assert!(
        records > 0,
        "records flowed while the producer could still send"
    );
}

#[test]
fn an_anonymous_queue_streams_to_a_child() {
    let q = Anonymous::new(1 << 16).unwrap();
    let mut tx = q.producer().unwrap();
    let mut child = Peer::spawn_with(|cmd| q.share_with(cmd, "TEST_QUEUE_FD"));
    child.send("qrecv-inherited TEST_QUEUE_FD 1000");
    for seq in 0..1000 {
        tx.send(&test_record(seq)).unwrap();
    }
    assert_eq!(child.answer().unwrap(), "Some(999)");
}

/// A batch that spans the end of the ring (records, a pad, more records)
/// must keep every borrowed record's bytes until the batch is dropped,
/// even though the pad in its middle is skipped.
#[test]
fn a_batch_across_the_ring_end_keeps_its_records() {
    let (_dir, path) = new_queue(256);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    // Move both positions near the end of the ring.
    for _ in 0..3 {
        tx.send(&[1u8; 56]).unwrap();
        drop(rx.recv().unwrap());
    }
    // 192 of 256 used so far: one 56-byte record fits (64), then the next
    // needs a pad at the end... (the ring is empty now at position 192).
    tx.send(&[2u8; 40]).unwrap(); // 48 bytes at 192..240
    tx.send(&[3u8; 40]).unwrap(); // pad 240..256, record at 0..48
    let batch = rx.recv_batch(10, Duration::from_secs(1)).unwrap();
    assert_eq!(batch.len(), 2);
    // While the batch is borrowed, the producer must not get the space of
    // the first record back (only 256 - 48 - 16 - 48 = 144 bytes are free).
    assert!(matches!(tx.try_send(&[9u8; 200]), Err(SendError::Full(_))));
    let contents: Vec<Vec<u8>> = batch.iter().map(|r| r.to_vec()).collect();
    assert_eq!(contents, vec![vec![2u8; 40], vec![3u8; 40]]);
    drop(batch);
    tx.try_send(&[9u8; 200]).unwrap();
}

#[test]
fn a_forked_child_cannot_use_its_parents_producer() {
    let (_dir, path) = new_queue(4096);
    let mut rx = Consumer::open(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.send(&format!("qforkcheck {}", path.display()));
    let answers = [peer.answer().unwrap(), peer.answer().unwrap()];
    assert!(
        answers.contains(&"child:refused".to_string()),
        "{answers:?}"
    );
    assert!(answers.contains(&"parent-sent".to_string()), "{answers:?}");
    assert_eq!(
        &*rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        b"from the parent"
    );
    assert!(matches!(
        rx.try_recv(),
        Ok(None) | Err(Error::Disconnected { .. })
    ));
}

/// A2: a forked child that drops its inherited `Producer` gives nothing
/// back: the role stays with the live parent.
#[test]
fn a_forked_child_dropping_the_producer_leaves_the_role_held() {
    let (_dir, path) = new_queue(4096);
    let mut peer = qpeer();
    assert_eq!(
        peer.ok(&format!("fork-drop-producer {}", path.display())),
        "holding"
    );
    assert_producer_role_held_by(&path, peer.pid());
    drop(peer);
    Producer::open(&path).expect("free once the parent left");
}

/// A2: a forked child that drops an inherited `Record`, `Batch`, `Grant`
/// or `Consumer` writes nothing: nothing is released, published or given
/// back.
#[test]
fn a_forked_child_releases_and_publishes_nothing() {
    let (_dir, path) = new_queue(4096);
    let rec = test_record(7);
    let size = (8 + rec.len().div_ceil(8) * 8) as u64;
    {
        let mut tx = Producer::open(&path).unwrap();
        tx.send(&rec).unwrap();
        tx.send(&rec).unwrap();
    }
    let mut peer = qpeer();
    // used records consumer-alive: after the child's drop / after the
    // parent's / after the child dropped the consumer.
    assert_eq!(
        peer.ok(&format!("fork-drop-record {}", path.display())),
        format!("{} 2 true / {size} 1 true / {size} 1 true", 2 * size)
    );
    assert_eq!(
        peer.ok(&format!("fork-drop-batch {}", path.display())),
        format!("{size} 1 true / 0 0 true")
    );
    assert_eq!(
        peer.ok(&format!("fork-commit-grant {}", path.display())),
        "0 0 false / 16 1 false"
    );
}

/// C10: a queue file reused run after run, with the consumer starting
/// first, then the producer first, alternately: every record arrives, the
/// consumer waits for the producer of its own session (not one from an
/// earlier run), the producer waits for a consumer (never disconnected by
/// one from an earlier run), and a clean end is `Disconnected`.
#[test]
fn a_reused_queue_works_in_both_start_orders() {
    let (_dir, path) = new_queue(4096);
    let mut next = 0u64;
    for round in 0..rounds(6) {
        let consumer_first = round % 2 == 0;
        let early = consumer_first.then(|| Consumer::open(&path).unwrap());
        if let Some(mut rx) = early {
            // An earlier run's producer is gone: still waiting.
            assert!(matches!(rx.try_recv(), Ok(None)), "round {round}");
            drop(rx);
        }
        let early = consumer_first.then(|| Consumer::open(&path).unwrap());
        let mut producer = Peer::spawn();
        // 40 records of ~180 bytes overflow the 4 KiB ring: the producer
        // must wait for the consumer.
        producer.send(&format!("qsendn {} {next} 40", path.display()));
        let mut rx = match early {
            Some(rx) => rx,
            None => {
                // Let the producer attach and fill the ring first.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let st = queue::observe(&mapshare::Inspection::open(&path).unwrap()).unwrap();
                    if st.producer.is_some_and(|(_, alive)| alive) && st.used > 2048 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "round {round}: no producer");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Consumer::open(&path).unwrap()
            }
        };
        for _ in 0..40 {
            let r = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(check_record(&r), Ok(next), "round {round}");
            next += 1;
        }
        assert_eq!(producer.answer().unwrap(), "sent", "round {round}");
        drop(producer);
        match rx.recv_timeout(Duration::from_secs(10)) {
            Err(Error::Disconnected {
                peer: "producer", ..
            }) => {}
            other => panic!(
                "round {round}: expected Disconnected, got {:?}",
                other.map(|r| r.len())
            ),
        };
    }
}

/// C8: a `recv_batch` that finds only a pad releases it; when it then
/// times out it must not rewind behind the pad (the producer reuses those
/// bytes), or records come out twice and out of order.
#[test]
fn recv_batch_never_rewinds_behind_a_released_pad() {
    let (_dir, path) = new_queue(256);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    for _ in 0..3 {
        tx.send(&[1u8; 56]).unwrap();
        drop(rx.recv().unwrap());
    }
    // At 192 with 64 bytes to the end: a record of the whole ring needs a
    // pad first, published on its own; the record itself does not fit yet.
    assert!(matches!(tx.try_send(&[9u8; 240]), Err(SendError::Full(_))));
    assert!(matches!(
        rx.recv_batch(10, Duration::from_millis(20)),
        Err(Error::Timeout { .. })
    ));
    // Four records: the fourth lands where the pad was.
    for i in 0..4u8 {
        tx.try_send(&[i; 48]).unwrap();
    }
    let mut got = Vec::new();
    while let Ok(b) = rx.recv_batch(10, Duration::from_millis(20)) {
        got.extend(b.iter().map(|r| r[0]));
    }
    assert_eq!(got, [0, 1, 2, 3]);
}

/// The producer keeps the free space just ahead of it zeroed (the
/// ring's `clear_ahead`). Records a consumer still holds are not free:
/// over many laps of a small ring, with batches held while the producer
/// fills every byte it may, every held record keeps its bytes.
#[test]
fn records_held_in_a_batch_keep_their_bytes_while_the_producer_writes_ahead() {
    let (_dir, path) = new_queue(1024);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    let record = |i: u64| -> Vec<u8> {
        let len = 8 + (i * 37 % 13) as usize * 8;
        (0..len).map(|k| (i as usize * 7 + k) as u8).collect()
    };
    let (mut sent, mut got) = (0u64, 0u64);
    for round in 0..300usize {
        while tx.try_send(&record(sent)).is_ok() {
            sent += 1;
        }
        let batch = rx
            .recv_batch(1 + round % 9, Duration::from_millis(100))
            .unwrap();
        let n = batch.iter().count() as u64;
        // The ring's other bytes are free now only as far as earlier
        // batches released: fill them while this one is held.
        while tx.try_send(&record(sent)).is_ok() {
            sent += 1;
        }
        for (k, r) in batch.iter().enumerate() {
            assert_eq!(r, &record(got + k as u64)[..], "record {}", got + k as u64);
        }
        got += n;
    }
    assert!(got > 1000, "only {got} records went through");
}

/// An outside truncate cuts the file just ahead of the records. The
/// producer's stores ahead of its position (`clear_ahead`, up to 1 KiB
/// past it) may fault on the cut pages before any record reaches them;
/// such a fault is reported by the next call, never by the `send` of a
/// record it published (found in review: `send` reported a delivered
/// record as failed, so a caller that retried sent it twice). So: every
/// `send` that succeeds lies before the cut and is delivered, the first
/// that fails says `Truncated` and is not delivered, and the cut is not
/// reported before the stores ahead can reach it. That is a file made
/// before guard pages; in one made now (`Header::guard_page`), the first
/// `send` after the cut reports it and writes nothing.
#[test]
fn a_cut_just_ahead_of_the_records_fails_no_send_that_was_delivered() {
    cut_just_ahead(false);
}

#[test]
fn a_cut_just_ahead_of_the_records_fails_the_next_send_with_a_guard_page() {
    cut_just_ahead(true);
}

fn cut_just_ahead(guard_page: bool) {
    const PAGE: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut spec = queue::spec(64 << 10).unwrap();
    spec.guard_page = guard_page;
    drop(mapshare::SharedFile::open_or_create(&path, &spec, |_, _| Ok(())).unwrap());
    let ring_at = ring_offset(&path);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    // The cut: the second page boundary after the ring's start, so that
    // some records lie before it, in the ring's first lap.
    let cut = (ring_at / PAGE + 2) * PAGE;
    let before = cut - ring_at;
    common::truncate_behind_our_back(&path, cut);
    // 56-byte payloads: 64-byte records, each followed by an 8-byte slot.
    let (mut end, mut sent) = (0u64, 0u8);
    let failed = loop {
        match tx.send(&[sent; 56]) {
            Ok(()) => {
                end += 64;
                sent += 1;
                assert!(
                    end + 8 <= before,
                    "record {sent} ends at {end}, past the cut"
                );
            }
            Err(e) => break e.to_string(),
        }
    };
    assert!(failed.contains("truncated"), "{failed}");
    if guard_page {
        assert_eq!(end, 0, "records sent after the cut");
    } else {
        assert!(
            end + 64 + 1024 + 64 >= before,
            "the cut reported after {end} of {before} bytes"
        );
    }
    for i in 0..sent {
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&r[..], &[i; 56][..], "record {i}");
    }
    assert!(
        !matches!(rx.try_recv(), Ok(Some(_))),
        "a record whose send failed was delivered"
    );
}

/// C9: `send_batch` publishes what it wrote on every return path, and its
/// count is what the consumer gets.
#[test]
fn send_batch_publishes_what_it_reports_sent() {
    let (_dir, path) = new_queue(4096);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    // An empty record is refused (ZeroLength: the format has no empty
    // record) without any wait that would have published the first two on
    // the way.
    let recs: [&[u8]; 3] = [b"one", b"two", b""];
    match tx.send_batch(&recs) {
        Err((2, Error::ZeroLength { .. })) => {}
        other => panic!("expected 2 sent then ZeroLength, got {other:?}"),
    }
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"one");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"two");
    assert!(matches!(rx.try_recv(), Ok(None)));
}

/// C12, the 4 KiB case: with no consumer attached, a max-size
/// record that does not fit must not leave a pad that blocks smaller
/// records; with a consumer draining, the max-size record goes through.
#[test]
fn max_size_records_never_strand_the_queue() {
    let (_dir, path) = new_queue(4096);
    {
        let mut tx = Producer::open(&path).unwrap();
        let mut rx = Consumer::open(&path).unwrap();
        tx.send(b"x").unwrap();
        drop(rx.recv().unwrap());
    }
    // A producer of a later run.
    let mut tx = Producer::open(&path).unwrap();
    let max = tx.max_record() as usize;
    assert_eq!(max, 4080);
    // Empty, at position 16, no consumer: the big record cannot go yet...
    assert!(matches!(
        tx.try_send(&vec![1u8; max]),
        Err(SendError::Full(_))
    ));
    assert!(matches!(
        tx.send_timeout(&vec![1u8; max], Duration::from_millis(30)),
        Err(SendError::Timeout(_))
    ));
    // ...and it left nothing behind: a 4001-byte record still fits.
    tx.try_send(&[2u8; 4001]).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    // With a consumer attached but not reading, a failed try leaves a
    // consistent queue (a published pad at most).
    assert!(matches!(
        tx.try_send(&vec![3u8; max]),
        Err(SendError::Full(_))
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            tx.send(&vec![3u8; max]).unwrap();
            tx.send(&vec![4u8; max]).unwrap();
            tx.send(b"small").unwrap();
        });
        let mut buf = Vec::new();
        for (len, byte) in [(4001, 2u8), (max, 3), (max, 4), (5, b's')] {
            rx.recv_into_timeout(&mut buf, Duration::from_secs(10))
                .unwrap();
            assert_eq!((buf.len(), buf[0]), (len, byte));
        }
    });
}

/// B7: positions near `u64::MAX` (aligned, in order) are refused on open
/// and on every later load, never a panic or a wrap.
#[test]
fn positions_near_the_top_of_u64_are_corrupted_not_overflows() {
    let (_dir, path) = new_queue(4096);
    let obj = mapshare::Inspection::open(&path)
        .unwrap()
        .header
        .object_offset;
    let mut region = mapshare::Region::open(&path).unwrap();
    let top = (u64::MAX - 7).to_ne_bytes();
    let set = |region: &mut mapshare::Region, write: [u8; 8], read: [u8; 8]| {
        region.write_at(obj, &write).unwrap();
        region.write_at(obj + 64, &read).unwrap();
    };
    set(&mut region, top, top);
    assert!(matches!(
        Consumer::open(&path),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(
        Producer::open(&path),
        Err(Error::Corrupted { .. })
    ));
    // Attached at sane positions, then a peer moves them to the top.
    set(&mut region, [0; 8], [0; 8]);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    tx.send(b"a").unwrap();
    set(&mut region, top, [0; 8]);
    // The consumer never reads the write position (each record says
    // whether it is committed), so "a" still arrives, and nothing wraps.
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv_into(&mut buf).unwrap(), Some(1));
    assert_eq!(rx.pending_bytes().unwrap(), u64::MAX - 7 - 16);
    drop(rx);
    set(&mut region, (u64::MAX - 4095).to_ne_bytes(), top);
    let rec = vec![0u8; 4000];
    for _ in 0..3 {
        assert!(matches!(
            tx.try_send(&rec),
            Err(SendError::Failed(Error::Corrupted { .. }, _)) | Ok(())
        ));
    }
}

/// C13: a waiting side whose file was deleted reports `Deleted` instead of
/// waiting forever; a new consumer on the path gets a new file, and the
/// old producer notices. Anonymous queues (never linked) are not deleted.
#[test]
fn a_deleted_queue_file_is_reported() {
    let (_dir, path) = new_queue(4096);
    let mut rx = Consumer::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(30)),
        Err(Error::Deleted { .. })
    ));
    drop(rx);

    let (_dir, path) = new_queue(4096);
    let mut producer = qpeer();
    assert_eq!(
        producer.ok(&format!("send-until-error {}", path.display())),
        "sending"
    );
    std::fs::remove_file(&path).unwrap();
    let mut rx = Consumer::open_or_create(&path, 4096).unwrap();
    assert_eq!(producer.answer().unwrap(), "Deleted");
    assert!(matches!(rx.try_recv(), Ok(None)));

    let q = Anonymous::new(4096).unwrap();
    let mut rx = q.consumer().unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
}

/// B6: the copy-out paths give the same bytes as the in-place ones.
#[test]
fn copy_out_paths_match_in_place_reads() {
    let (_dir, path) = new_queue(4096);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    for seq in 0..20 {
        tx.send(&test_record(seq)).unwrap();
    }
    let mut buf = vec![0xAA; 3];
    for seq in 0..5 {
        let n = rx.try_recv_into(&mut buf).unwrap().unwrap();
        assert_eq!((n, check_record(&buf)), (buf.len(), Ok(seq)));
    }
    let r = rx.recv().unwrap();
    r.copy_to(&mut buf).unwrap();
    assert_eq!(buf, &*r);
    drop(r);
    let b = rx.recv_batch(100, Duration::from_secs(1)).unwrap();
    for (i, r) in b.iter().enumerate() {
        assert!(b.copy_to(i, &mut buf).unwrap());
        assert_eq!((buf.as_slice(), check_record(&buf)), (r, Ok(6 + i as u64)));
    }
    assert!(!b.copy_to(b.len(), &mut buf).unwrap());
}

/// Makes `producers_that_come_and_go_child` act: `PATH:N`.
const FLAP_CHILD: &str = "MAPSHARE_FLAP_CHILD";

/// Child half of `producers_that_leave_cleanly_are_never_reported_dead`
/// (does nothing in a normal run): opens and drops a producer N times.
#[test]
fn producers_that_come_and_go_child() {
    let Some(arg) = std::env::var_os(FLAP_CHILD) else {
        return;
    };
    let arg = arg.into_string().unwrap();
    let (path, n) = arg.rsplit_once(':').unwrap();
    for _ in 0..n.parse::<u64>().unwrap() {
        drop(Producer::open(path).unwrap());
    }
}

/// A consumer polls while producers attach and leave cleanly as fast as
/// they can in another process. Its check of the producer reads three
/// words one after another; a producer that left between those loads used
/// to be reported as `PeerDied` (pid 0, or the pid of the lease it had
/// just released). No producer dies here, so only `Disconnected` may end
/// a poll. The race is rare: before the fix, `MAPSHARE_LONG=5` (250,000
/// sessions, ~18 s) reported 9 live producers dead; the default 50,000
/// sessions catch it only sometimes.
#[test]
fn producers_that_leave_cleanly_are_never_reported_dead() {
    let (_dir, path) = new_queue(4096);
    let mut rx = Consumer::open(&path).unwrap();
    let n = 50_000 * rounds(1) as u64;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "producers_that_come_and_go_child",
            "--test-threads=1",
            "-q",
        ])
        .env(FLAP_CHILD, format!("{}:{n}", path.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut disconnected, mut died) = (0u64, Vec::new());
    while child.try_wait().unwrap().is_none() {
        match rx.try_recv() {
            Ok(None) => {}
            Ok(Some(r)) => panic!("no producer sends, got {} bytes", r.len()),
            Err(Error::Disconnected { .. }) => disconnected += 1,
            Err(Error::PeerDied { pid, .. }) => died.push(pid),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(disconnected > 0, "the polls saw producers leave");
    assert!(died.is_empty(), "reported dead (pids): {died:?}");
}

/// An outside truncate to a size inside a page of the ring: the kernel
/// zeroes the rest of that page in place, with no fault, and takes the
/// pages after it away. A record there must never come back with zeros in
/// it, and a record whose header was zeroed must not leave the consumer
/// waiting for it: after the cut every receive and send is `Truncated`
/// (the file's guard page, `Header::guard_page`). Before the guard page,
/// `recv` returned a record with its last 50 bytes zeroed (found in
/// review), and so did the copy-out `recv_into`.
#[test]
fn a_cut_inside_a_page_of_unread_records_is_truncated_not_a_zeroed_record() {
    cut_inside_a_page(false);
}

#[test]
fn a_cut_inside_a_page_of_unread_records_is_truncated_for_a_copy_out() {
    cut_inside_a_page(true);
}

fn cut_inside_a_page(copy_out: bool) {
    const PAGE: u64 = 4096;
    let (_dir, path) = new_queue(64 << 10);
    let ring_at = ring_offset(&path);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    // 100-byte payloads: 112-byte records (8-byte header, padding).
    let record = |k: u8| [k.wrapping_add(1); 100];
    for k in 0..60u8 {
        tx.send(&record(k)).unwrap();
    }
    let got = rx.recv().unwrap();
    assert_eq!(&got[..], &record(0)[..]);
    drop(got);
    // Cut inside the payload of the second page's first record that lies
    // wholly in it: its header survives, its tail is zeroed in place, and
    // the records after it are gone.
    let k = (1..60u64)
        .find(|k| {
            let at = ring_at + 112 * k;
            at / PAGE > ring_at / PAGE && at % PAGE + 112 <= PAGE
        })
        .unwrap();
    let cut = ring_at + 112 * k + 8 + 50;
    common::truncate_behind_our_back(&path, cut);
    let (mut next, mut buf) = (1u8, Vec::new());
    let end = loop {
        let wait = Duration::from_millis(300);
        let got = if copy_out {
            rx.recv_into_timeout(&mut buf, wait).map(|_| buf.clone())
        } else {
            rx.recv_timeout(wait).map(|r| r.to_vec())
        };
        match got {
            Ok(r) => {
                assert_eq!(&r[..], &record(next)[..], "record {next} after the cut");
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(end, Error::Truncated { .. }), "{end:?}");
    assert!(u64::from(next) <= k, "record {next} of {k} came back");
    assert!(matches!(rx.recv(), Err(Error::Truncated { .. })));
    match tx.send(&record(99)) {
        Err(SendError::Failed(Error::Truncated { .. }, _)) => {}
        other => panic!("send after the cut: {other:?}"),
    }
}

/// An outside truncate that cuts the page a batch writes into is reported
/// by `send_batch` as `send` reports it, even for the batch's last record
/// (no later reservation looks at the fault flag).
#[test]
fn send_batch_reports_a_page_cut_under_its_last_record() {
    let (_dir, path) = new_queue(1 << 16);
    let mut tx = Producer::open(&path).unwrap();
    let _rx = Consumer::open(&path).unwrap();
    let ring_page = tx.file().object_offset() + 4096;
    // Keep the header, the lease table and the positions; cut the ring
    // from its second page on, where the write position is about to be.
    tx.send(&[7u8; 3000]).unwrap();
    common::truncate_behind_our_back(&path, ring_page);
    match tx.send_batch(&[&[1u8; 2000]]) {
        Err((0, Error::Truncated { .. })) => {}
        other => panic!("send_batch after a cut page: {other:?}"),
    }
}

/// Issue 8: a process where a seccomp filter forbids `membarrier` falls
/// back to full fences and records that in the file (what `info` shows);
/// its peer, which has the asymmetric pair, then notifies it with a full
/// fence. Records stream both ways with parked waits (the side in this
/// process parks at once; the other pauses now and then, so the peer
/// parks too).
#[test]
fn a_process_without_membarrier_streams_with_full_fences() {
    use mapshare::sync::{FenceMode, Spin};
    let mine = FenceMode::detect();
    let fences = |path: &std::path::Path| {
        queue::observe(&mapshare::Inspection::open(path).unwrap())
            .unwrap()
            .fences
    };
    let n = 2000u64;

    // A consumer without membarrier.
    let (_dir, path) = new_queue(4096);
    let mut consumer = Peer::spawn();
    assert_eq!(consumer.ok("nomembarrier"), "ok");
    consumer.send(&format!("qrecv {} {n}", path.display()));
    let mut tx = Producer::open(&path).unwrap();
    tx.set_spin(Spin::NONE);
    for seq in 0..n {
        tx.send(&test_record(seq)).unwrap();
        if seq % 128 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(consumer.answer().unwrap(), format!("Some({})", n - 1));
    assert_eq!(fences(&path), [Some(mine), Some(FenceMode::Full)]);
    drop(tx);

    // A producer without membarrier.
    let (_dir, path) = new_queue(4096);
    let mut rx = Consumer::open(&path).unwrap();
    rx.set_spin(Spin::NONE);
    let mut producer = Peer::spawn();
    assert_eq!(producer.ok("nomembarrier"), "ok");
    producer.send(&format!("qsendn {} 0 {n}", path.display()));
    for seq in 0..n {
        let r = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_record(&r), Ok(seq));
        if seq % 128 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(producer.answer().unwrap(), "sent");
    assert_eq!(fences(&path), [Some(FenceMode::Full), Some(mine)]);
}

/// Found in review: `observe` (what `mapshare info` prints) walks the
/// headers from the `read` word it loaded while the consumer may release
/// past them and the producer reuse the space; a violation now counts
/// only if the read position stood still during the walk, so a healthy
/// busy queue is never reported corrupted.
#[test]
fn info_on_a_busy_queue_is_not_corrupted() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let (_dir, path) = new_queue(64);
    let mut rx = Consumer::open(&path).unwrap();
    let mut tx = Producer::open(&path).unwrap();
    let stop = AtomicBool::new(false);
    let (mut bad, mut first) = (0u32, None);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                let rec = vec![i as u8; 1 + (i % 16) as usize];
                let _ = tx.send_timeout(&rec, Duration::from_millis(10));
                i += 1;
            }
        });
        s.spawn(|| {
            while !stop.load(Relaxed) {
                let _ = rx.recv_timeout(Duration::from_millis(10));
            }
        });
        let insp = mapshare::Inspection::open(&path).unwrap();
        for _ in 0..20_000 {
            if let Err(e) = queue::observe(&insp) {
                bad += 1;
                first.get_or_insert(e.to_string());
            }
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(bad, 0, "{first:?}");
}

/// A 56-byte record (64 bytes in the ring with its header).
fn rec56(seq: u64) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((0..48).map(|i| (seq as u8).wrapping_add(i)));
    v
}

/// Found in review: `send_batch` published before waiting only when the
/// free space was below the run's bytes, not bytes + 8 (the slot each
/// commit clears), so with 64-byte records in a 1024-byte ring a long
/// batch never stored its write position; a producer killed mid-batch
/// left it many laps behind and no producer could attach again. Every
/// record sent before the kill arrives once, in order, and a new producer
/// attaches and appends.
#[test]
fn a_producer_killed_mid_send_batch_leaves_a_queue_producers_can_reopen() {
    let (_dir, path) = new_queue(1024);
    let mut rx = Consumer::open(&path).unwrap();
    rx.set_spin(mapshare::sync::Spin::for_duration(Duration::from_secs(1)));
    let mut tx = qpeer();
    assert_eq!(
        tx.ok(&format!("batch-forever {}", path.display())),
        "sending"
    );
    let mut next = 0u64;
    while next < 5500 {
        let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(*r, rec56(next)[..]);
        next += 1;
    }
    tx.kill();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => {
                assert_eq!(*r, rec56(next)[..]);
                next += 1;
            }
            Err(Error::PeerDied { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut p = Producer::open(&path).unwrap();
    p.send(b"after").unwrap();
    assert_eq!(
        &*rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        b"after"
    );
}

/// A bad capacity is the caller's argument, not a damaged file: typed
/// `InvalidArgument` that says what is allowed, on every way to make a
/// queue, and nothing is created.
#[test]
fn bad_capacities_are_invalid_arguments_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    for capacity in [0, 100, 4100, (1 << 31) + 8] {
        let path = dir.path().join(format!("q{capacity}"));
        let errors = [
            queue::open_or_create(&path, capacity).unwrap_err(),
            queue::spec(capacity).unwrap_err(),
            Producer::open_or_create(&path, capacity).err().unwrap(),
            Anonymous::new(capacity).err().unwrap(),
        ];
        for e in errors {
            assert!(
                matches!(
                    e,
                    Error::InvalidArgument {
                        what: "queue capacity",
                        ..
                    }
                ),
                "{capacity}: {e:?}"
            );
            let msg = e.to_string();
            assert!(!msg.contains("corrupted"), "{msg}");
            assert!(msg.contains("multiple of 8"), "{msg}");
        }
        assert!(!path.exists());
    }
}

/// An empty record is `ZeroLength` (named as a queue record), a large
/// one `TooLarge` naming the queue record and the largest size, on every
/// send path; neither writes anything.
#[test]
fn record_size_errors_name_the_queue_record() {
    let (_dir, path) = new_queue(4096);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    let e = match tx.try_send(b"") {
        Err(SendError::Failed(e, d)) => {
            assert!(d.is_empty());
            e
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(e, Error::ZeroLength { .. }), "{e:?}");
    assert!(e.to_string().contains("queue record of zero length"), "{e}");
    let big = vec![1u8; tx.max_record() as usize + 1];
    let e = match tx.send_timeout(&big, Duration::from_secs(1)) {
        Err(SendError::Failed(e, _)) => e,
        other => panic!("{other:?}"),
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "a queue record of {} bytes is too large: the largest is {} bytes",
            big.len(),
            tx.max_record()
        )),
        "{msg}"
    );
    assert!(matches!(rx.try_recv(), Ok(None)));
}

/// A timeout too long for the clock (`Duration::MAX`) waits without
/// limit; it never panics adding it to the clock.
#[test]
fn timeouts_past_the_clock_mean_no_limit() {
    let (_dir, path) = new_queue(4096);
    let mut tx = Producer::open(&path).unwrap();
    let mut rx = Consumer::open(&path).unwrap();
    tx.send_timeout(b"one", Duration::MAX).unwrap();
    tx.reserve_timeout(3, Duration::MAX).unwrap().commit();
    tx.send(b"three").unwrap();
    assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"one");
    let mut buf = Vec::new();
    assert_eq!(rx.recv_into_timeout(&mut buf, Duration::MAX).unwrap(), 3);
    assert_eq!(rx.recv_batch(8, Duration::MAX).unwrap().len(), 1);
    // One that has to wait: a send from another thread ends it.
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(b"late").unwrap();
        });
        assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"late");
    });
}
