//! `mapshare bench SUITE [--json]`: figures measured against a baseline in
//! the same run, because absolute times on a shared VM drift.
//!
//! Suites:
//! - `lock`: uncontended lock+unlock of the robust `Mutex` against std's
//!   `Mutex` and an OFD `fcntl` lock; lock throughput with two processes
//!   contending against std's `Mutex` with two threads.
//! - `wake`: one-way wake-up latency between two processes (ping-pong ÷ 2)
//!   of `Event` with and without its spin phase, against a raw futex
//!   ping-pong, a pipe ping-pong and the cache-line floor (two words
//!   bounced by spinning).
//!
//! - `log`: see `bench_log`.
//! - `queue`: one-way latency (ping-pong ÷ 2) of 64 B and 64 KiB records
//!   between two processes through two queues, busy (spinning) and
//!   blocking (parking at once), against the cache-line floor, a pipe and a
//!   Unix socket; throughput for 8 B, 64 B, 4 KiB and 64 KiB records
//!   against a pipe and single-core `memcpy`.
//!
//! The two sides of every hand-off are pinned to different CPUs. Each
//! latency case warms up, then records every round in an HDR histogram;
//! the JSON reports medians and 99th percentiles.

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mapshare::sync::{Event, FileLock, LockKind, Mutex, Spin};
use mapshare::unstable::sys::clock::{ticks, TickRate};
use mapshare::unstable::sys::futex;
use mapshare::{Fingerprint, Kind, SharedFile, Spec};
use serde_json::{json, Value};

use crate::Failure;

/// Offsets in the bench file's object: each word on its own cache line.
const EV_A: u64 = 0;
const EV_B: u64 = 64;
pub(crate) const VAL_A: u64 = 128;
pub(crate) const VAL_B: u64 = 192;
const GO: u64 = 256;
const READY: u64 = 320;
const MUTEX: u64 = 384;

pub(crate) const PARENT_CPU: usize = 0;
pub(crate) const CHILD_CPU: usize = 1;

fn spec() -> Spec {
    Spec::new(Kind::Raw, Fingerprint::new("mapshare-bench", 0, 1), 4096)
}

/// A latency distribution in nanoseconds.
pub(crate) struct Dist {
    pub(crate) median: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
}

/// Per-sample timings in ticks of `sys::clock::ticks` (the time-stamp
/// counter where the kernel keeps time with it: a read costs ~10 ns where
/// `Instant::now` costs ~25, and whatever a sample's clock reads cost is
/// added to subject and baseline alike, pulling their ratio towards 1),
/// turned into nanoseconds by the counter's rate over the whole run.
pub(crate) struct Samples {
    h: Histogram<u64>,
    rate: TickRate,
}

impl Samples {
    pub(crate) fn new() -> Samples {
        Samples {
            h: histogram(),
            rate: TickRate::start(),
        }
    }

    /// Records the ticks since `start` (a `ticks()` read).
    pub(crate) fn record_since(&mut self, start: u64) {
        let _ = self.h.record(ticks().wrapping_sub(start).max(1));
    }

