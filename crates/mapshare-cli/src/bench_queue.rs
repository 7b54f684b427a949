//! `mapshare bench queue`: the queue against the other ways two processes
//! on this machine can move bytes, measured in the same run.
//!
//! Latency: ping-pong ÷ 2 through two queues (parent → child → parent),
//! each side copying a local buffer of the record size into a grant and
//! reading the 8-byte sequence number of what it receives in place (the
//! zero-copy way); a pipe and a Unix socket do the same with
//! `write`/`read` (which copy into and out of the kernel); the cache-line
//! floor bounces one word by spinning. The busy queue and the floor
//! alternate in 5 rounds; that figure's ratio is the median of the
//! per-round ratios, with their range.
//!
//! Throughput: the child produces N records of S bytes (`send`, which
//! copies each from a local buffer), the parent consumes them in place; against a pipe
//! written through a 64 KiB `BufWriter` and read with `read_exact`, and
//! against single-core `memcpy` of S-byte chunks through a ring-sized
//! buffer.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mapshare::queue::{Anonymous, Consumer, Producer};
use mapshare::sync::Spin;
use serde_json::Value;

use crate::bench::{
    finish, futex_for, latency, latency_alternated, pin, ping_pong, spin_for, throughput_bytes,
    word, BenchFile, Dist, CHILD_CPU,
};
use crate::Failure;

const TO_CHILD: &str = "MAPSHARE_BENCH_Q1";
const TO_PARENT: &str = "MAPSHARE_BENCH_Q2";
const SOCKET: &str = "MAPSHARE_BENCH_SOCK";
const RING: u64 = 1 << 20;
/// Rounds of the latency figures against the cache-line floor.
const LATENCY_ROUNDS: usize = 5;
/// "Busy mode": spin up to a second before parking.
const BUSY: Spin = Spin {
    limit: Duration::from_secs(1),
};

fn mode_spin(mode: &str) -> Spin {
    if mode == "busy" {
        BUSY
    } else {
        Spin::NONE
    }
}

fn exe() -> Result<Command, Failure> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["bench-child", "queue"]);
    Ok(c)
}

fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

fn seq_of(r: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&r[..8]);
    u64::from_le_bytes(b)
}

/// One-way latency of `size`-byte records through two queues.
fn queue_latency(mode: &str, size: usize, rounds: u32) -> Result<Dist, Failure> {
    let (q1, q2) = (Anonymous::new(RING)?, Anonymous::new(RING)?);
    let mut tx = q1.producer()?;
    let mut rx = q2.consumer()?;
    tx.set_spin(mode_spin(mode));
    rx.set_spin(mode_spin(mode));
    let total = rounds + rounds / 10;
    let mut cmd = exe()?;
    cmd.args(["echo", mode, &size.to_string(), &total.to_string()]);
    q1.share_with(&mut cmd, TO_CHILD);
    q2.share_with(&mut cmd, TO_PARENT);
    let child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
    let mut buf = vec![0x5au8; size];
    let mut err = None;
    let dist = ping_pong(rounds / 10, rounds, |i| {
        if err.is_some() {
            return;
        }
        stamp(&mut buf, u64::from(i));
        let sent = tx
            .reserve(size)
            .map(|mut g| {
                g.copy_from_slice(&buf);
                g.commit();
            })
            .and_then(|()| rx.recv().map(|r| seq_of(&r)));
        match sent {
            Ok(seq) if seq == u64::from(i) => {}
            Ok(seq) => err = Some(Failure(format!("echo {seq} where {i} was due"))),
            Err(e) => err = Some(e.into()),
        }
    });
    drop(tx);
    finish(child)?;
    err.map_or(Ok(dist), Err)
}

