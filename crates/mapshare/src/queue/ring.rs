//! The position protocol of the single-producer single-consumer ring,
//! independent of where its words and bytes live (so loom and Miri can run
//! it over heap memory).
//!
//! # Positions
//!
//! `write` and `read` are byte positions that only grow (64 bits: they do
//! not wrap in the life of any machine). The ring offset of a position is
//! `pos % capacity`. Invariants, checked on every load of the *other*
//! side's position, because the other side is another program:
//!
//! - both are multiples of 8;
//! - `read <= write <= read + capacity`;
//! - `write <= MAX_POSITION` (2^63), so that no sum of a position and a
//!   record size can overflow.
//!
//! Each side keeps its own position in a local variable and only ever
//! stores it; it never trusts the shared copy of its own position after
//! opening. Each side caches the other's position and reloads it only when
//! the cache says "empty" (consumer) or "full" (producer), as rtrb does, so
//! a busy stream touches the other side's cache line rarely.
//!
//! # Records
//!
//! A record is an 8-byte header (`len: u32`, `kind: u32`, native order)
//! followed by `len` bytes, padded to a multiple of 8, never split across
//! the end of the ring: a record that does not fit in the space left before
//! the end is preceded by a *pad* record covering that space. The producer
//! writes the record, then publishes the new `write` with release order;
//! the consumer loads `write` with acquire order before reading, so it can
//! never see a record that is not completely written. A producer killed
//! mid-write leaves nothing visible.

use std::sync::atomic::Ordering::{Acquire, Release};

use crate::sync::{Park, RawEvent, Word, Word64};

/// Bytes of a record header.
pub const HEADER: u64 = 8;
/// Record kind: data.
pub const DATA: u32 = 0x4441_5441;
/// Record kind: padding to the end of the ring.
pub const PAD: u32 = 0x5041_4421;

/// Bytes a record of `len` payload bytes occupies.
#[inline]
pub fn record_size(len: u64) -> u64 {
    HEADER + len.div_ceil(8) * 8
}

/// Positions never exceed this (2^63 bytes: 290 years at 1 GB/s). Every
/// sum of a position and a record size (at most 2^32 + 8) then fits in a
/// `u64`, so a position near `u64::MAX` written by a hostile peer is a
/// [`Violation`], never an overflow.
pub const MAX_POSITION: u64 = 1 << 63;

/// Checks a (read, write) pair read from shared memory against a ring of
/// `capacity` bytes: multiples of 8, `read <= write <= read + capacity`,
/// `write <= MAX_POSITION`.
#[inline]
pub fn check_positions(read: u64, write: u64, capacity: u64) -> Result<(), Violation> {
    if (read | write) % 8 != 0 || read > write || write - read > capacity || write > MAX_POSITION {
        return Err(Violation(format!(
            "positions read {read} / write {write} do not fit a ring of {capacity} bytes \
             (multiples of 8, read <= write <= read + capacity, write <= 2^63)"
        )));
    }
    Ok(())
}

/// The ring's bytes: reads and writes of ranges that the caller guarantees
/// lie within `0..capacity`.
pub trait Bytes {
    /// Copies `buf.len()` bytes from ring offset `at`.
    fn read(&self, at: u64, buf: &mut [u8]);
    /// Copies `data` to ring offset `at`.
    fn write(&self, at: u64, data: &[u8]);
    /// Writes the 8-byte record header at `at` (8-aligned). Implementations
    /// over shared memory store it as one atomic word, so that
    /// [`Bytes::touch`] may read the slot while it is being written.
    fn write_header_word(&self, at: u64, header: [u8; 8]) {
        self.write(at, &header);
    }
    /// Reads the 8-byte record header at `at` (8-aligned).
    fn read_header_word(&self, at: u64) -> [u8; 8] {
        let mut h = [0u8; 8];
        self.read(at, &mut h);
        h
    }
    /// A hint: load the header slot at `at` and discard it, so that a
    /// waiting consumer pulls the record's cache line in parallel with the
    /// write position's. Only for implementations whose header accesses
    /// are atomic; the default does nothing.
    fn touch(&self, _at: u64) {}
}

/// What the consumer found at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Padding of `size` bytes to skip.
    Pad {
        /// Bytes to skip.
        size: u64,
    },
    /// A record: payload at ring offset `at`, `len` bytes, `size` in all.
    Record {
        /// Ring offset of the payload.
        at: u64,
        /// Payload length.
        len: u32,
        /// Bytes the record occupies, header included.
        size: u64,
    },
}

/// A violated invariant: what the shared state says that cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// The ring: two positions, two events, the bytes, and the capacity (which
/// comes from the checksummed header, never from shared memory).
pub struct Ring<'a, P: Word64, W: Word, D: Bytes> {
    /// Committed write position (producer stores, consumer loads).
    pub write: &'a P,
    /// Released read position (consumer stores, producer loads).
    pub read: &'a P,
    /// The consumer sleeps here; the producer notifies after publishing.
    pub data_event: RawEvent<'a, W>,
    /// The producer sleeps here; the consumer notifies after releasing.
    pub space_event: RawEvent<'a, W>,
    /// The ring's bytes.
    pub bytes: &'a D,
    /// Capacity in bytes, a multiple of 8.
    pub capacity: u64,
}