    /// The distribution in nanoseconds, each sample multiplied by `scale`
    /// (½ for a round trip's one way).
    pub(crate) fn dist(&self, scale: f64) -> Dist {
        let ns = self.rate.ns_per_tick() * scale;
        let at = |q: f64| self.h.value_at_quantile(q) as f64 * ns;
        Dist {
            median: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

impl Dist {
    /// From a histogram of picoseconds.
    fn from_ps(h: &Histogram<u64>) -> Dist {
        Dist {
            median: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99: h.value_at_quantile(0.99) as f64 / 1000.0,
            p999: h.value_at_quantile(0.999) as f64 / 1000.0,
        }
    }
}

pub(crate) fn latency(
    suite: &str,
    case: &str,
    subject: &str,
    d: &Dist,
    baseline: &str,
    b: &Dist,
) -> Value {
    json!({
        "suite": suite, "case": case, "subject": subject, "baseline": baseline,
        "median_ns": round(d.median), "p99_ns": round(d.p99), "p999_ns": round(d.p999),
        "baseline_median_ns": round(b.median), "baseline_p99_ns": round(b.p99),
        "baseline_p999_ns": round(b.p999),
        "ratio": round(d.median / b.median),
    })
}

fn throughput(
    suite: &str,
    case: &str,
    subject: &str,
    ops: f64,
    baseline: &str,
    base: f64,
) -> Value {
    json!({
        "suite": suite, "case": case, "subject": subject, "baseline": baseline,
        "ops_per_s": round(ops), "baseline_ops_per_s": round(base),
        "ratio": round(ops / base),
    })
}

/// A throughput figure in messages and megabytes per second; `ratio` is
/// the MB/s ratio. Arguments are (messages/s, bytes/s).
pub(crate) fn throughput_bytes(
    suite: &str,
    case: &str,
    subject: &str,
    ours: (f64, f64),
    baseline: &str,
    base: (f64, f64),
) -> Value {
    json!({
        "suite": suite, "case": case, "subject": subject, "baseline": baseline,
        "msgs_per_s": round(ours.0), "mb_per_s": round(ours.1 / 1e6),
        "baseline_msgs_per_s": round(base.0), "baseline_mb_per_s": round(base.1 / 1e6),
        "ratio": round(ours.1 / base.1),
    })
}

/// A throughput figure whose subject and baseline ran alternately, in
/// short rounds (see [`alternating`]).
pub(crate) struct Alternated {
    /// Median (items/s, bytes/s) of the subject's rounds.
    pub ours: (f64, f64),
    /// Median of the baseline's rounds.
    pub base: (f64, f64),
    /// Per-round bytes/s ratios, sorted.
    pub ratios: Vec<f64>,
}

/// Runs `ours` and `base` alternately, `rounds` times each (every other
/// round the baseline first, see `rounds_of`). This VM moves
/// its two vCPUs between host cores: two measurements seconds apart often
/// ran on different placements (rtrb alone swings 5× between runs), while
/// a round and the round after it usually share one. So a figure's ratio
/// is the median of the per-round ratios, not the ratio of two medians.
pub(crate) fn alternating(
    rounds: usize,
    ours: impl FnMut() -> Result<(f64, f64), Failure>,
    base: impl FnMut() -> Result<(f64, f64), Failure>,
) -> Result<Alternated, Failure> {
    let (mut o, mut b) = rounds_of(rounds, ours, base)?;
    let mut ratios: Vec<f64> = o.iter().zip(&b).map(|(y, x)| y.1 / x.1).collect();
    let med = |v: &mut Vec<(f64, f64)>| {
        v.sort_by(|p, q| p.1.total_cmp(&q.1));
        v[v.len() / 2]
    };
    ratios.sort_by(f64::total_cmp);
    Ok(Alternated {
        ours: med(&mut o),
        base: med(&mut b),
        ratios,
    })
}

/// `rounds` results of `ours` and of `base`, measured in turn, every
/// other round the baseline first (so that neither side always follows
/// the other).
fn rounds_of<T>(
    rounds: usize,
    mut ours: impl FnMut() -> Result<T, Failure>,
    mut base: impl FnMut() -> Result<T, Failure>,
) -> Result<(Vec<T>, Vec<T>), Failure> {
    let (mut o, mut b) = (vec![], vec![]);
    for round in 0..rounds.max(1) {
        if round % 2 == 0 {
            b.push(base()?);
            o.push(ours()?);
        } else {
            o.push(ours()?);
            b.push(base()?);
        }
    }
    Ok((o, b))
}

/// A latency figure from alternating rounds of subject and baseline
/// (every other round the baseline first): each side's median, p99 and
/// p99.9 are the medians of its rounds'; the ratio is the median of the
/// per-round ratios of medians, with their range. A baseline measured
/// once moves with the VM's drift between its run and the subject's
/// (the cache-line floor ran at 30 to 50 ns from run to run).
pub(crate) fn latency_alternated(
    rounds: usize,
    names: [&str; 4],
    ours: impl FnMut() -> Result<Dist, Failure>,
    base: impl FnMut() -> Result<Dist, Failure>,
) -> Result<(Value, Dist), Failure> {
    let [suite, case, subject, baseline] = names;
    let (o, b) = rounds_of(rounds, ours, base)?;
    let mut ratios: Vec<f64> = o.iter().zip(&b).map(|(y, x)| y.median / x.median).collect();
    let med = |v: &[Dist], f: fn(&Dist) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let dist = |v: &[Dist]| Dist {
        median: med(v, |d| d.median),
        p99: med(v, |d| d.p99),
        p999: med(v, |d| d.p999),
    };
    let (ours, base) = (dist(&o), dist(&b));
    ratios.sort_by(f64::total_cmp);
    let mut v = latency(suite, case, subject, &ours, baseline, &base);
    v["ratio"] = json!(round(ratios[ratios.len() / 2]));
    v["rounds"] = json!(ratios.len());
    v["ratio_min"] = json!(round(ratios[0]));
    v["ratio_max"] = json!(round(ratios[ratios.len() - 1]));
    Ok((v, ours))
}

/// [`throughput_bytes`] for an [`Alternated`] figure: the ratio is the
/// median per-round ratio, with the rounds' range beside it.
pub(crate) fn throughput_alternated(
    suite: &str,
    case: &str,
    subject: &str,
    baseline: &str,
    a: &Alternated,
) -> Value {
    let mut v = throughput_bytes(suite, case, subject, a.ours, baseline, a.base);
    v["ratio"] = json!(round(a.ratios[a.ratios.len() / 2]));
    v["rounds"] = json!(a.ratios.len());
    v["ratio_min"] = json!(round(a.ratios[0]));
    v["ratio_max"] = json!(round(a.ratios[a.ratios.len() - 1]));
    v
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Pins to `cpu` where the machine has it; a one-CPU machine runs both
/// sides on one core (the figures then say so: see `docs/benchmarks.md`).
pub(crate) fn pin(cpu: usize) {
    let _ = mapshare::unstable::sys::pin_to_cpu(cpu);
}

/// Per-operation cost of `op`, measured over batches.
pub(crate) fn batched(batches: usize, per_batch: u32, mut op: impl FnMut()) -> Dist {
    let mut h = histogram();
    for _ in 0..batches / 10 {
        for _ in 0..per_batch {
            op();
        }
    }
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            op();
        }
        let ps = t.elapsed().as_nanos() as u64 * 1000 / u64::from(per_batch);
        let _ = h.record(ps.max(1));
    }
    Dist::from_ps(&h)
}

/// Runs `round` (one ping-pong) `rounds` times after a warm-up and returns
/// the one-way latency distribution (round trip ÷ 2).
pub(crate) fn ping_pong(warmup: u32, rounds: u32, mut round: impl FnMut(u32)) -> Dist {
    for i in 0..warmup {
        round(i);
    }
    let mut samples = Samples::new();
    for i in warmup..warmup + rounds {
        let t = ticks();
        round(i);
        samples.record_since(t);
    }
    samples.dist(0.5)
}

pub(crate) struct BenchFile {
    dir: PathBuf,
    pub(crate) path: PathBuf,
}

impl BenchFile {
    pub(crate) fn new() -> Result<BenchFile, Failure> {
        // tmpfs: no write-back traffic in the measurements.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("mapshare-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(BenchFile {
            path: dir.join("bench"),
            dir,
        })
    }