fn stream_latency(kind: &str, size: usize, rounds: u32) -> Result<Dist, Failure> {
    let total = rounds + rounds / 10;
    let mut cmd = exe()?;
    cmd.args([kind, &size.to_string(), &total.to_string()]);
    let mut buf = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    let (mut to, mut from): (Box<dyn Write>, Box<dyn Read>);
    let child;
    if kind == "pipe" {
        let mut c = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
        to = Box::new(c.stdin.take().ok_or(Failure("no child stdin".into()))?);
        from = Box::new(c.stdout.take().ok_or(Failure("no child stdout".into()))?);
        child = c;
    } else {
        let (mine, theirs) = UnixStream::pair()?;
        // `theirs` stays open until the child is spawned.
        mapshare::region::share_fd(theirs.as_fd(), &mut cmd, SOCKET);
        child = cmd
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
        drop(theirs);
        to = Box::new(mine.try_clone()?);
        from = Box::new(mine);
    }
    let mut err = None;
    let dist = ping_pong(rounds / 10, rounds, |i| {
        if err.is_some() {
            return;
        }
        stamp(&mut buf, u64::from(i));
        if let Err(e) = to.write_all(&buf).and_then(|()| from.read_exact(&mut back)) {
            err = Some(Failure::from(e));
        }
    });
    drop(to);
    drop(from);
    finish(child)?;
    err.map_or(Ok(dist), Err)
}

/// A ping-pong between two processes on bare words: `case` "spin" is the
/// cache-line floor, "futex" a raw futex wait/wake ping-pong.
fn words_ping_pong(case: &str, rounds: u32) -> Result<Dist, Failure> {
    let bf = BenchFile::new()?;
    let file = bf.open()?;
    let path = bf.path.to_string_lossy().into_owned();
    let (a, b) = (
        word(&file, crate::bench::VAL_A)?,
        word(&file, crate::bench::VAL_B)?,
    );
    a.store(0, std::sync::atomic::Ordering::SeqCst);
    b.store(0, std::sync::atomic::Ordering::SeqCst);
    let total = rounds + rounds / 10;
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["bench-child", "wake", case, &path, &total.to_string()]);
    let child = c
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
    let spinning = case == "spin";
    let dist = ping_pong(rounds / 10, rounds, |i| {
        a.store(i + 1, std::sync::atomic::Ordering::Release);
        if spinning {
            spin_for(b, i + 1);
        } else {
            let _ = mapshare::unstable::sys::futex::wake(a, 1);
            futex_for(b, i + 1);
        }
    });
    finish(child)?;
    Ok(dist)
}