impl<P: Word64, W: Word, D: Bytes> Ring<'_, P, W, D> {
    /// Largest payload a record may carry.
    pub fn max_record(&self) -> u64 {
        self.capacity - HEADER
    }

    /// Checks a (read, write) pair read from shared memory.
    #[inline]
    pub fn check(&self, read: u64, write: u64) -> Result<(), Violation> {
        check_positions(read, write, self.capacity)
    }

    /// Producer: the consumer's position, loaded and validated against our
    /// own `write`.
    #[inline]
    pub fn load_read(&self, write: u64) -> Result<u64, Violation> {
        let read = self.read.load(Acquire);
        self.check(read, write)?;
        Ok(read)
    }

    /// Consumer: the producer's position, loaded and validated against our
    /// own `read`.
    #[inline]
    pub fn load_write(&self, read: u64) -> Result<u64, Violation> {
        let write = self.write.load(Acquire);
        self.check(read, write)?;
        Ok(write)
    }

    /// Producer: bytes of padding needed before a record of `size` bytes at
    /// position `write` (0 if it fits before the end of the ring).
    #[inline]
    pub fn pad_before(&self, write: u64, size: u64) -> u64 {
        let tail = self.capacity - write % self.capacity;
        if size <= tail {
            0
        } else {
            tail
        }
    }

    /// Producer: writes a pad record at `write` covering `pad` bytes.
    pub fn write_pad(&self, write: u64, pad: u64) {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&((pad - HEADER) as u32).to_ne_bytes());
        h[4..].copy_from_slice(&PAD.to_ne_bytes());
        self.bytes.write_header_word(write % self.capacity, h);
    }

    /// Producer: writes the header of a `len`-byte record at `write`.
    #[inline]
    pub fn write_header(&self, write: u64, len: u32) {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&len.to_ne_bytes());
        h[4..].copy_from_slice(&DATA.to_ne_bytes());
        self.bytes.write_header_word(write % self.capacity, h);
    }

    /// Producer: makes everything before `write` visible and wakes the
    /// consumer if it sleeps.
    #[inline]
    pub fn publish(&self, write: u64, park: &impl Park<W>) {
        self.write.store(write, Release);
        self.data_event.notify_if_sleeping(1, park);
    }

    /// Consumer: what lies at `read`, given `available` committed bytes
    /// after it (from [`Ring::load_write`]). Every field read from the ring
    /// is validated before use.
    pub fn next(&self, read: u64, available: u64) -> Result<Next, Violation> {
        let at = read % self.capacity;
        let h = self.bytes.read_header_word(at);
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let kind = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        match kind {
            PAD => {
                let size = self.capacity - at;
                if u64::from(len) != size - HEADER || size > available {
                    return Err(Violation(format!(
                        "pad at {read} claims {len} bytes; {size} remain to the end, {available} committed"
                    )));
                }
                Ok(Next::Pad { size })
            }
            DATA => {
                let size = record_size(u64::from(len));
                if len == 0 || size > available || at + size > self.capacity {
                    return Err(Violation(format!(
                        "record at {read} claims {len} bytes; {available} committed, {} to the end of the ring",
                        self.capacity - at
                    )));
                }
                Ok(Next::Record {
                    at: at + HEADER,
                    len,
                    size,
                })
            }
            other => Err(Violation(format!(
                "record at {read} has kind {other:#010x}, neither data nor pad"
            ))),
        }
    }

    /// Consumer, while waiting at `read`: a hint that pulls the next
    /// record's line along with the write position's (see [`Bytes::touch`]).
    #[inline]
    pub fn touch_next(&self, read: u64) {
        self.bytes.touch(read % self.capacity);
    }

    /// Consumer: gives everything before `read` back to the producer and
    /// wakes it if it sleeps.
    #[inline]
    pub fn release(&self, read: u64, park: &impl Park<W>) {
        self.read.store(read, Release);
        self.space_event.notify_if_sleeping(1, park);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::HeapPark;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// Heap bytes shared by two threads, accessed through raw pointers so
    /// that only the bytes touched count as accesses; the protocol under
    /// test must order them (Miri checks that it does).
    struct Heap {
        base: *mut u8,
        len: usize,
    }
    // SAFETY: the ring protocol orders every access (that is the test).
    unsafe impl Sync for Heap {}

    impl Heap {
        fn new(len: usize) -> Heap {
            let base = Box::into_raw(vec![0u8; len].into_boxed_slice()).cast::<u8>();
            Heap { base, len }
        }
    }

    impl Drop for Heap {
        fn drop(&mut self) {
            // SAFETY: `base` came from a boxed slice of `len` bytes.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.base, self.len)) });
        }
    }

    impl Bytes for Heap {
        fn read(&self, at: u64, buf: &mut [u8]) {
            assert!(at as usize + buf.len() <= self.len);
            // SAFETY: in bounds (checked); ordered by the protocol.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.add(at as usize),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            }
        }
        fn write(&self, at: u64, data: &[u8]) {
            assert!(at as usize + data.len() <= self.len);
            // SAFETY: as in `read`.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(at as usize), data.len())
            }
        }
    }

    struct Words {
        write: AtomicU64,
        read: AtomicU64,
        ev: [AtomicU32; 4],
    }

    fn ring<'a>(
        w: &'a Words,
        bytes: &'a Heap,
        capacity: u64,
    ) -> Ring<'a, AtomicU64, AtomicU32, Heap> {
        Ring {
            write: &w.write,
            read: &w.read,
            data_event: RawEvent {
                seq: &w.ev[0],
                sleepers: &w.ev[1],
            },
            space_event: RawEvent {
                seq: &w.ev[2],
                sleepers: &w.ev[3],
            },
            bytes,
            capacity,
        }
    }

    fn words() -> Words {
        Words {
            write: AtomicU64::new(0),
            read: AtomicU64::new(0),
            ev: Default::default(),
        }
    }

    /// Producer and consumer threads stream variable-length records through
    /// a tiny ring; every record arrives intact, in order.
    #[test]
    fn stream_through_a_small_ring() {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let park = HeapPark::default();
        let n: u32 = if cfg!(miri) { 40 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = ring(&w, &heap, CAP);
                let mut write = 0u64;
                for i in 0..n {
                    let len = 1 + (i as u64 * 7) % 40;
                    let size = record_size(len);
                    let pad = r.pad_before(write, size);
                    let need = |write, bytes: u64| {
                        let ok = |r2: &Ring<'_, AtomicU64, AtomicU32, Heap>| {
                            let read = r2.load_read(write).unwrap();
                            CAP - (write - read) >= bytes
                        };
                        if !ok(&r) {
                            r.space_event.wait_until(|| ok(&r), None, &park);
                        }
                    };
                    if pad > 0 {
                        need(write, pad);
                        r.write_pad(write, pad);
                        write += pad;
                        r.publish(write, &park);
                    }
                    need(write, size);
                    let payload: Vec<u8> = (0..len).map(|j| (i as u64 + j) as u8).collect();
                    r.bytes.write(write % CAP + HEADER, &payload);
                    r.write_header(write, len as u32);
                    write += size;
                    r.publish(write, &park);
                }
            });
            let r = ring(&w, &heap, CAP);
            let mut read = 0u64;
            let mut i = 0u32;
            while i < n {
                let mut avail = r.load_write(read).unwrap() - read;
                if avail == 0 {
                    r.data_event
                        .wait_until(|| r.load_write(read).unwrap() != read, None, &park);
                    avail = r.load_write(read).unwrap() - read;
                }
                match r.next(read, avail).unwrap() {
                    Next::Pad { size } => read += size,
                    Next::Record { at, len, size } => {
                        let expect_len = 1 + (i as u64 * 7) % 40;
                        assert_eq!(u64::from(len), expect_len);
                        let mut buf = vec![0u8; len as usize];
                        r.bytes.read(at, &mut buf);
                        let expect: Vec<u8> =
                            (0..expect_len).map(|j| (i as u64 + j) as u8).collect();
                        assert_eq!(buf, expect);
                        read += size;
                        i += 1;
                    }
                }
                r.release(read, &park);
            }
        });
    }

    #[test]
    fn violations_are_reported() {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let r = ring(&w, &heap, CAP);
        assert!(r.check(0, 72).is_err(), "more than a ring ahead");
        assert!(r.check(8, 0).is_err(), "write behind read");
        assert!(r.check(3, 8).is_err(), "unaligned");
        assert!(r.check(8, 16).is_ok());
        assert!(
            r.check(u64::MAX - 7, u64::MAX - 7).is_err(),
            "near u64::MAX"
        );
        assert!(r.check(MAX_POSITION - 8, MAX_POSITION).is_ok());
        assert!(r.check(MAX_POSITION, MAX_POSITION + 8).is_err());
        // Garbage headers.
        heap.write(0, &[0xff; 8]);
        assert!(r.next(0, 64).is_err());
        r.write_header(0, 100);
        assert!(r.next(0, 64).is_err(), "longer than the ring");
        r.write_header(0, 16);
        assert!(r.next(0, 16).is_err(), "longer than what is committed");
        assert_eq!(
            r.next(0, 24),
            Ok(Next::Record {
                at: 8,
                len: 16,
                size: 24
            })
        );
        r.write_pad(48, 16);
        assert_eq!(r.next(48, 16), Ok(Next::Pad { size: 16 }));
        r.write_pad(48, 8);
        assert!(r.next(48, 16).is_err(), "pad not reaching the end");
    }
}
