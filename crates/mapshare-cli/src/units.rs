//! Parsing numbers, sizes, durations and modes from the command line.
//!
//! One set of rules for every argument, documented in `--help` (see
//! [`SIZE_HELP`] and [`SIZE_AND_DURATION_HELP`]):
//! - Numbers are decimal or `0x` hex, `_` allowed between digits.
//! - Sizes and offsets are a whole number with an optional unit, case
//!   ignored: `K`/`KiB` = 1024, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`, `P`/`PiB`,
//!   `E`/`EiB` (powers of 1024), and `KB`, `MB`, `GB`, `TB`, `PB`, `EB`
//!   (powers of 1000); `B` or nothing means bytes. A single letter is
//!   binary because that is what `dd`, `truncate` and `xxd` users expect.
//!   Fractions (`1.5KiB`) are refused: a size is a count of bytes, and
//!   rounding it silently would hide a typo.
//! - Durations are a number (fractions allowed) with `ns`, `us`, `ms`, `s`,
//!   `m`/`min` or `h`; a bare number is seconds.

use std::time::Duration;

macro_rules! size_help {
    () => {
        "Sizes and offsets: decimal or 0x hex, with an optional unit (case ignored): \
K/KiB=1024, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB (powers of 1024); KB, MB, GB, TB, PB, EB (powers of 1000). \
Whole numbers only: 1.5KiB is refused."
    };
}
macro_rules! duration_help {
    () => {
        "Durations: a number with ns, us, ms, s, m (minutes) or h, e.g. 500ms, 2.5s, 2h; a bare number is seconds."
    };
}

/// What `--help` says about sizes and offsets.
pub const SIZE_HELP: &str = size_help!();

/// What `--help` says about sizes, offsets and durations.
pub const SIZE_AND_DURATION_HELP: &str = concat!(size_help!(), "\n\n", duration_help!());

/// Parses a plain number: `4096` or `0x1000` (underscores allowed).
pub fn number(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).map_err(|_| "too large")
        }
        Some(_) => Err("not a number"),
        None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse::<u64>().map_err(|_| "too large")
        }
        None => Err("not a number"),
    };
    parsed.map_err(|why| match why {
        "too large" => format!("{s:?} is too large (at most {})", u64::MAX),
        _ => format!("{s:?} is not a number (use decimal or 0x hex)"),
    })
}

/// A count that must be at least one.
pub fn count(s: &str) -> Result<u64, String> {
    match number(s)? {
        0 => Err(format!("{s:?}: the count must be at least 1")),
        n => Ok(n),
    }
}

/// The multiplier of a size unit, case ignored.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let u = unit.trim().to_ascii_lowercase();
    let (letter, decimal) = match u.as_str() {
        "" | "b" => return Some(1),
        _ => match u.strip_suffix("ib").or_else(|| u.strip_suffix('b')) {
            // "KiB" → binary, "KB" → decimal; "K" alone → binary.
            Some(l) => (l, !u.ends_with("ib")),
            None => (u.as_str(), false),
        },
    };
    let power = match letter {
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    let base: u64 = if decimal { 1000 } else { 1024 };
    Some(base.pow(power))
}

/// Parses a size or offset: a whole number with an optional unit, e.g.
/// `64KiB`, `64k`, `1MiB`, `2GB`, `0x1000`, `512` (see the module docs).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let hex = t.starts_with("0x") || t.starts_with("0X");
    let split = if hex {
        // Hex digits include b and e: a hex number takes no unit.
        t.len()
    } else {
        t.find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len())
    };
    let (digits, unit) = t.split_at(split);
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "{s:?}: sizes are whole numbers of bytes (write 1536 or 1536B, not 1.5KiB)"
        ));
    }
    let mult = unit_multiplier(unit).ok_or_else(|| {
        format!(
            "{s:?}: unknown unit {:?} (use B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB, or KB, MB, GB, TB, PB, EB)",
            unit.trim()
        )
    })?;
    let base = number(digits)?;
    base.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large (at most {} bytes)", u64::MAX))
}

/// A size of at least one byte.
pub fn nonzero_size(s: &str) -> Result<u64, String> {
    match size(s)? {
        0 => Err(format!("{s:?}: the size must be at least 1 byte")),
        n => Ok(n),
    }
}

