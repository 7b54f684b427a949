//! The header that makes a mapshare file self-describing, and its parser.
//!
//! A mapshare file is: a header page, a lease table (see `lease`), then the
//! object (a raw area, a typed value, a queue...). The header says what the
//! file holds and where, so a file opened years later, by another program,
//! on another machine, is either understood exactly or refused with a
//! reason: nothing is guessed.
//!
//! This module owns the byte layout and its validation only; the protocol
//! that creates and opens files is in `file`.
//!
//! # Layout (version 2, 128 bytes at offset 0)
//!
//! | offset | size | field | encoding |
//! |---|---|---|---|
//! | 0 | 8 | magic `MAPSHARE`, doubling as byte-order mark | native `u64` |
//! | 8 | 4 | init state (`0`, `INITIALIZING`, `READY`) | native `u32`, atomic |
//! | 12 | 4 | pid of the initializer | LE |
//! | 16 | 2 | format version | LE |
//! | 18 | 2 | header length | LE |
//! | 20 | 4 | page size at creation | LE |
//! | 24 | 4 | object kind | LE |
//! | 28 | 4 | feature bits (none defined; any set bit is refused) | LE |
//! | 32 | 8 | type size | LE |
//! | 40 | 4 | type alignment | LE |
//! | 44 | 4 | lease slots | LE |
//! | 48 | 8 | type hash (FNV-1a of the name, or the user's own) | LE |
//! | 56 | 32 | type name, UTF-8, NUL-padded | bytes |
//! | 88 | 8 | file length | LE |
//! | 96 | 8 | lease table offset | LE |
//! | 104 | 8 | object offset | LE |
//! | 112 | 8 | object length | LE |
//! | 120 | 8 | FNV-1a checksum of bytes 12..120 | LE |
//!
//! Fixed-order fields are little-endian (zerocopy byte-order types) so the
//! header reads the same everywhere. The magic is written in *native* order
//! on purpose: the words the object shares between processes (lock words,
//! counters) are native, so a file from a machine of the other byte order
//! must be refused, and a byte-swapped magic says exactly that.
//!
//! The checksum covers everything after the init state, so changing any one
//! byte of a valid header either is reported (FNV-1a changes with every
//! single-byte change) or falls outside the 128 bytes that are parsed.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Origin, Result};

/// `MAPSHARE` read as a big-endian number; stored in native order.
pub const MAGIC: u64 = u64::from_be_bytes(*b"MAPSHARE");
/// The format version this build writes and reads.
///
/// - 1: first release.
/// - 2: 64-bit lease tokens and slot generations; lease slots record the
///   PID namespace and start time; mutexes have a 64-bit lock word and a
///   sequence word (see `sync::raw_mutex`). Version 1 files are refused.
pub const VERSION: u16 = 2;
/// Bytes of the header proper.
pub const HEADER_LEN: usize = 128;
/// Offset of the init-state word.
pub const INIT_STATE_OFFSET: u64 = 8;
/// Init state: an initializer has started (and may have died).
pub const INITIALIZING: u32 = u32::from_be_bytes(*b"INIT");
/// Init state: the header is complete and valid.
pub const READY: u32 = u32::from_be_bytes(*b"REDY");
/// Bytes of each lease slot.
pub const LEASE_SLOT_LEN: u64 = 64;
/// Most lease slots a file may have (the slot number takes 10 bits of a
/// lock word).
pub const MAX_LEASE_SLOTS: u32 = 1024;
/// Lease slots in a new file unless asked otherwise.
pub const DEFAULT_LEASE_SLOTS: u32 = 64;
/// Longest type name stored.
pub const TYPE_NAME_LEN: usize = 32;
const CHECKSUM_RANGE: std::ops::Range<usize> = 12..120;

/// What a mapshare file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Raw bytes the application lays out itself.
    Raw,
    /// One typed value under a robust mutex ([`crate::Shared`]).
    Value,
    /// A single-producer single-consumer queue.
    Queue,
    /// One writer's latest value for many readers ([`crate::snapshot`]).
    Snapshot,
    /// One segment file of a broadcast log ([`crate::log`]).
    LogSegment,
}

impl Kind {
    /// The number stored in the header.
    pub fn code(self) -> u32 {
        match self {
            Kind::Raw => 1,
            Kind::Value => 2,
            Kind::Queue => 3,
            Kind::Snapshot => 4,
            Kind::LogSegment => 5,
        }
    }

