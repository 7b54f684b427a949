//! One process, one file: windows at any offset, access modes, hints,
//! residency, and every kind of bad input.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::truncate_behind_our_back;
use mapshare::{shm, Access, Error, Flush, Hint, Region, RegionOptions};
use proptest::prelude::*;

const PAGE: u64 = 4096;

fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A window given as a page number plus a small signed delta, so page
/// boundaries come up often.
fn window_strategy(size: u64) -> impl Strategy<Value = (u64, u64)> {
    let pages = size / PAGE;
    (0..=pages, -3i64..=3, 1u64..3 * PAGE, any::<bool>()).prop_filter_map(
        "window inside the file",
        move |(page, delta, len, near_boundary_len)| {
            let offset = (page * PAGE) as i64 + delta;
            if offset < 0 || offset as u64 >= size {
                return None;
            }
            let offset = offset as u64;
            // Half the time, end the window right at a page boundary.
            let len = if near_boundary_len {
                let end = (offset / PAGE + 1 + len % 3) * PAGE;
                end - offset
            } else {
                len
            };
            let len = len.min(size - offset);
            (len > 0).then_some((offset, len))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn windows_read_exactly_what_pread_reads((offset, len) in window_strategy(5 * PAGE + 123)) {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(5 * PAGE as usize + 123);
        let path = file_with(dir.path(), "f", &data);
        let region = RegionOptions::new().access(Access::ReadOnly).window(offset, len).open(&path).unwrap();
        prop_assert_eq!(region.len() as u64, len);
        prop_assert_eq!(region.offset(), offset);
        let mut expected = vec![0u8; len as usize];
        std::fs::File::open(&path).unwrap().read_exact_at(&mut expected, offset).unwrap();
        prop_assert_eq!(region.read_vec(0, len as usize).unwrap(), expected);
        // One past the window is out of bounds, whatever the page rounding.
        let past = region.read_vec(len, 1);
        prop_assert!(matches!(past, Err(Error::OutOfBounds { .. })), "{:?}", past);
    }

    #[test]
    fn window_writes_land_where_pwrite_would((offset, len) in window_strategy(3 * PAGE + 5), seed in any::<u8>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = pattern(3 * PAGE as usize + 5);
        let path = file_with(dir.path(), "f", &data);
        let mut region = RegionOptions::new().window(offset, len).open(&path).unwrap();
        let new: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
        region.write_at(0, &new).unwrap();
        region.flush().unwrap();
        data[offset as usize..(offset + len) as usize].copy_from_slice(&new);
        prop_assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}

#[test]
fn read_only_regions_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "f", b"read only please");
    let mut region = Region::open_read_only(&path).unwrap();
    assert!(matches!(
        region.write_at(0, b"x"),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        // SAFETY: these bytes are accessed only through this atomic view here.
        unsafe { region.atomic_u32(0) },
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(region.as_mut_ptr(), Err(Error::ReadOnly { .. })));
    assert!(matches!(region.grow(100), Err(Error::ReadOnly { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"read only please");
}

#[test]
fn copy_on_write_changes_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(2 * PAGE as usize);
    let path = file_with(dir.path(), "f", &data);
    let mut private = RegionOptions::new()
        .access(Access::CopyOnWrite)
        .open(&path)
        .unwrap();
    private.write_at(10, b"private").unwrap();
    private.flush().unwrap();
    assert_eq!(private.read_vec(10, 7).unwrap(), b"private");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // A shared region of the same file does not see it either.
    let shared = Region::open_read_only(&path).unwrap();
    assert_eq!(shared.read_vec(10, 7).unwrap(), &data[10..17]);
    // And a copy-on-write region cannot grow or discard the file.
    assert!(matches!(
        private.grow(10 * PAGE as usize),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        private.advise(Hint::DontNeed),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "f", &pattern(1000));
    let empty = file_with(dir.path(), "empty", b"");

    assert!(matches!(
        Region::open(dir.path().join("missing")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Region::open_read_only(dir.path()),
        Err(Error::IsDirectory { .. })
    ));
    assert!(matches!(
        Region::open(dir.path()),
        Err(Error::IsDirectory { .. })
    ));
    assert!(matches!(Region::open(&empty), Err(Error::Empty { .. })));
    assert!(matches!(
        Region::open_read_only("/dev/null"),
        Err(Error::NotAFile { .. })
    ));
    // A FIFO is refused at once; opening it must not wait for a writer.
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert!(matches!(
        Region::open_read_only(&fifo),
        Err(Error::NotAFile { .. })
    ));
    assert!(matches!(Region::open(&fifo), Err(Error::NotAFile { .. })));
    assert!(matches!(
        mapshare::SharedFile::open_any(&fifo, std::time::Duration::from_secs(1)),
        Err(Error::NotAFile { .. })
    ));
    assert!(matches!(
        mapshare::queue::Consumer::open_or_create(&fifo, 4096),
        Err(Error::NotAFile { .. })
    ));

    let opts = |offset, len| RegionOptions::new().window(offset, len).open(&path);
    match opts(990, 20) {
        Err(Error::WindowOutOfRange {
            offset: 990,
            len: 20,
            size: 1000,
            origin,
        }) => assert_eq!(origin.as_path(), path),
        other => panic!("{other:?}"),
    }
    assert!(matches!(opts(5000, 1), Err(Error::WindowOutOfRange { .. })));
    assert!(matches!(opts(10, 0), Err(Error::ZeroLength { .. })));
    assert!(matches!(opts(u64::MAX, 2), Err(Error::Overflow { .. })));
    assert!(matches!(
        opts(u64::MAX - 1, 1),
        Err(Error::WindowOutOfRange { .. })
    ));
    assert!(matches!(
        RegionOptions::new().from_offset(1000).open(&path),
        Err(Error::WindowOutOfRange { .. })
    ));

    // The message names the file, the window and the size.
    let msg = opts(990, 20).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("990") && msg.contains("20") && msg.contains("1000"),
        "{msg}"
    );

    // Out-of-bounds access and misaligned atomics.
    let region = Region::open(&path).unwrap();
    assert!(matches!(
        region.read_vec(999, 2),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        region.read_vec(u64::MAX, 1),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        // SAFETY: these bytes are accessed only through this atomic view here.
        unsafe { region.atomic_u32(2) },
        Err(Error::Misaligned { .. })
    ));
    assert!(matches!(
        // SAFETY: these bytes are accessed only through this atomic view here.
        unsafe { region.atomic_u64(4) },
        Err(Error::Misaligned { .. })
    ));
    assert!(matches!(
        // SAFETY: these bytes are accessed only through this atomic view here.
        unsafe { region.atomic_u32(998) },
        Err(Error::OutOfBounds { .. })
    ));
    // SAFETY: these bytes are accessed only through this atomic view here.
    unsafe { region.atomic_u64(8) }.unwrap();

    // A window at an odd offset: alignment is about the address, not the
    // offset in the window.
    let odd = RegionOptions::new().window(3, 100).open(&path).unwrap();
    assert!(matches!(
        // SAFETY: these bytes are accessed only through this atomic view here.
        unsafe { odd.atomic_u32(0) },
        Err(Error::Misaligned { .. })
    ));
    // SAFETY: these bytes are accessed only through this atomic view here.
    unsafe { odd.atomic_u32(1) }.unwrap();

    // Flush and advise ranges are bounds-checked too.
    assert!(matches!(
        region.flush_range(900, 200, Flush::Async),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        region.advise_range(Hint::WillNeed, 1001, 1),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn create_reserves_space_and_refuses_to_clobber() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new");
    let region = Region::create(&path, 3 * PAGE).unwrap();
    assert_eq!(region.len() as u64, 3 * PAGE);
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o600);
    // fallocate reserved real blocks: the file is not sparse.
    assert!(meta.blocks() * 512 >= 3 * PAGE, "{} blocks", meta.blocks());
    assert!(matches!(
        Region::create(&path, PAGE),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Region::create(dir.path().join("zero"), 0),
        Err(Error::ZeroLength { .. })
    ));

    // Open-or-create never shrinks, grows a short file, and honours mode.
    let again = RegionOptions::new().create(PAGE).open(&path).unwrap();
    assert_eq!(again.len() as u64, 3 * PAGE);
    let bigger = RegionOptions::new().create(5 * PAGE).open(&path).unwrap();
    assert_eq!(bigger.len() as u64, 5 * PAGE);
    let shared_path = dir.path().join("group");
    RegionOptions::new()
        .create_new(PAGE)
        .mode(0o640)
        .open(&shared_path)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&shared_path).unwrap().mode() & 0o777,
        0o640
    );
}

#[test]
fn a_full_disk_is_an_error_at_create_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge");
    // Far more than any test machine's free space.
    match Region::create(&path, 1 << 50) {
        Err(Error::NoSpace { len, .. }) => assert_eq!(len, 1 << 50),
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc_efbig()) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Nothing half-made is left behind.
    assert!(!path.exists());
}

/// ext4 refuses sizes past its maximum file size with EFBIG rather than
/// ENOSPC; both are "this will not fit" at create time.
fn libc_efbig() -> i32 {
    27
}

#[test]
fn shm_names_are_validated() {
    for bad in ["", "/", "a/b", "..", ".", "x\0y", &"n".repeat(256)] {
        assert!(
            matches!(shm::path(bad), Err(Error::InvalidName { .. })),
            "{bad:?} accepted"
        );
        assert!(matches!(
            shm::create(bad, 10),
            Err(Error::InvalidName { .. })
        ));
    }
    assert!(shm::path(&"n".repeat(255)).is_ok());
}

#[test]
fn shm_create_open_remove() {
    let name = format!("mapshare-test-{}", std::process::id());
    let mut a = shm::create(&name, 8192).unwrap();
    assert!(matches!(
        shm::create(&name, 8192),
        Err(Error::AlreadyExists { .. })
    ));
    let b = shm::open(&format!("/{name}")).unwrap();
    a.write_at(4000, b"across the name").unwrap();
    assert_eq!(b.read_vec(4000, 15).unwrap(), b"across the name");
    let c = shm::open_or_create(&name, 100).unwrap();
    assert_eq!(c.len(), 8192);
    shm::remove(&name).unwrap();
    // Still mapped after the name is gone.
    assert_eq!(b.read_vec(4000, 15).unwrap(), b"across the name");
    assert!(matches!(shm::open(&name), Err(Error::NotFound { .. })));
    assert!(matches!(shm::remove(&name), Err(Error::NotFound { .. })));
}

/// A file on a real disk (not tmpfs), so the page cache can drop it.
fn disk_file(len: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = file_with(dir.path(), "resident", &pattern(len));
    (dir, path)
}

#[test]
fn residency_follows_prefault_and_dontneed() {
    let (_dir, path) = disk_file(256 * PAGE as usize);
    let region = Region::open(&path).unwrap();
    region.flush().unwrap();
    region.advise(Hint::DontNeed).unwrap();
    let low = region.residency().unwrap();
    assert_eq!(low.total, 256);
    region.prefault().unwrap();
    let high = region.residency().unwrap();
    assert_eq!(high.resident, 256, "after prefault: {high:?}");
    region.advise(Hint::DontNeed).unwrap();
    let dropped = region.residency().unwrap();
    assert!(
        dropped.resident < high.resident / 2,
        "after dontneed: {dropped:?}"
    );
    region.advise(Hint::WillNeed).unwrap();
    // WILLNEED starts asynchronous read-ahead; give it a bounded while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut after = region.residency().unwrap();
    while after.resident <= dropped.resident && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        after = region.residency().unwrap();
    }
    assert!(
        after.resident > dropped.resident,
        "after willneed: {after:?}"
    );
    assert!((0.0..=100.0).contains(&after.percent()));
}

#[test]
fn hints_and_ram_locking_work_on_a_window() {
    let (_dir, path) = disk_file(16 * PAGE as usize);
    let region = RegionOptions::new()
        .window(PAGE + 7, 5 * PAGE)
        .open(&path)
        .unwrap();
    for hint in [
        Hint::Sequential,
        Hint::Random,
        Hint::WillNeed,
        Hint::Normal,
        Hint::DontNeed,
    ] {
        region.advise_range(hint, 10, 3 * PAGE as usize).unwrap();
    }
    // Huge pages need THP support for files; only check it is not a crash.
    let _ = region.advise(Hint::HugePage);
    region.lock_in_ram().unwrap();
    let r = region.residency().unwrap();
    assert_eq!(r.resident, r.total);
    assert_eq!(r.total, 6, "a window of 5 pages at an odd offset spans 6");
    region.unlock_from_ram().unwrap();
    region.flush_range(3, 100, Flush::Async).unwrap();
    region.flush_range(3, 100, Flush::Sync).unwrap();
}

#[test]
fn atomics_are_shared_between_regions_of_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    let a = Region::create(&path, PAGE).unwrap();
    let b = Region::open(&path).unwrap();
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: these bytes are accessed only through this atomic view here.
    unsafe { a.atomic_u64(64) }.unwrap().fetch_add(5, SeqCst);
    // SAFETY: these bytes are accessed only through this atomic view here.
    unsafe { b.atomic_u64(64) }.unwrap().fetch_add(6, SeqCst);
    // SAFETY: these bytes are accessed only through this atomic view here.
    assert_eq!(unsafe { a.atomic_u64(64) }.unwrap().load(SeqCst), 11);
    drop((a, b));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(u64::from_ne_bytes(bytes[64..72].try_into().unwrap()), 11);
}

// ---- No SIGBUS, ever (issue 7, D14) ----

/// Shrinks `path` the way a program that ignores mapshare does: a plain
/// `ftruncate` on its own descriptor, no guard lock.

#[test]
fn reads_and_writes_after_an_outside_truncate_report_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "cut", &pattern(4 * PAGE as usize));
    let mut region = Region::open(&path).unwrap();
    truncate_behind_our_back(&path, PAGE);

    // Without the handler, this read dies with SIGBUS (and the whole test
    // binary with it).
    let mut buf = [0xffu8; 16];
    match region.read_at(2 * PAGE + 5, &mut buf) {
        Err(Error::Truncated {
            expected, actual, ..
        }) => {
            assert_eq!(expected, 4 * PAGE);
            assert_eq!(actual, PAGE);
        }
        other => panic!("read after truncate: {other:?}"),
    }
    // The fault is sticky: even bytes the file still has are not trusted
    // until a refresh.
    assert!(matches!(
        region.read_vec(0, 4),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        region.write_at(3 * PAGE, b"lost"),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(region.check(), Err(Error::Truncated { .. })));
    assert!(matches!(
        region.check_faults(),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(region.refresh(), Err(Error::Truncated { .. })));
    // After the refresh the region maps what is left, and it is intact.
    assert_eq!(region.len(), PAGE as usize);
    assert_eq!(region.read_vec(0, 64).unwrap(), pattern(64));
    region.check().unwrap();
}

#[test]
fn a_write_into_a_vanished_page_reports_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "cutw", &pattern(2 * PAGE as usize));
    let mut region = Region::open(&path).unwrap();
    truncate_behind_our_back(&path, 0);
    match region.write_at(PAGE + 1, b"into the void") {
        Err(Error::Truncated {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (2 * PAGE, 0)),
        other => panic!("write after truncate: {other:?}"),
    }
    // Nothing reached the file.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_window_and_a_copy_on_write_region_survive_an_outside_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "cutwin", &pattern(8 * PAGE as usize));
    let window = RegionOptions::new()
        .access(Access::ReadOnly)
        .window(3 * PAGE + 17, 2 * PAGE)
        .open(&path)
        .unwrap();
    let cow = RegionOptions::new()
        .access(Access::CopyOnWrite)
        .open(&path)
        .unwrap();
    truncate_behind_our_back(&path, 4 * PAGE);
    assert!(matches!(
        window.read_vec(PAGE, 100),
        Err(Error::Truncated { actual, .. }) if actual == 4 * PAGE
    ));
    assert!(matches!(
        cow.read_vec(6 * PAGE, 8),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        window.load_u32(PAGE + 3, std::sync::atomic::Ordering::Relaxed),
        Err(Error::Truncated { .. })
    ));
}