/// A queue's ring size, checked against the queue's rules before any file
/// is touched (so the message names the argument, not a file).
pub fn queue_capacity(s: &str) -> Result<u64, String> {
    let n = size(s)?;
    mapshare::queue::spec(n).map_err(|_| {
        format!(
            "{s:?}: a queue's capacity must be a multiple of 8 bytes between {} and 2GiB",
            mapshare::queue::MIN_CAPACITY
        )
    })?;
    Ok(n)
}

/// Lease slots: 1 to the format's maximum.
pub fn lease_slots(s: &str) -> Result<u32, String> {
    let n = number(s)?;
    let max = mapshare::format::MAX_LEASE_SLOTS;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{s:?}: lease slots must be 1..={max}"))
}

/// Parses a duration: a number with `ns`, `us`, `ms`, `s`, `m`/`min` or
/// `h` (default seconds), e.g. `500ms`, `2s`, `2h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 500ms, 2s, 2h)");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || digits.starts_with('.') || digits.ends_with('.') {
        return Err(bad());
    }
    let n: f64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// Permission bits in octal: `600`, `0644`, `0o640`. Only the `rwx` bits
/// for owner, group and others: a mapshare file is data, never a program,
/// so setuid, setgid and sticky are refused.
pub fn mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let m = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && !digits.starts_with('+'))
        .ok_or_else(|| format!("{s:?} is not an octal mode like 600"))?;
    if m > 0o7777 {
        return Err(format!("{s:?} is not an octal mode like 600"));
    }
    if m & 0o7000 != 0 {
        return Err(format!(
            "{s:?}: setuid, setgid and sticky bits are refused (use permission bits 0..=777)"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("4096"), Ok(4096));
        assert_eq!(number("0x1000"), Ok(4096));
        assert_eq!(number("0XfF"), Ok(255));
        assert_eq!(number("1_000"), Ok(1000));
        assert!(number("-1").is_err());
        assert!(number("+1").is_err());
        assert!(number("12abc").is_err());
        assert!(number("").is_err());
        assert!(number("0x").is_err());
        assert!(number("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("64kib"), Ok(64 << 10));
        assert_eq!(size("64k"), Ok(64 << 10));
        assert_eq!(size("64K"), Ok(64 << 10));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("1m"), Ok(1 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("2 G"), Ok(2 << 30));
        assert_eq!(size("1PiB"), Ok(1 << 50));
        assert_eq!(size("1EiB"), Ok(1 << 60));
        assert_eq!(size("15EiB"), Ok(15 << 60));
        assert!(size("16EiB").unwrap_err().contains("too large"));
        assert_eq!(size("1MB"), Ok(1_000_000));
        assert_eq!(size("1kb"), Ok(1_000));
        assert_eq!(size("1EB"), Ok(1_000_000_000_000_000_000));
        assert_eq!(size("0x1000"), Ok(4096));
        assert_eq!(size("0xbe"), Ok(0xbe));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("512B"), Ok(512));
        assert!(size("1XiB").is_err());
        assert!(size("1KiBB").is_err());
        assert!(size("KiB").is_err());
        assert!(size("99999999999TiB").is_err());
        assert!(size("1.5KiB").unwrap_err().contains("whole numbers"));
        assert!(size("-1").is_err());
    }

    #[test]
    fn capacities_and_slots() {
        assert_eq!(queue_capacity("64KiB"), Ok(64 << 10));
        assert!(queue_capacity("100").is_err());
        assert!(queue_capacity("8").is_err());
        assert!(queue_capacity("4GiB").is_err());
        assert_eq!(lease_slots("8"), Ok(8));
        assert!(lease_slots("0").is_err());
        assert!(lease_slots("5000").is_err());
        assert_eq!(nonzero_size("1"), Ok(1));
        assert!(nonzero_size("0").is_err());
        assert!(count("0").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("10us"), Ok(Duration::from_micros(10)));
        assert!(duration("-1s").is_err());
        assert!(duration("fast").is_err());
        assert!(duration("2hours").is_err());
        assert!(duration("1e3s").is_err());
        assert!(duration("inf").is_err());
        assert!(duration("NaN").is_err());
        assert!(duration(".s").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(mode("600"), Ok(0o600));
        assert_eq!(mode("0644"), Ok(0o644));
        assert_eq!(mode("0o640"), Ok(0o640));
        assert!(mode("4755").unwrap_err().contains("setuid"));
        assert!(mode("2700").is_err());
        assert!(mode("1777").is_err());
        assert!(mode("8").is_err());
        assert!(mode("").is_err());
        assert!(mode("77777").is_err());
    }
}
