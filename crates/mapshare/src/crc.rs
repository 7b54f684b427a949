//! The CRC32C of snapshot values and log records, and the copy into a
//! snapshot slot fused with it.
//!
//! Values are CRC32C (Castagnoli) as the `crc32c` crate computes them
//! (`crc32c::crc32c`); [`checksum`] and [`copy_with_checksum`] always give
//! the same number. The crate runs the CPU's `crc32` instruction, about 8
//! bytes a cycle: on this project's machines half the speed of `memcpy`, so
//! a publish that copied a value and then checksummed it ran at a third of
//! `memcpy` (docs/benchmarks.md). On x86-64 CPUs with AVX-512F and
//! VPCLMULQDQ, values of [`FOLD_MIN`] bytes or more go through a
//! carry-less-multiply kernel instead, which folds 64-byte blocks four at
//! a time, and [`copy_with_checksum`] stores each block into the slot from
//! the register it folds: the value is read once, and the copy runs at
//! about the speed of `memcpy`. Values of at most [`SHORT_MAX`] bytes (a
//! log record, a small snapshot) go through one plain chain of `crc32`
//! instructions: the crate's three-way kernel costs more to set up than
//! such a value takes (21 against 9 ns for 64 bytes here). Anywhere else
//! (other CPUs, Miri, valgrind, which hides AVX-512) the crate does the
//! work.
//!
//! # Why folding gives the CRC (the method of Intel's "Fast CRC
//! Computation for Generic Polynomials Using PCLMULQDQ", derived here)
//!
//! Read a message as a polynomial `M(x)` over GF(2), its first bit the
//! highest power. The CRC register after it (no initial value, no final
//! inversion) is `M(x)·x³² mod P(x)`, `P = 0x1_1EDC_6F41`; so any part of
//! `M` may be replaced by something congruent modulo `P`. Take a 128-bit
//! block `A` that lies `D` bits before a later 128-bit block `B`: with `A
//! = Aₕ·x⁶⁴ + Aₗ`, `A·x^D ≡ Aₕ·(x^(D+64) mod P) + Aₗ·(x^D mod P)`, a
//! polynomial of degree below 96 that fits in `B`'s 128 bits. XORing it
//! into `B` and dropping `A` keeps the remainder. Four 512-bit
//! accumulators (16 blocks) walk the value this way, each folded over
//! 256 bytes onto the next block of its lane; at the end they are folded
//! into one 128-bit block `V` and the remaining bytes `T` (under 16); the
//! remainder of the whole is then that of the short message `V ‖ T`,
//! which the `crc32c` crate finishes. The initial register (the inverted
//! CRC to append to) is XORed into the first 32 bits, as the `crc32`
//! instruction does.
//!
//! CRC32C is bit-reflected: bit `i` of a little-endian 128-bit load is the
//! coefficient of `x^(127-i)`. A carry-less product of two 64-bit words
//! whose bit `i` stands for `x^(63-i)` has bit `j` for `x^(126-j)`, one
//! power short of the block's numbering; so the constants are `x^(D+63)`
//! and `x^(D-1)` mod `P`, stored reflected (`x^d` at bit `63-d`) and
//! computed at compile time by [`x_pow_mod`]. The tests compare every
//! length and alignment against the crate.

/// Values shorter than this are checksummed (and copied) by the `crc32c`
/// crate: the kernel's setup and final reduction cost more than they save.
pub const FOLD_MIN: usize = 512;

/// Values of at most this many bytes are checksummed by one dependent
/// chain of `crc32` instructions (3 cycles per 8 bytes), which beats the
/// crate's setup up to about this length.
pub const SHORT_MAX: usize = 256;

/// The CRC32C of `bytes` (the `crc32c` crate's value).
///
/// ```
/// assert_eq!(mapshare::snapshot::checksum(b"123456789"), 0xe306_9283);
/// ```
#[inline]
pub fn checksum(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if bytes.len() <= SHORT_MAX && x86::has_crc32() {
            // SAFETY: `has_crc32` checked the CPU feature.
            return unsafe { x86::short(bytes) };
        }
        if bytes.len() >= FOLD_MIN && x86::available() {
            // SAFETY: `available` checked the CPU features; nothing is
            // stored.
            return unsafe { x86::fold::<false>(0, bytes, std::ptr::null_mut()) };
        }
    }
    crc32c::crc32c(bytes)
}

