//! `mapshare publish`, `read`, `watch` and `info` on snapshot files, as
//! scripts run them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mapshare(args: &[&str], input: &[u8]) -> Output {
    common::run_with_input(args, input)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn publish_then_read_exactly_and_generations_count_up() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config");
    let o = mapshare(&["read", s(&f)], b"");
    assert_eq!(o.status.code(), Some(1), "no file yet");

    let value: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let o = mapshare(&["publish", s(&f)], &value);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "published generation 1 (10000 bytes)\n");
    let o = mapshare(&["read", s(&f)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, value, "read gives the bytes exactly");

    let from = dir.path().join("value");
    std::fs::write(&from, b"no newline").unwrap();
    let o = mapshare(&["publish", s(&f), "--from", s(&from)], b"ignored");
    assert_eq!(stderr(&o), "published generation 2 (10 bytes)\n");
    assert_eq!(mapshare(&["read", s(&f)], b"").stdout, b"no newline");
    assert_eq!(
        mapshare(&["read", s(&f), "--generation"], b"").stdout,
        b"2\n"
    );
    // An empty value is a version too.
    let o = mapshare(&["publish", s(&f)], b"");
    assert_eq!(stderr(&o), "published generation 3 (0 bytes)\n");
    assert_eq!(mapshare(&["read", s(&f)], b"").stdout, b"");
}

#[test]
fn read_of_a_file_with_nothing_published_exits_1_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("empty");
    // `watch` creates the file; with a tiny timeout it gives up.
    let o = mapshare(&["watch", s(&f), "--timeout", "10ms"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no new version"), "{}", stderr(&o));
    let o = mapshare(&["read", s(&f)], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nothing has been published yet"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// `watch --count 3` shows three versions published after it started,
/// each whole, newest last; `--exec` gets each one on stdin.
#[test]
fn watch_shows_new_versions_and_runs_a_command_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feed");
    assert!(mapshare(&["publish", s(&f)], b"old\n").status.success());
    let mut watch = Command::new(env!("CARGO_BIN_EXE_mapshare"))
        .args([
            "watch",
            s(&f),
            "--count",
            "3",
            "--timeout",
            "20s",
            "--exec",
            "printf '%s:' \"$MAPSHARE_GENERATION\"; cat; echo",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    // Publish every few milliseconds until it has shown three (it shows
    // only versions newer than the one current when it started).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let lines = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                n += 1;
                let v = format!("v{n}");
                assert!(mapshare(&["publish", s(&f)], v.as_bytes()).status.success());
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let mut lines = Vec::new();
        let mut line = String::new();
        while lines.len() < 3 && out.read_line(&mut line).unwrap() > 0 {
            lines.push(line.trim().to_owned());
            line.clear();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        lines
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(watch.wait().unwrap().success());
    for l in &lines {
        let (g, v) = l.split_once(':').unwrap();
        let g: u64 = g.parse().unwrap();
        assert_eq!(v, format!("v{}", g - 1), "{lines:?}");
    }
    // Generations strictly increase: never an old or repeated version.
    let gens: Vec<u64> = lines
        .iter()
        .map(|l| l.split_once(':').unwrap().0.parse().unwrap())
        .collect();
    assert!(gens.windows(2).all(|w| w[0] < w[1]), "{gens:?}");
}

#[test]
fn info_shows_generation_slots_writer_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("snap");
    assert!(mapshare(&["publish", s(&f), "--capacity", "64KiB"], b"abc")
        .status
        .success());
    let o = mapshare(&["info", s(&f), "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let snap = &v["snapshot"];
    assert_eq!(v["kind"], "snapshot");
    assert_eq!(snap["generation"], 1);
    assert_eq!(snap["value_len"], 3);
    assert_eq!(snap["slots"][0]["capacity"], 65536);
    assert!(snap["writer"].is_null(), "the writer left");
    assert_eq!(snap["readers"].as_array().unwrap().len(), 0);
    let o = mapshare(&["info", s(&f)], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("snapshot:  generation 1, value of 3 bytes"),
        "{text}"
    );
    assert!(text.contains("writer:    none"), "{text}");
    // A bad size is a usage error before anything is touched.
    let o = mapshare(&["publish", s(&f), "--capacity", "1.5KiB"], b"x");
    assert_eq!(o.status.code(), Some(2));
}