/// Records per second and bytes per second of a child streaming `n`
/// records of `size` bytes through a queue.
pub(crate) fn queue_throughput(size: usize, n: u64) -> Result<(f64, f64), Failure> {
    let q = Anonymous::new(RING)?;
    let mut rx = q.consumer()?;
    rx.set_spin(BUSY);
    let mut cmd = exe()?;
    cmd.args(["produce", &size.to_string(), &n.to_string()]);
    q.share_with(&mut cmd, TO_CHILD);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
    let mut go = child.stdin.take().ok_or(Failure("no child stdin".into()))?;
    // Wait for the producer to attach, then start the clock and say go.
    let mut ready = [0u8; 1];
    child
        .stdout
        .as_mut()
        .ok_or(Failure("no child stdout".into()))?
        .read_exact(&mut ready)?;
    let t = Instant::now();
    go.write_all(b"g")?;
    drop(go);
    let mut touched = 0u64;
    for _ in 0..n {
        let r = rx.recv()?;
        touched = touched.wrapping_add(u64::from(r[0]));
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(touched);
    child.wait()?;
    Ok((n as f64 / secs, (n as f64 * size as f64) / secs))
}

fn pipe_throughput(size: usize, n: u64) -> Result<(f64, f64), Failure> {
    let mut cmd = exe()?;
    cmd.args(["pipe-produce", &size.to_string(), &n.to_string()]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the benchmark child: {e}")))?;
    let mut go = child.stdin.take().ok_or(Failure("no child stdin".into()))?;
    let mut from = BufReader::with_capacity(
        1 << 16,
        child
            .stdout
            .take()
            .ok_or(Failure("no child stdout".into()))?,
    );
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    go.write_all(b"g")?;
    drop(go);
    let mut touched = 0u64;
    for _ in 0..n {
        from.read_exact(&mut buf)?;
        touched = touched.wrapping_add(u64::from(buf[0]));
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(touched);
    child.wait()?;
    Ok((n as f64 / secs, (n as f64 * size as f64) / secs))
}

/// Single-core copy of `size`-byte chunks around a ring-sized buffer.
fn memcpy_throughput(size: usize, n: u64) -> (f64, f64) {
    let src = vec![0x5au8; size];
    let mut ring = vec![0u8; RING as usize];
    let slots = (RING as usize / size.max(8)).max(1);
    let t = Instant::now();
    for i in 0..n as usize {
        let at = (i % slots) * size;
        ring[at..at + size].copy_from_slice(&src);
        std::hint::black_box(&mut ring);
    }
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, (n as f64 * size as f64) / secs)
}

pub fn suite(quick: bool) -> Result<Vec<Value>, Failure> {
    let (spin_rounds, park_rounds) = if quick {
        (2_000u32, 300u32)
    } else {
        (50_000, 5_000)
    };
    let mut figures = Vec::new();
    let raw_futex = words_ping_pong("futex", park_rounds)?;
    for size in [64usize, 65536] {
        let big = size > 64;
        let rounds = if big { spin_rounds / 10 } else { spin_rounds };
        let case = format!("latency_{}", if big { "64KiB" } else { "64B" });
        // Against the floor, in alternating rounds (see
        // `latency_alternated`).
        let per_round = (rounds / LATENCY_ROUNDS as u32).max(100);
        let (figure, busy) = latency_alternated(
            LATENCY_ROUNDS,
            ["queue", &case, "mapshare-busy", "cache-line floor"],
            || queue_latency("busy", size, per_round),
            || words_ping_pong("spin", per_round),
        )?;
        figures.push(figure);
        let blocking = queue_latency("blocking", size, park_rounds)?;
        let pipe = stream_latency("pipe", size, park_rounds)?;
        let sock = stream_latency("socket", size, park_rounds)?;
        figures.push(latency(
            "queue",
            &case,
            "mapshare-busy",
            &busy,
            "pipe",
            &pipe,
        ));
        figures.push(latency(
            "queue",
            &case,
            "mapshare-busy",
            &busy,
            "unix socket",
            &sock,
        ));
        figures.push(latency(
            "queue",
            &case,
            "mapshare-blocking",
            &blocking,
            "pipe",
            &pipe,
        ));
        figures.push(latency(
            "queue",
            &case,
            "mapshare-blocking",
            &blocking,
            "unix socket",
            &sock,
        ));
        if !big {
            figures.push(latency(
                "queue",
                &case,
                "mapshare-blocking",
                &blocking,
                "raw futex ping-pong",
                &raw_futex,
            ));
        }
    }
    for size in [8usize, 64, 4096, 65536] {
        let bytes = if quick { 16u64 << 20 } else { 512u64 << 20 };
        let n = (bytes / size as u64).clamp(1000, if quick { 200_000 } else { 20_000_000 });
        let ours = queue_throughput(size.max(8), n)?;
        let pipe = pipe_throughput(size, n)?;
        let copy = memcpy_throughput(size, n);
        let case = format!("throughput_{}", human(size));
        figures.push(throughput_bytes(
            "queue", &case, "mapshare", ours, "pipe", pipe,
        ));
        figures.push(throughput_bytes(
            "queue",
            &case,
            "mapshare",
            ours,
            "memcpy (1 core)",
            copy,
        ));
    }
    Ok(figures)
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1024 => format!("{}KiB", s / 1024),
        s => format!("{s}B"),
    }
}

/// The child side (`mapshare bench-child queue ...`).
pub fn child(args: &[String]) -> Result<(), Failure> {
    pin(CHILD_CPU);
    let num = |s: &String| {
        s.parse::<u64>()
            .map_err(|_| Failure(format!("bad number {s:?}")))
    };
    match args {
        [what, mode, size, n] if what == "echo" => {
            let (size, n) = (num(size)? as usize, num(n)?);
            let mut rx = Consumer::from_inherited(TO_CHILD)?;
            let mut tx = Producer::from_inherited(TO_PARENT)?;
            rx.set_spin(mode_spin(mode));
            tx.set_spin(mode_spin(mode));
            let mut buf = vec![0xa5u8; size];
            for _ in 0..n {
                let seq = seq_of(&rx.recv()?);
                stamp(&mut buf, seq);
                let mut g = tx.reserve(size)?;
                g.copy_from_slice(&buf);
                g.commit();
            }
            Ok(())
        }
        [kind, size, n] if kind == "pipe" || kind == "socket" => {
            let (size, n) = (num(size)? as usize, num(n)?);
            let mut buf = vec![0u8; size];
            let (mut input, mut output): (Box<dyn Read>, Box<dyn Write>) = if kind == "pipe" {
                (
                    Box::new(std::io::stdin().lock()),
                    Box::new(std::io::stdout().lock()),
                )
            } else {
                let raw: i32 = std::env::var(SOCKET)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or(Failure("no socket".into()))?;
                // SAFETY: the parent passed this descriptor for us alone.
                let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(raw) });
                (Box::new(sock.try_clone()?), Box::new(sock))
            };
            for _ in 0..n {
                input.read_exact(&mut buf)?;
                output.write_all(&buf)?;
                output.flush()?;
            }
            Ok(())
        }
        [what, size, n] if what == "produce" => {
            let (size, n) = (num(size)? as usize, num(n)?);
            let mut tx = Producer::from_inherited(TO_CHILD)?;
            tx.set_spin(BUSY);
            let buf = vec![0x5au8; size];
            std::io::stdout().write_all(b"r")?;
            std::io::stdout().flush()?;
            let mut go = [0u8; 1];
            std::io::stdin().read_exact(&mut go)?;
            for _ in 0..n {
                tx.send(&buf).map_err(|e| Failure(e.to_string()))?;
            }
            Ok(())
        }
        [what, size, n] if what == "pipe-produce" => {
            let (size, n) = (num(size)? as usize, num(n)?);
            let buf = vec![0x5au8; size];
            let mut go = [0u8; 1];
            std::io::stdin().read_exact(&mut go)?;
            let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            for _ in 0..n {
                out.write_all(&buf)?;
            }
            out.flush()?;
            Ok(())
        }
        _ => Err(Failure("bad bench-child queue arguments".into())),
    }
}

