//! The queue between real processes: order and integrity, roles, peer
//! death, persistence, SIGKILL mid-write, and a hostile peer scribbling
//! over the shared state.

mod common;

use std::time::{Duration, Instant};

use common::peer::{check_record, rounds, test_record, Peer, ENV};
use mapshare::queue::{self, Anonymous, Consumer, Producer, SendError};
use mapshare::Error;

#[test]
fn peer_entry() {
    if std::env::var_os(ENV).is_some() {
        common::peer::serve();
    }
}

fn new_queue(capacity: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    drop(queue::open_or_create(&path, capacity).unwrap());
    (dir, path)
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
    assert!(matches!(tx.reserve(0), Err(Error::TooLarge { .. })));
    let max = tx.max_record() as usize;
    assert!(matches!(
        tx.try_reserve(max + 1),
        Err(Error::TooLarge { .. })
    ));
    // The largest record needs the whole ring: the consumer must release
    // the padding first, so send from another thread.
    let big = vec![7u8; max];
    std::thread::scope(|s| {
        s.spawn(|| tx.send(&big).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().len(), max);
    });
}

#[test]
fn roles_are_exclusive_until_the_holder_dies() {
    let (_dir, path) = new_queue(4096);
    let mut holder = Peer::spawn();
    assert_eq!(
        holder.ok(&format!("qholdproducer {}", path.display())),
        "holding"
    );
    match Producer::open(&path) {
        Err(Error::RoleTaken {
            role: "producer",
            pid,
            ..
        }) => assert_eq!(pid, holder.pid()),
        other => panic!("expected RoleTaken, got {:?}", other.map(|_| ())),
    }
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
    // Attach before the scribbling starts (opening validates the state).
    let mut rx = Consumer::open(&path).unwrap();
    let mut scribbler = Peer::spawn();
    scribbler.send(&format!("scribble {} 3000", path.display()));
    let start = Instant::now();
    let (mut records, mut corrupted, mut other) = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_millis(3000) {
        let t = Instant::now();
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(r) => {
                records += 1;
                assert!(r.len() <= 4096);
                std::hint::black_box(r.iter().map(|&b| b as u64).sum::<u64>());
            }
            Err(Error::Corrupted { .. }) => corrupted += 1,
            Err(Error::Timeout { .. } | Error::Disconnected { .. }) => other += 1,
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