/// Copies `src` into `dst` (of the same length) and returns the CRC32C
/// of the bytes: `checksum(src)`, reading `src` once where the kernel
/// runs.
///
/// # Panics
/// If the lengths differ (a caller bug, never input).
#[inline]
pub(crate) fn copy_with_checksum(src: &[u8], dst: &mut [u8]) -> u32 {
    assert_eq!(src.len(), dst.len(), "copy_with_checksum: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if src.len() >= FOLD_MIN && x86::available() {
        // SAFETY: `available` checked the CPU features; `dst` is a
        // `&mut` of `src.len()` bytes, so writable and not overlapping
        // `src`.
        return unsafe { x86::fold::<true>(0, src, dst.as_mut_ptr()) };
    }
    dst.copy_from_slice(src);
    checksum(src)
}

/// Whether this CPU runs the folding kernel (for tests and benchmarks).
pub fn fast_checksum_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CRC32C polynomial with its `x³²` term.
const POLY: u64 = 0x1_1EDC_6F41;

/// `x^n mod P`, coefficient of `x^d` at bit `d`.
const fn x_pow_mod(n: u32) -> u32 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= POLY;
        }
        i += 1;
    }
    r as u32
}

/// A remainder (degree < 32) reflected into 64 bits: `x^d` at bit `63-d`.
const fn reflect64(c: u32) -> u64 {
    let mut k = 0u64;
    let mut d = 0;
    while d < 32 {
        if (c >> d) & 1 == 1 {
            k |= 1 << (63 - d);
        }
        d += 1;
    }
    k
}

