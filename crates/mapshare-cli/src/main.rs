//! `mapshare`: inspect, dump, write and share memory-mapped files.
//!
//! A thin layer over the `mapshare` library's public API. Exit codes: 0 on
//! success, 1 on a runtime error (one line on stderr naming the path), 2 on
//! a usage error. Usage errors are found by clap's value parsers (see
//! `units`) before any file is touched, so no argument that could be
//! checked up front reaches the library.

mod bench;
mod bench_log;
mod bench_queue;
mod bench_snapshot;
mod byte;
mod create;
mod demo;
mod dump;
mod hexdump;
mod info;
mod lock;
mod log;
mod repair;
mod snapshot;
mod stream;
mod units;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::{Parser, Subcommand};

/// Share data between processes through memory-mapped files.
///
/// Exit status: 0 on success; 1 on a runtime error (one line on stderr
/// naming the file); 2 on a usage error (a bad argument, found before any
/// file is touched). `lock` exits with its COMMAND's status.
#[derive(Debug, Parser)]
#[command(name = "mapshare", version, about, long_about, propagate_version = true,
    after_help = units::SIZE_AND_DURATION_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the byte at OFFSET of FILE, read through a mapping.
    ///
    /// Never waits: the file is mapped read-only and read at once.
    #[command(after_help = units::SIZE_HELP)]
    Byte {
        /// The file to map.
        file: PathBuf,
        /// Offset of the byte (decimal or 0x hex, units allowed: 4KiB).
        #[arg(value_parser = units::size)]
        offset: u64,
    },
    /// Hex dump of FILE, byte for byte the layout of `xxd -s OFFSET -l LENGTH`.
    ///
    /// Never waits: the file is mapped read-only and read at once.
    #[command(after_help = units::SIZE_HELP)]
    Dump {
        /// The file to map.
        file: PathBuf,
        /// First byte to dump (units allowed).
        #[arg(short = 's', long, default_value = "0", value_parser = units::size)]
        offset: u64,
        /// Bytes to dump (default: to the end); stops at the end of the file.
        #[arg(short = 'l', long, value_parser = units::size)]
        length: Option<u64>,
    },
    /// Write bytes into FILE at OFFSET through a shared mapping.
    ///
    /// Never waits and takes no lock: processes that map the file see the
    /// bytes at once. Never grows the file: a write past its end is refused
    /// and changes nothing.
    #[command(after_help = units::SIZE_HELP)]
    Write {
        /// The file to map (must exist and be long enough).
        file: PathBuf,
        /// Where to write (decimal or 0x hex, units allowed).
        #[arg(value_parser = units::size)]
        offset: u64,
        #[command(flatten)]
        data: write::Data,
        /// Don't msync before exiting.
        #[arg(long)]
        no_sync: bool,
    },
    /// Create a mapshare file: a self-describing header, a lease table and
    /// an object of SIZE bytes.
    ///
    /// Never waits; refuses a path that exists and leaves nothing behind if
    /// it fails.
    #[command(after_help = units::SIZE_HELP)]
    Create {
        /// The file to create (must not exist).
        file: PathBuf,
        /// Bytes of the object (a raw area), at least 1.
        #[arg(long, value_parser = units::nonzero_size, required_unless_present = "queue", conflicts_with = "queue")]
        size: Option<u64>,
        /// Make a queue instead of a raw area.
        #[arg(long, requires = "capacity")]
        queue: bool,
        /// Bytes of the queue's ring: a multiple of 8 from 64 to 2GiB.
        #[arg(long, value_parser = units::queue_capacity)]
        capacity: Option<u64>,
        /// Lease slots: how many processes may be attached at once (1..=1024).
        #[arg(long, default_value_t = mapshare::format::DEFAULT_LEASE_SLOTS, value_parser = units::lease_slots)]
        slots: u32,
        /// Permission bits (octal, 0..=777; setuid, setgid and sticky are refused).
        #[arg(long, default_value = "600", value_parser = units::mode)]
        mode: u32,
    },
    /// Run COMMAND while holding a byte-range lock on FILE (interoperates
    /// with fcntl/lockf users). Exits with COMMAND's status.
    ///
    /// Waits for the range as long as it takes, or gives up after
    /// --timeout (exit 1, COMMAND not run). Then runs COMMAND and holds the
    /// lock until COMMAND exits. SIGTERM, SIGINT and SIGHUP sent to
    /// `mapshare lock` are passed on to COMMAND (Ctrl-C at a terminal
    /// reaches COMMAND directly), and the lock is still held until COMMAND
    /// exits. Exit status: COMMAND's; 128+N if COMMAND died of
    /// signal N; 126 if COMMAND cannot be run, 127 if it is not found.
    #[command(after_help = units::SIZE_AND_DURATION_HELP)]
    Lock {
        /// The file to lock (any file).
        file: PathBuf,
        /// Bytes to lock, START..END (units allowed; default: the whole file).
        #[arg(long, value_parser = lock::parse_range)]
        range: Option<std::ops::Range<u64>>,
        /// Take a shared (read) lock instead of an exclusive one.
        #[arg(long)]
        shared: bool,
        /// Give up after this long (e.g. 500ms, 2s, 2h) and don't run COMMAND.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Send standard input into queue Q, one record per line (or frame).
    ///
    /// Either side may start first, on a new or a reused queue file: the
    /// file is created if missing. Waits for space while the queue is full
    /// (for a consumer, if none is attached yet); with --timeout, gives up
    /// (exit 1) when one record waited that long. Gives up at once if the
    /// queue is full and its consumer is gone. Ends at the end of input.
    #[command(after_help = units::SIZE_AND_DURATION_HELP)]
    Send {
        /// The queue file (created if missing).
        queue: PathBuf,
        /// Records are 4-byte little-endian lengths plus bytes, not lines.
        #[arg(long)]
        frames: bool,
        /// Ring size if the queue is created here (a multiple of 8, 64..=2GiB).
        #[arg(long, default_value = "1MiB", value_parser = units::queue_capacity)]
        capacity: u64,
        /// Give up (exit 1) when a record waited this long for space.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Print records from queue Q, one per line (or frame), until the
    /// producer is gone.
    ///
    /// Either side may start first, on a new or a reused queue file: the
    /// file is created if missing. Waits for records as long as it takes;
    /// ends (exit 0) when the queue is drained and a producer it has seen
    /// has left. Gives up (exit 1) after --timeout without a record, or
    /// when --count N was asked for and fewer came ("got 2 of 5"). Exits 1
    /// if standard output fails: a record is released from the queue only
    /// after it was written, so nothing is lost.
    #[command(after_help = units::SIZE_AND_DURATION_HELP)]
    Recv {
        /// The queue file (created if missing).
        queue: PathBuf,
        /// Stop after N records (at least 1); fewer is an error.
        #[arg(long, value_parser = units::count)]
        count: Option<u64>,
        /// Give up (exit 1) after waiting this long for a record.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
        /// Write 4-byte little-endian lengths plus bytes, not lines.
        #[arg(long)]
        frames: bool,
        /// Ring size if the queue is created here (a multiple of 8, 64..=2GiB).
        #[arg(long, default_value = "1MiB", value_parser = units::queue_capacity)]
        capacity: u64,
    },
    /// Publish standard input (or --from PATH) as the next version of
    /// snapshot FILE; prints `published generation N (B bytes)` on stderr.
    ///
    /// Creates the file if it does not exist. Never waits for readers:
    /// a slot pinned by a slow reader makes the writer add one. Refused
    /// (exit 1) while another live process is the writer.
    #[command(after_help = units::SIZE_HELP)]
    Publish {
        /// The snapshot file (created if missing).
        file: PathBuf,
        /// Read the value from PATH instead of standard input.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Capacity of the first slots if the file is created here
        /// (default: the value's size, at least 4KiB; larger values grow them).
        #[arg(long, value_parser = units::nonzero_size)]
        capacity: Option<u64>,
        /// Permission bits if the file is created (644 lets other users read).
        #[arg(long, default_value = "600", value_parser = units::mode)]
        mode: u32,
    },
    /// Write the current value of snapshot FILE to standard output, exactly,
    /// after checking its checksum.
    ///
    /// Never waits. Exits 1 if nothing has been published yet. Works on a
    /// file this user may only read (it then takes no lease).
    Read {
        /// The snapshot file.
        file: PathBuf,
        /// Print only the generation number.
        #[arg(long)]
        generation: bool,
    },
    /// Wait for each new version of snapshot FILE and write it to standard
    /// output (or run CMD with it on standard input).
    ///
    /// Shows versions newer than the one current when it starts, newest
    /// first: versions published faster than it prints are skipped, never
    /// shown torn or out of order. Stops after --count versions; exits 1
    /// when --timeout passes with no new version. Creates the file if it
    /// does not exist (so it may start before the publisher).
    #[command(after_help = units::SIZE_AND_DURATION_HELP)]
    Watch {
        /// The snapshot file.
        file: PathBuf,
        /// Stop after N versions.
        #[arg(long, value_parser = units::count)]
        count: Option<u64>,
        /// Give up (exit 1) after waiting this long for a new version.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
        /// Run `sh -c CMD` for each version, the value on its standard
        /// input and the generation in MAPSHARE_GENERATION.
        #[arg(long)]
        exec: Option<String>,
    },
    /// Size, pages resident in memory, and what kind of file FILE is.
    ///
    /// Never waits and never changes the file: it is mapped read-only and
    /// no lease is taken. For a value file it shows the mutex: free, held,
    /// owner died, poisoned or not recoverable.
    Info {
        /// The file to inspect.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Repair the mutex of a value file after a person checked its data.
    ///
    /// --mark-consistent clears "owner died" (a holder died mid-update) or
    /// "poisoned" (a holder panicked), taking over a dead holder's lock.
    /// --reset turns "not recoverable" back into a free mutex. Never waits
    /// for the lock (only, up to 5 seconds, for a file still being
    /// created): refuses (exit 1) while a live process holds the lock, or
    /// if the mutex is not in a state that repair applies to. `mapshare info`
    /// shows the state; `mapshare dump` shows the data to check.
    Repair {
        /// The value file (kind `value`).
        file: PathBuf,
        #[command(flatten)]
        how: repair::How,
    },
    /// A narrated tour of the classic mmap examples, done right.
    ///
    /// Runs four short scenes with child processes in a temporary directory
    /// under $TMPDIR (printed as it goes); no child waits more than 5
    /// seconds for its parent. On Ctrl-C (or SIGTERM, SIGHUP) it stops its
    /// children and removes its directory before exiting.
    Demo {
        /// Pause before each scene (and before the kill in scene 3) until
        /// Enter is pressed.
        #[arg(long)]
        step: bool,
    },
    /// Measure a suite against same-run baselines.
    ///
    /// Runs for seconds to minutes (use --quick for a smoke run). Waits
    /// only for its own child processes; a side whose peer is gone gives up
    /// (exit 1) within 30 seconds.
    Bench {
        /// Which suite.
        suite: bench::Suite,
        /// Print one JSON array of figures.
        #[arg(long)]
        json: bool,
        /// Also draw the latency percentiles per transport as SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Fewer rounds (a smoke run, not for reporting).
        #[arg(long)]
        quick: bool,
    },
    /// A persistent broadcast log in a directory: many writers, many
    /// independent readers, durable cursors, retention.
    Log {
        #[command(subcommand)]
        cmd: log::LogCommand,
    },
    /// Internal: the other side of a benchmark.
    #[command(hide = true)]
    BenchChild {
        /// Benchmark arguments.
        args: Vec<String>,
    },
    /// Internal: the child side of a demo scene.
    #[command(hide = true)]
    DemoChild {
        /// Which scene.
        scene: String,
        /// Scene arguments.
        args: Vec<String>,
    },
}

/// A runtime failure: one line for stderr, exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl From<mapshare::Error> for Failure {
    fn from(e: mapshare::Error) -> Self {
        Failure(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(e.to_string())
    }
}

/// Which of the standard descriptors 0, 1 and 2 were closed when the
/// process started (bit `n` for descriptor `n`). Rust's runtime opens
/// `/dev/null` over closed ones before `main` runs, which would make
/// `recv >&-` "write" records into nothing and release them; so this is
/// recorded earlier, from `.init_array`, which the C runtime runs before
/// the Rust runtime starts.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

extern "C" fn record_closed_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the descriptor's flags; no memory is
        // passed, and an unused descriptor number just fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Ordering::Relaxed);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static RECORD_CLOSED_STD_FDS: extern "C" fn() = record_closed_std_fds;

/// Whether standard output was closed when `mapshare` started.
pub fn stdout_was_closed() -> bool {
    CLOSED_AT_START.load(Ordering::Relaxed) & 0b010 != 0
}

/// Fails at once if the command prints data and standard output was
/// closed: it would otherwise write into `/dev/null` and report success.
fn needs_stdout(command: &Command) -> Result<(), Failure> {
    let prints = !matches!(
        command,
        Command::Lock { .. }
            | Command::Send { .. }
            | Command::Publish { .. }
            | Command::BenchChild { .. }
    ) && !matches!(command, Command::Log { cmd } if !log::prints(cmd));
    if prints && stdout_was_closed() {
        return Err(Failure(
            "standard output is closed: nothing was read or changed".into(),
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(Failure(msg)) = needs_stdout(&cli.command) {
        eprintln!("mapshare: {msg}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Byte { file, offset } => byte::run(&file, offset),
        Command::Dump {
            file,
            offset,
            length,
        } => dump::run(&file, offset, length),
        Command::Write {
            file,
            offset,
            data,
            no_sync,
        } => write::run(&file, offset, &data, !no_sync),
        Command::Info { file, json } => info::run(&file, json),
        Command::Publish {
            file,
            from,
            capacity,
            mode,
        } => snapshot::publish(&file, from.as_deref(), capacity, mode),
        Command::Read { file, generation } => snapshot::read(&file, generation),
        Command::Watch {
            file,
            count,
            timeout,
            exec,
        } => snapshot::watch(&file, count, timeout, exec.as_deref()),
        Command::Repair { file, how } => repair::run(&file, &how),
        Command::Create {
            file,
            size,
            queue,
            capacity,
            slots,
            mode,
        } => create::run(
            &file,
            if queue {
                create::What::Queue(capacity.unwrap_or(0))
            } else {
                create::What::Raw(size.unwrap_or(0))
            },
            slots,
            mode,
        ),
        Command::Send {
            queue,
            frames,
            capacity,
            timeout,
        } => stream::send(&queue, capacity, frames, timeout),
        Command::Recv {
            queue,
            count,
            timeout,
            frames,
            capacity,
        } => stream::recv(&queue, capacity, count, timeout, frames),
        Command::Lock {
            file,
            range,
            shared,
            timeout,
            command,
        } => match lock::run(&file, range, shared, timeout, &command) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Demo { step } => demo::run(step),
        Command::Bench {
            suite,
            json,
            plot,
            quick,
        } => bench::run(suite, json, quick, plot.as_deref()),
        Command::Log { cmd } => log::run(cmd),
        Command::BenchChild { args } => bench::child(&args),
        Command::DemoChild { scene, args } => demo::child(&scene, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("mapshare: {msg}");
            ExitCode::from(1)
        }
    }
}
