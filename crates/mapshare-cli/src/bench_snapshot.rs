//! `mapshare bench snapshot`: the snapshot's read, publish and wake-up
//! costs against same-run baselines.
//!
//! - `read_64B`: acquire a guard, touch 64 B, drop it; against a `memcpy`
//!   of 64 B out of a mapping (the comparison with mmap-sync's read lives
//!   in the `benchmarks/` crate).
//! - `read_64B_8_readers`: the same, per read, in each of 8 reader
//!   processes at once against 1 reader process (flat is the goal: pins
//!   sit on separate cache lines).
//! - `publish_64B`: one 64 B publish (copy, CRC32C, slot choice, store,
//!   wake check); against a `memcpy` of 64 B into a mapping.
//! - `wake`: publish to a parked reader (no spin), one way (ping-pong ÷ 2
//!   through two snapshots); against a raw futex ping-pong.
//! - `publish_1MiB`: bytes per second of 1 MiB publishes (copy and
//!   CRC32C in one pass where the CPU has AVX-512 VPCLMULQDQ) against
//!   single-core `memcpy` of 1 MiB, in alternating batches.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mapshare::snapshot::{Reader, Writer};
use mapshare::sync::Spin;
use mapshare::unstable::sys::futex;
use serde_json::Value;

use crate::bench::{
    batched, finish, futex_for, latency, ping_pong, throughput_bytes, word, BenchFile, Dist, VAL_A,
    VAL_B,
};
use crate::Failure;

const SUITE: &str = "snapshot";
const PATIENCE: Duration = Duration::from_secs(30);

fn exe() -> Result<Command, Failure> {
    Ok(Command::new(std::env::current_exe()?))
}

/// One read: guard, touch 64 B, drop.
#[inline]
fn read_once(r: &mut Reader) {
    if let Ok(Some(g)) = r.read() {
        // A fixed-size view, as `snapshot-peers` touches both sides.
        if let Some(b) = g.first_chunk::<64>() {
            let sum: u64 = b.iter().map(|&b| u64::from(b)).sum();
            black_box(sum);
        }
    }
}

