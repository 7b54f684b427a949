//! The `mapshare` command as users run it: real processes, real files, and
//! real peers (`xxd`, `fincore`, a second process with the file mapped).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proptest::prelude::*;

fn mapshare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mapshare"))
        .args(args)
        .output()
        .expect("run mapshare")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn byte_prints_the_classic_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"#include <stdio.h>\n#include <fcntl.h>\n\x00\xff";
    let f = file_with(dir.path(), "mmapdemo.c", text);
    let o = mapshare(&["byte", s(&f), "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "byte at offset 30 is '{}' (0x{:02x})\n",
            text[30] as char, text[30]
        )
    );
    let o = mapshare(&["byte", s(&f), "18"]);
    assert_eq!(stdout(&o), "byte at offset 18 is '\\n' (0x0a)\n");
    let o = mapshare(&["byte", s(&f), "0x26"]);
    assert_eq!(stdout(&o), "byte at offset 38 is '\\0' (0x00)\n");
    let o = mapshare(&["byte", s(&f), "39"]);
    assert_eq!(stdout(&o), "byte at offset 39 is '\\xff' (0xff)\n");
}

#[test]
fn byte_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", &[b'a'; 1234]);
    let empty = file_with(dir.path(), "empty", b"");

    let o = mapshare(&["byte", s(&f), "9999"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(o.stdout.len(), 0);
    assert_eq!(
        stderr(&o),
        format!(
            "mapshare: offset 9999 is out of range for {} (size 1234): valid offsets are 0..=1233\n",
            f.display()
        )
    );
    let o = mapshare(&["byte", s(&f), "1234"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("valid offsets are 0..=1233"));

    let o = mapshare(&["byte", s(&empty), "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "mapshare: {} is empty: there is no byte at offset 0\n",
            empty.display()
        )
    );

    let o = mapshare(&["byte", s(dir.path()), "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    let o = mapshare(&["dump", s(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));

    // A FIFO: refused at once, never waiting for a writer.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for cmd in ["byte", "dump", "info"] {
        let mut args = vec![cmd, s(&fifo)];
        if cmd == "byte" {
            args.push("0");
        }
        let o = mapshare(&args);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).contains("not a regular file"),
            "{cmd}: {}",
            stderr(&o)
        );
    }

    let missing = dir.path().join("missing");
    let o = mapshare(&["byte", s(&missing), "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("mapshare: {}: no such file\n", missing.display())
    );

    // Usage errors exit 2.
    assert_eq!(mapshare(&["byte", s(&f)]).status.code(), Some(2));
    assert_eq!(mapshare(&["byte", s(&f), "ten"]).status.code(), Some(2));
    assert_eq!(mapshare(&["frobnicate"]).status.code(), Some(2));
}

/// Root bypasses file permissions, so run the command as `nobody`.
#[test]
fn permission_denied_is_reported_for_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    // Everything under a world-traversable directory, so that `nobody` can
    // reach the binary and the file wherever the checkout lives.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = file_with(dir.path(), "secret", b"top secret");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let runs_as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    if runs_as_root.ok() != Some(true) {
        // Not root: the permission bits apply to us directly, and we own
        // the file, so it is readable.
        let o = mapshare(&["byte", s(&f), "0"]);
        assert!(o.status.success());
        return;
    }
    let bin = dir.path().join("mapshare");
    std::fs::copy(env!("CARGO_BIN_EXE_mapshare"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .args(["byte", s(&f), "0"])
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "mapshare: {}: permission denied (open read-only)\n",
            f.display()
        )
    );
}

fn xxd(args: &[&str]) -> Vec<u8> {
    Command::new("xxd").args(args).output().expect("xxd").stdout
}

#[test]
fn dump_matches_xxd_on_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0usize, 1, 15, 16, 17, 4095, 4096, 4097, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let f = file_with(dir.path(), &format!("f{len}"), &data);
        let o = mapshare(&["dump", s(&f)]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            o.stdout == xxd(&[s(&f)]),
            "dump differs from xxd for {len} bytes"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn dump_matches_xxd_on_random_windows(offset in 0u64..9000, length in 0u64..9000) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..8200usize).map(|i| (i * 131 + i / 7) as u8).collect();
        let f = file_with(dir.path(), "f", &data);
        let (off, len) = (offset.to_string(), length.to_string());
        let o = mapshare(&["dump", s(&f), "-s", &off, "-l", &len]);
        if offset > data.len() as u64 {
            prop_assert_eq!(o.status.code(), Some(1));
        } else {
            prop_assert!(o.status.success(), "{}", stderr(&o));
            prop_assert!(o.stdout == xxd(&["-s", &off, "-l", &len, s(&f)]), "window {}+{}", offset, length);
        }
    }
}