/// The pair of constants that folds a 128-bit block over `bits` bits:
/// `[for its first (low) 64 bits, for its last (high) 64 bits]`.
const fn fold_keys(bits: u32) -> [u64; 2] {
    [
        reflect64(x_pow_mod(bits + 63)),
        reflect64(x_pow_mod(bits - 1)),
    ]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    use super::fold_keys;

    /// Accumulators (64-byte registers) and bytes per loop step.
    const LANES: usize = 4;
    const STEP: usize = 64 * LANES;
    const KEYS_STEP: [u64; 2] = fold_keys(8 * STEP as u32);
    const KEYS_512: [u64; 2] = fold_keys(512);
    const KEYS_128: [u64; 2] = fold_keys(128);
    const _: () = assert!(super::FOLD_MIN >= 2 * STEP);

    /// 0: not checked yet, 1: no, 2: yes.
    static AVAILABLE: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has what [`fold`] needs (checked once).
    #[inline]
    pub(super) fn available() -> bool {
        match AVAILABLE.load(Relaxed) {
            0 => {
                let yes = !cfg!(miri)
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("vpclmulqdq")
                    && is_x86_feature_detected!("pclmulqdq")
                    && is_x86_feature_detected!("sse4.2");
                AVAILABLE.store(if yes { 2 } else { 1 }, Relaxed);
                yes
            }
            v => v == 2,
        }
    }

    /// Whether the CPU has the `crc32` instruction (SSE4.2; std caches
    /// the detection).
    #[inline]
    pub(super) fn has_crc32() -> bool {
        is_x86_feature_detected!("sse4.2")
    }

    /// The CRC32C of `bytes`, 8 bytes per `crc32` instruction.
    ///
    /// # Safety
    /// The CPU has SSE4.2 ([`has_crc32`]).
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn short(bytes: &[u8]) -> u32 {
        let mut words = bytes.chunks_exact(8);
        let mut c = u64::from(!0u32);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            c = _mm_crc32_u64(c, u64::from_le_bytes(b));
        }
        let mut c = c as u32;
        for &b in words.remainder() {
            c = _mm_crc32_u8(c, b);
        }
        !c
    }

    #[inline(always)]
    fn keys128(k: [u64; 2]) -> __m128i {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_set_epi64x(k[1] as i64, k[0] as i64) }
    }

    /// `acc` folded over the keys' distance onto `data` (128-bit lanes).
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn fold512(acc: __m512i, keys: __m512i, data: __m512i) -> __m512i {
        let lo = _mm512_clmulepi64_epi128(acc, keys, 0x00);
        let hi = _mm512_clmulepi64_epi128(acc, keys, 0x11);
        // 0x96: three-way XOR.
        _mm512_ternarylogic_epi64(lo, hi, data, 0x96)
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn fold128(acc: __m128i, keys: __m128i, data: __m128i) -> __m128i {
        let lo = _mm_clmulepi64_si128(acc, keys, 0x00);
        let hi = _mm_clmulepi64_si128(acc, keys, 0x11);
        _mm_xor_si128(_mm_xor_si128(lo, hi), data)
    }

    /// `crc32c_append(crc, src)`; if `STORE`, also copies `src` to `dst`,
    /// each 64-byte block from the register that folds it.
    ///
    /// # Safety
    /// The CPU has AVX-512F, VPCLMULQDQ, PCLMULQDQ and SSE4.2
    /// ([`available`]); `src.len() >= 2 * STEP`; if `STORE`, `dst` is
    /// valid for writes of `src.len()` bytes and overlaps neither `src`
    /// nor anything else borrowed.
    #[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.2")]
    pub(super) unsafe fn fold<const STORE: bool>(crc: u32, src: &[u8], dst: *mut u8) -> u32 {
        let len = src.len();
        debug_assert!(len >= 2 * STEP);
        let s = src.as_ptr();
        // Loads and stores at `off < len - 63` (blocks) or `off < len - 15`
        // (the 16-byte tail loop): inside `src`, and inside `dst` by the
        // caller's promise.
        let load = |off: usize| {
            // SAFETY: `off + 64 <= len` at every call below.
            let mut x = unsafe { _mm512_loadu_si512(s.add(off).cast()) };
            if STORE {
                // An empty asm statement hides that the stored value is
                // the loaded one; without it LLVM splits the loop into a
                // `memcpy` and a second pass over the bytes.
                // SAFETY: no instruction; it only names the register.
                unsafe {
                    std::arch::asm!("/* {0} */", inout(zmm_reg) x,
                        options(pure, nomem, nostack, preserves_flags));
                }
                // SAFETY: `dst + off .. + 64` lies within `dst`'s `len`
                // bytes (caller).
                unsafe { _mm512_storeu_si512(dst.add(off).cast(), x) };
            }
            x
        };
        let mut acc = [_mm512_setzero_si512(); LANES];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = load(64 * i);
        }
        // The register to append to, XORed into the first 32 bits.
        acc[0] = _mm512_xor_si512(
            acc[0],
            _mm512_castsi128_si512(_mm_cvtsi32_si128(!crc as i32)),
        );
        let k_step = _mm512_broadcast_i32x4(keys128(KEYS_STEP));
        let mut off = STEP;
        while len - off >= STEP {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = fold512(*a, k_step, load(off + 64 * i));
            }
            off += STEP;
        }
        let k_512 = _mm512_broadcast_i32x4(keys128(KEYS_512));
        let mut z = acc[0];
        for a in &acc[1..] {
            z = fold512(z, k_512, *a);
        }
        let k_128 = keys128(KEYS_128);
        let mut v = _mm512_extracti32x4_epi32::<0>(z);
        v = fold128(v, k_128, _mm512_extracti32x4_epi32::<1>(z));
        v = fold128(v, k_128, _mm512_extracti32x4_epi32::<2>(z));
        v = fold128(v, k_128, _mm512_extracti32x4_epi32::<3>(z));
        while len - off >= 16 {
            // SAFETY: `off + 16 <= len`: inside `src` (and `dst`).
            let x = unsafe { _mm_loadu_si128(s.add(off).cast()) };
            if STORE {
                // SAFETY: as the load, in `dst`.
                unsafe { _mm_storeu_si128(dst.add(off).cast(), x) };
            }
            v = fold128(v, k_128, x);
            off += 16;
        }
        let tail = &src[off..];
        if STORE {
            // SAFETY: the last `len - off < 16` bytes of `dst`.
            unsafe { std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(off), tail.len()) };
        }
        // What is left: the remainder of `V ‖ tail` from a zero register.
        let mut last = [0u8; 32];
        // SAFETY: 16 bytes into a 32-byte array.
        unsafe { _mm_storeu_si128(last.as_mut_ptr().cast(), v) };
        last[16..16 + tail.len()].copy_from_slice(tail);
        crc32c::crc32c_append(!0, &last[..16 + tail.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(7919) % 251) as u8).collect()
    }

    /// Every length around the thresholds and steps, at several
    /// alignments: the same CRC as the crate, and an exact copy. (Not
    /// under Miri: there the kernel never runs, and the crate's software
    /// CRC over megabytes takes hours.)
    #[test]
    #[cfg_attr(miri, ignore)]
    fn matches_the_crc32c_crate_and_copies_exactly() {
        let big = data((1 << 20) + 64);
        let lens = (0..2100).chain([4095, 4096, 4097, 65_537, 1 << 20]);
        for len in lens {
            for start in [0, 1, 7, 60] {
                let src = &big[start..start + len];
                let want = crc32c::crc32c(src);
                assert_eq!(checksum(src), want, "checksum, len {len} at {start}");
                let mut dst = vec![0xa5u8; len + 1];
                let got = copy_with_checksum(src, &mut dst[1..]);
                assert_eq!(got, want, "copy_with_checksum, len {len} at {start}");
                assert_eq!(&dst[1..], src, "copy, len {len} at {start}");
                assert_eq!(dst[0], 0xa5, "wrote before dst");
            }
        }
    }

    /// Appending through the kernel gives the crate's value too (the
    /// initial register enters the first block).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn appending_matches_the_crate() {
        if !x86::available() {
            return;
        }
        let src = data(5000);
        for init in [0, 1, 0xdead_beef, u32::MAX] {
            for len in [512, 513, 1000, 4999] {
                let want = crc32c::crc32c_append(init, &src[..len]);
                // SAFETY: features checked; nothing stored.
                let got = unsafe { x86::fold::<false>(init, &src[..len], std::ptr::null_mut()) };
                assert_eq!(got, want, "init {init:#x}, len {len}");
            }
        }
    }

    /// The constants: x^32 mod P is P's low part, and reflection puts
    /// x^0 at bit 63.
    #[test]
    fn constants() {
        assert_eq!(x_pow_mod(0), 1);
        assert_eq!(x_pow_mod(31), 1 << 31);
        assert_eq!(u64::from(x_pow_mod(32)), POLY & 0xffff_ffff);
        assert_eq!(reflect64(1), 1 << 63);
        assert_eq!(reflect64(1 << 31), 1 << 32);
    }

    /// On a CPU that has the features, the kernel is what runs.
    #[test]
    fn the_kernel_runs_where_the_cpu_allows() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert_eq!(
            fast_checksum_available(),
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("vpclmulqdq")
        );
    }
}