/// Child-process scenarios for the chaining tests: a SIGBUS outside any
/// mapshare mapping must behave as if mapshare were not there. They run in
/// a re-executed test binary because they end the process.
const CHILD: &str = "MAPSHARE_SIGBUS_CHILD";
static FOREIGN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[test]
fn sigbus_child_entry() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    if scenario == "previous-handler" {
        extern "C" fn previous(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
            // 42 only for the foreign fault: mapshare's own must not come here.
            let code = if FOREIGN.load(std::sync::atomic::Ordering::SeqCst) {
                42
            } else {
                41
            };
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: installs a plain SA_SIGINFO handler in this child only.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = previous;
            act.sa_sigaction = f as usize;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
        }
    }
    // A mapshare mapping installs mapshare's handler, and its own fault is
    // handled, not chained.
    let ours = file_with(dir.path(), "ours", &pattern(2 * PAGE as usize));
    let region = Region::open(&ours).unwrap();
    truncate_behind_our_back(&ours, 0);
    assert!(matches!(
        region.read_vec(PAGE, 1),
        Err(Error::Truncated { .. })
    ));
    // A mapping mapshare knows nothing about: its fault is not ours.
    FOREIGN.store(true, std::sync::atomic::Ordering::SeqCst);
    let theirs = file_with(dir.path(), "theirs", &pattern(2 * PAGE as usize));
    let f = std::fs::File::open(&theirs).unwrap();
    let map = memmap2::MmapOptions::new().map_raw_read_only(&f).unwrap();
    truncate_behind_our_back(&theirs, 0);
    // SAFETY: in bounds of the mapping; the read is meant to fault.
    let b = unsafe { std::ptr::read_volatile(map.as_ptr().add(PAGE as usize)) };
    println!("survived a foreign SIGBUS, read {b}");
    std::process::exit(3);
}

