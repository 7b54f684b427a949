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
use crate::format::{fnv1a, Fingerprint, Kind};
use crate::sync::{LockError, LockResult, Mutex, MutexGuard, MutexState};

/// Longest [`Persistent::NAME`], in bytes (the header's name field).
pub const MAX_NAME_LEN: usize = 32;

/// A plain-data type that can live in a mapshare file.
///
/// The zerocopy traits guarantee that any bytes are a valid `Self` and that
/// `Self` has no padding, so the value can be read from memory another
/// process wrote. `NAME` (at most 32 bytes, checked when the program is
/// compiled) identifies the type in the file's header; change `HASH` when
/// the meaning of the fields changes but the name and size do not.
///
/// Implemented for the integer types, `f32`, `f64`, [`Bool`] (not `bool`:
/// a `bool` holding any byte but 0 or 1 is undefined behaviour, and another
/// process writes these bytes) and arrays of persistent types.
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
///
/// A longer name does not compile:
///
/// ```compile_fail
/// use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
/// #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
/// #[repr(C)]
/// struct Stats { requests: u64 }
/// impl mapshare::Persistent for Stats {
///     const NAME: &'static str = "example::a_name_much_longer_than_32_bytes";
/// }
/// let _ = <Stats as mapshare::Persistent>::fingerprint();
/// ```
pub trait Persistent: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    /// The type's name in file headers: at most 32 bytes.
    const NAME: &'static str;
    /// A hash that changes when the type's meaning does; by default the
    /// FNV-1a hash of `NAME`.
    const HASH: Option<u64> = None;

    /// The fingerprint stored in and checked against file headers.
    fn fingerprint() -> Fingerprint {
        let () = NameFits::<Self>::OK;
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

/// The compile-time check of `NAME`'s length, outside the trait so that
/// an implementation cannot override it.
struct NameFits<T>(PhantomData<T>);

impl<T: Persistent> NameFits<T> {
    const OK: () = assert!(
        T::NAME.len() <= MAX_NAME_LEN,
        "Persistent::NAME must be at most 32 bytes"
    );
}

macro_rules! persistent_primitive {
    ($($t:ty),*) => {$(
        impl Persistent for $t {
            const NAME: &'static str = stringify!($t);
        }
    )*};
}
persistent_primitive!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

/// A boolean that can live in shared memory: one byte, any value valid,
/// non-zero meaning true.
///
/// `bool` itself cannot be [`Persistent`]: only the bytes 0 and 1 are valid
/// `bool`s, and a peer (or an old file) may store any byte, which would be
/// undefined behaviour to read as `bool`. `Bool` reads every byte.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct Bool(u8);

impl Bool {
    /// `true` or `false`, stored as 1 or 0.
    pub const fn new(value: bool) -> Bool {
        Bool(value as u8)
    }

    /// Whether the byte is non-zero.
    pub const fn get(self) -> bool {
        self.0 != 0
    }

    /// Stores `value` as 1 or 0.
    pub fn set(&mut self, value: bool) {
        self.0 = value as u8;
    }
}

impl From<bool> for Bool {
    fn from(value: bool) -> Bool {
        Bool::new(value)
    }
}

impl Persistent for Bool {
    const NAME: &'static str = "bool";
}

impl<T: Persistent, const N: usize> Persistent for [T; N] {
    /// Stands in when `[T; N]` is longer than 32 bytes; the fingerprint
    /// uses `[T::NAME; N]` when it fits, and its hash always covers it.
    const NAME: &'static str = "[array]";

    fn fingerprint() -> Fingerprint {
        let full = format!("[{}; {N}]", T::NAME);
        let name = if full.len() <= MAX_NAME_LEN {
            full.as_str()
        } else {
            Self::NAME
        };
        let mut fp = Fingerprint::new(
            name,
            std::mem::size_of::<Self>() as u64,
            std::mem::align_of::<Self>() as u32,
        );
        fp.hash = fnv1a(format!("{full} {:x}", T::fingerprint().hash).as_bytes());
        fp
    }
}

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
/// assert_eq!(visits.load()?, 1);
/// # Ok(()) }
/// ```
pub struct Shared<T: Persistent> {
    file: SharedFile,
    /// Send and Sync exactly when `std::sync::Mutex<T>` is.
    _t: PhantomData<std::sync::Mutex<T>>,
}

impl<T: Persistent> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("file", &self.file).finish()
    }
}

impl<T: Persistent> Shared<T> {
    fn spec() -> Spec {
        let mut spec = Spec::new(Kind::Value, T::fingerprint(), Mutex::<T>::footprint());
        // A value in a page cut inside must not load as zeros (see
        // `SharedFile::check_faults`).
        spec.guard_page = true;
        spec
    }

