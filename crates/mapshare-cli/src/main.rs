//! `mapshare`: inspect, dump, write and share memory-mapped files.
//!
//! A thin layer over the `mapshare` library's public API. Exit codes: 0 on
//! success, 1 on a runtime error (one line on stderr naming the path), 2 on
//! a usage error.

mod byte;
mod demo;
mod dump;
mod hexdump;
mod info;
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
        Command::Demo => demo::run(),
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
