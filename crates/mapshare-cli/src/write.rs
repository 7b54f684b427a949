//! `mapshare write FILE OFFSET (--text S | --hex HEX | --from FILE)`:
//! writes through a shared mapping, so every process that maps the file
//! sees the bytes at once, then flushes them to disk.

use std::io::Read;
use std::path::{Path, PathBuf};

use mapshare::{Error, RegionOptions};

use crate::Failure;

/// Where the bytes to write come from.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Data {
    /// Write this text (UTF-8, not empty).
    #[arg(long, value_parser = parse_text)]
    text: Option<String>,
    /// Write these bytes, as hex digits (spaces and colons ignored).
    #[arg(long, value_parser = parse_hex_arg)]
    hex: Option<Hex>,
    /// Write the contents of this file (`-` for standard input).
    #[arg(long)]
    from: Option<PathBuf>,
}

/// Bytes given as hex on the command line.
#[derive(Debug, Clone)]
pub struct Hex(Vec<u8>);

fn parse_text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the text is empty: nothing to write".into());
    }
    Ok(s.to_owned())
}

fn parse_hex_arg(s: &str) -> Result<Hex, String> {
    let bytes = parse_hex(s)?;
    if bytes.is_empty() {
        return Err("no hex digits: nothing to write".into());
    }
    Ok(Hex(bytes))
}

/// Decodes `de ad:BE EF` into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\t' | b'\n'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex {s:?} has an odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|_| format!("{s:?} is not hex"))?;
            u8::from_str_radix(text, 16).map_err(|_| format!("{text:?} in {s:?} is not hex"))
        })
        .collect()
}

impl Data {
    fn bytes(&self) -> Result<Vec<u8>, Failure> {
        if let Some(t) = &self.text {
            return Ok(t.as_bytes().to_vec());
        }
        if let Some(Hex(h)) = &self.hex {
            return Ok(h.clone());
        }
        match self.from.as_deref() {
            Some(p) if p == Path::new("-") => {
                let mut v = Vec::new();
                std::io::stdin().read_to_end(&mut v)?;
                Ok(v)
            }
            Some(p) => match std::fs::read(p) {
                Ok(v) if v.is_empty() => Err(Failure(format!(
                    "{} is empty: nothing to write",
                    p.display()
                ))),
                Ok(v) => Ok(v),
                Err(e) => Err(Failure(format!("{}: {e}", p.display()))),
            },
            None => Err(Failure("nothing to write".into())),
        }
    }
}

pub fn run(file: &Path, offset: u64, data: &Data, sync: bool) -> Result<(), Failure> {
    let bytes = data.bytes()?;
    if bytes.is_empty() {
        return Err(Failure("nothing to write: standard input is empty".into()));
    }
    let opened = RegionOptions::new()
        .window(offset, bytes.len() as u64)
        .open(file);
    let mut region = match opened {
        Ok(r) => r,
        Err(Error::WindowOutOfRange { size, .. }) => {
            return Err(Failure(format!(
                "writing {} bytes at offset {offset} would run past the end of {} (size {size}); mapshare write never grows a file",
                bytes.len(),
                file.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    region.write_at(0, &bytes)?;
    if sync {
        region.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(parse_hex("deadBEEF"), Ok(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(parse_hex("de ad:be"), Ok(vec![0xde, 0xad, 0xbe]));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("é1").is_err());
    }
}