    fn checked(file: SharedFile) -> Result<Self> {
        // Validate placement once, so `mutex()` cannot fail later.
        // SAFETY: the object of a value file is this one mutex, and
        // `Shared` gives no other access to its bytes (the file's region
        // is not public).
        unsafe { Mutex::<T>::at(&file, file.object_offset())? };
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
        // SAFETY: as in `checked`: the object is only ever this mutex.
        match unsafe { Mutex::at(&self.file, self.file.object_offset()) } {
            Ok(m) => m,
            // `checked` validated this exact call on the same mapping.
            Err(e) => unreachable!("checked when opened: {e}"),
        }
    }

    /// Locks the value (see [`Mutex::lock`]).
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().lock()
    }

    /// A copy of the value, taken under the lock with volatile reads (sound
    /// even against a peer that writes without the lock).
    ///
    /// A read never changes the recovery state: if the mutex needs
    /// recovery it fails with [`Error::OwnerDied`], [`Error::Poisoned`] or
    /// [`Error::NotRecoverable`] and leaves it as it was, for a locker (or
    /// [`repair`]) to deal with. (A holder found dead is still taken over
    /// and recorded as `OwnerDied`, which is what the state already was in
    /// all but name.)
    pub fn load(&self) -> Result<T> {
        let guard = self.lock()?;
        let value = guard.copy_out();
        drop(guard);
        // A page cut by an outside truncate read as zeros: say so instead
        // of returning them (see `SharedFile::check_faults`).
        self.file.check_faults()?;
        Ok(value)
    }

    /// What the value's mutex is doing now (see [`MutexState`]).
    pub fn state(&self) -> Result<MutexState> {
        self.mutex().state()
    }

    /// The underlying file.
    pub fn file(&self) -> &SharedFile {
        &self.file
    }
}

/// A deliberate repair of a value file's mutex, for [`repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Clears `OwnerDied` or `Poisoned` after a person checked the data,
    /// taking over a dead holder's lock if needed. Refused with
    /// [`Error::Busy`] while a live process holds the lock, and with
    /// [`Error::RepairNotApplicable`] if the mutex is consistent or not
    /// recoverable.
    MarkConsistent,
    /// Turns a `NotRecoverable` mutex back into a consistent one (the data
    /// stays as it is: check it first). Refused with
    /// [`Error::RepairNotApplicable`] in any other state.
    Reset,
}

/// Repairs the mutex of the value file at `path` (kind `value`, any type),
/// and returns its new state. This is the way out of `OwnerDied`,
/// `Poisoned` and `NotRecoverable` that does not need the value's Rust type.
pub fn repair(path: impl AsRef<Path>, how: Repair) -> Result<MutexState> {
    let path = path.as_ref();
    let file = SharedFile::open_any(path, Duration::from_secs(5))?;
    let kind = file.header().kind;
    if kind != Kind::Value {
        return Err(Error::WrongKind {
            origin: file.region().origin().clone(),
            expected: Kind::Value.name().into(),
            found: kind.name().into(),
        });
    }
    // SAFETY: in this process the value file's object is used only as this
    // mutex, whose `T` (`()`) has no bytes to alias.
    let mutex = unsafe { Mutex::<()>::at(&file, file.object_offset())? };
    let origin = || file.region().origin().clone();
    match how {
        Repair::Reset => mutex.reset_not_recoverable(),
        Repair::MarkConsistent => match mutex.try_lock() {
            Err(LockError::OwnerDied(mut g)) | Err(LockError::Poisoned(mut g)) => {
                g.mark_consistent();
                drop(g);
                mutex.state()
            }
            Ok(g) => {
                drop(g);
                Err(Error::RepairNotApplicable {
                    origin: origin(),
                    repair: "mark consistent",
                    state: MutexState::Free.to_string(),
                })
            }
            Err(LockError::NotRecoverable { origin }) => Err(Error::RepairNotApplicable {
                origin,
                repair: "mark consistent",
                state: MutexState::NotRecoverable.to_string(),
            }),
            Err(LockError::WouldBlock { origin }) => Err(Error::Busy {
                origin,
                why: format!(
                    "the mutex is {}: wait until it is released",
                    mutex.state().map(|s| s.to_string()).unwrap_or_default()
                ),
            }),
            Err(LockError::Timeout { origin, .. }) => Err(Error::Busy {
                origin,
                why: "the mutex is held".into(),
            }),
            Err(LockError::Failed(e)) => Err(e),
        },
    }
}
