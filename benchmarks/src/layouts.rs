//! What a record's layout costs in a hand-off between two cores, with no
//! queue around it: one process writes a record into a ring in shared
//! memory and the other polls its first word, reads it, and answers the
//! same way on a second ring (ping-pong ÷ 2). Each variant moves a
//! payload of some size at some stride, and may clear the word where the
//! next record's header will go before it commits (as mapshare's queue
//! does, so that a consumer never mistakes an earlier lap's bytes for a
//! header). Here every header is the message's number, so no variant
//! needs the clear for correctness: the clear is measured, not relied on.
//!
//! The baseline is one word bounced in place (`bench queue`'s cache-line
//! floor). The figures bound what any record layout can reach: see
//! docs/benchmarks.md.
//!
//! `cargo run --release -p mapshare-benchmarks --bin layouts -- [--json]`

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use mapshare::unstable::sys::clock::{ticks, TickRate};
use mapshare::Region;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

const RINGS: &str = "MAPSHARE_LAYOUTS_RINGS";
/// Bytes of each of the two rings.
const RING: usize = 1 << 20;
const ROUNDS: u64 = 200_000;

/// One layout: `payload` bytes after an 8-byte header, records `stride`
/// bytes apart (0: always at offset 0), and where the next header is
/// cleared before the commit (`None`: not at all), as an offset from the
/// record's start.
#[derive(Clone, Copy)]
struct Layout {
    name: &'static str,
    payload: usize,
    stride: usize,
    clear_at: Option<usize>,
    /// After each commit, the sender zeroes every word up to this many
    /// bytes past the record's end (0: none): clearing the space ahead
    /// of time, off the path.
    zero_ahead: usize,
}

const LAYOUTS: [Layout; 8] = [
    Layout {
        name: "one word in place (the floor)",
        payload: 0,
        stride: 0,
        clear_at: None,
        zero_ahead: 0,
    },
    Layout {
        name: "8 B header only, packed, next header cleared",
        payload: 0,
        stride: 8,
        clear_at: Some(8),
        zero_ahead: 0,
    },
    Layout {
        name: "56 B payload, one whole line, not cleared",
        payload: 56,
        stride: 64,
        clear_at: None,
        zero_ahead: 0,
    },
    Layout {
        name: "64 B payload, packed (72 B), next header cleared (the queue's layout)",
        payload: 64,
        stride: 72,
        clear_at: Some(72),
        zero_ahead: 0,
    },
    Layout {
        name: "64 B payload, packed (72 B), not cleared",
        payload: 64,
        stride: 72,
        clear_at: None,
        zero_ahead: 0,
    },
    Layout {
        name: "64 B payload, packed (72 B), cleared, and zeroed 256 B ahead after each commit",
        payload: 64,
        stride: 72,
        clear_at: Some(72),
        zero_ahead: 256,
    },
    Layout {
        name: "64 B payload, line-aligned (128 B), next header cleared",
        payload: 64,
        stride: 128,
        clear_at: Some(128),
        zero_ahead: 0,
    },
    Layout {
        name: "64 B payload, line-aligned (128 B), not cleared",
        payload: 64,
        stride: 128,
        clear_at: None,
        zero_ahead: 0,
    },
];

/// One direction's ring: the words of a shared mapping.
struct Ring<'r> {
    words: &'r [AtomicU64],
    layout: Layout,
    /// The sender's: the stream position up to which it zeroed (see
    /// `Layout::zero_ahead`).
    zeroed_to: std::cell::Cell<usize>,
}

impl Ring<'_> {
    fn word(&self, off: usize) -> &AtomicU64 {
        &self.words[(off % RING) / 8]
    }

    fn at(&self, i: u64) -> usize {
        let stride = self.layout.stride;
        RING.checked_div(stride)
            .map_or(0, |slots| (i as usize % slots) * stride)
    }

    fn send(&self, i: u64) {
        let off = self.at(i);
        if let Some(c) = self.layout.clear_at {
            self.word(off + c).store(0, Ordering::Relaxed);
        }
        for k in 0..self.layout.payload / 8 {
            self.word(off + 8 + 8 * k)
                .store(i ^ k as u64, Ordering::Relaxed);
        }
        self.word(off).store(i + 1, Ordering::Release);
        if self.layout.zero_ahead > 0 {
            // In stream positions (record i ends at (i + 1) * stride); the
            // ring's records wrap at a whole number of strides.
            let lap = RING / self.layout.stride * self.layout.stride;
            let end = (i as usize + 1) * self.layout.stride;
            let mut z = self.zeroed_to.get().max(end + 8);
            while z < end + self.layout.zero_ahead {
                self.word(z % lap).store(0, Ordering::Relaxed);
                z += 8;
            }
            self.zeroed_to.set(z);
        }
    }

    fn recv(&self, i: u64) -> u64 {
        let off = self.at(i);
        while self.word(off).load(Ordering::Acquire) != i + 1 {
            std::hint::spin_loop();
        }
        (0..self.layout.payload / 8).fold(0, |s, k| {
            s ^ self.word(off + 8 + 8 * k).load(Ordering::Relaxed)
        })
    }
}

