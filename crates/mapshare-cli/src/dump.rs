//! `mapshare dump FILE [-s OFFSET] [-l LENGTH]`: the `xxd` layout, read
//! through a read-only mapping in chunks.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use mapshare::{Access, RegionOptions};

use crate::hexdump;
use crate::Failure;

pub fn run(file: &Path, offset: u64, length: Option<u64>) -> Result<(), Failure> {
    let meta = std::fs::metadata(file)
        .map_err(|e| Failure(format!("{}: {}", file.display(), io_reason(&e))))?;
    if meta.is_dir() {
        return Err(Failure(format!(
            "{}: is a directory, not a file",
            file.display()
        )));
    }
    if !meta.is_file() {
        return Err(Failure(format!("{}: not a regular file", file.display())));
    }
    let size = meta.len();
    if offset > size {
        return Err(Failure(format!(
            "offset {offset} is past the end of {} (size {size})",
            file.display()
        )));
    }
    // Like xxd, a length past the end stops at the end.
    let len = length.unwrap_or(u64::MAX).min(size - offset);
    if len == 0 {
        return Ok(());
    }
    let region = RegionOptions::new()
        .access(Access::ReadOnly)
        .window(offset, len)
        .open(file)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    match write_dump(&mut out, &region, offset).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Failure::from),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        _ => e.to_string(),
    }
}

fn write_dump(out: &mut impl Write, region: &mapshare::Region, base: u64) -> io::Result<()> {
    const CHUNK: usize = 64 * hexdump::WIDTH * 64;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0usize;
    while at < region.len() {
        let n = CHUNK.min(region.len() - at);
        region
            .read_at(at as u64, &mut buf[..n])
            .map_err(io::Error::other)?;
        for (i, line) in buf[..n].chunks(hexdump::WIDTH).enumerate() {
            hexdump::line(out, base + (at + i * hexdump::WIDTH) as u64, line)?;
        }
        at += n;
    }
    Ok(())
}
