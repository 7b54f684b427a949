//! `mapshare publish FILE`, `mapshare read FILE` and `mapshare watch
//! FILE`: a snapshot from the shell.
//!
//! `publish` reads the whole value (stdin or `--from PATH`) and publishes
//! it as one version, creating the file if needed. `read` and `watch`
//! copy values out (never in place) and check each one's CRC32C before
//! writing it; they read with a pinning [`Reader`] when they may write the
//! file, and otherwise (a file of another user, mode 0644; a read-only
//! mount) with a [`ReadOnlyReader`], which writes nothing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mapshare::snapshot::{Options, ReadOnlyReader, Reader, Writer, DEFAULT_CAPACITY};
use mapshare::Error;

use crate::Failure;

pub fn publish(
    path: &Path,
    from: Option<&Path>,
    capacity: Option<u64>,
    mode: u32,
) -> Result<(), Failure> {
    let mut value = Vec::new();
    match from {
        Some(p) => File::open(p)
            .and_then(|mut f| f.read_to_end(&mut value))
            .map_err(|e| Failure(format!("{}: {e}", p.display())))?,
        None => io::stdin().lock().read_to_end(&mut value)?,
    };
    let options = Options {
        capacity: capacity.unwrap_or((value.len() as u64).max(DEFAULT_CAPACITY)),
        mode,
        ..Options::default()
    };
    let mut w = Writer::open_with(path, &options)?;
    let g = w.publish(&value)?;
    eprintln!("published generation {g} ({} bytes)", value.len());
    Ok(())
}

/// A reader of either kind.
enum AnyReader {
    Pinning(Reader),
    ReadOnly(ReadOnlyReader),
}

impl AnyReader {
    /// A pinning reader if the file may be written, else a read-only one.
    /// `create`: make the file if it does not exist (for `watch`).
    fn open(path: &Path, create: bool) -> Result<AnyReader, Failure> {
        let opened = if create {
            match Reader::open(path) {
                Err(Error::NotFound { .. }) => Reader::open_or_create(path, DEFAULT_CAPACITY),
                other => other,
            }
        } else {
            Reader::open(path)
        };
        match opened {
            Ok(r) => Ok(AnyReader::Pinning(r)),
            Err(Error::PermissionDenied { .. } | Error::ReadOnly { .. }) => {
                Ok(AnyReader::ReadOnly(ReadOnlyReader::open(path)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn read_into(&mut self, buf: &mut Vec<u8>) -> mapshare::Result<Option<u64>> {
        match self {
            AnyReader::Pinning(r) => r.read_into(buf),
            AnyReader::ReadOnly(r) => r.read_into(buf),
        }
    }

    fn generation(&self) -> mapshare::Result<u64> {
        match self {
            AnyReader::Pinning(r) => r.generation(),
            AnyReader::ReadOnly(r) => r.generation(),
        }
    }

    fn wait_newer(&mut self, generation: u64, timeout: Duration) -> mapshare::Result<u64> {
        match self {
            AnyReader::Pinning(r) => r.wait_newer(generation, timeout),
            AnyReader::ReadOnly(r) => r.wait_newer(generation, timeout),
        }
    }
}

pub fn read(path: &Path, generation_only: bool) -> Result<(), Failure> {
    let mut r = AnyReader::open(path, false)?;
    let mut buf = Vec::new();
    let Some(g) = r.read_into(&mut buf)? else {
        return Err(Failure(format!(
            "{}: nothing has been published yet",
            path.display()
        )));
    };
    let mut out = io::stdout().lock();
    if generation_only {
        writeln!(out, "{g}")?;
    } else {
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(())
}

pub fn watch(
    path: &Path,
    count: Option<u64>,
    timeout: Option<Duration>,
    exec: Option<&str>,
) -> Result<(), Failure> {
    let mut r = AnyReader::open(path, true)?;
    let mut last = r.generation()?;
    let mut shown = 0u64;
    let mut buf = Vec::new();
    // "Forever" is a century: `wait_newer` takes a finite timeout.
    let wait = timeout.unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    while count.is_none_or(|n| shown < n) {
        match r.wait_newer(last, wait) {
            Ok(_) => {}
            Err(Error::Timeout { .. }) => {
                return Err(Failure(format!(
                    "{}: no new version within {:?} (after generation {last}, {shown} shown)",
                    path.display(),
                    wait
                )))
            }
            Err(e) => return Err(e.into()),
        }
        // The newest version, whole and checked; versions published
        // meanwhile are skipped, never shown torn or out of order.
        let Some(g) = r.read_into(&mut buf)? else {
            continue;
        };
        if g <= last {
            continue;
        }
        last = g;
        shown += 1;
        match exec {
            None => {
                let mut out = io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()?;
            }
            Some(cmd) => run(cmd, &buf, g)?,
        }
    }
    Ok(())
}

/// Runs `sh -c CMD` with the value on its stdin and the generation in
/// `MAPSHARE_GENERATION`; a failing CMD stops `watch` (exit 1).
fn run(cmd: &str, value: &[u8], generation: u64) -> Result<(), Failure> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .env("MAPSHARE_GENERATION", generation.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot run {cmd:?}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        match stdin.write_all(value) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(Failure(format!(
            "{cmd:?} failed ({status}) on generation {generation}"
        )));
    }
    Ok(())
}
