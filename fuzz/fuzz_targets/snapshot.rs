//! Fuzz the snapshot's shared state: the input is written over the
//! control block and slot table (current version, event, writer role,
//! slot count, data end, first capacity, reader high-water, every slot
//! entry), then the rest of it drives a reader (read, read_checked,
//! read_into, wait_newer with no wait), a read-only reader, `observe`, and
//! a writer (small and growing publishes). Every outcome must be a value
//! or a typed error: no panic, no out-of-bounds access, no hang, no huge
//! allocation.
//!
//! Run: `cargo +nightly fuzz run snapshot` from this directory.

#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mapshare::snapshot::{self, Options, ReadOnlyReader, Reader, SlowReaders, Writer};
use mapshare::sync::Spin;
use mapshare::{Inspection, Region};

/// Control block and slot table: the words a writer and readers trust
/// least. (The reader table's entries are claimed by CAS and scanned up to
/// the high-water mark, which the input sets.)
const FUZZED: usize = 256 + 64 * 64;

struct Fixture {
    path: std::path::PathBuf,
    region: Region,
    object: u64,
    pristine: Vec<u8>,
    file_len: u64,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("mapshare-fuzz-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut w = Writer::open(&path).expect("create the snapshot");
        w.publish(b"first").unwrap();
        w.publish(b"second").unwrap();
        drop(w);
        let insp = Inspection::open(&path).unwrap();
        let object = insp.header.object_offset;
        let file_len = std::fs::metadata(&path).unwrap().len();
        let region = Region::open(&path).expect("map the snapshot");
        let pristine = region.read_vec(object, FUZZED).unwrap();
        Mutex::new(Fixture {
            path,
            region,
            object,
            pristine,
            file_len,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut f = fixture().lock().unwrap();
    // Keep the file from growing without bound across runs: segments a
    // fuzzed writer added are cut off again (nobody maps them now).
    let file = std::fs::OpenOptions::new().write(true).open(&f.path).unwrap();
    file.set_len(f.file_len).unwrap();
    drop(file);
    let object = f.object;
    let mut state = f.pristine.clone();
    let n = data.len().min(FUZZED);
    state[..n].copy_from_slice(&data[..n]);
    f.region.write_at(object, &state).unwrap();
    let ops = &data[n..];
    let path = f.path.clone();

    let mut buf = Vec::new();
    if let Ok(mut r) = Reader::open(&path) {
        r.set_spin(Spin::NONE);
        if let Ok(Some(g)) = r.read() {
            let _ = g.verify();
            let _ = g.generation();
        }
        let _ = r.read_checked().map(|g| g.map(|g| g.len()));
        let _ = r.read_into(&mut buf);
        let _ = r.wait_newer(u64::MAX >> 9, Duration::ZERO);
    }
    if let Ok(mut r) = ReadOnlyReader::open(&path) {
        let _ = r.read_into(&mut buf);
    }
    if let Ok(insp) = Inspection::open(&path) {
        let _ = snapshot::observe(&insp);
    }
    let options = Options {
        slow_readers: SlowReaders::Fail,
        ..Options::default()
    };
    if let Ok(mut w) = Writer::open_with(&path, &options) {
        for &op in ops.iter().take(8) {
            let len = match op % 4 {
                0 => 0,
                1 => usize::from(op),
                2 => 5000,
                _ => 70_000,
            };
            let _ = w.publish(&vec![op; len]);
        }
    }
});
