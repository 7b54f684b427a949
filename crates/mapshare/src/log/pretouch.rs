//! A writer's pretoucher: a helper thread that maps the writer's segment
//! in ahead of its appends, so that the appends never wait for the kernel
//! to provide fresh pages.
//!
//! A log writes into fresh pages all the time (a queue reuses its ring).
//! Mapping a page in costs the kernel ~1.1 µs on this project's VMs (it
//! zeroes the page and installs its page-table entry), and ~40 records of
//! 64 bytes share a page: ~28 ns of a ~70 ns append
//! ([`Segment::populate_ahead`] does it inline, 512 KiB at a time). With a
//! pretoucher on another core, the writer's thread only asks for more when
//! it passes the halfway mark of what is mapped in. Chronicle Queue's
//! pretoucher does the same job.
//!
//! It owns no log state: it knows the writer's current segment (a `Weak`,
//! upgraded while it populates a chunk, so the mapping cannot be unmapped
//! under it, and a forked child that drops the writer drops the segment
//! too), populates that mapping from where the writer is up to what the
//! writer asked for, and parks. Page tables belong to the process, so
//! populating the writer's mapping from this thread is what the writer's
//! own populate would have done. Where the kernel lacks
//! `MADV_POPULATE_WRITE` (before 5.14) it does nothing, as the writer's
//! own populate does.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use super::segment::{Segment, POPULATE_AHEAD};

/// What the writer and its pretoucher share.
struct State {
    /// The writer's current segment.
    seg: Mutex<Weak<Segment>>,
    /// Data offset of that segment to populate from (the page of the
    /// writer's position when it asked: what lies before is written).
    from: AtomicU64,
    /// Data offset of that segment to populate up to (0: nothing).
    want: AtomicU64,
    /// The writer is gone: the thread exits.
    stop: AtomicBool,
}

/// The writer's end of a pretoucher.
pub(crate) struct Pretoucher {
    state: Arc<State>,
    /// What the writer last asked for (the writer's own note, atomic so
    /// that a `&Writer` can ask).
    asked: AtomicU64,
    thread: Option<JoinHandle<()>>,
}

impl Pretoucher {
    /// Starts a pretoucher for `seg`, pinned to `cpu` if given (else it
    /// runs where the calling thread may run). Returns once the thread
    /// runs (named and pinned): a `cpu` it cannot run on is an error.
    pub(crate) fn start(seg: &Arc<Segment>, cpu: Option<usize>) -> std::io::Result<Pretoucher> {
        let state = Arc::new(State {
            seg: Mutex::new(Arc::downgrade(seg)),
            from: AtomicU64::new(0),
            want: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&state);
        let (started, running) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("log-pretouch".into())
            .spawn(move || {
                let pinned = cpu.map_or(Ok(()), crate::sys::pin_to_cpu);
                let ok = pinned.is_ok();
                let _ = started.send(pinned);
                if ok {
                    run(&theirs);
                }
            })?;
        let pinned = running
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the pretouch thread ended at once")));
        if let Err(e) = pinned {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Pretoucher {
            state,
            asked: AtomicU64::new(0),
            thread: Some(thread),
        })
    }

    /// The writer committed up to data offset `end` of its segment: asks
    /// for the next stretch once `end` passes the halfway mark of the
    /// last one asked for. One relaxed load on every other call.
    #[inline]
    pub(crate) fn ahead(&self, end: u64) {
        if end + POPULATE_AHEAD / 2 > self.asked.load(Relaxed) {
            self.ask(end);
        }
    }

    #[cold]
    fn ask(&self, end: u64) {
        let page = crate::sys::page_size() as u64;
        let want = end + POPULATE_AHEAD;
        self.asked.store(want, Relaxed);
        self.state.from.store(end / page * page, Relaxed);
        self.state.want.store(want, Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// The writer moved to `seg` (a roll). Nothing is asked for it until
    /// the writer's next commit there says from where: other writers may
    /// have filled much of it already.
    pub(crate) fn switch(&self, seg: &Arc<Segment>) {
        // `want` first: the thread never pairs the new segment with what
        // was asked of the old one (found in review).
        self.state.want.store(0, Release);
        self.asked.store(0, Relaxed);
        if let Ok(mut s) = self.state.seg.lock() {
            *s = Arc::downgrade(seg);
        }
    }

    /// Stops the thread and waits for it, unless this is a forked child
    /// (`parent == false`), where the thread does not exist: then only
    /// the handle is dropped.
    pub(crate) fn stop(&mut self, parent: bool) {
        self.state.stop.store(true, Release);
        if let Some(t) = self.thread.take() {
            if parent {
                t.thread().unpark();
                let _ = t.join();
            } else {
                // The thread is the parent's: there is none to wake or
                // join here, and dropping the handle would detach (in
                // libc's bookkeeping) a thread this process does not have.
                std::mem::forget(t);
            }
        }
    }
}

/// The thread: populate what was asked for, in chunks (checking for a
/// stop or a newer segment between them), then park until asked again
/// (the writer unparks it when it asks and on its way out; an unpark
/// before the park is not lost).
fn run(state: &State) {
    const CHUNK: u64 = 128 << 10;
    while !state.stop.load(Acquire) {
        let seg = match state.seg.lock() {
            Ok(s) => s.upgrade(),
            Err(_) => return,
        };
        if let Some(seg) = seg {
            let want = state.want.load(Acquire).min(seg.geo.capacity);
            let from = seg.populated().max(state.from.load(Relaxed));
            if from < want {
                seg.populate_range(from, (from + CHUNK).min(want), true);
                continue;
            }
        }
        std::thread::park();
    }
}
