//! Fuzz the log's segment control block check and record parser with
//! arbitrary bytes: `check_control` must never panic, and a reader that
//! walks an arbitrary segment (stepping, skipping, repairing holes,
//! following what the words say) must end in a bounded number of steps,
//! with a record, an end, a wait or a violation, never a panic or an
//! out-of-bounds access. A writer reserving and claiming in the garbage
//! must not panic either.
//!
//! Run: `cargo +nightly fuzz run log` from this directory.

#![no_main]

use std::sync::atomic::Ordering::Relaxed;

use libfuzzer_sys::fuzz_target;
use mapshare::unstable::log_protocol::heap::Heap;
use mapshare::unstable::log_protocol::*;

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, x) in b.iter_mut().enumerate() {
        *x = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // The segment header words, checked as `Segment::attach` does.
    let _ = check_control(word(data, 0), word(data, 1), word(data, 2), word(data, 3), word(data, 4));

    // A 4 KiB segment whose control block and data come from the input.
    let g = Geometry::new(4096);
    let m = Heap::new(g.object_len());
    let quiet = data.first().is_some_and(|b| b & 1 == 1);
    for i in 0..8 {
        m.store(8 * i, word(data, 5 + i as usize), Relaxed);
    }
    let data_words = (data.len() / 8).saturating_sub(13);
    for i in 0..data_words.min(512) {
        m.store(g.at(8 * i as u64), word(data, 13 + i), Relaxed);
    }
    let (mut p, mut idx) = (0u64, 0u64);
    let mut steps = 0;
    loop {
        steps += 1;
        // Each step advances 8 bytes or more, or marks a hole it then skips.
        assert!(steps <= 2 * (4096 / 8) + 4, "the walk does not advance");
        match step(&m, &g, p, idx) {
            Err(_) | Ok(Step::Empty) | Ok(Step::End { .. }) => break,
            Ok(Step::Record { len, .. }) => {
                let sp = span(u64::from(len));
                assert!(p + sp <= g.usable());
                p += sp;
                idx += 1;
            }
            Ok(Step::Skip { span, next_idx }) => {
                assert!(span >= 8 && p + span <= g.usable());
                p += span;
                idx = next_idx;
            }
            Ok(Step::Pending { word, .. }) => {
                if word == 0 {
                    match resolve(&m, &g, p, idx, || Ok::<_, ()>(quiet)) {
                        Ok(Ok(Resolved::Done)) => continue,
                        _ => break,
                    }
                }
                let (_, i, len) = split(word);
                if !quiet || !abort(&m, &g, p, i, len) {
                    break;
                }
            }
        }
    }
    // A writer in the same garbage.
    if let Reserve::Ok { off, idx } = reserve(&m, &g, span(16), 1) {
        if publish_claim(&m, &g, off, idx, 16, 1 << 10, idx, 0) {
            let _ = commit(&m, &g, off, idx, 16, 0);
        }
    }
});
