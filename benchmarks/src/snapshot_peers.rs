//! mapshare's snapshot against Cloudflare's mmap-sync, measured in one
//! run, in one process (each figure's subject and baseline alternate in
//! batches, so drift hits both):
//!
//! - `read_64B`: acquire a read guard, touch the 64-byte value, drop it:
//!   mapshare's `Reader::read` (pin + validate) against mmap-sync's
//!   `Synchronizer::read` (reader count + version, no `check_bytes`).
//! - `publish_64B`: publish a 64-byte value: mapshare's `Writer::publish`
//!   (copy, CRC32C, pin scan, release store, wake check) against
//!   mmap-sync's `Synchronizer::write` (rkyv serialization, data file
//!   switch, and its `msync`).
//!
//! `cargo run --release -p mapshare-benchmarks --bin snapshot-peers --
//! [--json] [--quick]`. Prints one JSON array (suite `snapshot`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytecheck::CheckBytes;
use hdrhistogram::Histogram;
use mapshare::snapshot::{Reader, Writer};
use mmap_sync::synchronizer::Synchronizer;
use rkyv::{Archive, Deserialize, Serialize};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

/// The 64-byte value, as mmap-sync needs it (an rkyv archive).
#[derive(Archive, Deserialize, Serialize, Debug, PartialEq)]
#[archive_attr(derive(CheckBytes))]
struct Value64 {
    bytes: [u8; 64],
}

/// Per-operation nanoseconds (median, p99, p99.9) of `ours` and of
/// `theirs`, from batches that alternate between the two.
type Quantiles = (f64, f64, f64);
fn per_op(
    batches: u32,
    per_batch: u32,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (Quantiles, Quantiles) {
    let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let (mut h_ours, mut h_theirs) = (new(), new());
    let batch = |op: &mut dyn FnMut(), h: Option<&mut Histogram<u64>>| {
        let t = Instant::now();
        for _ in 0..per_batch {
            op();
        }
        if let Some(h) = h {
            let _ = h.record((t.elapsed().as_nanos() as u64 * 1000 / u64::from(per_batch)).max(1));
        }
    };
    for _ in 0..batches / 10 {
        batch(&mut ours, None);
        batch(&mut theirs, None);
    }
    for _ in 0..batches {
        batch(&mut ours, Some(&mut h_ours));
        batch(&mut theirs, Some(&mut h_theirs));
    }
    let q = |h: &Histogram<u64>| {
        (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
        )
    };
    (q(&h_ours), q(&h_theirs))
}

fn figure(
    case: &str,
    subject: &str,
    ours: (f64, f64, f64),
    baseline: &str,
    base: (f64, f64, f64),
) -> Value {
    json!({"suite": "snapshot", "case": case, "subject": subject, "baseline": baseline,
           "median_ns": ours.0, "p99_ns": ours.1, "p999_ns": ours.2,
           "baseline_median_ns": base.0, "baseline_p99_ns": base.1, "baseline_p999_ns": base.2,
           "ratio": ours.0 / base.0})
}

/// Sums the first 64 bytes, as a fixed-size array on both sides: an
/// rkyv `[u8; 64]` field has a length the compiler knows and a guard's
/// slice has not, and the loop over it should not differ.
fn touch(bytes: &[u8]) {
    if let Some(b) = bytes.first_chunk::<64>() {
        let sum: u64 = b.iter().map(|&b| u64::from(b)).sum();
        black_box(sum);
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_out = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let _ = mapshare::unstable::sys::pin_to_cpu(0);
    let (batches, writes) = if quick { (200, 100) } else { (5_000, 2_000) };

    let dir =
        PathBuf::from("/dev/shm").join(format!("mapshare-snapshot-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<Vec<Value>, Error> {
        let value = Value64 { bytes: [7; 64] };
        let mut w = Writer::open(dir.join("mapshare"))?;
        w.publish(&value.bytes)?;
        let mut r = Reader::open(dir.join("mapshare"))?;
        let prefix = dir.join("mmap-sync");
        let mut sw = Synchronizer::new(prefix.as_os_str());
        sw.write(&value, Duration::from_secs(1))?;
        let mut sr = Synchronizer::new(prefix.as_os_str());

        let (ours_read, their_read) = per_op(
            batches,
            1000,
            || {
                if let Ok(Some(g)) = r.read() {
                    touch(&g);
                }
            },
            || {
                // SAFETY: the guard is dropped at once, long before the
                // writer's grace period (1 s) could end.
                if let Ok(g) = unsafe { sr.read::<Value64>(false) } {
                    touch(&g.bytes);
                }
            },
        );
        let (ours_publish, their_write) = per_op(
            writes / 10,
            10,
            || {
                let _ = black_box(w.publish(black_box(&value.bytes)));
            },
            || {
                let _ = black_box(sw.write(black_box(&value), Duration::from_secs(1)));
            },
        );
        Ok(vec![
            figure(
                "read_64B",
                "mapshare snapshot read (guard, touch 64 B, drop)",
                ours_read,
                "mmap-sync read (no check_bytes)",
                their_read,
            ),
            figure(
                "publish_64B",
                "mapshare snapshot publish 64 B",
                ours_publish,
                "mmap-sync write 64 B",
                their_write,
            ),
        ])
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    if json_out {
        println!("{}", Value::Array(figures));
    } else {
        for f in figures {
            println!("{f}");
        }
    }
    Ok(())
}