fn run_child(scenario: &str) -> std::process::ExitStatus {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigbus_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, scenario)
        .output()
        .unwrap();
    eprintln!(
        "child {scenario}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
}

#[test]
fn a_foreign_sigbus_still_reaches_the_previous_handler() {
    assert_eq!(run_child("previous-handler").code(), Some(42));
}

#[test]
fn a_foreign_sigbus_still_kills_by_default() {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(run_child("default").signal(), Some(libc::SIGBUS));
}

// ---- Special files are never written; files appear whole (D15) ----

fn raw_spec() -> mapshare::Spec {
    mapshare::Spec::new(
        mapshare::Kind::Raw,
        mapshare::Fingerprint::new("tests::d15", 0, 1),
        4096,
    )
}

#[test]
fn files_on_special_file_systems_are_never_opened_for_writing() {
    use mapshare::SharedFile;
    use std::time::Duration;
    // A procfs file this process may write: the thread's name. Before the
    // fix, open_or_create truncated it and wrote a header into it.
    let comm = Path::new("/proc/thread-self/comm");
    let before = std::fs::read(comm).unwrap();
    let special = |r: mapshare::Result<()>, fs: &str| match r {
        Err(Error::SpecialFileSystem { fs: found, .. }) => assert_eq!(found, fs),
        other => panic!("expected SpecialFileSystem({fs}), got {other:?}"),
    };
    special(
        SharedFile::open_or_create(comm, &raw_spec(), |_, _| Ok(())).map(drop),
        "procfs",
    );
    special(
        SharedFile::open_any(comm, Duration::from_millis(10)).map(drop),
        "procfs",
    );
    special(Region::open(comm).map(drop), "procfs");
    special(
        RegionOptions::new().create(4096).open(comm).map(drop),
        "procfs",
    );
    special(
        SharedFile::open_or_create("/proc/self/status", &raw_spec(), |_, _| Ok(())).map(drop),
        "procfs",
    );
    assert_eq!(
        std::fs::read(comm).unwrap(),
        before,
        "the thread name changed"
    );
    let sysfs = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    if sysfs.exists() {
        special(Region::open(sysfs).map(drop), "sysfs");
    }
}

