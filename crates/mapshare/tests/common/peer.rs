//! A scriptable peer process for multi-process tests.
//!
//! The test binary re-executes itself running only the `peer_entry` test,
//! with `MAPSHARE_PEER=1`. That process reads one command per line on stdin
//! and answers each with one line starting `@@ ` on stdout, so a test can
//! drive a `Region` in a real, separate process. No `fork()` happens inside
//! the multi-threaded test harness: the peer is a fresh `exec`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mapshare::{Access, Region, RegionOptions};

pub const ENV: &str = "MAPSHARE_PEER";

/// The parent's handle on a peer process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts a peer; `setup` may add environment or inherited descriptors.
    pub fn spawn_with(setup: impl FnOnce(&mut Command)) -> Peer {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "peer_entry",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("spawn peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    pub fn spawn() -> Peer {
        Self::spawn_with(|_| {})
    }

    /// Sends one command and returns the peer's answer: `Ok(rest)` for
    /// `@@ ok rest`, `Err(name)` for `@@ err name`.
    pub fn cmd(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}").expect("write to peer");
        self.stdin.flush().unwrap();
        loop {
            let mut answer = String::new();
            let n = self.stdout.read_line(&mut answer).expect("read from peer");
            assert!(n > 0, "peer exited while running {line:?}");
            if let Some(rest) = answer.trim_end().strip_prefix("@@ ") {
                return match rest.split_once(' ').unwrap_or((rest, "")) {
                    ("ok", r) => Ok(r.to_owned()),
                    ("err", r) => Err(r.to_owned()),
                    _ => panic!("bad answer {answer:?}"),
                };
            }
        }
    }

    /// Like `cmd`, but the command must succeed.
    pub fn ok(&mut self, line: &str) -> String {
        self.cmd(line)
            .unwrap_or_else(|e| panic!("peer command {line:?} failed: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The error variant's name, e.g. `Truncated`.
pub fn variant(e: &mapshare::Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split([' ', '{', '(']).next().unwrap_or("").to_owned()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn access(s: &str) -> Access {
    match s {
        "ro" => Access::ReadOnly,
        "rw" => Access::ReadWrite,
        "cow" => Access::CopyOnWrite,
        _ => panic!("bad access {s}"),
    }
}

/// The peer's command loop.
pub fn serve() {
    let mut region: Option<Region> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer: Result<String, mapshare::Error> = (|| {
            Ok(match words.as_slice() {
                ["quit"] => return Ok("quit".into()),
                ["open", path, acc] => {
                    region = Some(RegionOptions::new().access(access(acc)).open(path)?);
                    String::new()
                }
                ["window", path, acc, off, len] => {
                    region = Some(
                        RegionOptions::new()
                            .access(access(acc))
                            .window(off.parse().unwrap(), len.parse().unwrap())
                            .open(path)?,
                    );
                    String::new()
                }
                ["inherit", var] => {
                    region = Some(Region::from_inherited(var)?);
                    String::new()
                }
                ["close"] => {
                    region = None;
                    String::new()
                }
                [cmd, rest @ ..] => {
                    let r = region.as_mut().expect("no region open");
                    match (*cmd, rest) {
                        ("read", [off, len]) => {
                            hex(&r.read_vec(off.parse().unwrap(), len.parse().unwrap())?)
                        }
                        ("write", [off, data]) => {
                            r.write_at(off.parse().unwrap(), &unhex(data))?;
                            String::new()
                        }
                        ("len", []) => r.len().to_string(),
                        ("refresh", []) => format!("{:?}", r.refresh()?),
                        ("check", []) => {
                            r.check()?;
                            String::new()
                        }
                        ("grow", [n]) => {
                            r.grow(n.parse().unwrap())?;
                            String::new()
                        }
                        ("shrink", [n]) => {
                            r.shrink(n.parse().unwrap())?;
                            String::new()
                        }
                        ("wait32", [off, value]) => {
                            let word = r.atomic_u32(off.parse().unwrap())?;
                            let want: u32 = value.parse().unwrap();
                            let deadline = Instant::now() + Duration::from_secs(10);
                            loop {
                                let seen = word.load(Ordering::Acquire);
                                if seen == want {
                                    break;
                                }
                                let now = Instant::now();
                                assert!(now < deadline, "timed out waiting for {want}");
                                mapshare::sys::futex::wait(word, seen, Some(deadline - now))
                                    .unwrap();
                            }
                            String::new()
                        }
                        ("store32", [off, value]) => {
                            let word = r.atomic_u32(off.parse().unwrap())?;
                            word.store(value.parse().unwrap(), Ordering::Release);
                            mapshare::sys::futex::wake_all(word).unwrap();
                            String::new()
                        }
                        _ => panic!("unknown command {line:?}"),
                    }
                }
                [] => String::new(),
            })
        })();
        match answer {
            Ok(s) if s == "quit" => return,
            Ok(s) => println!("@@ ok {s}"),
            Err(e) => println!("@@ err {}", variant(&e)),
        }
        std::io::stdout().flush().unwrap();
    }
}
