//! Two real processes sharing one mapping: writes both ways, an anonymous
//! region inherited by a child, a grow seen by the other side, a refused
//! shrink, and a truncation behind our back.

mod common;

use std::sync::atomic::Ordering;

use common::peer::{hex, unhex, Peer, ENV};
use mapshare::{Error, Refresh, Region, RegionOptions};

/// Entry point of the peer process (does nothing in a normal test run).
#[test]
fn peer_entry() {
    if std::env::var_os(ENV).is_some() {
        common::peer::serve();
    }
}

fn temp_file(len: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared");
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    (dir, path)
}

#[test]
fn writes_are_seen_both_ways() {
    let (_dir, path) = temp_file(3 * 4096 + 17);
    let mut mine = Region::open(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} rw", path.display()));

    // Parent writes across a page boundary; the peer sees it at once.
    mine.write_at(4090, b"hello, peer!").unwrap();
    assert_eq!(unhex(&peer.ok("read 4090 12")), b"hello, peer!");

    // Peer writes; the parent sees it without remapping.
    peer.ok(&format!("write 8190 {}", hex(b"hi parent")));
    assert_eq!(mine.read_vec(8190, 9).unwrap(), b"hi parent");
}

#[test]
fn windows_at_odd_offsets_share_bytes() {
    let (_dir, path) = temp_file(4 * 4096);
    let mine = RegionOptions::new().window(4095, 10).open(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("window {} rw 4093 8", path.display()));
    peer.ok(&format!("write 2 {}", hex(b"XYZ")));
    // Peer's offset 2 is file offset 4095, our offset 0.
    assert_eq!(mine.read_vec(0, 3).unwrap(), b"XYZ");
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[4095..4098], b"XYZ");
}

#[test]
fn anonymous_region_is_shared_with_a_child() {
    let mut region = Region::anonymous(8192).unwrap();
    let mut peer = Peer::spawn_with(|cmd| region.share_with(cmd, "TEST_REGION_FD"));
    peer.ok("inherit TEST_REGION_FD");
    assert_eq!(peer.ok("len"), "8192");

    region.write_at(100, b"from the parent").unwrap();
    assert_eq!(unhex(&peer.ok("read 100 15")), b"from the parent");

    peer.ok(&format!("write 5000 {}", hex(b"from the child")));
    assert_eq!(region.read_vec(5000, 14).unwrap(), b"from the child");

    // A futex hand-off across the processes: the peer waits for 7.
    // SAFETY: bytes 0..4 are only this futex word in this process.
    let word = unsafe { region.atomic_u32(0) }.unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| peer.ok("wait32 0 7"));
        word.store(7, Ordering::Release);
        mapshare::unstable::sys::futex::wake_all(word).unwrap();
        waiter.join().unwrap();
    });
}

#[test]
fn anonymous_region_cannot_shrink() {
    let mut region = Region::anonymous(8192).unwrap();
    assert!(matches!(
        region.shrink(4096),
        Err(Error::Unsupported { .. })
    ));
    // The seal holds against anyone with the descriptor, too.
    assert!(region.file().set_len(4096).is_err());
    assert_eq!(region.file_len().unwrap(), 8192);
}

#[test]
fn grow_is_seen_after_refresh() {
    let (_dir, path) = temp_file(4096);
    let mut mine = Region::open(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} rw", path.display()));

    mine.grow(3 * 4096).unwrap();
    mine.write_at(3 * 4096 - 5, b"tail!").unwrap();
    assert_eq!(peer.ok("len"), "4096");
    assert_eq!(peer.ok("refresh"), "Grown { from: 4096, to: 12288 }");
    assert_eq!(unhex(&peer.ok("read 12283 5")), b"tail!");
    assert_eq!(peer.ok("refresh"), "Unchanged");

    // The other way round.
    peer.ok("grow 20000");
    assert_eq!(
        mine.refresh().unwrap(),
        Refresh::Grown {
            from: 12288,
            to: 20000
        }
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 20000);
}