#[test]
fn an_empty_or_foreign_file_is_never_initialized_over() {
    use mapshare::SharedFile;
    let dir = tempfile::tempdir().unwrap();
    let empty = file_with(dir.path(), "empty", b"");
    // Before the fix, an empty file was taken for a new one and
    // initialized.
    assert!(matches!(
        SharedFile::open_or_create(&empty, &raw_spec(), |_, _| Ok(())),
        Err(Error::NotMapshare { .. })
    ));
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    let text = file_with(dir.path(), "text", b"somebody's notes");
    assert!(SharedFile::open_or_create(&text, &raw_spec(), |_, _| Ok(())).is_err());
    assert_eq!(std::fs::read(&text).unwrap(), b"somebody's notes");
}

#[test]
fn a_new_file_gets_its_name_only_when_complete() {
    use mapshare::SharedFile;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whole");
    let mut spec = raw_spec();
    spec.mode = 0o640;
    let file = SharedFile::open_or_create(&path, &spec, |region, header| {
        // Inside the initializer nothing is visible yet, not even a
        // temporary name (O_TMPFILE on this file system).
        assert!(!path.exists(), "visible before it was ready");
        region.write_at(header.object_offset, b"ready")
    })
    .unwrap();
    assert!(file.created());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "mode {mode:o} exceeds the spec's 640");
    assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    let again =
        SharedFile::open_or_create(&path, &spec, |_, _| panic!("initialized twice")).unwrap();
    assert!(!again.created());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