    pub(crate) fn open(&self) -> Result<SharedFile, Failure> {
        Ok(SharedFile::open_or_create(&self.path, &spec(), |_, _| {
            Ok(())
        })?)
    }
}

impl Drop for BenchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(args: &[&str]) -> Result<Child, Failure> {
    Command::new(std::env::current_exe()?)
        .arg("bench-child")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))
}

pub(crate) fn finish(mut child: Child) -> Result<(), Failure> {
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() {
        return Err(Failure(format!("benchmark child failed: {status}")));
    }
    Ok(())
}

pub(crate) fn word(file: &SharedFile, at: u64) -> Result<&AtomicU32, Failure> {
    // SAFETY: the bench file layout gives each word at `at` one use, as this atomic `u32` (here and in the peer).
    Ok(unsafe { region(file).atomic_u32(file.object_offset() + at) }?)
}

/// The bench file's mapping: its words, events and mutex sit at disjoint
/// offsets, each used only as what it is.
fn region(file: &SharedFile) -> &mapshare::Region {
    // SAFETY: nothing read or written through this region overlaps the
    // mutex at `MUTEX` (see the offsets above).
    unsafe { file.raw_region() }
}

/// Waits until `w` holds `want`, spinning (the cache-line floor).
#[inline]
pub(crate) fn spin_for(w: &AtomicU32, want: u32) {
    while w.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
    }
}

