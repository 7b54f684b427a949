//! `mapshare log create|append|tail|info`: the broadcast log from the
//! shell.
//!
//! Line mode (the default): each input line, newline included, is one
//! record; `tail` writes records as they are (adding a newline to a record
//! that has none). Frame mode (`--frames`): a record is a 4-byte
//! little-endian length and that many bytes, as `send` and `recv` take
//! them. Records are copied out of the log with atomic loads, never read
//! in place.
//!
//! `tail --cursor NAME` commits its position only after the records before
//! it were written and flushed, so a killed `tail` delivers again at most
//! what it had not yet written.

use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use mapshare::log::{Log, Options, Reader, Retention, Start};
use mapshare::Error;

use crate::{units, Failure};

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Create the log directory DIR (an existing log is left as it is).
    #[command(after_help = units::SIZE_HELP)]
    Create {
        /// The log directory.
        dir: PathBuf,
        /// Data bytes per segment file (4KiB..=256MiB, a multiple of 8).
        #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = units::size)]
        segment: u64,
        /// Delete the oldest segments (unless a reader is in them) while
        /// the log holds more than SIZE bytes.
        #[arg(long, value_name = "SIZE", value_parser = units::nonzero_size)]
        retain: Option<u64>,
    },
    /// Append each line of standard input (or frame) as one record;
    /// creates the log with defaults if DIR has none.
    Append {
        /// The log directory.
        dir: PathBuf,
        /// Records are 4-byte little-endian lengths plus bytes, not lines.
        #[arg(long)]
        frames: bool,
    },
    /// Write records to standard output, one line (or frame) per record.
    ///
    /// Without -f: from the start (or --from, --cursor) to the current
    /// end. With -f: from the current end (or --from...), following new
    /// records until --count records came or none came for --timeout.
    /// Records lost to retention are reported on standard error with
    /// their exact count.
    #[command(after_help = units::SIZE_AND_DURATION_HELP)]
    Tail {
        /// The log directory.
        dir: PathBuf,
        /// Follow new records.
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Start at this sequence number.
        #[arg(long, value_name = "SEQ", value_parser = units::number, conflicts_with_all = ["from_start", "cursor"])]
        from: Option<u64>,
        /// Start at the first record still in the log.
        #[arg(long, conflicts_with = "cursor")]
        from_start: bool,
        /// Start after the durable cursor NAME's committed position, and
        /// commit as records are written.
        #[arg(long, value_name = "NAME")]
        cursor: Option<String>,
        /// Stop after N records.
        #[arg(long, value_name = "N", value_parser = units::count)]
        count: Option<u64>,
        /// With -f: stop when no record came for this long.
        #[arg(long, value_name = "DURATION", value_parser = units::duration)]
        timeout: Option<Duration>,
        /// Prefix each line with its sequence number and a tab (frames:
        /// with the sequence number as 8 little-endian bytes).
        #[arg(long)]
        seq: bool,
        /// Write records as 4-byte little-endian lengths plus bytes.
        #[arg(long)]
        frames: bool,
    },
    /// Segments, first and last sequence numbers, bytes, writers, cursors.
    Info {
        /// The log directory.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Whether the command prints data on standard output.
pub fn prints(cmd: &LogCommand) -> bool {
    !matches!(cmd, LogCommand::Append { .. } | LogCommand::Create { .. })
}

pub fn run(cmd: LogCommand) -> Result<(), Failure> {
    match cmd {
        LogCommand::Create {
            dir,
            segment,
            retain,
        } => {
            let options = Options {
                segment_size: segment,
                retain: Retention {
                    bytes: retain,
                    ..Retention::default()
                },
            };
            Log::create(&dir, &options)?;
            Ok(())
        }
        LogCommand::Append { dir, frames } => append(&dir, frames),
        LogCommand::Tail {
            dir,
            follow,
            from,
            from_start,
            cursor,
            count,
            timeout,
            seq,
            frames,
        } => {
            let start = match (from, from_start, cursor) {
                (Some(s), _, _) => Start::Seq(s),
                (_, true, _) => Start::Earliest,
                (_, _, Some(name)) => Start::Cursor(name),
                _ if follow => Start::Latest,
                _ => Start::Earliest,
            };
            tail(&dir, start, follow, count, timeout, seq, frames)
        }
        LogCommand::Info { dir, json } => info(&dir, json),
    }
}

fn append(dir: &Path, frames: bool) -> Result<(), Failure> {
    let log = match Log::open(dir) {
        Ok(l) => l,
        Err(Error::NotFound { .. }) => Log::create(dir, &Options::default())?,
        Err(e) => return Err(e.into()),
    };
    let mut w = log.writer()?;
    let max = w.max_record();
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(1 << 16, stdin.lock());
    let mut record = Vec::new();
    let mut appended = 0u64;
    while crate::stream::read_record(&mut input, frames, 0, max, appended + 1, dir, &mut record)? {
        w.append(&record)
            .map_err(|e| Failure(format!("{e} ({appended} records appended)")))?;
        appended += 1;
    }
    Ok(())
}

/// The next record into `buf`: `Ok(None)` at the end (or the wait's end);
/// a `Lagged` is reported on stderr and reading goes on.
fn next(
    dir: &Path,
    r: &mut Reader,
    buf: &mut Vec<u8>,
    wait: Option<Duration>,
) -> Result<Option<u64>, Failure> {
    for _ in 0..2 {
        let got = match wait {
            Some(d) => r.next_into_timeout(buf, d),
            None => r.next_into(buf),
        };
        match got {
            Err(Error::Lagged {
                skipped, resume_at, ..
            }) => eprintln!(
                "mapshare: {}: {skipped} records were lost to retention; resuming at {resume_at}",
                dir.display()
            ),
            other => return Ok(other?),
        }
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
fn tail(
    dir: &Path,
    start: Start,
    follow: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
    seq: bool,
    frames: bool,
) -> Result<(), Failure> {
    let durable = matches!(start, Start::Cursor(_));
    let log = Log::open(dir)?;
    let mut r = log.reader(start)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut buf = Vec::new();
    let mut written = 0u64;
    // A slice of waiting, so that output is flushed (and the cursor
    // committed) while no record comes.
    let slice = Duration::from_millis(50);
    let mut idle_since = Instant::now();
    while count.is_none_or(|c| written < c) {
        let wait = follow.then_some(slice);
        let Some(s) = next(dir, &mut r, &mut buf, wait)? else {
            flush(&mut out, &mut r, durable)?;
            if !follow || timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                break;
            }
            continue;
        };
        idle_since = Instant::now();
        if frames {
            if seq {
                out.write_all(&s.to_le_bytes())?;
            }
            out.write_all(&(buf.len() as u32).to_le_bytes())?;
            out.write_all(&buf)?;
        } else {
            if seq {
                write!(out, "{s}\t")?;
            }
            out.write_all(&buf)?;
            if buf.last() != Some(&b'\n') {
                out.write_all(b"\n")?;
            }
        }
        written += 1;
        if out.buffer().len() > 1 << 15 {
            flush(&mut out, &mut r, durable)?;
        }
    }
    flush(&mut out, &mut r, durable)
}

/// Flushes the output, then (only then) commits the durable cursor.
fn flush(out: &mut impl Write, r: &mut Reader, durable: bool) -> Result<(), Failure> {
    out.flush()
        .map_err(|e| Failure(format!("cannot write to standard output: {e}")))?;
    if durable {
        r.commit()?;
    }
    Ok(())
}

fn info(dir: &Path, json: bool) -> Result<(), Failure> {
    let log = Log::open(dir)?;
    let i = log.info()?;
    let last_seq = i.next_seq.checked_sub(1);
    if json {
        let v = serde_json::json!({
            "dir": dir.display().to_string(),
            "segment_size": i.segment_size,
            "retain_bytes": i.retain.bytes,
            "segments": i.segments.iter().map(|s| serde_json::json!({
                "number": s.number, "first_seq": s.base, "reserved": s.reserved,
                "used": s.used, "capacity": s.capacity, "closed": s.closed,
            })).collect::<Vec<_>>(),
            "first_seq": i.first_seq,
            "last_seq": last_seq,
            "bytes": i.bytes,
            "writers": i.writers,
            "cursors": i.cursors.iter().map(|c| serde_json::json!({
                "name": c.name, "position": c.position, "lag": c.lag,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("log {}", dir.display());
    println!("  segment size {} bytes", i.segment_size);
    if let Some(b) = i.retain.bytes {
        println!("  retain {b} bytes");
    }
    match last_seq {
        Some(l) => println!("  sequence {}..={l}", i.first_seq),
        None => println!("  sequence: empty"),
    }
    println!("  bytes {}", i.bytes);
    println!("  writers attached {}", i.writers);
    println!("  segments {}", i.segments.len());
    for s in &i.segments {
        println!(
            "    #{} from seq {}: {} reserved, {}/{} bytes{}",
            s.number,
            s.base,
            s.reserved,
            s.used,
            s.capacity,
            if s.closed { ", closed" } else { "" }
        );
    }
    println!("  cursors {}", i.cursors.len());
    for c in &i.cursors {
        println!("    {}: position {}, lag {}", c.name, c.position, c.lag);
    }
    Ok(())
}
