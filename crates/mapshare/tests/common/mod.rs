pub mod memory;
pub mod old_kernel;
pub mod peer;

/// Cuts the file at `path` to `len` bytes as a program that ignores
/// mapshare does: `ftruncate` on a descriptor of its own, no lock taken.
#[allow(dead_code)]
pub fn truncate_behind_our_back(path: impl AsRef<std::path::Path>, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path.as_ref())
        .unwrap()
        .set_len(len)
        .unwrap();
}
