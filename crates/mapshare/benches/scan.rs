//! Scanning a 256 MiB file: `Region` against `memmap2` directly and against
//! `read()` with a 1 MiB buffer, cached and cold; and the cost of first
//! touches against `prefault()`.
//!
//! Run: `cargo bench -p mapshare --bench scan`. Absolute times on a shared
//! VM drift; compare the cases of one run (docs/benchmarks.md).

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mapshare::{Access, Hint, Region, RegionOptions};

const SIZE: usize = 256 << 20;
const CHUNK: usize = 1 << 20;

fn bench_file() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scan-256MiB");
    if std::fs::metadata(&path).map(|m| m.len() as usize).ok() != Some(SIZE) {
        let mut r = RegionOptions::new()
            .create(SIZE as u64)
            .open(&path)
            .unwrap();
        let block: Vec<u8> = (0..CHUNK).map(|i| (i * 7) as u8).collect();
        for at in (0..SIZE).step_by(CHUNK) {
            r.write_at(at as u64, &block).unwrap();
        }
        r.flush().unwrap();
    }
    path
}

/// The work per byte: sum the file as little-endian u64 words.
fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .fold(0u64, u64::wrapping_add)
}

fn scan_region_raw(r: &Region) -> u64 {
    // SAFETY: nobody writes or shrinks the benchmark file during the scan.
    sum(unsafe { r.as_slice() })
}

fn scan_region_copy(r: &Region, buf: &mut [u8]) -> u64 {
    let mut total = 0u64;
    for at in (0..r.len()).step_by(buf.len()) {
        let n = buf.len().min(r.len() - at);
        r.read_at(at as u64, &mut buf[..n]).unwrap();
        total = total.wrapping_add(sum(&buf[..n]));
    }
    total
}

fn scan_memmap2(path: &Path) -> u64 {
    let f = File::open(path).unwrap();
    // SAFETY: nobody writes or shrinks the benchmark file during the scan.
    let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    sum(&m)
}

fn scan_read(path: &Path, buf: &mut [u8]) -> u64 {
    let mut f = File::open(path).unwrap();
    let mut total = 0u64;
    loop {
        let n = f.read(buf).unwrap();
        if n == 0 {
            return total;
        }
        total = total.wrapping_add(sum(&buf[..n]));
    }
}

/// Reads the whole file so that the page cache holds it.
fn warm(path: &Path) {
    let mut buf = vec![0u8; CHUNK];
    black_box(scan_read(path, &mut buf));
}

fn drop_from_cache(path: &Path) {
    let r = Region::open(path).unwrap();
    r.advise(Hint::DontNeed).unwrap();
}

fn cached(c: &mut Criterion) {
    let path = bench_file();
    warm(&path);
    let mut g = c.benchmark_group("scan_cached_256MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20).warm_up_time(Duration::from_secs(2));
    let mut buf = vec![0u8; CHUNK];
    // Map once per iteration in every mapped case, as a fresh reader would.
    g.bench_function("memmap2", |b| b.iter(|| black_box(scan_memmap2(&path))));
    g.bench_function("region_as_slice", |b| {
        b.iter(|| {
            let r = RegionOptions::new()
                .access(Access::ReadOnly)
                .open(&path)
                .unwrap();
            black_box(scan_region_raw(&r))
        })
    });
    g.bench_function("region_read_at_1MiB", |b| {
        b.iter(|| {
            let r = RegionOptions::new()
                .access(Access::ReadOnly)
                .open(&path)
                .unwrap();
            black_box(scan_region_copy(&r, &mut buf))
        })
    });
    g.bench_function("read_1MiB", |b| {
        b.iter(|| black_box(scan_read(&path, &mut buf)))
    });
    g.finish();
}

fn cold(c: &mut Criterion) {
    let path = bench_file();
    let mut g = c.benchmark_group("scan_cold_256MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10).warm_up_time(Duration::from_millis(100));
    let mut buf = vec![0u8; CHUNK];
    let open = || {
        RegionOptions::new()
            .access(Access::ReadOnly)
            .open(&path)
            .unwrap()
    };
    g.bench_function("region_no_advice", |b| {
        b.iter_batched(
            || drop_from_cache(&path),
            |()| black_box(scan_region_raw(&open())),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("region_sequential", |b| {
        b.iter_batched(
            || drop_from_cache(&path),
            |()| {
                let r = open();
                r.advise(Hint::Sequential).unwrap();
                black_box(scan_region_raw(&r))
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("region_prefault", |b| {
        b.iter_batched(
            || drop_from_cache(&path),
            |()| {
                let r = open();
                r.prefault().unwrap();
                black_box(scan_region_raw(&r))
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("read_1MiB", |b| {
        b.iter_batched(
            || drop_from_cache(&path),
            |()| black_box(scan_read(&path, &mut buf)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Touch one byte per page of a cached 64 MiB window: on a fresh mapping,
/// after a prefault (touches timed alone), and prefault plus touches.
fn first_touch(c: &mut Criterion) {
    let path = bench_file();
    warm(&path);
    const LEN: usize = 64 << 20;
    let pages = LEN / mapshare::unstable::sys::page_size();
    let mut g = c.benchmark_group("first_touch_64MiB");
    g.throughput(Throughput::Elements(pages as u64));
    g.sample_size(20);
    let touch = |r: &Region| {
        let p = r.as_ptr();
        let mut acc = 0u8;
        for i in (0..r.len()).step_by(mapshare::unstable::sys::page_size()) {
            // SAFETY: in bounds; a volatile read of the read-only mapping.
            acc ^= unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        acc
    };
    let open = || {
        RegionOptions::new()
            .access(Access::ReadOnly)
            .window(0, LEN as u64)
            .open(&path)
            .unwrap()
    };
    g.bench_function("touch_each_page", |b| b.iter(|| black_box(touch(&open()))));
    g.bench_function("touch_after_prefault", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let r = open();
                r.prefault().unwrap();
                let t = std::time::Instant::now();
                black_box(touch(&r));
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("prefault_then_touch", |b| {
        b.iter(|| {
            let r = open();
            r.prefault().unwrap();
            black_box(touch(&r))
        })
    });
    g.finish();
}

criterion_group!(benches, cached, cold, first_touch);
criterion_main!(benches);
