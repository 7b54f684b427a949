//! `mapshare bench log`: the broadcast log.
//!
//! - `latency_64B_N_readers` (N = 1, 2, 4, 8): one 64 B append until the
//!   last of N reader processes has read it and counted it on a shared
//!   word (so one cache-line hop more than the one-way latency), median
//!   over rounds; from 2 readers up against the 1-reader figure of the
//!   same run. Readers spin briefly, then park on the log's one futex
//!   word; with more readers than cores they are oversubscribed.
//! - `append_64B_1_writer`: appends per second of one writer (no reader)
//!   with its pretoucher on the other core, against the SPSC queue's
//!   throughput for 64 B records (producer and consumer on two cores);
//!   `pretouch_64B_1_writer`: the same against one writer that maps its
//!   pages in itself.
//! - `append_64B_2_writers`: two writer threads on two cores, against one
//!   writer (neither with a pretoucher).
//!
//!   Both append figures alternate subject and baseline in 7 rounds and
//!   report the median of the per-round ratios, with their range
//!   (`ratio_min`, `ratio_max`).
//! - `roll_p999`: per-append latency with 1 MiB segments (a roll every
//!   ~10k records): the 99.9th percentile against the median.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mapshare::log::{Log, Options, Start};
use mapshare::unstable::sys::clock::ticks;
use serde_json::Value;

use crate::bench::{
    alternating, latency, throughput_alternated, word, BenchFile, Dist, Samples, VAL_A,
};
use crate::Failure;

const STOP: u8 = 0xff;
/// Rounds of each throughput figure (see `bench::alternating`).
const ROUNDS: usize = 7;

fn options(segment_size: u64) -> Options {
    Options {
        segment_size,
        ..Options::default()
    }
}