/// Waits until `w` holds `want`, parking on the futex.
pub(crate) fn futex_for(w: &AtomicU32, want: u32) {
    loop {
        let v = w.load(Ordering::Acquire);
        if v == want {
            return;
        }
        let _ = futex::wait(w, v, Some(Duration::from_secs(5)));
    }
}

const PATIENCE: Duration = Duration::from_secs(30);

fn event_for(ev: &Event, w: &AtomicU32, want: u32) -> Result<(), Failure> {
    Ok(ev.wait_while(|| w.load(Ordering::Acquire) != want, PATIENCE)?)
}

/// The suites `mapshare bench` runs (listed by `mapshare bench --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Uncontended lock+unlock against std's Mutex and an fcntl lock;
    /// two processes contending against two threads on std's Mutex.
    Lock,
    /// One-way wake-up latency between two processes: Event against a
    /// raw futex, a pipe and the cache-line floor.
    Wake,
    /// Queue latency (64 B, 64 KiB; busy and blocking) against the
    /// cache-line floor, a pipe and a Unix socket; throughput against a
    /// pipe and memcpy.
    Queue,
    /// Snapshot read (1 and 8 reader processes), publish (64 B, 1 MiB)
    /// and publish-to-parked-reader wake-up against memcpy and a raw futex.
    Snapshot,
    /// Broadcast log: latency to the last of 1..8 reader processes,
    /// append throughput (1 and 2 writers) against the SPSC queue, append
    /// latency across segment rolls.
    Log,
}

pub fn run(suite: Suite, json_out: bool, quick: bool, plot: Option<&Path>) -> Result<(), Failure> {
    pin(PARENT_CPU);
    let figures = match suite {
        Suite::Lock => lock_suite(quick)?,
        Suite::Wake => wake_suite(quick)?,
        Suite::Queue => crate::bench_queue::suite(quick)?,
        Suite::Snapshot => crate::bench_snapshot::suite(quick)?,
        Suite::Log => crate::bench_log::suite(quick)?,
    };
    if let Some(path) = plot {
        std::fs::write(path, crate::bench_queue::plot(&figures))
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    }
    if json_out {
        println!("{}", Value::Array(figures));
    } else {
        for f in &figures {
            print_figure(f);
        }
    }
    Ok(())
}