fn shared_value_cut_away() -> mapshare::Result<u64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("value");
    let value = mapshare::Shared::<u64>::open_or_create(&path, &7).unwrap();
    assert_eq!(value.load().unwrap(), 7);
    truncate_behind_our_back(&path, 0);
    // Without the handler, the lock word's page faults and the process
    // dies of SIGBUS here.
    value.load()
}

#[test]
fn a_shared_value_survives_an_outside_truncate() {
    let _ = shared_value_cut_away();
}

#[test]
fn a_shared_value_load_after_an_outside_truncate_reports_truncated() {
    assert!(matches!(
        shared_value_cut_away(),
        Err(Error::Truncated { .. })
    ));
}

/// A cut inside the value's own page: the kernel zeroes the value's last
/// bytes in place and nothing faults. The load must say `Truncated`, not
/// return the zeroed value (it did before the guard page,
/// `SharedFile::check_faults`).
#[test]
fn a_shared_value_cut_inside_its_page_is_truncated_not_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("value");
    let value = mapshare::Shared::<u64>::open_or_create(&path, &u64::MAX).unwrap();
    let f = value.file();
    let end = f.object_offset() + f.object_len();
    assert_ne!(end % PAGE, 0, "the value ends inside a page");
    truncate_behind_our_back(&path, end - 4);
    match value.load() {
        Err(Error::Truncated { .. }) => {}
        other => panic!("load after a cut inside the value: {other:?}"),
    }
}