/// The two rings of a shared region, as words.
fn rings(region: &Region, layout: Layout) -> Result<(Ring<'_>, Ring<'_>), Error> {
    let base = region.as_ptr();
    if region.len() < 2 * RING || !(base as usize).is_multiple_of(64) {
        return Err("the shared region is too small or not line-aligned".into());
    }
    // SAFETY: the region maps at least 2 * RING bytes from `base`, which
    // is 64-aligned (so 8-aligned), for as long as `region` lives; the
    // two processes access these bytes only through these atomics.
    let words = unsafe { std::slice::from_raw_parts(base.cast::<AtomicU64>(), 2 * RING / 8) };
    let (a, b) = words.split_at(RING / 8);
    let ring = |words| Ring {
        words,
        layout,
        zeroed_to: std::cell::Cell::new(0),
    };
    Ok((ring(a), ring(b)))
}

/// Median, p99 (ns) of one-way latency for `layout`.
fn measure(layout_index: usize) -> Result<(f64, f64), Error> {
    let layout = LAYOUTS[layout_index];
    let region = Region::anonymous(2 * RING)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["child", &layout_index.to_string()]);
    region.share_with(&mut cmd, RINGS);
    let mut child = cmd.spawn()?;
    let (to_child, to_parent) = rings(&region, layout)?;
    let mut seen = 0u64;
    for i in 0..ROUNDS / 10 {
        to_child.send(i);
        seen ^= to_parent.recv(i);
    }
    let (mut h, rate) = (
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?,
        TickRate::start(),
    );
    for i in ROUNDS / 10..ROUNDS {
        let t = ticks();
        to_child.send(i);
        seen ^= to_parent.recv(i);
        let _ = h.record(ticks().wrapping_sub(t).max(1));
    }
    std::hint::black_box(seen);
    if !child.wait()?.success() {
        return Err("the echo child failed".into());
    }
    let ns = rate.ns_per_tick() / 2.0;
    Ok((
        h.value_at_quantile(0.5) as f64 * ns,
        h.value_at_quantile(0.99) as f64 * ns,
    ))
}

fn child(layout_index: &str) -> Result<(), Error> {
    let _ = mapshare::unstable::sys::pin_to_cpu(1);
    let layout = *LAYOUTS
        .get(layout_index.parse::<usize>()?)
        .ok_or("no such layout")?;
    let region = Region::from_inherited(RINGS)?;
    let (from_parent, to_parent) = rings(&region, layout)?;
    let mut seen = 0u64;
    for i in 0..ROUNDS {
        seen ^= from_parent.recv(i);
        to_parent.send(i);
    }
    std::hint::black_box(seen);
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [what, layout] = args.as_slice() {
        if what == "child" {
            return child(layout);
        }
    }
    let json_out = args.iter().any(|a| a == "--json");
    let _ = mapshare::unstable::sys::pin_to_cpu(0);
    // Three passes over all layouts, alternating, each figure the median
    // of its passes (the VM drifts between runs).
    let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]; LAYOUTS.len()];
    for _ in 0..3 {
        for (k, r) in runs.iter_mut().enumerate() {
            r.push(measure(k)?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let figures: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                median(&mut r.iter().map(|x| x.0).collect()),
                median(&mut r.iter().map(|x| x.1).collect()),
            )
        })
        .collect();
    let floor = figures[0].0;
    let out: Vec<Value> = LAYOUTS
        .iter()
        .zip(&figures)
        .map(|(l, &(median, p99))| {
            json!({"suite": "layouts", "case": l.name, "median_ns": median,
                   "p99_ns": p99, "baseline": LAYOUTS[0].name,
                   "baseline_median_ns": floor, "ratio": median / floor})
        })
        .collect();
    if json_out {
        println!("{}", Value::Array(out));
    } else {
        for f in out {
            println!(
                "{:>7.1} ns  {:>5.2}x  {}",
                f["median_ns"].as_f64().unwrap_or(0.0),
                f["ratio"].as_f64().unwrap_or(0.0),
                f["case"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
