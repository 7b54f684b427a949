//! Software cost of one record, with no second core involved: one thread
//! sends and receives in turn (everything stays in its cache); then the
//! log: one writer appending 64-byte records, and a reader reading them;
//! then one writer on core 0 with and without a pretoucher on core 1.
//! `cargo run --release -p mapshare --example overhead`
use std::time::Instant;

fn main() -> mapshare::Result<()> {
    let q = mapshare::queue::Anonymous::new(1 << 20)?;
    let mut tx = q.producer()?;
    let mut rx = q.consumer()?;
    for size in [8usize, 64, 256] {
        let buf = vec![0x5au8; size];
        let n = 5_000_000u64;
        let mut acc = 0u64;
        let t = Instant::now();
        for _ in 0..n {
            tx.send(&buf).map_err(|e| e.into_inner().len()).ok();
            let r = rx.recv()?;
            acc = acc.wrapping_add(u64::from(r[0]));
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        std::hint::black_box(acc);
        println!("{size} B: {ns:.1} ns per send+recv");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = mapshare::log::Log::create(dir.path().join("log"), &Default::default())?;
    let mut w = log.writer()?;
    let buf = [0x5au8; 64];
    let n = 2_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        w.append(&buf)?;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("log: {ns:.1} ns per 64 B append");
    let mut r = log.reader(mapshare::log::Start::Earliest)?;
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        let rec = r.next()?.expect("appended");
        acc = acc.wrapping_add(rec.seq());
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(acc);
    println!("log: {ns:.1} ns per 64 B read");
    // Appends with and without a pretoucher on the other core (writer on
    // core 0), into a log in memory where there is one (docs/log.md, "A
    // pretoucher").
    use mapshare::unstable::sys::{cpus_online, pin_to_cpu};
    let shm = std::path::Path::new("/dev/shm");
    let _ = pin_to_cpu(0);
    for pretouch in [false, true] {
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let options = mapshare::log::Options {
            segment_size: 256 << 20,
            ..Default::default()
        };
        let log = mapshare::log::Log::create(dir.path().join("log"), &options)?;
        let mut w = log.writer()?;
        if pretouch {
            w.start_pretouch(Some(1 % cpus_online()))?;
        }
        let t = Instant::now();
        for _ in 0..n {
            w.append(&buf)?;
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        let how = if pretouch {
            "with a pretoucher on core 1"
        } else {
            "populating itself"
        };
        println!("log: {ns:.1} ns per 64 B append, {how}");
    }
    Ok(())
}
