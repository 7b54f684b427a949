//! The exception hierarchy: one Python class per `mapshare::Error`
//! variant, all under `mapshare.Error`, with the Rust message and the
//! variant's fields as attributes (`path` on every error about a file).

use mapshare::Error as RustError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    mapshare,
    Error,
    PyException,
    "Base of every mapshare error. `path` names the file (or `memfd:...` for an anonymous object) when the error is about one; the other attributes are the fields of the Rust `mapshare::Error` variant of the same name."
);

/// Declares one exception class per variant, under `Error`.
macro_rules! variants {
    ($($name:ident),* $(,)?) => {
        $(pyo3::create_exception!(mapshare, $name, Error);)*

        /// Adds every exception class to the module.
        pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            m.add("Error", py.get_type::<Error>())?;
            $(m.add(stringify!($name), py.get_type::<$name>())?;)*
            m.add("InvalidArgument", invalid_argument(py)?)?;
            Ok(())
        }
    };
}

variants!(
    NotFound,
    IsDirectory,
    NotAFile,
    Empty,
    PermissionDenied,
    AlreadyExists,
    WindowOutOfRange,
    Overflow,
    ZeroLength,
    OutOfBounds,
    Misaligned,
    ReadOnly,
    Busy,
    Lagged,
    Truncated,
    NoSpace,
    InvalidName,
    Unsupported,
    SpecialFileSystem,
    NotMapshare,
    ByteOrderMismatch,
    UnsupportedVersion,
    WrongKind,
    TypeMismatch,
    BadChecksum,
    Corrupted,
    Timeout,
    LeaseTableFull,
    LeaseSlotsBlocked,
    OwnerDied,
    Poisoned,
    NotRecoverable,
    RepairNotApplicable,
    ForkedChild,
    RoleTaken,
    Disconnected,
    PeerDied,
    Deleted,
    TooLarge,
    Io,
);

/// `mapshare.InvalidArgument`: a `mapshare.Error` and a `ValueError`
/// (a bad argument, found before anything was touched), made once with
/// both bases (PyO3's exception macro takes one).
static INVALID_ARGUMENT: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> =
    pyo3::sync::PyOnceLock::new();

