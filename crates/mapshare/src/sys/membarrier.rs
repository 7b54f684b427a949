//! `membarrier(2)`: the heavy half of an asymmetric fence.
//!
//! A process registers once with
//! `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`; afterwards any process may
//! call `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, which returns only after every
//! CPU running a thread of a registered process has executed a full memory
//! barrier (CPUs that run none of them pass through one when they switch
//! to one). A registered process can therefore replace a fence on its hot
//! path with a compiler fence, as long as the other side calls
//! [`global_expedited`] where it would have fenced.

use std::io;

use rustix::thread::{membarrier, MembarrierCommand};

/// Registers this process for expedited global barriers
/// (`membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0)`). Fails with
/// `EINVAL` on kernels before 4.16 and `EPERM`/`ENOSYS` where a seccomp
/// filter forbids the call. Idempotent. Whether a forked child inherits
/// the registration has varied between kernels (6.18 keeps it), and
/// `exec` drops it; callers register at every attach, so neither matters.
pub fn register_global_expedited() -> io::Result<()> {
    membarrier(MembarrierCommand::RegisterGlobalExpedited).map_err(io::Error::from)
}

/// Issues a full memory barrier on every CPU that runs a registered
/// process (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0)`). Costs an
/// inter-processor interrupt per such CPU: about a microsecond when the
/// registered peers sleep, ten on this kind of virtual machine when one
/// runs.
pub fn global_expedited() -> io::Result<()> {
    membarrier(MembarrierCommand::GlobalExpedited).map_err(io::Error::from)
}