fn print_figure(f: &Value) {
    let s = |k: &str| f[k].as_str().unwrap_or("").to_owned();
    if f.get("mb_per_s").is_some() {
        println!(
            "{:<8} {:<26} {:<34} {:>10.0} MB/s {:>12.0} msgs/s | {:<28} {:>10.0} MB/s | ratio {:.3}",
            s("suite"),
            s("case"),
            s("subject"),
            f["mb_per_s"].as_f64().unwrap_or(0.0),
            f["msgs_per_s"].as_f64().unwrap_or(0.0),
            s("baseline"),
            f["baseline_mb_per_s"].as_f64().unwrap_or(0.0),
            f["ratio"].as_f64().unwrap_or(0.0)
        );
    } else if f.get("median_ns").is_some() {
        println!(
            "{:<8} {:<26} {:<34} median {:>10.1} ns  p99 {:>10.1} ns  p99.9 {:>10.1} ns | {:<28} median {:>10.1} ns | ratio {:.3}",
            s("suite"),
            s("case"),
            s("subject"),
            f["median_ns"].as_f64().unwrap_or(0.0),
            f["p99_ns"].as_f64().unwrap_or(0.0),
            f["p999_ns"].as_f64().unwrap_or(0.0),
            s("baseline"),
            f["baseline_median_ns"].as_f64().unwrap_or(0.0),
            f["ratio"].as_f64().unwrap_or(0.0)
        );
    } else {
        println!(
            "{:<8} {:<26} {:<34} {:>12.0} ops/s | {:<28} {:>12.0} ops/s | ratio {:.3}",
            s("suite"),
            s("case"),
            s("subject"),
            f["ops_per_s"].as_f64().unwrap_or(0.0),
            s("baseline"),
            f["baseline_ops_per_s"].as_f64().unwrap_or(0.0),
            f["ratio"].as_f64().unwrap_or(0.0)
        );
    }
}