fn spawn_reader(log: &str, file: &str, index: u32) -> Result<Child, Failure> {
    Command::new(std::env::current_exe()?)
        .args([
            "bench-child",
            "log",
            "reader",
            log,
            file,
            &index.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| Failure(format!("cannot start a log reader: {e}")))
}

fn readers_latency(readers: u32, rounds: u32) -> Result<Dist, Failure> {
    let bench = BenchFile::new()?;
    let file = bench.open()?;
    let ack = word(&file, VAL_A)?;
    ack.store(0, Ordering::SeqCst);
    let dir = bench.path.with_extension("log");
    let log = Log::create(&dir, &options(64 << 20))?;
    let (d, f) = (dir.display().to_string(), bench.path.display().to_string());
    let children = (0..readers)
        .map(|i| spawn_reader(&d, &f, i))
        .collect::<Result<Vec<_>, _>>()?;
    // The writer waits for the count spinning for 20 µs, then yielding:
    // with more processes than cores, a spinning writer would take a core
    // from the readers it is waiting for, and the figure would measure the
    // harness.
    let wait_for = |want: u32| -> Result<(), Failure> {
        // The clock is read only after 64 polls, then every 64: a read
        // between polls would delay seeing the count by its own cost.
        let mut start = None;
        let mut polls = 0u32;
        while ack.load(Ordering::Acquire) < want {
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let waited = start.get_or_insert_with(Instant::now).elapsed();
            if waited > Duration::from_secs(30) {
                return Err(Failure("log readers stopped answering".into()));
            }
            // Spin while a reader may still be answering from its own
            // core, then yield the core to readers that share ours.
            if waited >= Duration::from_micros(20) {
                std::thread::yield_now();
            }
        }
        Ok(())
    };
    wait_for(readers)?;
    let mut w = log.writer()?;
    let buf = [7u8; 64];
    let warmup = rounds / 10;
    for i in 0..warmup {
        w.append(&buf)?;
        wait_for(readers * (i + 2))?;
    }
    let mut samples = Samples::new();
    for i in warmup..warmup + rounds {
        let t = ticks();
        w.append(&buf)?;
        wait_for(readers * (i + 2))?;
        samples.record_since(t);
    }
    w.append(&[STOP])?;
    for mut c in children {
        c.wait()?;
    }
    Ok(samples.dist(1.0))
}

/// (msgs/s, bytes/s) of `writers` threads appending `n` 64 B records in
/// all, writer `k` pinned to core `k` (modulo the cores); with `pretouch`,
/// each writer's pretoucher runs on the next core.
fn append_throughput(writers: u64, n: u64, pretouch: bool) -> Result<(f64, f64), Failure> {
    let bench = BenchFile::new()?;
    let log = Log::create(bench.path.with_extension("log"), &options(64 << 20))?;
    let buf = [1u8; 64];
    let cpus = mapshare::unstable::sys::cpus_online();
    let mut ws = (0..writers)
        .map(|_| log.writer())
        .collect::<Result<Vec<_>, _>>()?;
    if pretouch {
        for (k, w) in ws.iter_mut().enumerate() {
            w.start_pretouch(Some((k + 1) % cpus))?;
        }
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        let hs: Vec<_> = ws
            .iter_mut()
            .enumerate()
            .map(|(k, w)| {
                s.spawn(move || -> mapshare::Result<()> {
                    crate::bench::pin(k % cpus);
                    for _ in 0..n / writers {
                        w.append(&buf)?;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().unwrap_or(Ok(())))
    })?;
    let secs = t.elapsed().as_secs_f64();
    let total = (n / writers * writers) as f64;
    Ok((total / secs, total * 64.0 / secs))
}

fn roll_latency(n: u64) -> Result<Dist, Failure> {
    let bench = BenchFile::new()?;
    let log = Log::create(bench.path.with_extension("log"), &options(1 << 20))?;
    let mut w = log.writer()?;
    let buf = [3u8; 64];
    let mut samples = Samples::new();
    for _ in 0..n {
        let t = ticks();
        w.append(&buf)?;
        samples.record_since(t);
    }
    Ok(samples.dist(1.0))
}

pub fn suite(quick: bool) -> Result<Vec<Value>, Failure> {
    let (rounds, n) = if quick {
        (200, 20_000)
    } else {
        (5_000, 1_000_000)
    };
    let mut figures = Vec::new();
    let one = readers_latency(1, rounds)?;
    figures.push(latency(
        "log",
        "latency_64B_1_readers",
        "mapshare-log",
        &one,
        "1 reader",
        &one,
    ));
    for r in [2u32, 4, 8] {
        let d = readers_latency(r, rounds / (r / 2).max(1))?;
        figures.push(latency(
            "log",
            &format!("latency_64B_{r}_readers"),
            "mapshare-log",
            &d,
            "1 reader",
            &one,
        ));
    }
    // Alternating rounds of half the records each (see `alternating`).
    let half = n / 2;
    // One writer and its pretoucher take two cores, as the queue's
    // producer and consumer do.
    let w1 = alternating(
        ROUNDS,
        || append_throughput(1, half, true),
        || crate::bench_queue::queue_throughput(64, half),
    )?;
    figures.push(throughput_alternated(
        "log",
        "append_64B_1_writer",
        "mapshare-log, 1 writer + pretoucher",
        "SPSC queue",
        &w1,
    ));
    let inline = alternating(
        ROUNDS,
        || append_throughput(1, half, true),
        || append_throughput(1, half, false),
    )?;
    figures.push(throughput_alternated(
        "log",
        "pretouch_64B_1_writer",
        "mapshare-log, 1 writer + pretoucher",
        "1 writer mapping its pages in itself",
        &inline,
    ));
    let w2 = alternating(
        ROUNDS,
        || append_throughput(2, half, false),
        || append_throughput(1, half, false),
    )?;
    figures.push(throughput_alternated(
        "log",
        "append_64B_2_writers",
        "mapshare-log",
        "1 writer",
        &w2,
    ));
    let roll = roll_latency(n)?;
    let p999 = Dist {
        median: roll.p999,
        p99: roll.p999,
        p999: roll.p999,
    };
    figures.push(latency(
        "log",
        "roll_p999",
        "mapshare-log p99.9 append",
        &p999,
        "median append",
        &roll,
    ));
    Ok(figures)
}

/// `bench-child log reader LOG FILE INDEX`: reads from the end, counting
/// each record on the shared word, until the stop record.
///
/// Reader INDEX runs on CPU `(CHILD_CPU + INDEX) % cpus`: the first one on
/// the core the writer is not pinned to, the others round the machine.
/// (A child inherits the parent's pin: unpinned, every reader shared the
/// writer's one core, and a spinning reader kept the writer from
/// appending until its spin ran out.)
pub fn child(args: &[String]) -> Result<(), Failure> {
    let [_, role, dir, path, index] = args else {
        return Err(Failure("bad log bench arguments".into()));
    };
    if role != "reader" {
        return Err(Failure(format!("unknown log bench role {role}")));
    }
    let index: usize = index
        .parse()
        .map_err(|_| Failure(format!("bad reader index {index}")))?;
    crate::bench::pin((crate::bench::CHILD_CPU + index) % mapshare::unstable::sys::cpus_online());
    let log = Log::open(dir)?;
    let file = mapshare::SharedFile::open_any(path, Duration::from_secs(5))?;
    let ack = word(&file, VAL_A)?;
    let mut r = log.reader(Start::Latest)?;
    ack.fetch_add(1, Ordering::AcqRel);
    loop {
        let Some(rec) = r.next_timeout(Duration::from_secs(30))? else {
            return Err(Failure("no record for 30 s".into()));
        };
        if rec.bytes() == [STOP] {
            return Ok(());
        }
        ack.fetch_add(1, Ordering::AcqRel);
    }
}