fn invalid_argument(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    INVALID_ARGUMENT
        .get_or_try_init(py, || {
            let bases = pyo3::types::PyTuple::new(
                py,
                [
                    py.get_type::<Error>(),
                    py.get_type::<pyo3::exceptions::PyValueError>(),
                ],
            )?;
            let ns = pyo3::types::PyDict::new(py);
            ns.set_item("__module__", "mapshare")?;
            ns.set_item(
                "__doc__",
                "A bad argument (a size, a mode, a name...), refused before anything was made or changed. Also a ValueError.",
            )?;
            let cls = py
                .get_type::<pyo3::types::PyType>()
                .call1(("InvalidArgument", bases, ns))?;
            Ok(cls.cast_into::<pyo3::types::PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// An attribute value of an exception.
enum Attr {
    Int(u64),
    Str(String),
    Float(f64),
}

/// The Python exception for a mapshare error: the class of its variant,
/// the Rust message, and the variant's fields as attributes.
pub fn to_py(err: RustError) -> PyErr {
    Python::attach(|py| {
        let message = err.to_string();
        let (exc, attrs) = classify(&err, message);
        let value = exc.value(py);
        for (name, attr) in attrs {
            // Attributes on a fresh exception instance cannot fail to set;
            // if one did, the exception is still the right class.
            let _ = match attr {
                Attr::Int(v) => value.setattr(name, v),
                Attr::Str(v) => value.setattr(name, v),
                Attr::Float(v) => value.setattr(name, v),
            };
        }
        exc
    })
}

/// `map_err` shorthand.
pub trait IntoPyResult<T> {
    /// The result with a mapshare error turned into its exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for mapshare::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

fn invalid_argument_err(msg: &str) -> PyResult<PyErr> {
    Python::attach(|py| {
        Ok(PyErr::from_type(
            invalid_argument(py)?.clone(),
            msg.to_string(),
        ))
    })
}

fn classify(err: &RustError, msg: String) -> (PyErr, Vec<(&'static str, Attr)>) {
    use Attr::{Float, Int, Str};
    let path = |o: &mapshare::Origin| ("path", Str(o.as_path().display().to_string()));
    let s = |v: &str| Str(v.to_string());
    match err {
        RustError::NotFound { origin } => (NotFound::new_err(msg), vec![path(origin)]),
        RustError::IsDirectory { origin } => (IsDirectory::new_err(msg), vec![path(origin)]),
        RustError::NotAFile { origin } => (NotAFile::new_err(msg), vec![path(origin)]),
        RustError::Empty { origin } => (Empty::new_err(msg), vec![path(origin)]),
        RustError::PermissionDenied { origin, op, .. } => (
            PermissionDenied::new_err(msg),
            vec![path(origin), ("op", s(op))],
        ),
        RustError::AlreadyExists { origin } => (AlreadyExists::new_err(msg), vec![path(origin)]),
        RustError::WindowOutOfRange {
            origin,
            offset,
            len,
            size,
        } => (
            WindowOutOfRange::new_err(msg),
            vec![
                path(origin),
                ("offset", Int(*offset)),
                ("length", Int(*len)),
                ("size", Int(*size)),
            ],
        ),
        RustError::Overflow {
            origin,
            offset,
            len,
        } => (
            Overflow::new_err(msg),
            vec![
                path(origin),
                ("offset", Int(*offset)),
                ("length", Int(*len)),
            ],
        ),
        RustError::ZeroLength { origin, what } => (
            ZeroLength::new_err(msg),
            vec![path(origin), ("what", s(what))],
        ),
        RustError::OutOfBounds {
            origin,
            offset,
            len,
            region_len,
        } => (
            OutOfBounds::new_err(msg),
            vec![
                path(origin),
                ("offset", Int(*offset)),
                ("length", Int(*len)),
                ("region_len", Int(*region_len)),
            ],
        ),
        RustError::Misaligned {
            origin,
            offset,
            align,
            ..
        } => (
            Misaligned::new_err(msg),
            vec![
                path(origin),
                ("offset", Int(*offset)),
                ("align", Int(*align as u64)),
            ],
        ),
        RustError::ReadOnly { origin } => (ReadOnly::new_err(msg), vec![path(origin)]),
        RustError::Busy { origin, why } => {
            (Busy::new_err(msg), vec![path(origin), ("why", s(why))])
        }
        RustError::Lagged {
            origin,
            skipped,
            resume_at,
        } => (
            Lagged::new_err(msg),
            vec![
                path(origin),
                ("skipped", Int(*skipped)),
                ("resume_at", Int(*resume_at)),
            ],
        ),
        RustError::Truncated {
            origin,
            expected,
            actual,
        } => (
            Truncated::new_err(msg),
            vec![
                path(origin),
                ("expected", Int(*expected)),
                ("actual", Int(*actual)),
            ],
        ),
        RustError::NoSpace { origin, len, .. } => (
            NoSpace::new_err(msg),
            vec![path(origin), ("length", Int(*len))],
        ),
        RustError::InvalidName { name, why } => (
            InvalidName::new_err(msg),
            vec![("name", s(name)), ("why", s(why))],
        ),
        RustError::Unsupported { origin, what, why } => (
            Unsupported::new_err(msg),
            vec![path(origin), ("what", s(what)), ("why", s(why))],
        ),
        RustError::SpecialFileSystem { origin, fs } => (
            SpecialFileSystem::new_err(msg),
            vec![path(origin), ("fs", s(fs))],
        ),
        RustError::NotMapshare { origin } => (NotMapshare::new_err(msg), vec![path(origin)]),
        RustError::ByteOrderMismatch { origin } => {
            (ByteOrderMismatch::new_err(msg), vec![path(origin)])
        }
        RustError::UnsupportedVersion {
            origin,
            found,
            supported,
        } => (
            UnsupportedVersion::new_err(msg),
            vec![
                path(origin),
                ("found", Int(u64::from(*found))),
                ("supported", Int(u64::from(*supported))),
            ],
        ),
        RustError::WrongKind {
            origin,
            expected,
            found,
        } => (
            WrongKind::new_err(msg),
            vec![path(origin), ("expected", s(expected)), ("found", s(found))],
        ),
        RustError::TypeMismatch {
            origin,
            expected,
            found,
        } => (
            TypeMismatch::new_err(msg),
            vec![path(origin), ("expected", s(expected)), ("found", s(found))],
        ),
        RustError::BadChecksum {
            origin,
            stored,
            computed,
        } => (
            BadChecksum::new_err(msg),
            vec![
                path(origin),
                ("stored", Int(*stored)),
                ("computed", Int(*computed)),
            ],
        ),
        RustError::Corrupted { origin, what, why } => (
            Corrupted::new_err(msg),
            vec![path(origin), ("what", s(what)), ("why", s(why))],
        ),
        RustError::Timeout {
            origin,
            what,
            waited,
        } => (
            Timeout::new_err(msg),
            vec![
                path(origin),
                ("what", s(what)),
                ("waited", Float(waited.as_secs_f64())),
            ],
        ),
        RustError::LeaseTableFull { origin, slots } => (
            LeaseTableFull::new_err(msg),
            vec![path(origin), ("slots", Int(u64::from(*slots)))],
        ),
        RustError::LeaseSlotsBlocked {
            origin,
            slots,
            blocked,
            pid,
        } => {
            let mut attrs = vec![
                path(origin),
                ("slots", Int(u64::from(*slots))),
                ("blocked", Int(u64::from(*blocked))),
            ];
            if let Some(pid) = pid {
                attrs.push(("pid", Int(u64::from(*pid))));
            }
            (LeaseSlotsBlocked::new_err(msg), attrs)
        }
        RustError::OwnerDied { origin } => (OwnerDied::new_err(msg), vec![path(origin)]),
        RustError::Poisoned { origin } => (Poisoned::new_err(msg), vec![path(origin)]),
        RustError::NotRecoverable { origin } => (NotRecoverable::new_err(msg), vec![path(origin)]),
        RustError::RepairNotApplicable {
            origin,
            repair,
            state,
        } => (
            RepairNotApplicable::new_err(msg),
            vec![path(origin), ("repair", s(repair)), ("state", s(state))],
        ),
        RustError::ForkedChild { origin, owner, pid } => (
            ForkedChild::new_err(msg),
            vec![
                path(origin),
                ("owner", Int(u64::from(*owner))),
                ("pid", Int(u64::from(*pid))),
            ],
        ),
        RustError::RoleTaken { origin, role, pid } => (
            RoleTaken::new_err(msg),
            vec![
                path(origin),
                ("role", s(role)),
                ("pid", Int(u64::from(*pid))),
            ],
        ),
        RustError::Disconnected { origin, peer } => (
            Disconnected::new_err(msg),
            vec![path(origin), ("peer", s(peer))],
        ),
        RustError::PeerDied { origin, peer, pid } => (
            PeerDied::new_err(msg),
            vec![
                path(origin),
                ("peer", s(peer)),
                ("pid", Int(u64::from(*pid))),
            ],
        ),
        RustError::Deleted { origin } => (Deleted::new_err(msg), vec![path(origin)]),
        RustError::TooLarge {
            origin,
            what,
            len,
            max,
        } => (
            TooLarge::new_err(msg),
            vec![
                path(origin),
                ("what", s(what)),
                ("length", Int(*len)),
                ("max", Int(*max)),
            ],
        ),
        RustError::InvalidArgument { origin, what, why } => (
            invalid_argument_err(&msg).unwrap_or_else(|e| e),
            vec![path(origin), ("what", s(what)), ("why", s(why))],
        ),
        RustError::Io { origin, op, source } => (
            Io::new_err(msg),
            vec![
                path(origin),
                ("op", s(op)),
                ("errno", Int(source.raw_os_error().unwrap_or(0) as u64)),
            ],
        ),
        // `Error` is non-exhaustive: a variant added later is still a
        // mapshare.Error with its message.
        _ => (Error::new_err(msg), vec![]),
    }
}