/// Median per-read cost in each of `n` reader processes reading at once.
fn readers(path: &str, n: usize, batches: usize) -> Result<Dist, Failure> {
    let mut children = Vec::new();
    for i in 0..n {
        children.push(
            exe()?
                .args([
                    "bench-child",
                    SUITE,
                    "read",
                    path,
                    &batches.to_string(),
                    &i.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for mut c in children {
        let mut line = String::new();
        BufReader::new(c.stdout.take().ok_or(Failure("no child stdout".into()))?)
            .read_line(&mut line)?;
        finish(c)?;
        let mut it = line.split_whitespace().map(|w| w.parse::<f64>());
        match (it.next(), it.next()) {
            (Some(Ok(m)), Some(Ok(p))) => {
                medians.push(m);
                p99s.push(p);
            }
            _ => return Err(Failure(format!("bad reader answer {line:?}"))),
        }
    }
    medians.sort_by(f64::total_cmp);
    p99s.sort_by(f64::total_cmp);
    Ok(Dist {
        median: medians[medians.len() / 2],
        p99: p99s[p99s.len() - 1],
        p999: p99s[p99s.len() - 1],
    })
}

pub fn suite(quick: bool) -> Result<Vec<Value>, Failure> {
    let bf = BenchFile::new()?;
    let path = bf.path.with_extension("snapshot");
    let path_s = path.to_string_lossy().into_owned();
    let (batches, rounds) = if quick { (200, 300) } else { (5_000, 5_000) };
    let mut w = Writer::open(&path)?;
    w.publish(&[7u8; 64])?;

    // Reads in this process, and a 64 B memcpy out of the same mapping
    // kind (the previous value's bytes, through a guard's copy).
    let mut r = Reader::open(&path)?;
    let read = batched(batches, 1000, || read_once(&mut r));
    let src = [7u8; 64];
    let mut dst = [0u8; 64];
    let memcpy64 = batched(batches, 1000, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    drop(r);

    let one = readers(&path_s, 1, batches)?;
    let eight = readers(&path_s, 8, batches)?;

    let value = [3u8; 64];
    let publish = batched(batches / 4, 100, || {
        let _ = black_box(w.publish(black_box(&value)));
    });

    // 1 MiB publishes against a 1 MiB memcpy, in alternating batches of
    // 10 (drift on a shared machine hits both), after a warm-up.
    let big = vec![5u8; 1 << 20];
    let mut sink = vec![0u8; 1 << 20];
    let n_big = if quick { 20 } else { 400 };
    let (mut t_publish, mut t_memcpy) = (Duration::ZERO, Duration::ZERO);
    for round in 0..n_big / 10 + 2 {
        let t = Instant::now();
        for _ in 0..10 {
            w.publish(black_box(&big))?;
        }
        let p = t.elapsed();
        let t = Instant::now();
        for _ in 0..10 {
            sink.copy_from_slice(black_box(&big));
            black_box(&sink);
        }
        let m = t.elapsed();
        if round >= 2 {
            t_publish += p;
            t_memcpy += m;
        }
    }
    let bytes = (n_big / 10 * 10) as f64 * big.len() as f64;
    let publish_bps = bytes / t_publish.as_secs_f64();
    let memcpy_bps = bytes / t_memcpy.as_secs_f64();
    drop(w);

    let wake = wake_ping_pong(&bf, rounds)?;
    let futex = futex_ping_pong(&bf, rounds)?;

    Ok(vec![
        latency(
            SUITE,
            "read_64B",
            "mapshare snapshot read (guard, touch 64 B, drop)",
            &read,
            "memcpy 64 B",
            &memcpy64,
        ),
        latency(
            SUITE,
            "read_64B_8_readers",
            "8 reader processes",
            &eight,
            "1 reader",
            &one,
        ),
        latency(
            SUITE,
            "publish_64B",
            "mapshare snapshot publish 64 B",
            &publish,
            "memcpy 64 B",
            &memcpy64,
        ),
        latency(
            SUITE,
            "wake",
            "publish to a parked reader (no spin)",
            &wake,
            "raw futex ping-pong",
            &futex,
        ),
        throughput_bytes(
            SUITE,
            "publish_1MiB",
            "mapshare snapshot publish 1 MiB",
            (publish_bps / (1 << 20) as f64, publish_bps),
            "single-core memcpy 1 MiB",
            (memcpy_bps / (1 << 20) as f64, memcpy_bps),
        ),
    ])
}

/// Publish → parked reader → it publishes back on a second snapshot.
fn wake_ping_pong(bf: &BenchFile, rounds: u32) -> Result<Dist, Failure> {
    let a = bf.path.with_extension("ping");
    let b = bf.path.with_extension("pong");
    let mut wa = Writer::open(&a)?;
    let mut rb = Reader::open_or_create(&b, 4096)?;
    rb.set_spin(Spin::NONE);
    let total = rounds + rounds / 10;
    let child = exe()?
        .args(["bench-child", SUITE, "echo"])
        .arg(&a)
        .arg(&b)
        .arg(total.to_string())
        .stdin(Stdio::piped())
        .spawn()?;
    let mut err = None;
    let dist = ping_pong(rounds / 10, rounds, |i| {
        if err.is_some() {
            return;
        }
        let g = u64::from(i) + 1;
        let step = wa
            .publish(&g.to_le_bytes())
            .and_then(|_| rb.wait_newer(g - 1, PATIENCE));
        if let Err(e) = step {
            err = Some(e);
        }
    });
    finish(child)?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(dist),
    }
}

/// The raw futex ping-pong of `bench wake`, against the same child.
fn futex_ping_pong(bf: &BenchFile, rounds: u32) -> Result<Dist, Failure> {
    let file = bf.open()?;
    let (a, b) = (word(&file, VAL_A)?, word(&file, VAL_B)?);
    a.store(0, Ordering::SeqCst);
    b.store(0, Ordering::SeqCst);
    let total = rounds + rounds / 10;
    let child = exe()?
        .args(["bench-child", "wake", "futex"])
        .arg(&bf.path)
        .arg(total.to_string())
        .stdin(Stdio::piped())
        .spawn()?;
    let dist = ping_pong(rounds / 10, rounds, |i| {
        a.store(i + 1, Ordering::Release);
        let _ = futex::wake(a, 1);
        futex_for(b, i + 1);
    });
    finish(child)?;
    Ok(dist)
}

/// The child side (`mapshare bench-child snapshot ...`).
pub fn child(args: &[String]) -> Result<(), Failure> {
    match args {
        [case, path, batches, index] if case == "read" => {
            let batches: usize = batches.parse().map_err(|_| Failure("bad count".into()))?;
            let i: usize = index.parse().unwrap_or(0);
            crate::bench::pin(i % mapshare::unstable::sys::cpus_online());
            let mut r = Reader::open(path)?;
            let d = batched(batches, 1000, || read_once(&mut r));
            println!("{} {}", d.median, d.p99);
            Ok(())
        }
        [case, a, b, n] if case == "echo" => {
            crate::bench::pin(crate::bench::CHILD_CPU);
            let n: u64 = n.parse().map_err(|_| Failure("bad count".into()))?;
            let mut ra = Reader::open_or_create(a, 4096)?;
            ra.set_spin(Spin::NONE);
            let mut wb = Writer::open(b)?;
            for g in 1..=n {
                ra.wait_newer(g - 1, PATIENCE)?;
                wb.publish(&g.to_le_bytes())?;
            }
            Ok(())
        }
        _ => Err(Failure("bad bench-child snapshot arguments".into())),
    }
}
