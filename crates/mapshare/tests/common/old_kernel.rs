//! Running code as on a kernel without `MADV_POPULATE_READ`/`_WRITE`
//! (before 5.14): a seccomp filter on one thread makes those advices fail
//! with `EINVAL`, as such a kernel does.

#![allow(dead_code)]

/// Runs `f` on a new thread on which `madvise(MADV_POPULATE_READ)` and
/// `madvise(MADV_POPULATE_WRITE)` fail with `EINVAL` (seccomp filters
/// and `no_new_privs` belong to the thread that sets them, and to its
/// children: the test's other threads are unaffected). `None` if this
/// system cannot install the filter (no seccomp filtering, or a sandbox
/// that forbids it): the caller then has nothing to test.
pub fn without_populate_advice<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        s.spawn(|| match install_filter() {
            Ok(()) => Some(f()),
            Err(e) => {
                eprintln!("seccomp filter not installed ({e}): nothing to test here");
                None
            }
        })
        .join()
        .expect("the filtered thread")
    })
}

fn install_filter() -> std::io::Result<()> {
    const MADV_POPULATE_READ: u32 = 22;
    const MADV_POPULATE_WRITE: u32 = 23;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    // struct seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8 * i (the
    // low half first, on little-endian x86-64).
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut program = [
        stmt(load, 4),
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(load, 0),
        jump(libc::SYS_madvise as u32, 0, 4),
        stmt(load, 32),
        jump(MADV_POPULATE_READ, 1, 0),
        jump(MADV_POPULATE_WRITE, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `prog` points at a filter that lives
    // until the call returns (the kernel copies it).
    let ok = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
