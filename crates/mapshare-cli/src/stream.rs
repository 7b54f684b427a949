//! `mapshare send Q` and `mapshare recv Q`: the queue from the shell.
//!
//! Line mode (the default): each input line, newline included, is one
//! record, so empty lines survive and bytes are passed through unchanged;
//! `recv` writes records as they are (adding a newline to a final line
//! that had none). Frame mode (`--frames`): each record is a 4-byte
//! little-endian length followed by that many bytes, on both sides.
//!
//! Either side may start first; the queue file is created (1 MiB unless
//! `--capacity` says otherwise) by whichever does. `recv` releases records
//! only after they are written and flushed, so a `recv` that is killed
//! never loses a record (the unflushed ones are delivered again).

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use mapshare::queue::{Consumer, Producer};
use mapshare::Error;

use crate::Failure;

fn broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

pub fn send(path: &Path, capacity: u64, frames: bool) -> Result<(), Failure> {
    let mut tx = Producer::open_or_create(path, capacity)?;
    let max = tx.max_record() as usize;
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(1 << 16, stdin.lock());
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        if frames {
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            let n = u32::from_le_bytes(len) as usize;
            if n == 0 || n > max {
                return Err(Failure(format!(
                    "frame {} has length {n}; records are 1..={max} bytes for {}",
                    sent + 1,
                    path.display()
                )));
            }
            line.resize(n, 0);
            input
                .read_exact(&mut line)
                .map_err(|e| Failure(format!("frame {} is cut short: {e}", sent + 1)))?;
        } else if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.len() > max {
            return Err(Failure(format!(
                "line {} is {} bytes; {} holds records of at most {max}",
                sent + 1,
                line.len(),
                path.display()
            )));
        }
        tx.send(&line)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        sent += 1;
    }
    Ok(())
}

pub fn recv(
    path: &Path,
    capacity: u64,
    count: Option<u64>,
    timeout: Option<Duration>,
    frames: bool,
) -> Result<(), Failure> {
    let mut rx = Consumer::open_or_create(path, capacity)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut received = 0u64;
    // Wait "forever" in slices, so a timeout of None still notices a
    // departed producer promptly (recv_batch reports it).
    let slice = timeout.unwrap_or(Duration::from_secs(3600));
    while count.is_none_or(|c| received < c) {
        let want = count.map_or(1024, |c| (c - received).min(1024)) as usize;
        let batch = match rx.recv_batch(want, slice) {
            Ok(b) => b,
            Err(Error::Disconnected { .. }) => break,
            Err(Error::Timeout { .. }) if timeout.is_none() => continue,
            Err(e @ Error::Timeout { .. }) => {
                out.flush().ok();
                return Err(Failure(format!("{e} (received {received})")));
            }
            Err(e) => return Err(e.into()),
        };
        let mut written = Ok(());
        for r in batch.iter() {
            written = if frames {
                out.write_all(&(r.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(r))
            } else if r.last() == Some(&b'\n') {
                out.write_all(r)
            } else {
                out.write_all(r).and_then(|()| out.write_all(b"\n"))
            };
            if written.is_err() {
                break;
            }
        }
        match written.and_then(|()| out.flush()) {
            Ok(()) => {
                received += batch.len() as u64;
                drop(batch); // release only what reached the output
            }
            Err(e) => {
                // Keep the batch unreleased: it will be delivered again.
                std::mem::forget(batch);
                if broken_pipe(&e) {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}
