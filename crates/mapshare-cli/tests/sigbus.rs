//! No SIGBUS, ever (issue 7, D14): a file truncated by a program that
//! ignores mapshare makes `mapshare` exit with a one-line "truncated"
//! error, never die of a signal (exit 135 in a shell).
//!
//! `dump`, `send` and `recv` are stopped at a known point (a full stdout
//! pipe, a record in flight) while the file is cut, so those tests are
//! deterministic. `byte` and `write` make one access right after opening;
//! there the cut races the command in a loop, and the test asserts that no
//! run dies of a signal and that every failure is one clean line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapshare"))
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Exited by itself (no signal), non-zero, with exactly one line on stderr
/// that says the file was truncated.
fn assert_clean_truncated(what: &str, status: ExitStatus, stderr: &str) {
    assert_eq!(status.signal(), None, "{what} died of a signal: {stderr}");
    assert!(!status.success(), "{what} succeeded on a truncated file");
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr:?}");
    assert!(stderr.contains("truncated"), "{what}: {stderr:?}");
}

fn big_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn dump_of_a_file_truncated_mid_dump_is_an_error_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let f = big_file(dir.path(), "big", 1 << 20);
    let mut child = bin()
        .args(["dump", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // The first 64 KiB read produces ~280 KB of hex: dump is now blocked on
    // the full pipe, its next read still ahead of it.
    let mut first = [0u8; 4096];
    out.read_exact(&mut first).unwrap();
    truncate(&f, 0);
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_clean_truncated("dump", status, &err);
}

/// Runs `args` (with the file's path appended where `{}` is) `runs` times
/// while another thread cuts the file to nothing and restores it, and
/// returns how many runs reported a truncation.
fn race_against_truncate(file: &Path, len: u64, args: &[&str], runs: usize) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let stop = stop.clone();
        let file = file.to_path_buf();
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.set_len(0).unwrap();
                f.set_len(len).unwrap();
            }
        })
    };
    let mut truncated = 0;
    for _ in 0..runs {
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "{}" {
                    file.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let o = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.signal(), None, "{args:?} died of a signal: {err}");
        if !o.status.success() {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
            if err.contains("truncated") {
                truncated += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    cutter.join().unwrap();
    truncated
}

#[test]
fn byte_and_write_survive_a_file_being_truncated_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64 * 4096;
    let f = big_file(dir.path(), "cut", len);
    let runs = std::env::var("MAPSHARE_LONG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let hits = race_against_truncate(&f, len as u64, &["byte", "{}", "200000"], runs)
        + race_against_truncate(
            &f,
            len as u64,
            &["write", "{}", "200000", "--text", "x", "--no-sync"],
            runs,
        );
    eprintln!("{hits} of {} runs hit the truncation", 2 * runs);
}

/// Reads lines from `r` until one equals `want`.
fn read_until_line(r: &mut impl BufRead, want: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(r.read_line(&mut line).unwrap(), 0, "EOF before {want:?}");
        if line.trim_end() == want {
            return;
        }
    }
}

type Outcome = (ExitStatus, String);

/// `send` and `recv` on one queue, both attached and mid-stream when the
/// queue file is cut to nothing; then `send` gets 1000 more lines and its
/// stdin closes. Returns how each ended.
fn cut_a_queue_mid_stream() -> (Outcome, Outcome) {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let qs = q.to_str().unwrap();
    let mut recv = bin()
        .args(["recv", qs, "--capacity", "64KiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut send = bin()
        .args(["send", qs, "--capacity", "64KiB"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_send = send.stdin.take().unwrap();
    let mut from_recv = BufReader::new(recv.stdout.take().unwrap());
    writeln!(to_send, "before").unwrap();
    to_send.flush().unwrap();
    read_until_line(&mut from_recv, "before");
    // Both are attached and mid-stream: cut the queue away.
    truncate(&q, 0);
    for i in 0..1000 {
        if writeln!(to_send, "after {i}").is_err() {
            break;
        }
    }
    drop(to_send);
    let mut rest = String::new();
    let _ = from_recv.read_to_string(&mut rest);
    let mut send_err = String::new();
    send.stderr
        .take()
        .unwrap()
        .read_to_string(&mut send_err)
        .unwrap();
    let mut recv_err = String::new();
    recv.stderr
        .take()
        .unwrap()
        .read_to_string(&mut recv_err)
        .unwrap();
    let send_status = send.wait().unwrap();
    let recv_status = recv.wait().unwrap();
    ((send_status, send_err), (recv_status, recv_err))
}

#[test]
fn send_and_recv_on_a_queue_truncated_mid_stream_do_not_die_of_sigbus() {
    let ((send, send_err), (recv, recv_err)) = cut_a_queue_mid_stream();
    assert_eq!(send.signal(), None, "send died of a signal: {send_err}");
    assert_eq!(recv.signal(), None, "recv died of a signal: {recv_err}");
}

#[test]
fn send_and_recv_on_a_queue_truncated_mid_stream_exit_with_an_error() {
    let ((send, send_err), (recv, recv_err)) = cut_a_queue_mid_stream();
    assert_clean_truncated("send", send, &send_err);
    assert_clean_truncated("recv", recv, &recv_err);
}

/// Issue 7, D15: `recv /proc/self/status` used to open it read-write,
/// truncate it and write a header into it.
#[test]
fn recv_and_send_refuse_files_on_special_file_systems() {
    for args in [
        ["recv", "/proc/self/status", "--timeout", "1s"],
        ["send", "/proc/self/comm", "--capacity", "64KiB"],
    ] {
        let o = bin().args(args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.contains("procfs"), "{args:?}: {err:?}");
    }
}