/// A file with a guard page whose mapping `refresh` cut back past it (an
/// `unsafe` path) stays `Truncated`: the checks said nothing once the
/// guard page was out of reach (found in review).
#[test]
fn a_guarded_file_cut_and_refreshed_stays_truncated() {
    use mapshare::{Fingerprint, Kind, SharedFile, Spec};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    let mut spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 3 * PAGE);
    spec.guard_page = true;
    let mut f = SharedFile::open_or_create(&path, &spec, |_, _| Ok(())).unwrap();
    assert!(f.header().guard_page().is_some());
    f.check_faults().unwrap();
    truncate_behind_our_back(&path, f.object_offset() + PAGE + 100);
    assert!(matches!(f.check_faults(), Err(Error::Truncated { .. })));
    // SAFETY: the region stays this file's mapping; only its view shrinks.
    let refreshed = unsafe { f.region_mut() }.refresh();
    assert!(
        matches!(refreshed, Err(Error::Truncated { .. })),
        "{refreshed:?}"
    );
    for _ in 0..3 {
        assert!(matches!(f.check_faults(), Err(Error::Truncated { .. })));
    }
}

#[test]
fn create_new_never_takes_an_existing_file() {
    use mapshare::SharedFile;
    let dir = tempfile::tempdir().unwrap();
    let empty = file_with(dir.path(), "empty", b"");
    assert!(matches!(
        SharedFile::create_new(&empty, &raw_spec(), |_, _| Ok(())),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    let fresh = dir.path().join("fresh");
    let f = SharedFile::create_new(&fresh, &raw_spec(), |_, _| Ok(())).unwrap();
    assert!(f.created());
    assert!(matches!(
        SharedFile::create_new(&fresh, &raw_spec(), |_, _| Ok(())),
        Err(Error::AlreadyExists { .. })
    ));
    // A failing initializer leaves nothing behind.
    let failed = dir.path().join("failed");
    let err = SharedFile::create_new(&failed, &raw_spec(), |_, _| {
        Err(Error::Unsupported {
            origin: mapshare::Origin::anonymous("test"),
            what: "this",
            why: "the test says so",
        })
    });
    assert!(err.is_err());
    assert!(!failed.exists());
}

#[test]
fn a_fault_is_reported_once_more_by_grow_and_forgotten_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "regrow", &pattern(4 * PAGE as usize));
    let mut region = Region::open(&path).unwrap();
    truncate_behind_our_back(&path, 0);
    assert!(matches!(
        region.read_vec(PAGE, 1),
        Err(Error::Truncated { .. })
    ));
    // Growing would remap and forget the fault: it reports it instead.
    assert!(matches!(
        region.grow(8 * PAGE as usize),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(region.refresh(), Err(Error::Truncated { .. })));
    assert!(region.is_empty());
    region.check_faults().unwrap();
}

#[test]
fn threads_fault_at_once_while_other_regions_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let cut = file_with(dir.path(), "cut", &pattern(64 * PAGE as usize));
    let steady = file_with(dir.path(), "steady", &pattern(4 * PAGE as usize));
    let region = Region::open(&cut).unwrap();
    truncate_behind_our_back(&cut, 0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let region = &region;
            s.spawn(move || {
                for page in 0..64 {
                    let at = ((page + t * 16) % 64) * PAGE + t;
                    assert!(matches!(
                        region.read_vec(at, 8),
                        Err(Error::Truncated { .. })
                    ));
                }
            });
        }
        // Registrations churn while the handler runs on other threads.
        s.spawn(|| {
            for _ in 0..200 {
                let r = Region::open_read_only(&steady).unwrap();
                assert_eq!(
                    r.read_vec(PAGE, 4).unwrap(),
                    pattern(2 * PAGE as usize)[PAGE as usize..][..4]
                );
            }
        });
    });
}

