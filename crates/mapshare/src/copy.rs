//! Copying a small value into shared memory.

/// Copies `src` to `dst`, where `dst` is 8-aligned and writable for
/// `src.len()` rounded up to a multiple of 8 (a queue or log record's
/// payload and its padding). Up to 64 bytes go in whole 8-byte words,
/// inline (the padding after `src` gets zeros); more with `memcpy`.
///
/// Why not `memcpy` for all: below 64 bytes the call costs more than the
/// copy, and across processes far more: 64-byte queue records one per
/// call ran at 0.47–0.53 of rtrb's rate through `memcpy` and 0.60–0.68
/// this way, 8-byte ones at 0.25 and 0.40 (docs/benchmarks.md); likely
/// because `memcpy`'s one 64-byte vector store spans two cache lines (a
/// record's payload starts 8 bytes into one) and stalls until this core
/// owns both while the reader's core holds them. Always inlined: as an
/// out-of-line call the 64-byte figure measured 0.51.
///
/// # Safety
/// `dst` is 8-aligned, valid for writes of `src.len().div_ceil(8) * 8`
/// bytes, and overlaps neither `src` nor anything borrowed.
#[inline(always)]
pub(crate) unsafe fn to_padded(dst: *mut u8, src: &[u8]) {
    if src.len() > 64 {
        // SAFETY: `dst` is valid for `src.len()` bytes and does not
        // overlap `src` (caller).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        return;
    }
    let mut words = src.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let w = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // SAFETY: `dst + at` is 8-aligned and within the first
        // `src.len()` bytes (caller). Volatile, so that the compiler keeps
        // the 8-byte stores: with a length known only at run time it had
        // turned this loop into a `memcpy` call (docs/benchmarks.md,
        // session 19).
        unsafe { dst.add(at).cast::<u64>().write_volatile(w) };
        at += 8;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // Byte by byte: a `copy_from_slice` of a runtime length here is a
        // `memcpy` call, and with it in the function the small-record
        // path measured 25% slower across processes.
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(tail) {
            *d = *s;
        }
        // SAFETY: the last word, padding included, is writable (caller).
        unsafe {
            dst.add(at)
                .cast::<u64>()
                .write_volatile(u64::from_ne_bytes(b))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_zeroes_only_the_padding() {
        for len in 0..=80usize {
            let src: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) | 1).collect();
            let padded = len.div_ceil(8) * 8;
            // 8-aligned storage with a guard word after the padding.
            let mut buf = vec![u64::MAX; padded / 8 + 1];
            // SAFETY: `buf` is 8-aligned, holds `padded` bytes and more,
            // and is not `src`.
            unsafe { to_padded(buf.as_mut_ptr().cast(), &src) };
            let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
            assert_eq!(&bytes[..len], &src[..], "len {len}");
            if len <= 64 {
                assert!(bytes[len..padded].iter().all(|&b| b == 0), "len {len}");
            }
            assert_eq!(
                &bytes[padded..padded + 8],
                &[0xff; 8],
                "len {len}: wrote past"
            );
        }
    }
}
