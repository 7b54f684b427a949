//! `Shared<T>`: a typed value that lives in a file, shared by every process
//! that opens it, and still there after they have all exited. No load or
//! save code: the file *is* the value, behind a robust mutex.
//!
//! The file is a mapshare file of kind `value` whose object is one
//! [`Mutex<T>`](crate::sync::Mutex). Opening checks the type's fingerprint
//! (name, size, alignment, hash), so a file written for another type, or
//! another version of this one, is refused with [`Error::TypeMismatch`]
//! instead of being misread.

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::file::{SharedFile, Spec};
use crate::format::{Fingerprint, Kind};
use crate::sync::{LockResult, Mutex, MutexGuard};

/// A plain-data type that can live in a mapshare file.
///
/// The zerocopy traits guarantee that any bytes are a valid `Self` and that
/// `Self` has no padding, so the value can be read from memory another
/// process wrote. `NAME` (at most 32 bytes) identifies the type in the
/// file's header; change `HASH` when the meaning of the fields changes but
/// the name and size do not.
///
/// ```
/// use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
/// #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
/// #[repr(C)]
/// struct Stats { requests: u64, errors: u64 }
/// impl mapshare::Persistent for Stats {
///     const NAME: &'static str = "example::Stats";
/// }
/// ```
pub trait Persistent: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    /// The type's name in file headers.
    const NAME: &'static str;
    /// A hash that changes when the type's meaning does; by default the
    /// FNV-1a hash of `NAME`.
    const HASH: Option<u64> = None;

    /// The fingerprint stored in and checked against file headers.
    fn fingerprint() -> Fingerprint {
        let mut fp = Fingerprint::new(
            Self::NAME,
            std::mem::size_of::<Self>() as u64,
            std::mem::align_of::<Self>() as u32,
        );
        if let Some(h) = Self::HASH {
            fp.hash = h;
        }
        fp
    }
}

macro_rules! persistent_primitive {
    ($($t:ty),*) => {$(
        impl Persistent for $t {
            const NAME: &'static str = stringify!($t);
        }
    )*};
}
persistent_primitive!(u8, u16, u32, u64, i8, i16, i32, i64);

/// A typed persistent value shared between processes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::Shared;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("visits");
/// {
///     let visits = Shared::<u64>::open_or_create(&path, &0)?;
///     *visits.lock().expect("fresh") += 1;
/// }
/// // Later, in this or any other process:
/// let visits = Shared::<u64>::open(&path)?;
/// assert_eq!(*visits.lock().expect("consistent"), 1);
/// # Ok(()) }
/// ```
pub struct Shared<T: Persistent> {
    file: SharedFile,
    _t: PhantomData<fn() -> T>,
}

impl<T: Persistent> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("file", &self.file).finish()
    }
}

impl<T: Persistent> Shared<T> {
    fn spec() -> Spec {
        Spec::new(Kind::Value, T::fingerprint(), Mutex::<T>::footprint())
    }

    fn checked(file: SharedFile) -> Result<Self> {
        // Validate placement once, so `mutex()` cannot fail later.
        Mutex::<T>::at(&file, file.object_offset())?;
        Ok(Shared {
            file,
            _t: PhantomData,
        })
    }

    /// Opens the value at `path`, creating the file with `initial` if it
    /// does not exist. Exactly one of many concurrent openers initializes.
    pub fn open_or_create(path: impl AsRef<Path>, initial: &T) -> Result<Self> {
        let file = SharedFile::open_or_create(path, &Self::spec(), |region, header| {
            let at = header.object_offset + Mutex::<T>::data_offset();
            region.write_at(at, initial.as_bytes())
        })?;
        Self::checked(file)
    }

    /// Opens an existing value, checking that it holds a `T`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let file = SharedFile::open(path, Kind::Value, &T::fingerprint(), Duration::from_secs(5))?;
        Self::checked(file)
    }

    /// The mutex guarding the value.
    pub fn mutex(&self) -> Mutex<'_, T> {
        Mutex::at(&self.file, self.file.object_offset()).expect("checked when opened")
    }

    /// Locks the value (see [`Mutex::lock`]).
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().lock()
    }

    /// A copy of the value, taken under the lock. Fails if the mutex needs
    /// recovery (a holder died or panicked).
    pub fn load(&self) -> Result<T> {
        let guard = self.lock().map_err(|e| Error::Busy {
            origin: self.file.region().origin().clone(),
            why: e.to_string(),
        })?;
        T::read_from_bytes(guard.as_bytes()).map_err(|_| Error::Corrupted {
            origin: self.file.region().origin().clone(),
            what: "value",
            why: "size changed".into(),
        })
    }

    /// The underlying file.
    pub fn file(&self) -> &SharedFile {
        &self.file
    }
}
