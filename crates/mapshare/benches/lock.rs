//! Uncontended lock+unlock: the robust `Mutex` against `std::sync::Mutex`,
//! in one process, with criterion (the `mapshare bench lock` suite measures
//! the same inside the CLI, where it is compiled into a larger function).
//!
//! Run: `cargo bench -p mapshare --bench lock`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mapshare::sync::Mutex;
use mapshare::{Fingerprint, Kind, SharedFile, Spec};

fn uncontended(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
    let file = SharedFile::open_or_create(dir.path().join("lock"), &spec, |_, _| Ok(())).unwrap();
    // SAFETY: the object's first bytes are used only as this mutex.
    let ours = unsafe { Mutex::<u64>::at(&file, file.object_offset()) }.unwrap();
    let std_mutex = std::sync::Mutex::new(0u64);
    let mut g = c.benchmark_group("uncontended_lock_unlock");
    g.bench_function("mapshare_mutex", |b| {
        b.iter(|| {
            if let Ok(mut guard) = black_box(&ours).lock() {
                *guard += 1;
            }
        })
    });
    g.bench_function("std_mutex", |b| {
        b.iter(|| {
            if let Ok(mut guard) = black_box(&std_mutex).lock() {
                *guard += 1;
            }
        })
    });
    g.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