    /// The kind for a stored number, if this build knows it.
    pub fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Raw),
            2 => Some(Kind::Value),
            3 => Some(Kind::Queue),
            4 => Some(Kind::Snapshot),
            5 => Some(Kind::LogSegment),
            _ => None,
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Value => "value",
            Kind::Queue => "queue",
            Kind::Snapshot => "snapshot",
            Kind::LogSegment => "log-segment",
        }
    }
}

/// What type a file's object is: size, alignment, and a name with its
/// hash. Two fingerprints match when all four do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// `size_of` the type (or the record format's fixed size; 0 for none).
    pub size: u64,
    /// `align_of` the type (1 for none).
    pub align: u32,
    /// A name the type supplies, at most 32 bytes of UTF-8.
    pub name: String,
    /// A hash the type supplies; by default FNV-1a of the name. Change it
    /// when the type's meaning changes but its name does not.
    pub hash: u64,
}

impl Fingerprint {
    /// A fingerprint whose hash is FNV-1a of `name`.
    pub fn new(name: &str, size: u64, align: u32) -> Fingerprint {
        Fingerprint {
            size,
            align,
            name: name.to_owned(),
            hash: fnv1a(name.as_bytes()),
        }
    }

    /// The fingerprint of a file that has no type (raw bytes).
    pub fn untyped() -> Fingerprint {
        Fingerprint::new("", 0, 1)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} (size {}, align {}, hash {:#018x})",
            self.name, self.size, self.align, self.hash
        )
    }
}

/// FNV-1a, 64 bits: a checksum that changes with every single-byte change.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The header as stored; see the module docs for the layout.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    init_state: [u8; 4],
    init_pid: U32,
    version: U16,
    header_len: U16,
    page_size: U32,
    kind: U32,
    features: U32,
    type_size: U64,
    type_align: U32,
    lease_slots: U32,
    type_hash: U64,
    type_name: [u8; TYPE_NAME_LEN],
    file_len: U64,
    lease_offset: U64,
    object_offset: U64,
    object_len: U64,
    checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_LEN);

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Pid of the process that initialized the file.
    pub init_pid: u32,
    /// Page size of the machine that created the file.
    pub page_size: u32,
    /// What the file holds.
    pub kind: Kind,
    /// The object's type.
    pub fingerprint: Fingerprint,
    /// Total length of the file.
    pub file_len: u64,
    /// Where the lease table starts.
    pub lease_offset: u64,
    /// Slots in the lease table.
    pub lease_slots: u32,
    /// Where the object starts.
    pub object_offset: u64,
    /// The object's length.
    pub object_len: u64,
}

fn round_up(n: u64, to: u64) -> Option<u64> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

