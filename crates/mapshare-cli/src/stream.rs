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
//! never loses a record (the unflushed ones are delivered again). If
//! standard output fails (a full disk, a closed pipe), `recv` releases
//! exactly the records that were written in full and exits 1; a record cut
//! short is delivered again whole to the next consumer. Records are
//! copied out of the queue with atomic loads (`Batch::copy_to`), never
//! read in place, so a misbehaving producer cannot make `recv` unsound;
//! `recv_into` would release each record before it is written, so `recv`
//! copies out of a batch that it releases only after the write.
//!
//! `recv` ends cleanly (exit 0) when a producer it has seen closes its
//! session; a producer that died mid-stream (`PeerDied`) is an error that
//! names the process, because the stream may be incomplete.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use mapshare::queue::{Consumer, Producer, SendError};
use mapshare::Error;

use crate::Failure;

/// Reads the next record of `input` into `buf` (replacing it): a frame
/// (a little-endian `u32` length, then that many bytes) if `frames`, else
/// a line as read (with its newline). `Ok(false)` at the end of the input.
/// Record `n` (counted from 1, for messages) must hold `min..=max` bytes;
/// `into` names where it goes.
pub(crate) fn read_record(
    input: &mut impl BufRead,
    frames: bool,
    min: usize,
    max: usize,
    n: u64,
    into: &Path,
    buf: &mut Vec<u8>,
) -> Result<bool, Failure> {
    buf.clear();
    if frames {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len < min || len > max {
            return Err(Failure(format!(
                "frame {n} has length {len}; records are {min}..={max} bytes for {}",
                into.display()
            )));
        }
        buf.resize(len, 0);
        input
            .read_exact(buf)
            .map_err(|e| Failure(format!("frame {n} is cut short: {e}")))?;
    } else if input.read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.len() > max {
        return Err(Failure(format!(
            "line {n} is {} bytes; {} holds records of at most {max}",
            buf.len(),
            into.display()
        )));
    }
    Ok(true)
}

pub fn send(
    path: &Path,
    capacity: u64,
    frames: bool,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let mut tx = Producer::open_or_create(path, capacity)?;
    let max = tx.max_record() as usize;
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(1 << 16, stdin.lock());
    let mut line = Vec::new();
    let mut sent = 0u64;
    while read_record(&mut input, frames, 1, max, sent + 1, path, &mut line)? {
        let result = match timeout {
            Some(t) => tx.send_timeout(&line, t),
            None => tx.send(&line),
        };
        match result {
            Ok(()) => {}
            Err(SendError::Timeout(_)) => {
                return Err(Failure(format!(
                    "{}: gave up after waiting {:?} for space for record {} ({sent} sent; is a consumer running?)",
                    path.display(),
                    timeout.unwrap_or_default(),
                    sent + 1
                )))
            }
            Err(e) => {
                return Err(Failure(format!(
                    "{}: {e} ({sent} records sent)",
                    path.display()
                )))
            }
        }
        sent += 1;
    }
    Ok(())
}

/// Writes all of `buf`, or says how many bytes got out before the error.
fn write_counting(out: &mut File, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match out.write(&buf[done..]) {
            Ok(0) => return Err((done, io::Error::from(io::ErrorKind::WriteZero))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// "2 of 5" with `--count`, else "2".
fn tally(received: u64, count: Option<u64>) -> String {
    match count {
        Some(c) => format!("{received} of {c}"),
        None => received.to_string(),
    }
}

pub fn recv(
    path: &Path,
    capacity: u64,
    count: Option<u64>,
    timeout: Option<Duration>,
    frames: bool,
) -> Result<(), Failure> {
    // Standard output, unbuffered: each write's count is exact, so after a
    // failed write we know which records got out. Taken before the queue
    // is opened, so a closed descriptor 1 is never the queue file.
    let mut out = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Failure(format!("standard output: {e}")))?;
    let mut rx = Consumer::open_or_create(path, capacity)?;
    let mut received = 0u64;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut ends = Vec::new();
    let mut record = Vec::new();
    // Wait "forever" in slices, so a timeout of None still notices a
    // departed producer promptly (recv_batch reports it).
    let slice = timeout.unwrap_or(Duration::from_secs(3600));
    while count.is_none_or(|c| received < c) {
        let want = count.map_or(1024, |c| (c - received).min(1024)) as usize;
        let batch = match rx.recv_batch(want, slice) {
            Ok(b) => b,
            Err(Error::Disconnected { .. }) => match count {
                Some(c) => {
                    return Err(Failure(format!(
                        "{}: got {} records; the producer left",
                        path.display(),
                        tally(received, Some(c))
                    )))
                }
                None => break,
            },
            // The producer crashed: the stream is not complete, even if
            // every record it committed arrived.
            Err(Error::PeerDied { peer, pid, .. }) => {
                return Err(Failure(format!(
                    "{}: the {peer} (pid {pid}) died mid-stream; got {} records",
                    path.display(),
                    tally(received, count)
                )))
            }
            Err(Error::Timeout { .. }) if timeout.is_none() => continue,
            Err(Error::Timeout { waited, .. }) => {
                return Err(Failure(format!(
                    "{}: timed out after {waited:?} waiting for a record; got {} records",
                    path.display(),
                    tally(received, count)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        buf.clear();
        ends.clear();
        for i in 0..batch.len() {
            // A copy made with atomic loads: sound whatever the producer
            // does to the shared bytes (unlike reading them in place). The
            // batch stays unreleased until the copies are written.
            // A page cut off by an outside truncate reads as zeros (the
            // library's SIGBUS handler maps one in): `copy_to` reports it,
            // and nothing of this batch is trusted or released.
            if let Err(e) = batch.copy_to(i, &mut record) {
                std::mem::forget(batch);
                return Err(Failure(format!(
                    "{e}; got {} records",
                    tally(received, count)
                )));
            }
            if frames {
                buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
                buf.extend_from_slice(&record);
            } else {
                buf.extend_from_slice(&record);
                if record.last() != Some(&b'\n') {
                    buf.push(b'\n');
                }
            }
            ends.push(buf.len());
        }
        let n = batch.len() as u64;
        match write_counting(&mut out, &buf) {
            Ok(()) => {
                received += n;
                drop(batch); // release only what reached the output
            }
            Err((written, e)) => {
                // Keep the batch, then release exactly the records that
                // were written in full; the rest stay queued.
                std::mem::forget(batch);
                let whole = ends.iter().take_while(|&&end| end <= written).count();
                for _ in 0..whole {
                    match rx.try_recv() {
                        Ok(Some(r)) => drop(r),
                        _ => break,
                    }
                }
                received += whole as u64;
                return Err(Failure(format!(
                    "cannot write to standard output: {e}; wrote {} records, the rest stay in {}",
                    tally(received, count),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}