/// Review (issue 9): the kernel against the crate over random lengths up
/// to 4 MiB, random source and destination offsets, random initial
/// registers (the append form), with every value ending on a page whose
/// successor is inaccessible (an over-read or over-write faults).
/// Checked to fail with a wrong folding constant.
#[cfg(all(test, target_arch = "x86_64", not(miri)))]
mod review {
    use super::*;
    use proptest::prelude::*;

    /// `len` bytes of anonymous memory ending exactly where a
    /// `PROT_NONE` page begins, and the mapping to unmap.
    struct Guarded {
        base: *mut u8,
        total: usize,
        start: *mut u8,
    }

    impl Guarded {
        fn new(len: usize) -> Guarded {
            let page = 4096;
            let body = len.div_ceil(page) * page;
            let total = body + page;
            // SAFETY: a fresh anonymous private mapping; no address hint.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    total,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            let base = base.cast::<u8>();
            // SAFETY: the last page of the mapping just made.
            let rc = unsafe { libc::mprotect(base.add(body).cast(), page, libc::PROT_NONE) };
            assert_eq!(rc, 0);
            Guarded {
                base,
                total,
                // SAFETY: `body - len` bytes into the mapping.
                start: unsafe { base.add(body - len) },
            }
        }

        fn slice(&mut self, len: usize) -> &mut [u8] {
            // SAFETY: `len` readable, writable bytes at `start`, owned
            // by this value and borrowed mutably here.
            unsafe { std::slice::from_raw_parts_mut(self.start, len) }
        }
    }