/// An SVG of the latency figures: median and p99 per transport and size,
/// on a log scale.
pub fn plot(figures: &[Value]) -> String {
    // Collect (label, median, p99) for every distinct subject and baseline.
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for f in figures.iter().filter(|f| f.get("median_ns").is_some()) {
        let case = f["case"].as_str().unwrap_or("");
        for (who, m, p) in [
            (
                f["subject"].as_str(),
                f["median_ns"].as_f64(),
                f["p99_ns"].as_f64(),
            ),
            (
                f["baseline"].as_str(),
                f["baseline_median_ns"].as_f64(),
                f["baseline_p99_ns"].as_f64(),
            ),
        ] {
            let label = format!("{case}: {}", who.unwrap_or("?"));
            if let (Some(m), Some(p)) = (m, p) {
                if !rows.iter().any(|r| r.0 == label) {
                    rows.push((label, m, p));
                }
            }
        }
    }
    let (left, width, row_h, top) = (330.0, 560.0, 26.0, 40.0);
    let height = top + row_h * rows.len() as f64 + 50.0;
    let max = rows.iter().map(|r| r.2).fold(10.0, f64::max).log10().ceil();
    let min = rows
        .iter()
        .map(|r| r.1)
        .fold(f64::MAX, f64::min)
        .max(1.0)
        .log10()
        .floor();
    let x = |ns: f64| left + (ns.max(1.0).log10() - min) / (max - min).max(1.0) * width;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<text x="10" y="22" font-size="15">mapshare bench queue: one-way latency, median (bar) and p99 (tick), log scale</text>
"#,
        w = left + width + 40.0
    );
    for d in (min as i32)..=(max as i32) {
        let gx = x(10f64.powi(d));
        let label = match d {
            0..=2 => format!("{} ns", 10u64.pow(d as u32)),
            3..=5 => format!("{} µs", 10u64.pow(d as u32 - 3)),
            _ => format!("{} ms", 10u64.pow((d - 6).max(0) as u32)),
        };
        svg += &format!(
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{y2:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>
"##,
            y2 = height - 40.0,
            ty = height - 24.0
        );
    }
    for (i, (label, median, p99)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let colour = if label.contains("mapshare") {
            "#2b7bb9"
        } else {
            "#999"
        };
        svg += &format!(
            r##"<text x="{tx}" y="{ly:.1}" text-anchor="end">{label}</text><rect x="{left}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{colour}"/><line x1="{px:.1}" y1="{y:.1}" x2="{px:.1}" y2="{y2:.1}" stroke="#c33" stroke-width="2"/>
"##,
            tx = left - 8.0,
            ly = y + row_h * 0.6,
            bw = (x(*median) - left).max(1.0),
            bh = row_h * 0.7,
            px = x(*p99),
            y2 = y + row_h * 0.7
        );
    }
    svg += "</svg>\n";
    svg
}
