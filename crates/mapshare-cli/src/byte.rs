//! `mapshare byte FILE OFFSET`: the chapter's `mmapdemo`, with every edge
//! handled: out-of-range offsets, empty files, directories, missing files.

use std::path::Path;

use mapshare::{Access, Error, RegionOptions};

use crate::Failure;

/// How a byte is shown between single quotes: itself if printable ASCII,
/// else its escape (`\n`, `\t`, `\r`, `\0`, `\\`, `\'`, `\xNN`).
pub fn escape(b: u8) -> String {
    match b {
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        b'\r' => "\\r".into(),
        0 => "\\0".into(),
        b'\\' => "\\\\".into(),
        b'\'' => "\\'".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

/// Reads the byte at `offset` of `file` through a one-byte read-only window.
pub fn read(file: &Path, offset: u64) -> Result<u8, Failure> {
    let out_of_range = |size: u64| {
        Failure(format!(
            "offset {offset} is out of range for {} (size {size}): valid offsets are 0..={}",
            file.display(),
            size - 1
        ))
    };
    let opened = RegionOptions::new()
        .access(Access::ReadOnly)
        .window(offset, 1)
        .open(file);
    let region = match opened {
        Ok(r) => r,
        Err(Error::WindowOutOfRange { size, .. }) => return Err(out_of_range(size)),
        Err(Error::Overflow { .. }) => {
            let size = std::fs::metadata(file)?.len();
            return Err(out_of_range(size.max(1)));
        }
        Err(Error::Empty { .. }) => {
            return Err(Failure(format!(
                "{} is empty: there is no byte at offset {offset}",
                file.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut b = [0u8; 1];
    region.read_at(0, &mut b)?;
    Ok(b[0])
}

/// The line `mapshare byte` prints.
pub fn describe(offset: u64, b: u8) -> String {
    format!("byte at offset {offset} is '{}' (0x{b:02x})", escape(b))
}

pub fn run(file: &Path, offset: u64) -> Result<(), Failure> {
    let b = read(file, offset)?;
    println!("{}", describe(offset, b));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape(b'e'), "e");
        assert_eq!(escape(b' '), " ");
        assert_eq!(escape(b'\n'), "\\n");
        assert_eq!(escape(0), "\\0");
        assert_eq!(escape(0x7f), "\\x7f");
        assert_eq!(escape(0xff), "\\xff");
        assert_eq!(escape(b'\''), "\\'");
        assert_eq!(describe(30, b'e'), "byte at offset 30 is 'e' (0x65)");
        assert_eq!(describe(7, b'\n'), "byte at offset 7 is '\\n' (0x0a)");
    }
}
