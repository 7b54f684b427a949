//! `mapshare`: inspect, dump, write and share memory-mapped files.
//!
//! A thin layer over the `mapshare` library's public API. Exit codes: 0 on
//! success, 1 on a runtime error (one line on stderr naming the path), 2 on
//! a usage error.

mod bench;
mod bench_queue;
mod byte;
mod create;
mod demo;
mod dump;
mod hexdump;
mod info;
mod lock;
mod stream;
mod units;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Share data between processes through memory-mapped files.
#[derive(Debug, Parser)]
#[command(name = "mapshare", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the byte at OFFSET of FILE, read through a mapping.
    Byte {
        /// The file to map.
        file: PathBuf,
        /// Offset of the byte (decimal or 0x hex).
        #[arg(value_parser = units::number)]
        offset: u64,
    },
    /// Hex dump of FILE, byte for byte the layout of `xxd -s OFFSET -l LENGTH`.
    Dump {
        /// The file to map.
        file: PathBuf,
        /// First byte to dump.
        #[arg(short = 's', long, default_value = "0", value_parser = units::number)]
        offset: u64,
        /// Bytes to dump (default: to the end); stops at the end of the file.
        #[arg(short = 'l', long, value_parser = units::size)]
        length: Option<u64>,
    },
    /// Write bytes into FILE at OFFSET through a shared mapping.
    Write {
        /// The file to map (must exist and be long enough).
        file: PathBuf,
        /// Where to write (decimal or 0x hex).
        #[arg(value_parser = units::number)]
        offset: u64,
        #[command(flatten)]
        data: write::Data,
        /// Don't msync before exiting.
        #[arg(long)]
        no_sync: bool,
    },
    /// Create a mapshare file: a self-describing header, a lease table and
    /// an object of SIZE bytes.
    Create {
        /// The file to create (must not exist).
        file: PathBuf,
        /// Bytes of the object (a raw area).
        #[arg(long, value_parser = units::size, required_unless_present = "queue", conflicts_with = "queue")]
        size: Option<u64>,
        /// Make a queue instead of a raw area.
        #[arg(long, requires = "capacity")]
        queue: bool,
        /// Bytes of the queue's ring.
        #[arg(long, value_parser = units::size)]
        capacity: Option<u64>,
        /// Lease slots: how many processes may be attached at once.
        #[arg(long, default_value_t = mapshare::format::DEFAULT_LEASE_SLOTS)]
        slots: u32,
        /// Permission bits (octal).
        #[arg(long, default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Run COMMAND while holding a byte-range lock on FILE (interoperates
    /// with fcntl/lockf users). Exits with COMMAND's status.
    Lock {
        /// The file to lock (any file).
        file: PathBuf,
        /// Bytes to lock, START..END (default: the whole file).
        #[arg(long, value_parser = lock::parse_range)]
        range: Option<std::ops::Range<u64>>,
        /// Take a shared (read) lock instead of an exclusive one.
        #[arg(long)]
        shared: bool,
        /// Give up after this long (e.g. 500ms, 2s) and don't run COMMAND.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Send standard input into queue Q, one record per line (or frame).
    Send {
        /// The queue file (created if missing).
        queue: PathBuf,
        /// Records are 4-byte little-endian lengths plus bytes, not lines.
        #[arg(long)]
        frames: bool,
        /// Ring size if the queue is created here.
        #[arg(long, default_value = "1MiB", value_parser = units::size)]
        capacity: u64,
    },
    /// Print records from queue Q, one per line (or frame), until the
    /// producer is gone.
    Recv {
        /// The queue file (created if missing).
        queue: PathBuf,
        /// Stop after N records.
        #[arg(long, value_parser = units::number)]
        count: Option<u64>,
        /// Give up (exit 1) after waiting this long for a record.
        #[arg(long, value_parser = units::duration)]
        timeout: Option<std::time::Duration>,
        /// Write 4-byte little-endian lengths plus bytes, not lines.
        #[arg(long)]
        frames: bool,
        /// Ring size if the queue is created here.
        #[arg(long, default_value = "1MiB", value_parser = units::size)]
        capacity: u64,
    },
    /// Size, pages resident in memory, and what kind of file FILE is.
    Info {
        /// The file to inspect.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A narrated tour of the classic mmap examples, done right.
    Demo,
    /// Measure a suite against same-run baselines: lock, wake, queue.
    Bench {
        /// Which suite.
        suite: String,
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

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 600"))
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        } => stream::send(&queue, capacity, frames),
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
        Command::Demo => demo::run(),
        Command::Bench {
            suite,
            json,
            plot,
            quick,
        } => bench::run(&suite, json, quick, plot.as_deref()),
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
