pub mod memory;
pub mod old_kernel;
pub mod peer;