#[test]
fn dump_takes_units_and_hex() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..5000usize).map(|i| i as u8).collect();
    let f = file_with(dir.path(), "f", &data);
    let o = mapshare(&["dump", s(&f), "--offset", "0x10", "--length", "1KiB"]);
    assert!(o.stdout == xxd(&["-s", "16", "-l", "1024", s(&f)]));
}

#[test]
fn write_is_seen_by_a_process_that_has_the_file_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", &[b'.'; 10_000]);
    // This test process maps the file; the CLI is another process.
    let region = mapshare::Region::open_read_only(&f).unwrap();

    let o = mapshare(&["write", s(&f), "4094", "--text", "across"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(region.read_vec(4094, 6).unwrap(), b"across");

    let o = mapshare(&["write", s(&f), "0x20", "--hex", "de ad:be ef", "--no-sync"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(region.read_vec(32, 4).unwrap(), [0xde, 0xad, 0xbe, 0xef]);

    let src = file_with(dir.path(), "src", b"from a file");
    let o = mapshare(&["write", s(&f), "9989", "--from", s(&src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(region.read_vec(9989, 11).unwrap(), b"from a file");

    let on_disk = std::fs::read(&f).unwrap();
    assert_eq!(&on_disk[4094..4100], b"across");
    assert_eq!(on_disk.len(), 10_000);
}

#[test]
fn write_refuses_to_run_past_the_end_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", b"0123456789");
    let o = mapshare(&["write", s(&f), "8", "--text", "abc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("past the end"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&f).unwrap(), b"0123456789");
    // Exactly one of --text, --hex, --from.
    assert_eq!(mapshare(&["write", s(&f), "0"]).status.code(), Some(2));
    assert_eq!(
        mapshare(&["write", s(&f), "0", "--text", "a", "--hex", "00"])
            .status
            .code(),
        Some(2)
    );
    let o = mapshare(&["write", s(&f), "0", "--hex", "abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&f).unwrap(), b"0123456789");
}

#[test]
fn info_agrees_with_fincore() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let f = file_with(dir.path(), "f", &vec![7u8; 40 * 4096 + 1]);
    // Make part of it resident, part not.
    let region = mapshare::Region::open(&f).unwrap();
    region.flush().unwrap();
    region.advise(mapshare::Hint::DontNeed).unwrap();
    region.read_vec(0, 10 * 4096).unwrap();
    let o = mapshare(&["info", "--json", s(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["size"], 40 * 4096 + 1);
    assert_eq!(v["pages_total"], 41);
    assert_eq!(v["mapshare_file"], false);
    let ours = v["pages_resident"].as_u64().unwrap();
    let fincore = Command::new("fincore")
        .args(["-n", "-r", "-o", "PAGES", s(&f)])
        .output()
        .expect("fincore (util-linux)");
    let theirs: u64 = String::from_utf8_lossy(&fincore.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ours, theirs);
    assert!(ours >= 10, "{ours}");

    let o = mapshare(&["info", s(&f)]);
    assert!(
        stdout(&o).contains(&format!("resident:  {ours} of 41 pages")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("plain file"));
}

#[test]
fn demo_runs_every_scene() {
    let o = mapshare(&["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("without remapping, my view now says byte at offset 30"),
        "{out}"
    );
    assert!(
        out.contains("the region says \"Hello from shared memory!\""),
        "{out}"
    );
    assert!(out.contains("lock says OwnerDied"), "{out}");
    assert!(out.contains("final count 1500 = 500"), "{out}");
    assert!(out.contains(": correct"), "{out}");
    assert!(out.contains("got all 200000 records"), "{out}");
    // Scene 6: the late reader replays what the live one saw.
    let scene6 = out.split("== 6.").nth(1).unwrap_or_default();
    for who in ["live reader", "late reader"] {
        let seen = scene6
            .lines()
            .filter(|l| l.contains(&format!("{who} sees seq")))
            .count();
        assert_eq!(seen, 6, "{who}: {scene6}");
    }
    for reader in ["A", "B"] {
        assert!(
            out.contains(&format!(
                "reader {reader} sees generation 3: \"mode=safe retries=5 log=verbose\""
            )),
            "{out}"
        );
    }
}

#[test]
fn create_then_info_decodes_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let o = mapshare(&["create", s(&f), "--size", "64KiB", "--slots", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mapshare(&["create", s(&f), "--size", "64KiB"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    // A process attached to the file shows up in `info`.
    let attached = mapshare::SharedFile::open_any(&f, std::time::Duration::from_secs(1)).unwrap();
    let o = mapshare(&["info", "--json", s(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mapshare_file"], true);
    assert_eq!(v["kind"], "raw");
    assert_eq!(v["header"]["lease_slots"], 8);
    assert_eq!(v["header"]["object_len"], 65536);
    assert!(v["header"]["initialized_by_pid"].as_u64().is_some());
    let list = v["attached"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pid"], std::process::id());
    assert_eq!(list[0]["alive"], true);
    drop(attached);
    let v: serde_json::Value =
        serde_json::from_slice(&mapshare(&["info", "--json", s(&f)]).stdout).unwrap();
    assert_eq!(v["attached"].as_array().unwrap().len(), 0);

    // Damage the header: info says so instead of failing.
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    let o = mapshare(&["info", s(&f)]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("damaged mapshare file: ") && stdout(&o).contains("checksum"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn info_shows_the_mutex_of_a_value_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v");
    let value = mapshare::Shared::<u64>::open_or_create(&f, &7).unwrap();
    let guard = value.lock().unwrap();
    let o = mapshare(&["info", s(&f)]);
    assert!(
        stdout(&o).contains(&format!("mutex:     held by pid {}", std::process::id())),
        "{}",
        stdout(&o)
    );
    drop(guard);
    let o = mapshare(&["info", s(&f)]);
    assert!(stdout(&o).contains("mutex:     free"), "{}", stdout(&o));
}

#[test]
fn lock_runs_the_command_under_the_lock_and_honours_python_locks() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", &[0u8; 100]);
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "0..10",
        "--",
        "sh",
        "-c",
        "echo inside; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(stdout(&o), "inside\n");

    // While `mapshare lock` runs its command, Python cannot take the range.
    let probe = format!(
        "import fcntl,os; fd=os.open('{}', os.O_RDWR)\ntry:\n  fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB, 5, 2); print('free')\nexcept OSError: print('held')",
        f.display()
    );
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "0..10",
        "--",
        "python3",
        "-c",
        &probe,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "held\n");
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "50..60",
        "--shared",
        "--",
        "python3",
        "-c",
        &probe,
    ]);
    assert_eq!(stdout(&o), "free\n");

    // Python holds bytes 0..10: we time out and do not run the command.
    let hold = format!(
        "import fcntl,os,sys; fd=os.open('{}', os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0); print('locked', flush=True); sys.stdin.readline()",
        f.display()
    );
    use std::io::{BufRead, BufReader, Write};
    let mut py = Command::new("python3")
        .args(["-c", &hold])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let marker = dir.path().join("ran");
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "5..6",
        "--timeout",
        "100ms",
        "--",
        "touch",
        s(&marker),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("could not lock bytes 5..6"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists(), "the command must not run");
    py.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    py.wait().unwrap();
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "5..6",
        "--timeout",
        "5s",
        "--",
        "touch",
        s(&marker),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(marker.exists());

    // Usage errors.
    assert_eq!(mapshare(&["lock", s(&f)]).status.code(), Some(2));
    assert_eq!(
        mapshare(&["lock", s(&f), "--range", "9..3", "--", "true"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn send_and_recv_work_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_mapshare");
    for consumer_first in [true, false] {
        let q = dir.path().join(format!("q-{consumer_first}"));
        let q = q.to_str().unwrap();
        // The consumer writes to a file: a pipe nobody reads yet would fill
        // up and stall it (and then the producer, on a full queue).
        let out_path = dir.path().join(format!("out-{consumer_first}"));
        let recv = || {
            Command::new(bin)
                .args(["recv", q, "--capacity", "64KiB"])
                .stdout(std::fs::File::create(&out_path).unwrap())
                .spawn()
                .unwrap()
        };
        let mut consumer = consumer_first.then(recv);
        // 200,000 lines do not fit in 64 KiB: the producer blocks until
        // the consumer drains, whichever started first.
        let mut send = Command::new("sh")
            .arg("-c")
            .arg(format!("seq 200000 | {bin} send {q} --capacity 64KiB"))
            .spawn()
            .unwrap();
        if consumer.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let status = consumer.take().unwrap_or_else(recv).wait().unwrap();
        assert!(status.success());
        assert!(send.wait().unwrap().success());
        let text = std::fs::read_to_string(&out_path).unwrap();
        let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
        assert!(
            text == expected,
            "consumer_first={consumer_first}: {} bytes",
            text.len()
        );
    }
}

#[test]
fn recv_count_timeout_frames_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let o = mapshare(&["create", s(&q), "--queue", "--capacity", "64KiB"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Frames carry any bytes, newlines and NULs included.
    let mut framed = Vec::new();
    for rec in [&b"a\nb"[..], b"\0\0\0", b"x"] {
        framed.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        framed.extend_from_slice(rec);
    }
    use std::io::Write;
    // A sender told to use full fences (as where seccomp forbids
    // membarrier): `info` says which fences each side chose.
    let mut send = Command::new(env!("CARGO_BIN_EXE_mapshare"))
        .args(["send", s(&q), "--frames"])
        .env("MAPSHARE_FENCES", "full")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin.take().unwrap().write_all(&framed).unwrap();
    assert!(send.wait().unwrap().success());

    let o = mapshare(&["info", "--json", s(&q)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "queue");
    assert_eq!(v["queue"]["records_pending"], 3);
    assert_eq!(v["queue"]["capacity"], 65536);
    // The guard page that tells a cut inside a page of records: the
    // file's last page, past the object's last page.
    let (len, guard) = (&v["header"]["file_len"], &v["header"]["guard_page"]);
    let page = v["header"]["page_size_at_creation"].as_u64().unwrap();
    assert_eq!(guard.as_u64().unwrap() + page, len.as_u64().unwrap());
    assert!(
        guard.as_u64().unwrap()
            >= v["header"]["object_offset"].as_u64().unwrap()
                + v["header"]["object_len"].as_u64().unwrap()
    );
    assert!(v["queue"]["producer"].is_null(), "the sender has left");
    assert_eq!(v["queue"]["fences"]["producer"], "full fences");
    assert!(
        v["queue"]["fences"]["consumer"].is_null(),
        "no consumer yet"
    );
    let o = mapshare(&["info", s(&q)]);
    assert!(stdout(&o).contains(", guard page at "), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("producer:  none, full fences"),
        "{}",
        stdout(&o)
    );

    let o = mapshare(&["recv", s(&q), "--frames", "--count", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout[..4], 3u32.to_le_bytes());
    assert_eq!(&o.stdout[4..7], b"a\nb");
    let o = mapshare(&["recv", s(&q), "--count", "1"]);
    assert_eq!(stdout(&o), "x\n");
    // Drained, and the producer left before this recv started: a new
    // session, so recv waits for the next producer (here: until --timeout)
    // instead of ending at once with nothing.
    let o = mapshare(&["recv", s(&q), "--timeout", "100ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 0);

    // A queue nobody ever produced into: --timeout ends the wait.
    let fresh = dir.path().join("fresh");
    let o = mapshare(&["recv", s(&fresh), "--timeout", "100ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    // Sending to something that is not a queue is refused.
    let plain = file_with(dir.path(), "plain", b"hello");
    let o = mapshare(&["recv", s(&plain), "--timeout", "100ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a mapshare file"), "{}", stderr(&o));
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mapshare")
}

/// Sends `sig` (a name like "TERM") to `pid` with kill(1).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Issue 7, E17: every argument that can be checked before touching a file
/// is a usage error (exit 2) naming the argument, and nothing is created.
#[test]
fn usage_errors_exit_2_before_touching_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", b"0123456789");
    let new = dir.path().join("new");
    let q = dir.path().join("q");
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", s(&new), "--size", "4KiB", "--slots", "0"],
        vec!["create", s(&new), "--size", "4KiB", "--slots", "5000"],
        vec!["create", s(&new), "--queue", "--capacity", "100"],
        vec!["create", s(&new), "--queue", "--capacity", "8"],
        vec!["create", s(&new), "--size", "0"],
        vec!["create", s(&new), "--size", "4KiB", "--mode", "9"],
        vec!["bench", "nosuchsuite"],
        vec!["write", s(&f), "0", "--hex", "zz"],
        vec!["write", s(&f), "0", "--hex", ""],
        vec!["write", s(&f), "0", "--text", ""],
        vec!["send", s(&q), "--capacity", "100"],
        vec!["recv", s(&q), "--capacity", "1"],
        vec!["recv", s(&q), "--count", "0"],
        vec!["recv", s(&q), "--timeout", "soon"],
        vec!["lock", s(&f), "--timeout=-1s", "--", "true"],
        vec![
            "lock",
            s(&f),
            "--range",
            "0..0x8000000000000000",
            "--",
            "true",
        ],
    ];
    for args in &cases {
        let o = mapshare(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("invalid value"), "{args:?}: {err}");
        assert!(!err.contains("memfd:"), "{args:?}: {err}");
    }
    assert!(!new.exists(), "a refused create left a file");
    assert!(!q.exists(), "a refused send/recv created the queue");
    assert_eq!(std::fs::read(&f).unwrap(), b"0123456789");
}

/// Issue 7, E18: one set of rules for numbers, sizes, offsets, durations
/// and modes, in every command.
#[test]
fn units_offsets_durations_and_modes_parse_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3000usize).map(|i| (i % 251) as u8).collect();
    let f = file_with(dir.path(), "f", &data);
    // Offsets take units in `byte`, and k, K, KiB and kib all mean 1024.
    for off in ["1024", "0x400", "1k", "1K", "1KiB", "1kib", "1 KiB"] {
        let o = mapshare(&["byte", s(&f), off]);
        assert!(o.status.success(), "{off}: {}", stderr(&o));
        assert!(stdout(&o).starts_with("byte at offset 1024 "), "{off}");
    }
    // KB is decimal.
    let o = mapshare(&["byte", s(&f), "1KB"]);
    assert!(
        stdout(&o).starts_with("byte at offset 1000 "),
        "{}",
        stdout(&o)
    );
    // Exbibytes parse (and are out of range for this file: a runtime error).
    let o = mapshare(&["byte", s(&f), "1EiB"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("offset 1152921504606846976"),
        "{}",
        stderr(&o)
    );
    let o = mapshare(&["byte", s(&f), "16EiB"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    // Fractions are refused, with a reason.
    for args in [
        vec!["byte", s(&f), "1.5KiB"],
        vec!["create", "x", "--size", "1.5KiB"],
    ] {
        let o = mapshare(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("whole numbers"), "{}", stderr(&o));
    }
    // dump -s/-l and write take units.
    let o = mapshare(&["dump", s(&f), "-s", "1k", "-l", "0x10"]);
    assert!(o.stdout == xxd(&["-s", "1024", "-l", "16", s(&f)]));
    let o = mapshare(&["write", s(&f), "2k", "--text", "units"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&f).unwrap()[2048..2053], b"units");
    // lock --range takes units; durations take h.
    let o = mapshare(&[
        "lock",
        s(&f),
        "--range",
        "1k..2KiB",
        "--timeout",
        "2h",
        "--",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for bad in ["2hours", "h", "1e3s", "inf", ".5s", "1.2.3s"] {
        let o = mapshare(&["lock", s(&f), "--timeout", bad, "--", "true"]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    // --mode: no setuid, setgid or sticky bit.
    for mode in ["4755", "2700", "1777", "7777"] {
        let new = dir.path().join(format!("m{mode}"));
        let o = mapshare(&["create", s(&new), "--size", "4KiB", "--mode", mode]);
        assert_eq!(o.status.code(), Some(2), "{mode}");
        assert!(stderr(&o).contains("setuid"), "{}", stderr(&o));
        assert!(!new.exists());
    }
    let new = dir.path().join("m640");
    let o = mapshare(&["create", s(&new), "--size", "4k", "--mode", "0640"]);
    assert!(o.status.success(), "{}", stderr(&o));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&new).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    // The rules are in --help.
    let help = stdout(&mapshare(&["--help"]));
    for needle in ["K/KiB=1024", "KB, MB", "E/EiB", "1.5KiB is refused", "2h"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Issue 7, E20: every command's --help says when it waits and when it
/// gives up; bench lists its suites.
#[test]
fn help_says_when_each_command_waits_and_gives_up() {
    for cmd in [
        "byte", "dump", "write", "create", "lock", "send", "recv", "info", "repair", "demo",
        "bench",
    ] {
        let o = mapshare(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        let help = stdout(&o).to_lowercase();
        assert!(
            help.contains("wait"),
            "{cmd} --help says nothing of waiting:\n{help}"
        );
    }
    for cmd in ["lock", "send", "recv"] {
        let help = stdout(&mapshare(&[cmd, "--help"]));
        assert!(help.contains("--timeout"), "{cmd}");
        let lower = help.to_lowercase();
        assert!(
            lower.contains("gives up") || lower.contains("give up"),
            "{cmd}:\n{help}"
        );
    }
    let help = stdout(&mapshare(&["send", "--help"]));
    assert!(help.contains("Either side may start first"), "{help}");
    let help = stdout(&mapshare(&["bench", "--help"]));
    for suite in ["lock", "wake", "queue"] {
        assert!(help.contains(suite), "bench --help lacks {suite}:\n{help}");
    }
}

/// Issue 7, D16: SIGTERM, SIGINT or SIGHUP sent to `mapshare lock` reach
/// COMMAND, and the lock stays held until COMMAND exits.
#[test]
fn a_signalled_lock_is_held_until_the_command_exits() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let f = file_with(dir.path(), "f", &[0u8; 100]);
    let probe = format!(
        "import fcntl,os; fd=os.open('{}', os.O_RDWR)\ntry:\n  fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB, 1, 5); print('free')\nexcept OSError: print('held')",
        f.display()
    );
    let held = || {
        let o = Command::new("python3")
            .args(["-c", &probe])
            .output()
            .unwrap();
        stdout(&o).trim().to_owned()
    };
    // A command that reports the signals it gets and exits when told to.
    // alarm(20): if the signal never comes, it ends by itself.
    let script = "import signal,sys\n\
def h(s,f): print('got', s, flush=True)\n\
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP): signal.signal(s, h)\n\
signal.alarm(20)\n\
print('ready', flush=True)\n\
sys.stdin.readline()\n\
sys.exit(7)";
    for (sig, num) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let mut lock = Command::new(bin())
            .args([
                "lock",
                s(&f),
                "--range",
                "0..10",
                "--",
                "python3",
                "-c",
                script,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(lock.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        assert_eq!(held(), "held");
        signal(lock.id(), sig);
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("got {num}"),
            "SIG{sig} was not passed on"
        );
        // COMMAND is still running: the lock must still be held.
        assert_eq!(held(), "held", "SIG{sig} released the lock");
        lock.stdin.take().unwrap().write_all(b"\n").unwrap();
        let status = lock.wait().unwrap();
        assert_eq!(status.code(), Some(7), "SIG{sig}: COMMAND's status");
        assert_eq!(held(), "free");
    }
    // A COMMAND that dies of the signal: 128 + N, as shells report it.
    for (sig, num) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let mut lock = Command::new(bin())
            .args(["lock", s(&f), "--", "sh", "-c", "echo ready; exec sleep 60"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(lock.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        signal(lock.id(), sig);
        let status = lock.wait().unwrap();
        assert_eq!(status.code(), Some(128 + num), "SIG{sig}: {status}");
    }
    // A COMMAND that cannot be run: 127 if not found, 126 if not runnable.
    let o = mapshare(&["lock", s(&f), "--", "/nonexistent/mapshare-no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let o = mapshare(&["lock", s(&f), "--", s(&f)]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
}

fn send_lines(q: &Path, lines: &str) {
    use std::io::Write;
    let mut send = Command::new(bin())
        .args(["send", s(q), "--capacity", "64KiB"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(send.wait().unwrap().success());
}

/// Issue 7, E19: `recv` releases only what it wrote, and says so when its
/// output fails or when it got fewer records than --count asked for.
#[test]
fn recv_loses_nothing_when_its_output_fails() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    send_lines(&q, "a\nb\nc\n");
    // A full device: nothing written, nothing released.
    let o = Command::new(bin())
        .args(["recv", s(&q), "--count", "3"])
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("standard output") && err.contains("0 of 3"),
        "{err}"
    );
    // A closed standard output: refused before anything is read.
    let o = Command::new("sh")
        .args(["-c", "exec \"$0\" recv \"$1\" --count 3 >&-", bin(), s(&q)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("standard output is closed"),
        "{}",
        stderr(&o)
    );
    let o = Command::new("sh")
        .args(["-c", "exec \"$0\" dump \"$1\" >&-", bin(), s(&q)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    // Everything is still there.
    let o = mapshare(&["recv", s(&q), "--count", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a\nb\nc\n");

    // Output that fails half-way (a file size limit): exactly the records
    // written in full are released; the next recv starts with the first
    // record that did not get out whole.
    let lines: String = (0..200)
        .map(|i| format!("record number {i:04}\n"))
        .collect();
    send_lines(&q, &lines);
    let out = dir.path().join("out");
    let o = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 2; exec \"$0\" recv \"$1\" --count 200 > \"$2\"",
            bin(),
            s(&q),
            s(&out),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("standard output"), "{}", stderr(&o));
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(first.len() < lines.len(), "the limit did not apply");
    let whole = &first[..first.rfind('\n').map_or(0, |i| i + 1)];
    // The producer has left: a recv without --count drains and ends.
    let o = mapshare(&["recv", s(&q), "--timeout", "5s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rest = stdout(&o);
    assert_eq!(format!("{whole}{rest}"), lines, "records lost or repeated");

    // Fewer records than --count: an error that says how many.
    send_lines(&q, "x\ny\n");
    let o = mapshare(&["recv", s(&q), "--count", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "x\ny\n");
    assert!(stderr(&o).contains("got 2 of 5"), "{}", stderr(&o));
    let fresh = dir.path().join("fresh");
    let o = mapshare(&["recv", s(&fresh), "--count", "5", "--timeout", "50ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("got 0 of 5"), "{}", stderr(&o));
}

/// Issue 7, C10 (CLI half): `send --timeout` gives up when no consumer
/// makes space, says how far it got, and what it sent is all there.
#[test]
fn send_gives_up_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let o = Command::new("sh")
        .args([
            "-c",
            "seq 100000 | \"$0\" send \"$1\" --capacity 4KiB --timeout 100ms",
            bin(),
            s(&q),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("gave up after waiting 100ms"), "{err}");
    let sent: u64 = err
        .split('(')
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {err:?}"));
    assert!(sent > 0, "{err}");
    let o = mapshare(&["recv", s(&q), "--count", &sent.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: String = (1..=sent).map(|i| format!("{i}\n")).collect();
    assert_eq!(stdout(&o), expected);
}

/// Issue 7, E22: Ctrl-C in the middle of the demo leaves no directory and
/// no child process behind.
#[test]
fn an_interrupted_demo_cleans_up() {
    use std::io::{BufRead, BufReader, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new(bin())
        .args(["demo", "--step"])
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = demo.stdin.take().unwrap();
    let mut out = BufReader::new(demo.stdout.take().unwrap());
    let mut pids = Vec::new();
    let mut line = String::new();
    // Step through to the moment a child holds the lock in scene 3.
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
        if let Some(rest) = line.split("(pid ").nth(1) {
            let pid: u32 = rest.split(')').next().unwrap().parse().unwrap();
            pids.push(pid);
        }
        if line.contains("press Enter to kill pid") {
            break;
        }
        if line.contains("press Enter") {
            input.write_all(b"\n").unwrap();
        }
    }
    let entries = || std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(entries(), 1, "the demo works in a directory under TMPDIR");
    let live: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(!live.is_empty(), "scene 3 has children alive: {pids:?}");
    signal(demo.id(), "INT");
    let status = demo.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(2), "{status}");
    assert_eq!(entries(), 0, "the demo left its directory behind");
    for p in live {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "child {p} outlived the demo"
        );
    }
}

/// Runs `mapshare demo-child hold FILE` (a process that holds the mutex of
/// a `u64` value file) and kills it with SIGKILL while it holds the lock.
fn kill_a_holder(f: &Path) -> u32 {
    use std::io::{BufRead, BufReader};
    let mut holder = Command::new(bin())
        .args(["demo-child", "hold", s(f)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("holding the lock"), "{line}");
    let pid = holder.id();
    let o = mapshare(&["info", s(f)]);
    assert!(
        stdout(&o).contains(&format!("mutex:     held by pid {pid}\n")),
        "{}",
        stdout(&o)
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    pid
}

/// Issue 7, A4: `info` shows every recovery state of a value's mutex.
#[test]
fn info_shows_owner_died_and_not_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v");
    let pid = kill_a_holder(&f);
    let o = mapshare(&["info", s(&f)]);
    assert!(
        stdout(&o).contains(&format!(
            "mutex:     held by pid {pid}, which died (owner died)"
        )),
        "{}",
        stdout(&o)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&mapshare(&["info", "--json", s(&f)]).stdout).unwrap();
    assert!(v["mutex"].as_str().unwrap().contains("owner died"), "{v}");
    // A locker takes over and gives up without repairing: not recoverable.
    let value = mapshare::Shared::<u64>::open(&f).unwrap();
    match value.lock() {
        Err(mapshare::sync::LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    let o = mapshare(&["info", s(&f)]);
    assert!(
        stdout(&o).contains("mutex:     not recoverable"),
        "{}",
        stdout(&o)
    );
}

/// Issue 7, C11 (CLI half): a producer that dies mid-stream makes `recv`
/// exit non-zero with one line naming the dead process; a clean end is 0.
#[test]
fn recv_reports_a_producer_that_died_mid_stream() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let mut recv = Command::new(bin())
        .args(["recv", s(&q), "--capacity", "64KiB"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut send = Command::new(bin())
        .args(["send", s(&q), "--capacity", "64KiB"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = send.stdin.take().unwrap();
    input.write_all(b"a\nb\n").unwrap();
    input.flush().unwrap();
    let mut out = BufReader::new(recv.stdout.take().unwrap());
    let mut got = String::new();
    for _ in 0..2 {
        out.read_line(&mut got).unwrap();
    }
    assert_eq!(got, "a\nb\n");
    let pid = send.id();
    send.kill().unwrap();
    send.wait().unwrap();
    drop(input);
    let o = recv.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "the producer (pid {pid}) died mid-stream; got 2 records"
        )),
        "{err}"
    );
}

/// Issue 7, C10: a reused queue file works in both orders, again and again
/// (the README's `send &` then `recv`, and `recv &` then `send`).
#[test]
fn send_and_recv_reuse_a_queue_file_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let q = s(&q);
    let n = 20_000;
    let expected: String = (1..=n).map(|i| format!("{i}\n")).collect();
    for round in 0..6 {
        let consumer_first = round % 2 == 0;
        let out_path = dir.path().join(format!("out-{round}"));
        let recv = || {
            Command::new(bin())
                .args(["recv", q, "--capacity", "4KiB"])
                .stdout(std::fs::File::create(&out_path).unwrap())
                .spawn()
                .unwrap()
        };
        let mut consumer = consumer_first.then(recv);
        let mut send = Command::new("sh")
            .arg("-c")
            .arg(format!("seq {n} | \"$0\" send {q} --capacity 4KiB"))
            .arg(bin())
            .spawn()
            .unwrap();
        let status = consumer.take().unwrap_or_else(recv).wait().unwrap();
        assert!(status.success(), "round {round}");
        assert!(send.wait().unwrap().success(), "round {round}");
        let text = std::fs::read_to_string(&out_path).unwrap();
        assert!(
            text == expected,
            "round {round} (consumer first: {consumer_first}): {} bytes of {}",
            text.len(),
            expected.len()
        );
    }
}

/// Issue 7, A4 (CLI half): `mapshare repair` is the way out of "owner
/// died" and "not recoverable", and refuses what does not apply.
#[test]
fn repair_marks_consistent_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v");
    // A fresh value: nothing to repair.
    let _ = mapshare::Shared::<u64>::open_or_create(&f, &5).unwrap();
    let o = mapshare(&["repair", s(&f), "--mark-consistent"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // Exactly one of the two.
    assert_eq!(mapshare(&["repair", s(&f)]).status.code(), Some(2));
    assert_eq!(
        mapshare(&["repair", s(&f), "--reset", "--mark-consistent"])
            .status
            .code(),
        Some(2)
    );

    // A holder died mid-update: --mark-consistent clears it.
    kill_a_holder(&f);
    let o = mapshare(&["repair", s(&f), "--reset"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "reset applies only to not recoverable"
    );
    let o = mapshare(&["repair", s(&f), "--mark-consistent"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("mutex is now free"), "{}", stdout(&o));
    let value = mapshare::Shared::<u64>::open(&f).unwrap();
    assert!(
        value.lock().is_ok(),
        "the lock works again, with no OwnerDied"
    );

    // Not recoverable (a taker gave up): --reset brings it back.
    drop(value);
    kill_a_holder(&f);
    let value = mapshare::Shared::<u64>::open(&f).unwrap();
    match value.lock() {
        Err(mapshare::sync::LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    assert!(stdout(&mapshare(&["info", s(&f)])).contains("mutex:     not recoverable"));
    let o = mapshare(&["repair", s(&f), "--mark-consistent"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = mapshare(&["repair", s(&f), "--reset"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("mutex is now free"), "{}", stdout(&o));
    assert!(stdout(&mapshare(&["info", s(&f)])).contains("mutex:     free"));
    assert_eq!(*value.lock().expect("usable again"), 5, "the data is kept");

    // A live holder: refused, nothing changed.
    let guard = value.lock().unwrap();
    let o = mapshare(&["repair", s(&f), "--mark-consistent"]);
    assert_eq!(o.status.code(), Some(1));
    drop(guard);
    // Not a value file.
    let plain = file_with(dir.path(), "plain", b"hello");
    assert_eq!(
        mapshare(&["repair", s(&plain), "--reset"]).status.code(),
        Some(1)
    );
}
