//! Fuzz the queue's shared state: the input is written over a queue's
//! whole object (control block: positions, events, role words, session
//! words; then the ring), and the rest of it drives both ends (open,
//! try_recv, try_recv_into, recv_batch, try_send, try_reserve, send_timeout). Every
//! outcome must be a value or a typed error: no panic, no out-of-bounds
//! access, no hang (only non-blocking calls are made).
//!
//! Run: `cargo +nightly fuzz run queue` from this directory.

#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mapshare::queue::{self, Consumer, Producer};
use mapshare::sync::Spin;
use mapshare::Region;

/// A small ring, so that inputs cover it and wrap it often.
const CAPACITY: u64 = 256;

struct Fixture {
    path: std::path::PathBuf,
    region: Region,
    object: u64,
    len: usize,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("mapshare-fuzz-queue-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let file = queue::open_or_create(&path, CAPACITY).expect("create the queue");
        let object = file.object_offset();
        let len = file.object_len() as usize;
        drop(file);
        let region = Region::open(&path).expect("map the queue");
        Mutex::new(Fixture {
            path,
            region,
            object,
            len,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut f = fixture().lock().unwrap();
    let (object, len) = (f.object, f.len);
    // The object's bytes: the input's first `len` bytes, zero-filled.
    let mut state = vec![0u8; len];
    let n = data.len().min(len);
    state[..n].copy_from_slice(&data[..n]);
    f.region.write_at(object, &state).unwrap();
    let ops = &data[n..];
    let path = f.path.clone();

    let mut rx = Consumer::open(&path).ok();
    let mut tx = Producer::open(&path).ok();
    // Deadlines of zero: no spinning either.
    if let Some(rx) = rx.as_mut() {
        rx.set_spin(Spin::NONE);
    }
    if let Some(tx) = tx.as_mut() {
        tx.set_spin(Spin::NONE);
    }
    let mut buf = Vec::new();
    for (i, &op) in ops.iter().enumerate().take(64) {
        let arg = usize::from(ops.get(i + 1).copied().unwrap_or(1)) + 1;
        match op % 6 {
            0 => {
                if let Some(rx) = rx.as_mut() {
                    if let Ok(Some(r)) = rx.try_recv() {
                        assert!(r.len() as u64 <= CAPACITY - 8);
                        std::hint::black_box(r.iter().map(|&b| u64::from(b)).sum::<u64>());
                    }
                }
            }
            1 => {
                if let Some(rx) = rx.as_mut() {
                    if let Ok(Some(n)) = rx.try_recv_into(&mut buf) {
                        assert_eq!(n, buf.len());
                    }
                }
            }
            2 => {
                if let Some(rx) = rx.as_mut() {
                    if let Ok(b) = rx.recv_batch(arg, Duration::ZERO) {
                        assert!(b.len() <= arg);
                        for r in b.iter() {
                            std::hint::black_box(r.len());
                        }
                    }
                }
            }
            3 => {
                if let Some(tx) = tx.as_mut() {
                    let _ = tx.try_send(&vec![op; arg]);
                }
            }
            4 => {
                if let Some(tx) = tx.as_mut() {
                    if let Ok(Some(mut g)) = tx.try_reserve(arg.min(248)) {
                        g[0] = op;
                        g.commit_len(arg / 2);
                    }
                }
            }
            _ => {
                if let Some(tx) = tx.as_mut() {
                    // Large records: pads that need a consumer to release.
                    let _ = tx.send_timeout(&vec![op; 248 - arg % 64], Duration::ZERO);
                }
            }
        }
    }
    drop(tx);
    drop(rx);
});