#[test]
fn shrink_is_refused_while_another_process_maps_the_file() {
    let (_dir, path) = temp_file(4 * 4096);
    let mut mine = Region::open(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} ro", path.display()));

    match mine.shrink(4096) {
        Err(Error::Busy { .. }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(mine.len(), 4 * 4096);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * 4096);
    // The peer can still read its whole mapping: nothing was cut.
    assert_eq!(peer.ok("read 16383 1").len(), 2);

    // Once the peer unmaps, the shrink goes through.
    peer.ok("close");
    mine.shrink(4096).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    assert_eq!(mine.len(), 4096);

    // Mapping again sees the new size.
    peer.ok(&format!("open {} ro", path.display()));
    assert_eq!(peer.ok("len"), "4096");
}

#[test]
fn shrink_by_the_peer_is_refused_while_we_map() {
    let (_dir, path) = temp_file(4 * 4096);
    let _mine = Region::open_read_only(&path).unwrap();
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} rw", path.display()));
    assert_eq!(peer.cmd("shrink 100"), Err("Busy".into()));
    assert_eq!(peer.ok("len"), "16384");
}

#[test]
fn truncation_behind_our_back_is_reported() {
    let (_dir, path) = temp_file(4 * 4096);
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} ro", path.display()));
    peer.ok("check");

    // Somebody who does not play by mapshare's rules cuts the file.
    common::truncate_behind_our_back(&path, 5000);

    assert_eq!(peer.cmd("check"), Err("Truncated".into()));
    assert_eq!(peer.cmd("refresh"), Err("Truncated".into()));
    // The view was cut back to what remains: reading past it is a typed
    // error, not SIGBUS.
    assert_eq!(peer.ok("len"), "5000");
    assert_eq!(peer.cmd("read 6000 1"), Err("OutOfBounds".into()));
    assert_eq!(peer.ok("read 4999 1"), hex(&[(4999 % 251) as u8]));
    peer.ok("check");

    // A window that now lies past the end cannot even be opened.
    assert_eq!(
        peer.cmd(&format!("window {} ro 8000 10", path.display())),
        Err("WindowOutOfRange".into())
    );
}

#[test]
fn a_peer_reading_a_page_cut_behind_its_back_gets_truncated_not_sigbus() {
    let (_dir, path) = temp_file(4 * 4096);
    let mut peer = Peer::spawn();
    peer.ok(&format!("open {} rw", path.display()));
    common::truncate_behind_our_back(&path, 4096);
    // No check first: the read itself hits the vanished page. Without the
    // SIGBUS handler the peer dies here.
    assert_eq!(peer.cmd("read 9000 4"), Err("Truncated".into()));
    assert_eq!(peer.cmd("write 9000 00ff"), Err("Truncated".into()));
    assert_eq!(peer.cmd("refresh"), Err("Truncated".into()));
    assert_eq!(peer.ok("len"), "4096");
    assert_eq!(peer.ok("read 4095 1"), hex(&[(4095 % 251) as u8]));
}

/// The environment variable that makes `sigbus_sent_child` act: it names
/// the disposition to set before mapping (`ign` or `dfl`) and the file.
const SIGBUS_CHILD: &str = "MAPSHARE_SIGBUS_CHILD";

/// Child half of `a_sent_sigbus_keeps_the_previous_disposition` (does
/// nothing in a normal test run): sets SIGBUS's disposition, maps a file
/// (which installs mapshare's handler over it), then sends itself SIGBUS
/// with `raise` (as `kill -BUS` would, not a fault).
#[test]
fn sigbus_sent_child() {
    let Some(arg) = std::env::var_os(SIGBUS_CHILD) else {
        return;
    };
    let arg = arg.into_string().unwrap();
    let (mode, path) = arg.split_once(':').unwrap();
    let disposition = if mode == "ign" {
        libc::SIG_IGN
    } else {
        libc::SIG_DFL
    };
    // SAFETY: setting a standard disposition; no handler code involved.
    unsafe { libc::signal(libc::SIGBUS, disposition) };
    let _region = Region::open(path).unwrap();
    // SAFETY: sends a signal to this thread; what happens is the test.
    unsafe { libc::raise(libc::SIGBUS) };
}

/// A SIGBUS sent by another process (not a fault in a mapping) meets the
/// disposition the program had before mapshare installed its handler: an
/// ignored one stays ignored, a default one still kills.
#[test]
fn a_sent_sigbus_keeps_the_previous_disposition() {
    use std::os::unix::process::ExitStatusExt;
    let (_dir, path) = temp_file(4096);
    let run = |mode: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sigbus_sent_child", "--test-threads=1", "-q"])
            .env(SIGBUS_CHILD, format!("{mode}:{}", path.display()))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    let ignored = run("ign");
    assert!(
        ignored.success(),
        "an ignored SIGBUS sent with kill must stay ignored: {ignored:?}"
    );
    let default = run("dfl");
    assert_eq!(
        default.signal(),
        Some(libc::SIGBUS),
        "a default SIGBUS sent with kill must still kill: {default:?}"
    );
}
