//! `mapshare log` as scripts use it: create, append lines and frames,
//! tail with every start option, durable cursors, retention reported
//! with the exact count, info as text and JSON.

mod common;

use std::process::Output;

fn mapshare(args: &[&str], input: &[u8]) -> Output {
    common::run_with_input(args, input)
}

fn ok(args: &[&str], input: &[u8]) -> String {
    let o = mapshare(args, input);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn append_then_tail_lines_frames_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("lg");
    let d = d.to_str().unwrap();
    // `append` creates the log with defaults.
    ok(&["log", "append", d], b"one\ntwo\n\nfour");
    assert_eq!(ok(&["log", "tail", d], b""), "one\ntwo\n\nfour\n");
    assert_eq!(
        ok(
            &["log", "tail", d, "--from", "1", "--seq", "--count", "2"],
            b""
        ),
        "1\ttwo\n2\t\n"
    );
    ok(&["log", "append", d, "--frames"], b"\x03\0\0\0abc");
    assert_eq!(
        ok(&["log", "tail", d, "--from", "4", "--frames"], b""),
        "\x03\0\0\0abc"
    );
    // -f starts at the end: nothing comes within the timeout.
    assert_eq!(ok(&["log", "tail", d, "-f", "--timeout", "50ms"], b""), "");
    // A bad frame is refused.
    let o = mapshare(&["log", "append", d, "--frames"], b"\x09\0\0\0ab");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_durable_cursor_resumes_where_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("lg");
    let d = d.to_str().unwrap();
    ok(&["log", "create", d], b"");
    ok(&["log", "append", d], b"a\nb\nc\n");
    assert_eq!(
        ok(&["log", "tail", d, "--cursor", "x", "--count", "2"], b""),
        "a\nb\n"
    );
    assert_eq!(
        ok(&["log", "tail", d, "--cursor", "x", "--seq"], b""),
        "2\tc\n"
    );
    let info = ok(&["log", "info", d, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["first_seq"], 0);
    assert_eq!(v["last_seq"], 2);
    assert_eq!(v["cursors"][0]["name"], "x");
    assert_eq!(v["cursors"][0]["position"], 3);
    assert_eq!(v["cursors"][0]["lag"], 0);
    assert!(ok(&["log", "info", d], b"").contains("x: position 3, lag 0"));
}

#[test]
fn records_lost_to_retention_are_counted_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("lg");
    let d = d.to_str().unwrap();
    ok(
        &["log", "create", d, "--segment", "4KiB", "--retain", "40KiB"],
        b"",
    );
    let lines: String = (0..3000).map(|i| format!("{i}\n")).collect();
    ok(&["log", "append", d], lines.as_bytes());
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["log", "info", d, "--json"], b"")).unwrap();
    let first = v["first_seq"].as_u64().unwrap();
    assert!(first > 0, "retention deleted nothing: {v}");
    let o = mapshare(&["log", "tail", d, "--from", "0", "--count", "1"], b"");
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{first}\n"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "{first} records were lost to retention; resuming at {first}"
        )),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