fn lock_suite(quick: bool) -> Result<Vec<Value>, Failure> {
    let bf = BenchFile::new()?;
    let file = bf.open()?;
    // SAFETY: the bytes at `MUTEX` are used only as this mutex.
    let mutex = unsafe { Mutex::<u64>::at(&file, file.object_offset() + MUTEX)? };
    let batches = if quick { 200 } else { 2000 };

    let ours = batched(batches, 1000, || {
        if let Ok(mut g) = mutex.lock() {
            *g += 1;
        }
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    let theirs = batched(batches, 1000, || {
        if let Ok(mut g) = std_mutex.lock() {
            *g += 1;
        }
        black_box(&std_mutex);
    });
    let lock_path = bf.dir.join("fcntl");
    std::fs::write(&lock_path, [0u8; 64])?;
    let ofd = FileLock::open(&lock_path)?;
    let fcntl = batched(batches / 10, 100, || {
        black_box(ofd.try_lock(0..1, LockKind::Exclusive).ok().flatten());
    });

    // Two processes contending against two threads contending.
    let n: u32 = if quick { 50_000 } else { 500_000 };
    let go = word(&file, GO)?;
    let ready = word(&file, READY)?;
    go.store(0, Ordering::SeqCst);
    ready.store(0, Ordering::SeqCst);
    let path = bf.path.to_string_lossy().into_owned();
    let child = spawn(&["lock", &path, &n.to_string()])?;
    spin_for(ready, 1);
    let t = Instant::now();
    go.store(1, Ordering::Release);
    for _ in 0..n {
        if let Ok(mut g) = mutex.lock() {
            *g += 1;
        }
    }
    finish(child)?;
    let ours_rate = 2.0 * f64::from(n) / t.elapsed().as_secs_f64();

    let shared = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let started = std::sync::Arc::new(std::sync::Barrier::new(2));
    let other = {
        let (shared, started) = (shared.clone(), started.clone());
        std::thread::spawn(move || {
            pin(CHILD_CPU);
            started.wait();
            for _ in 0..n {
                if let Ok(mut g) = shared.lock() {
                    *g += 1;
                }
            }
        })
    };
    started.wait();
    let t = Instant::now();
    for _ in 0..n {
        if let Ok(mut g) = shared.lock() {
            *g += 1;
        }
    }
    let _ = other.join();
    let std_rate = 2.0 * f64::from(n) / t.elapsed().as_secs_f64();

    Ok(vec![
        latency(
            "lock",
            "uncontended",
            "mapshare Mutex",
            &ours,
            "std::sync::Mutex",
            &theirs,
        ),
        latency(
            "lock",
            "uncontended_vs_fcntl",
            "mapshare Mutex",
            &ours,
            "OFD fcntl lock+unlock",
            &fcntl,
        ),
        throughput(
            "lock",
            "contended_2",
            "mapshare Mutex, 2 processes",
            ours_rate,
            "std Mutex, 2 threads",
            std_rate,
        ),
    ])
}

fn wake_suite(quick: bool) -> Result<Vec<Value>, Failure> {
    let bf = BenchFile::new()?;
    let file = bf.open()?;
    let path = bf.path.to_string_lossy().into_owned();
    let (spin_rounds, park_rounds) = if quick { (2_000, 300) } else { (50_000, 5_000) };
    let a = word(&file, VAL_A)?;
    let b = word(&file, VAL_B)?;
    // SAFETY: the bench file's layout gives EV_A and EV_B 8 bytes each,
    // used only as these events (here and in the peer process).
    let (ev_a, ev_b) = unsafe {
        (
            Event::at(region(&file), file.object_offset() + EV_A)?,
            Event::at(region(&file), file.object_offset() + EV_B)?,
        )
    };

    let run_case =
        |case: &str, rounds: u32, mut side: Box<dyn FnMut(u32) -> Result<(), Failure> + '_>| {
            a.store(0, Ordering::SeqCst);
            b.store(0, Ordering::SeqCst);
            let total = rounds + rounds / 10;
            let child = spawn(&["wake", case, &path, &total.to_string()])?;
            let mut err = None;
            let dist = ping_pong(rounds / 10, rounds, |i| {
                if err.is_none() {
                    if let Err(e) = side(i + 1) {
                        err = Some(e);
                    }
                }
            });
            finish(child)?;
            match err {
                Some(e) => Err(e),
                None => Ok(dist),
            }
        };

    let floor = run_case(
        "spin",
        spin_rounds,
        Box::new(|i| {
            a.store(i, Ordering::Release);
            spin_for(b, i);
            Ok(())
        }),
    )?;
    let raw_futex = run_case(
        "futex",
        park_rounds,
        Box::new(|i| {
            a.store(i, Ordering::Release);
            let _ = futex::wake(a, 1);
            futex_for(b, i);
            Ok(())
        }),
    )?;
    let ev_spin = {
        let (ea, eb) = (&ev_a, &ev_b);
        run_case(
            "event-spin",
            spin_rounds,
            Box::new(move |i| {
                a.store(i, Ordering::Release);
                ea.notify_one();
                event_for(eb, b, i)
            }),
        )?
    };
    // SAFETY: as for `ev_a` and `ev_b` above.
    let (ea_park, eb_park) = unsafe {
        (
            Event::at(region(&file), file.object_offset() + EV_A)?.with_spin(Spin::NONE),
            Event::at(region(&file), file.object_offset() + EV_B)?.with_spin(Spin::NONE),
        )
    };
    let ev_park = {
        let (ea, eb) = (&ea_park, &eb_park);
        run_case(
            "event-park",
            park_rounds,
            Box::new(move |i| {
                a.store(i, Ordering::Release);
                ea.notify_one();
                event_for(eb, b, i)
            }),
        )?
    };
    // Pipe ping-pong: one byte each way.
    let pipe = {
        let total = park_rounds + park_rounds / 10;
        let mut child = spawn(&["wake", "pipe", &path, &total.to_string()])?;
        let mut to = child.stdin.take().ok_or(Failure("no child stdin".into()))?;
        let mut from = child
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?;
        let mut byte = [0u8; 1];
        let dist = ping_pong(park_rounds / 10, park_rounds, |_| {
            let _ = to.write_all(&[1]);
            let _ = from.read_exact(&mut byte);
        });
        drop(to);
        finish(child)?;
        dist
    };
    Ok(vec![
        latency(
            "wake",
            "wakeup_parked",
            "mapshare Event (no spin)",
            &ev_park,
            "raw futex ping-pong",
            &raw_futex,
        ),
        latency(
            "wake",
            "wakeup_parked_vs_pipe",
            "mapshare Event (no spin)",
            &ev_park,
            "pipe ping-pong",
            &pipe,
        ),
        latency(
            "wake",
            "wakeup_spinning",
            "mapshare Event (spin 20us)",
            &ev_spin,
            "cache-line floor",
            &floor,
        ),
        latency(
            "wake",
            "raw_futex_vs_floor",
            "raw futex ping-pong",
            &raw_futex,
            "cache-line floor",
            &floor,
        ),
    ])
}

/// The other side of a benchmark (`mapshare bench-child ...`).
pub fn child(args: &[String]) -> Result<(), Failure> {
    if args.first().is_some_and(|s| s == "log") {
        return crate::bench_log::child(args);
    }
    pin(CHILD_CPU);
    match args {
        [suite, path, n] if suite == "lock" => {
            let n: u32 = n.parse().map_err(|_| Failure("bad count".into()))?;
            let file = SharedFile::open_or_create(path, &spec(), |_, _| Ok(()))?;
            // SAFETY: the bytes at `MUTEX` are used only as this mutex.
            let mutex = unsafe { Mutex::<u64>::at(&file, file.object_offset() + MUTEX)? };
            word(&file, READY)?.store(1, Ordering::Release);
            spin_for(word(&file, GO)?, 1);
            for _ in 0..n {
                if let Ok(mut g) = mutex.lock() {
                    *g += 1;
                }
            }
            Ok(())
        }
        [suite, case, path, n] if suite == "wake" => {
            let n: u32 = n.parse().map_err(|_| Failure("bad count".into()))?;
            if case == "pipe" {
                let (mut inp, mut out) = (std::io::stdin().lock(), std::io::stdout().lock());
                let mut byte = [0u8; 1];
                for _ in 0..n {
                    inp.read_exact(&mut byte)?;
                    out.write_all(&byte)?;
                    out.flush()?;
                }
                return Ok(());
            }
            let file = SharedFile::open_or_create(path, &spec(), |_, _| Ok(()))?;
            let (a, b) = (word(&file, VAL_A)?, word(&file, VAL_B)?);
            let spin = if case == "event-park" {
                Spin::NONE
            } else {
                Spin::default()
            };
            // SAFETY: the bench file's layout gives EV_A and EV_B 8 bytes
            // each, used only as these events.
            let (ev_a, ev_b) = unsafe {
                (
                    Event::at(region(&file), file.object_offset() + EV_A)?.with_spin(spin),
                    Event::at(region(&file), file.object_offset() + EV_B)?.with_spin(spin),
                )
            };
            for i in 1..=n {
                match case.as_str() {
                    "spin" => {
                        spin_for(a, i);
                        b.store(i, Ordering::Release);
                    }
                    "futex" => {
                        futex_for(a, i);
                        b.store(i, Ordering::Release);
                        let _ = futex::wake(b, 1);
                    }
                    "event-spin" | "event-park" => {
                        event_for(&ev_a, a, i)?;
                        b.store(i, Ordering::Release);
                        ev_b.notify_one();
                    }
                    other => return Err(Failure(format!("unknown case {other}"))),
                }
            }
            Ok(())
        }
        [suite, rest @ ..] if suite == "queue" => crate::bench_queue::child(rest),
        [suite, rest @ ..] if suite == "snapshot" => crate::bench_snapshot::child(rest),
        _ => Err(Failure("bad bench-child arguments".into())),
    }
}
