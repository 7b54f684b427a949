//! The Python package's tests, run by the README's one test command
//! (`cargo test`): makes a virtual environment in `target/pyenv` with
//! what `crates/mapshare-py/requirements-test.txt` lists (maturin, pytest,
//! numpy), installs the package with `pip install ./crates/mapshare-py`
//! (maturin builds it, in `target/py`, a target directory of its own so
//! that it never waits for the lock this `cargo test` holds), then runs
//! pytest over `crates/mapshare-py/tests`. The tests get the `mapshare`
//! CLI of this build in `MAPSHARE_BIN`.
//!
//! Set `MAPSHARE_PYTEST_ARGS` to pass arguments to pytest (e.g. `-k queue`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{what} failed ({status}): {cmd:?}");
}

/// The venv's python, made (or brought up to date with the requirements)
/// if needed.
fn venv(root: &Path) -> PathBuf {
    let env = root.join("target/pyenv");
    let python = env.join("bin/python");
    let reqs = root.join("crates/mapshare-py/requirements-test.txt");
    let wanted = std::fs::read_to_string(&reqs).expect("requirements-test.txt");
    let stamp = env.join("mapshare-requirements.txt");
    if !python.exists() {
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(base).args(["-m", "venv"]).arg(&env),
            "creating the virtual environment",
        );
    }
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&reqs),
            "installing the test requirements",
        );
        std::fs::write(&stamp, &wanted).expect("write the requirements stamp");
    }
    python
}

#[test]
fn python_package() {
    let root = workspace();
    let python = venv(&root);
    let bin = root.join("target/pyenv/bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // `pip install ./crates/mapshare-py`, as the README says, with the
    // venv's maturin (no build isolation: nothing is downloaded twice).
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-build-isolation",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(root.join("crates/mapshare-py"))
            .env("PATH", &path)
            .env("VIRTUAL_ENV", root.join("target/pyenv"))
            .env("CARGO_TARGET_DIR", root.join("target/py")),
        "building and installing the Python package",
    );
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("crates/mapshare-py/tests"))
        .env("MAPSHARE_BIN", env!("CARGO_BIN_EXE_mapshare"))
        .env("PATH", &path)
        .current_dir(root.join("crates/mapshare-py/tests"));
    if let Ok(extra) = std::env::var("MAPSHARE_PYTEST_ARGS") {
        pytest.args(extra.split_whitespace());
    }
    run(&mut pytest, "the Python tests");
}