impl Header {
    /// The header of a new file holding `object_len` bytes of `kind` with
    /// `lease_slots` slots, laid out for this machine's page size.
    pub fn plan(
        origin: &Origin,
        kind: Kind,
        fingerprint: Fingerprint,
        object_len: u64,
        lease_slots: u32,
    ) -> Result<Header> {
        // Everything here is the caller's argument, not file contents.
        let bad = |what: &'static str, why: String| Error::InvalidArgument {
            origin: origin.clone(),
            what,
            why,
        };
        if !(1..=MAX_LEASE_SLOTS).contains(&lease_slots) {
            return Err(bad(
                "lease slot count",
                format!("{lease_slots}; a file has 1 to {MAX_LEASE_SLOTS} lease slots"),
            ));
        }
        if fingerprint.name.len() > TYPE_NAME_LEN || fingerprint.name.contains('\0') {
            return Err(bad(
                "type name",
                format!(
                    "{:?}; a type name has at most {TYPE_NAME_LEN} bytes and no NUL",
                    fingerprint.name
                ),
            ));
        }
        if !fingerprint.align.is_power_of_two() {
            return Err(bad(
                "type alignment",
                format!("{}; an alignment is a power of two", fingerprint.align),
            ));
        }
        if object_len == 0 {
            return Err(Error::ZeroLength {
                origin: origin.clone(),
                what: "object",
            });
        }
        let page = crate::sys::page_size() as u64;
        let lease_offset = page;
        let lease_end = lease_offset + u64::from(lease_slots) * LEASE_SLOT_LEN;
        let object_offset = round_up(lease_end, page).ok_or_else(|| Error::Overflow {
            origin: origin.clone(),
            offset: lease_offset,
            len: lease_end - lease_offset,
        })?;
        let file_len = object_offset
            .checked_add(object_len)
            .and_then(|e| round_up(e, page))
            .ok_or_else(|| Error::Overflow {
                origin: origin.clone(),
                offset: object_offset,
                len: object_len,
            })?;
        Ok(Header {
            init_pid: crate::sys::pid(),
            page_size: page as u32,
            kind,
            fingerprint,
            file_len,
            lease_offset,
            lease_slots,
            object_offset,
            object_len,
        })
    }

    /// Lengthens the planned file by one page past the object's last
    /// page: the guard page that [`Header::guard_page`] finds.
    pub fn add_guard_page(&mut self, origin: &Origin) -> Result<()> {
        self.file_len = self
            .file_len
            .checked_add(u64::from(self.page_size))
            .ok_or_else(|| Error::Overflow {
                origin: origin.clone(),
                offset: self.object_offset,
                len: self.object_len,
            })?;
        Ok(())
    }

    /// The file offset of the guard page, if the file has one: a whole
    /// page of this machine, at the end of the file, wholly past the
    /// object's last page, which nobody writes. A file cut by an outside
    /// truncate loses the guard page before anything else: the kernel
    /// takes the pages past the new end out of every mapping before it
    /// zeroes the rest of the page the new end falls in. So a load from
    /// the guard page that does not fault (see `sys::sigbus`), after
    /// loads from the object, proves that those loads read no such
    /// zeros. Files made without one (`file_len` is then the object's end
    /// rounded up to a page) have none.
    pub fn guard_page(&self) -> Option<u64> {
        let page = crate::sys::page_size() as u64;
        let object_end = self.object_offset.checked_add(self.object_len)?;
        let guard = self.file_len.checked_sub(page)?;
        (guard >= round_up(object_end, page)?).then_some(guard)
    }

    /// The 128 header bytes, with `init_state` as given (the checksum does
    /// not cover it).
    pub fn encode(&self, init_state: u32) -> [u8; HEADER_LEN] {
        let mut name = [0u8; TYPE_NAME_LEN];
        let n = self.fingerprint.name.len().min(TYPE_NAME_LEN);
        name[..n].copy_from_slice(&self.fingerprint.name.as_bytes()[..n]);
        let mut raw = RawHeader {
            magic: MAGIC.to_ne_bytes(),
            init_state: init_state.to_ne_bytes(),
            init_pid: self.init_pid.into(),
            version: VERSION.into(),
            header_len: (HEADER_LEN as u16).into(),
            page_size: self.page_size.into(),
            kind: self.kind.code().into(),
            features: 0.into(),
            type_size: self.fingerprint.size.into(),
            type_align: self.fingerprint.align.into(),
            lease_slots: self.lease_slots.into(),
            type_hash: self.fingerprint.hash.into(),
            type_name: name,
            file_len: self.file_len.into(),
            lease_offset: self.lease_offset.into(),
            object_offset: self.object_offset.into(),
            object_len: self.object_len.into(),
            checksum: 0.into(),
        };
        let sum = fnv1a(&raw.as_bytes()[CHECKSUM_RANGE]);
        raw.checksum = sum.into();
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Parses and validates a header read from a file of `file_size` bytes.
    /// `bytes` may be shorter than a header (a short file) or longer (only
    /// the first [`HEADER_LEN`] bytes are read). Never panics.
    pub fn parse(origin: &Origin, bytes: &[u8], file_size: u64) -> Result<Header> {
        let corrupt = |what: &'static str, why: String| Error::Corrupted {
            origin: origin.clone(),
            what,
            why,
        };
        let Some(magic) = bytes.get(..8) else {
            return Err(Error::NotMapshare {
                origin: origin.clone(),
            });
        };
        if magic != MAGIC.to_ne_bytes() {
            if magic == MAGIC.swap_bytes().to_ne_bytes() {
                return Err(Error::ByteOrderMismatch {
                    origin: origin.clone(),
                });
            }
            return Err(Error::NotMapshare {
                origin: origin.clone(),
            });
        }
        let Some(raw) = bytes
            .get(..HEADER_LEN)
            .and_then(|b| RawHeader::read_from_bytes(b).ok())
        else {
            return Err(Error::Truncated {
                origin: origin.clone(),
                expected: HEADER_LEN as u64,
                actual: file_size.min(bytes.len() as u64),
            });
        };
        let state = u32::from_ne_bytes(raw.init_state);
        if state != READY {
            return Err(corrupt(
                "header",
                format!(
                    "init state {state:#010x} is not READY: the file was never fully initialized"
                ),
            ));
        }
        if raw.version.get() != VERSION {
            return Err(Error::UnsupportedVersion {
                origin: origin.clone(),
                found: raw.version.get().into(),
                supported: VERSION.into(),
            });
        }
        if usize::from(raw.header_len.get()) != HEADER_LEN {
            return Err(corrupt(
                "header length",
                format!(
                    "{} bytes, version {VERSION} has {HEADER_LEN}",
                    raw.header_len.get()
                ),
            ));
        }
        let computed = fnv1a(&raw.as_bytes()[CHECKSUM_RANGE]);
        if computed != raw.checksum.get() {
            return Err(Error::BadChecksum {
                origin: origin.clone(),
                stored: raw.checksum.get(),
                computed,
            });
        }
        // From here on the bytes are what an initializer wrote; the checks
        // below catch files written by buggy or hostile programs that
        // computed a valid checksum over nonsense.
        if raw.features.get() != 0 {
            return Err(corrupt(
                "features",
                format!("unknown feature bits {:#x}", raw.features.get()),
            ));
        }
        let kind = Kind::from_code(raw.kind.get()).ok_or_else(|| Error::WrongKind {
            origin: origin.clone(),
            expected: "a kind this build knows (raw, value, queue)".into(),
            found: format!("kind code {}", raw.kind.get()),
        })?;
        let page_size = raw.page_size.get();
        if !page_size.is_power_of_two() || !(4096..=1 << 30).contains(&page_size) {
            return Err(corrupt("page size", format!("{page_size}")));
        }
        let align = raw.type_align.get();
        if !align.is_power_of_two() {
            return Err(corrupt("type alignment", format!("{align}")));
        }
        let name_len = raw
            .type_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TYPE_NAME_LEN);
        if raw.type_name[name_len..].iter().any(|&b| b != 0) {
            return Err(corrupt(
                "type name",
                "bytes after the terminating NUL".into(),
            ));
        }
        let name = std::str::from_utf8(&raw.type_name[..name_len])
            .map_err(|_| corrupt("type name", "not UTF-8".into()))?
            .to_owned();
        let lease_slots = raw.lease_slots.get();
        if !(1..=MAX_LEASE_SLOTS).contains(&lease_slots) {
            return Err(corrupt("lease slots", format!("{lease_slots}")));
        }
        let file_len = raw.file_len.get();
        let lease_offset = raw.lease_offset.get();
        let object_offset = raw.object_offset.get();
        let object_len = raw.object_len.get();
        let lease_end = lease_offset.checked_add(u64::from(lease_slots) * LEASE_SLOT_LEN);
        let object_end = object_offset.checked_add(object_len);
        let layout_ok = lease_offset >= HEADER_LEN as u64
            && lease_offset % LEASE_SLOT_LEN == 0
            && lease_end.is_some_and(|e| e <= object_offset)
            && object_offset % 64 == 0
            && object_len > 0
            && object_end.is_some_and(|e| e <= file_len);
        if !layout_ok {
            return Err(corrupt(
                "layout",
                format!(
                    "lease table at {lease_offset} ({lease_slots} slots), object at {object_offset}+{object_len}, file length {file_len}"
                ),
            ));
        }
        if file_size < file_len {
            return Err(Error::Truncated {
                origin: origin.clone(),
                expected: file_len,
                actual: file_size,
            });
        }
        Ok(Header {
            init_pid: raw.init_pid.get(),
            page_size,
            kind,
            fingerprint: Fingerprint {
                size: raw.type_size.get(),
                align,
                name,
                hash: raw.type_hash.get(),
            },
            file_len,
            lease_offset,
            lease_slots,
            object_offset,
            object_len,
        })
    }

    /// Checks that the file holds `kind` with type `fingerprint`.
    pub fn expect(&self, origin: &Origin, kind: Kind, fingerprint: &Fingerprint) -> Result<()> {
        if self.kind != kind {
            return Err(Error::WrongKind {
                origin: origin.clone(),
                expected: kind.name().into(),
                found: self.kind.name().into(),
            });
        }
        if &self.fingerprint != fingerprint {
            return Err(Error::TypeMismatch {
                origin: origin.clone(),
                expected: fingerprint.to_string(),
                found: self.fingerprint.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::path(std::path::Path::new("test"))
    }

    fn sample() -> Header {
        Header::plan(
            &origin(),
            Kind::Value,
            Fingerprint::new("demo::Counter", 16, 8),
            4096,
            DEFAULT_LEASE_SLOTS,
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.encode(READY);
        assert_eq!(Header::parse(&origin(), &bytes, h.file_len).unwrap(), h);
    }

    #[test]
    fn every_single_byte_change_is_an_error_or_harmless() {
        let h = sample();
        let mut page = vec![0u8; 4096];
        page[..HEADER_LEN].copy_from_slice(&h.encode(READY));
        for i in 0..page.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bytes = page.clone();
                bytes[i] ^= mask;
                match Header::parse(&origin(), &bytes, h.file_len) {
                    Ok(parsed) => {
                        assert!(i >= HEADER_LEN, "byte {i} ^ {mask:#x} went unnoticed");
                        assert_eq!(parsed, h);
                    }
                    Err(e) => assert!(i < HEADER_LEN, "byte {i} outside the header: {e}"),
                }
            }
        }
    }

    #[test]
    fn typed_errors() {
        let h = sample();
        let good = h.encode(READY);
        let o = origin();
        assert!(matches!(
            Header::parse(&o, b"", 0),
            Err(Error::NotMapshare { .. })
        ));
        assert!(matches!(
            Header::parse(&o, &[b'x'; 200], 200),
            Err(Error::NotMapshare { .. })
        ));
        let mut swapped = good;
        swapped[..8].copy_from_slice(&MAGIC.swap_bytes().to_ne_bytes());
        assert!(matches!(
            Header::parse(&o, &swapped, h.file_len),
            Err(Error::ByteOrderMismatch { .. })
        ));
        assert!(matches!(
            Header::parse(&o, &good[..60], 60),
            Err(Error::Truncated { expected: 128, .. })
        ));
        assert!(matches!(
            Header::parse(&o, &good, h.file_len - 1),
            Err(Error::Truncated { .. })
        ));
        // The previous version (1: 32-bit lock words) and the next are refused.
        for other in [VERSION - 1, VERSION + 1] {
            let mut v = good;
            v[16..18].copy_from_slice(&other.to_le_bytes());
            let found = u32::from(other);
            assert!(matches!(
                Header::parse(&o, &v, h.file_len),
                Err(Error::UnsupportedVersion { found: f, .. }) if f == found
            ));
        }
        let mut sum = good;
        sum[100] ^= 1;
        assert!(matches!(
            Header::parse(&o, &sum, h.file_len),
            Err(Error::BadChecksum { .. })
        ));
        let not_ready = h.encode(INITIALIZING);
        assert!(matches!(
            Header::parse(&o, &not_ready, h.file_len),
            Err(Error::Corrupted { .. })
        ));

        // A well-checksummed header with an unknown kind or a bad layout.
        let mut odd = h.clone();
        odd.object_len = h.file_len * 2;
        assert!(matches!(
            Header::parse(&o, &odd.encode(READY), u64::MAX),
            Err(Error::Corrupted { what: "layout", .. })
        ));

        let parsed = Header::parse(&o, &good, h.file_len).unwrap();
        assert!(parsed.expect(&o, Kind::Value, &h.fingerprint).is_ok());
        assert!(matches!(
            parsed.expect(&o, Kind::Queue, &h.fingerprint),
            Err(Error::WrongKind { .. })
        ));
        assert!(matches!(
            parsed.expect(&o, Kind::Value, &Fingerprint::new("demo::Counter", 24, 8)),
            Err(Error::TypeMismatch { .. })
        ));
    }

    #[test]
    fn plan_refuses_nonsense() {
        let o = origin();
        let fp = Fingerprint::untyped();
        assert!(matches!(
            Header::plan(&o, Kind::Raw, fp.clone(), 0, 8),
            Err(Error::ZeroLength { .. })
        ));
        // Bad arguments are the caller's, never a "corrupted" file.
        for slots in [0, MAX_LEASE_SLOTS + 1, 4096] {
            assert!(matches!(
                Header::plan(&o, Kind::Raw, fp.clone(), 10, slots),
                Err(Error::InvalidArgument {
                    what: "lease slot count",
                    ..
                })
            ));
        }
        assert!(matches!(
            Header::plan(&o, Kind::Raw, fp, u64::MAX - 10, 8),
            Err(Error::Overflow { .. })
        ));
        let long = Fingerprint::new(&"x".repeat(33), 1, 1);
        assert!(matches!(
            Header::plan(&o, Kind::Raw, long, 10, 8),
            Err(Error::InvalidArgument {
                what: "type name",
                ..
            })
        ));
        let odd = Fingerprint::new("t", 1, 3);
        let e = Header::plan(&o, Kind::Raw, odd, 10, 8).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
    }
}
