//! Parsing numbers and sizes from the command line: decimal or `0x` hex,
//! sizes with binary (`KiB`, `MiB`, `GiB`, `TiB`, or `K`, `M`, `G`, `T`)
//! or decimal (`KB`, `MB`, `GB`, `TB`) units.

/// Parses a plain number: `4096` or `0x1000` (underscores allowed).
pub fn number(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| format!("{s:?} is not a number (use decimal or 0x hex)"))
}

/// Parses a size: a number with an optional unit, e.g. `64KiB`, `1MiB`,
/// `2GiB`, `0x1000`, `512`.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && !t.starts_with("0x") && !t.starts_with("0X"))
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let base = number(digits)?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    base.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: a number with `ns`, `us`, `ms`, `s` or `m`
/// (default seconds), e.g. `500ms`, `2s`.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s)"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{s:?} is not a duration (e.g. 500ms, 2s)"));
    }
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ns, us, ms, s, m)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
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
        assert!(number("12abc").is_err());
        assert!(number("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("2 G"), Ok(2 << 30));
        assert_eq!(size("1MB"), Ok(1_000_000));
        assert_eq!(size("0x1000"), Ok(4096));
        assert_eq!(size("512"), Ok(512));
        assert!(size("1XiB").is_err());
        assert!(size("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(duration("-1s").is_err());
        assert!(duration("fast").is_err());
    }
}
