//! The `xxd` layout, byte for byte: `%08x:` address, eight groups of two
//! bytes in lowercase hex, two spaces, then the bytes as ASCII with `.` for
//! anything outside `0x20..=0x7e`. A short last line is padded so the
//! ASCII column stays in place.

use std::io::{self, Write};

/// Bytes per line.
pub const WIDTH: usize = 16;

/// Writes one line for `bytes` (at most [`WIDTH`]) starting at `address`.
pub fn line(out: &mut impl Write, address: u64, bytes: &[u8]) -> io::Result<()> {
    debug_assert!(bytes.len() <= WIDTH);
    let mut text = String::with_capacity(80);
    text.push_str(&format!("{address:08x}:"));
    for i in 0..WIDTH {
        if i % 2 == 0 {
            text.push(' ');
        }
        match bytes.get(i) {
            Some(b) => text.push_str(&format!("{b:02x}")),
            None => text.push_str("  "),
        }
    }
    text.push_str("  ");
    text.extend(bytes.iter().map(|&b| {
        if (0x20..=0x7e).contains(&b) {
            b as char
        } else {
            '.'
        }
    }));
    text.push('\n');
    out.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(address: u64, bytes: &[u8]) -> String {
        let mut v = Vec::new();
        line(&mut v, address, bytes).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn full_line() {
        assert_eq!(
            render(0, b"0123456789abcdef"),
            "00000000: 3031 3233 3435 3637 3839 6162 6364 6566  0123456789abcdef\n"
        );
    }

    #[test]
    fn short_line_keeps_ascii_column() {
        assert_eq!(
            render(0, b"abc"),
            "00000000: 6162 63                                  abc\n"
        );
        assert_eq!(
            render(0x10, b"0123456789\n\t\x00\xff"),
            "00000010: 3031 3233 3435 3637 3839 0a09 00ff       0123456789....\n"
        );
    }
}
