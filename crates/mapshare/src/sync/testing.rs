//! A futex stand-in over heap memory, for unit tests and Miri: a condition
//! variable whose lock makes "check the word, then sleep" atomic with
//! respect to `wake`, which is the futex contract.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::word::{Park, Wake};

#[derive(Default)]
pub(crate) struct HeapPark {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Park<AtomicU32> for HeapPark {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let guard = self.lock.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Wake::Changed;
        }
        match timeout {
            None => {
                drop(self.cv.wait(guard).unwrap());
                Wake::Woken
            }
            Some(t) => {
                let (_g, r) = self.cv.wait_timeout(guard, t).unwrap();
                if r.timed_out() {
                    Wake::TimedOut
                } else {
                    Wake::Woken
                }
            }
        }
    }

    fn wake(&self, _word: &AtomicU32, _count: u32) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// The asymmetric fence pair as the memory model sees it (see
/// `sync::fence`): the notifier's compiler fence becomes a `SeqCst` fence
/// (what the waiter's `membarrier` makes of it), and the waiter's
/// `membarrier` is a `SeqCst` fence.
pub(crate) struct ModelAsymmetric;

impl super::fence::Fences for ModelAsymmetric {
    fn sleepers_present<W: super::Word>(&self, s: &W) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        s.load(Ordering::Relaxed) != 0
    }
    fn after_enter(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}