/// The `Key:` field, in kB, of the `/proc/self/smaps` entry that maps
/// `addr`.
fn smaps_kb(addr: usize, key: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix(key) {
                return rest
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches(" kB")
                    .parse()
                    .unwrap();
            }
        }
    }
    panic!("no smaps entry with {key} maps {addr:#x}");
}

#[test]
fn prefault_write_maps_every_page_writable_and_changes_no_data() {
    let (_dir, path) = disk_file(256 * PAGE as usize);
    let region = Region::open(&path).unwrap();
    region.flush().unwrap();
    region.advise(Hint::DontNeed).unwrap();
    let addr = region.as_ptr() as usize;
    assert!(smaps_kb(addr, "Rss") < 256 * PAGE / 1024 / 2);
    region.prefault_write().unwrap();
    // Mapped (Rss) and dirty: the pages were faulted in for writing, so
    // the writes that follow take no fault.
    let kb = 256 * PAGE / 1024;
    assert_eq!(smaps_kb(addr, "Rss"), kb);
    let dirty = smaps_kb(addr, "Shared_Dirty") + smaps_kb(addr, "Private_Dirty");
    assert_eq!(dirty, kb, "pages populated for writing are dirty");
    assert_eq!(
        region.read_vec(0, 256 * PAGE as usize).unwrap(),
        pattern(256 * PAGE as usize)
    );
    drop(region);
    let ro = Region::open_read_only(&path).unwrap();
    assert!(matches!(
        ro.prefault_write(),
        Err(mapshare::Error::ReadOnly { .. })
    ));
    assert!(matches!(
        ro.prefault_write_range(0, 1),
        Err(mapshare::Error::ReadOnly { .. })
    ));
}