    impl Drop for Guarded {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, no longer borrowed.
            unsafe { libc::munmap(self.base.cast(), self.total) };
        }
    }

    fn fill(buf: &mut [u8], mut seed: u64) {
        for b in buf.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
    }

    fn lens() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..2048,
            0usize..(4 << 20),
            (1usize..1024).prop_map(|k| k * 4096)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn the_kernel_matches_the_crate_at_random_lengths_offsets_and_initial_crcs(
            len in lens(),
            src_pad in 0usize..128,
            dst_pad in 0usize..128,
            init in any::<u32>(),
            seed in any::<u64>(),
        ) {
            // The source ends at a guard page, `src_pad` bytes of it
            // before the value; the destination too.
            let mut src_map = Guarded::new(len + src_pad);
            let src_all = src_map.slice(len + src_pad);
            fill(src_all, seed | 1);
            let src = &src_all[src_pad..];
            let mut dst_map = Guarded::new(len + dst_pad);
            let dst_all = dst_map.slice(len + dst_pad);
            dst_all.fill(0x5a);
            let want = crc32c::crc32c(src);
            prop_assert_eq!(checksum(src), want);
            let got = copy_with_checksum(src, &mut dst_all[dst_pad..]);
            prop_assert_eq!(got, want);
            prop_assert!(dst_all[dst_pad..] == *src, "copy differs");
            prop_assert!(dst_all[..dst_pad].iter().all(|&b| b == 0x5a), "wrote before dst");
            if len >= FOLD_MIN && x86::available() {
                let want = crc32c::crc32c_append(init, src);
                // SAFETY: features checked; nothing stored.
                let got = unsafe { x86::fold::<false>(init, src, std::ptr::null_mut()) };
                prop_assert_eq!(got, want, "append, init {:#x}", init);
                dst_all.fill(0);
                // SAFETY: features checked; `dst_all[dst_pad..]` is `len`
                // writable bytes apart from `src` (another mapping).
                let got = unsafe {
                    x86::fold::<true>(init, src, dst_all[dst_pad..].as_mut_ptr())
                };
                prop_assert_eq!(got, want, "append and copy, init {:#x}", init);
                prop_assert!(dst_all[dst_pad..] == *src, "append copy differs");
            }
        }
    }

    /// The destination directly before and directly after the source in
    /// one buffer (adjacent, not overlapping), at every offset mod 64.
    #[test]
    fn adjacent_source_and_destination_at_every_offset() {
        for len in [512, 513, 767, 4096, 70_001] {
            for shift in 0..64 {
                let mut buf = vec![0u8; 2 * len + 64];
                fill(&mut buf, (len * 64 + shift) as u64 | 1);
                let snapshot = buf.clone();
                // Source after destination.
                let (a, b) = buf[shift..].split_at_mut(len);
                let want = crc32c::crc32c(&b[..len]);
                assert_eq!(
                    copy_with_checksum(&b[..len], a),
                    want,
                    "len {len} shift {shift}"
                );
                assert_eq!(a, &b[..len]);
                // Source before destination.
                let mut buf = snapshot;
                let (a, b) = buf[shift..].split_at_mut(len);
                let want = crc32c::crc32c(a);
                assert_eq!(copy_with_checksum(a, &mut b[..len]), want);
                assert_eq!(&b[..len], &*a);
            }
        }
    }
}
