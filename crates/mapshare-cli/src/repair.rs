//! `mapshare repair FILE (--mark-consistent | --reset)`: the deliberate way
//! out of a stuck recovery state, after a person checked the data.
//!
//! A value file's mutex is "owner died" when a holder died mid-update, or
//! "poisoned" when one panicked, until a locker repairs the data and calls
//! `mark_consistent`. A locker that gives up instead leaves it "not
//! recoverable": every lock fails, for good. A program cannot know that the
//! data is right; a person can (`mapshare dump`, `mapshare info`), and then
//! says so here. The library does the work (`mapshare::shared::repair`);
//! this command only reports the state it leaves.

use std::path::Path;

use mapshare::shared::Repair;

use crate::Failure;

/// Which way out.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct How {
    /// Clear "owner died" or "poisoned": the data was checked and is
    /// consistent.
    #[arg(long)]
    mark_consistent: bool,
    /// Turn "not recoverable" back into a usable, free mutex (the data was
    /// checked, or will be overwritten).
    #[arg(long)]
    reset: bool,
}

pub fn run(file: &Path, how: &How) -> Result<(), Failure> {
    let repair = if how.reset {
        Repair::Reset
    } else {
        Repair::MarkConsistent
    };
    let state = mapshare::shared::repair(file, repair)?;
    println!("{}: mutex is now {state}", file.display());
    Ok(())
}