/// Checks `populate`'s bounds on a 64-page file region none of whose
/// pages is mapped (past the end: `OutOfBounds`; empty at the end: fine),
/// then runs it from the middle of page 8 to the middle of page 12.
/// Returns the region (with its directory) and the resident KiB it had
/// before that run.
fn populate_middle(
    populate: fn(&Region, u64, usize) -> mapshare::Result<()>,
) -> (tempfile::TempDir, Region, u64) {
    let (dir, path) = disk_file(64 * PAGE as usize);
    let region = Region::open(&path).unwrap();
    region.flush().unwrap();
    region.advise(Hint::DontNeed).unwrap();
    assert!(matches!(
        populate(&region, 60 * PAGE, 5 * PAGE as usize),
        Err(mapshare::Error::OutOfBounds { .. })
    ));
    populate(&region, 64 * PAGE, 0).unwrap();
    let before = smaps_kb(region.as_ptr() as usize, "Rss");
    populate(&region, 8 * PAGE + 100, 4 * PAGE as usize).unwrap();
    (dir, region, before)
}

#[test]
fn prefault_write_range_maps_only_its_pages() {
    let (_dir, region, before) = populate_middle(Region::prefault_write_range);
    let addr = region.as_ptr() as usize;
    let dirty = smaps_kb(addr, "Shared_Dirty") + smaps_kb(addr, "Private_Dirty");
    assert_eq!(dirty, 5 * PAGE / 1024, "exactly pages 8..=12");
    assert!(smaps_kb(addr, "Rss") <= before + 5 * PAGE / 1024);
    assert_eq!(
        region.read_vec(0, 64 * PAGE as usize).unwrap(),
        pattern(64 * PAGE as usize)
    );
}

#[test]
fn prefault_range_maps_only_its_pages_and_dirties_none() {
    let (_dir, region, before) = populate_middle(Region::prefault_range);
    let addr = region.as_ptr() as usize;
    // At least pages 8..=12; the kernel's fault-around (64 KiB) may map
    // their cached neighbours too, but not the whole region.
    let grew = smaps_kb(addr, "Rss") - before;
    assert!(
        (5 * PAGE / 1024..=32 * PAGE / 1024).contains(&grew),
        "{grew} KiB"
    );
    let dirty = smaps_kb(addr, "Shared_Dirty") + smaps_kb(addr, "Private_Dirty");
    assert_eq!(dirty, 0, "a file's pages are mapped for reading");
}

/// A memfd has no size limit of its own: reserving more than the machine
/// has would run until the OOM killer stopped this process (and others).
#[test]
fn an_anonymous_region_larger_than_memory_is_no_space_at_once() {
    let huge = (mapshare::unstable::sys::memory_and_swap() as usize).saturating_add(1 << 30);
    assert!(matches!(
        Region::anonymous(huge),
        Err(mapshare::Error::NoSpace { .. })
    ));
    let mut r = Region::anonymous(4096).unwrap();
    assert!(matches!(r.grow(huge), Err(mapshare::Error::NoSpace { .. })));
    assert_eq!(r.len(), 4096, "a refused grow leaves the region as it was");
}

#[test]
fn setuid_setgid_and_sticky_modes_are_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o4600, 0o2600, 0o1600, 0o10000] {
        let path = dir.path().join(format!("m{mode:o}"));
        let got = Region::options().create_new(64).mode(mode).open(&path);
        assert!(
            matches!(
                got,
                Err(mapshare::Error::InvalidArgument {
                    what: "file mode",
                    ..
                })
            ),
            "{mode:o}: {got:?}"
        );
        assert!(!path.exists(), "nothing was made for {mode:o}");
    }
}
