pub mod memory;
pub mod peer;
