//! Durations as people write them (`90s`, `15m`, `2h`, `7d`, `1h30m`) and instants as RFC 3339.
//!
//! Stored and compared times are whole seconds since 1970 (`i64`): the store keeps them as
//! integers in every engine, and a credential's expiry needs no finer grain.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since 1970, now. A clock before 1970 reads as 0.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads `90s`, `15m`, `2h`, `7d` and their concatenations (`1h30m`, `1d12h`). Every part needs
/// its unit; nothing else (no spaces, no signs, no fractions) is accepted, so a typo never
/// becomes a different duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (examples: 90s, 15m, 2h, 7d, 1h30m)");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let unit = match tail.bytes().next() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        rest = &tail[1..];
    }
    Ok(Duration::from_secs(total))
}

/// `2026-12-01T08:15:02Z` for a second since 1970 (UTC); `None` before 1970 or after 9999.
pub fn rfc3339(secs: i64) -> Option<String> {
    let date = civil_time(u64::try_from(secs).ok()?)?;
    let mut s = String::from_utf8(date.to_vec()).ok()?;
    s.push('Z');
    Some(s)
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since 1970 (UTC), for years up to 9999.
pub fn civil_time(secs: u64) -> Option<[u8; 19]> {
    let mut days = secs / 86_400;
    let of_day = secs % 86_400;
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    if year > 9999 {
        return None;
    }
    let february = if leap(year) { 29 } else { 28 };
    let mut month = 1;
    for len in [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    let text = format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}",
        days + 1,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    text.into_bytes().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_the_contract_writes_them() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d12h30m15s"), Ok(131_415));
        for bad in [
            "",
            "90",
            "h",
            "1x",
            "1h 30m",
            "-5m",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_796_113_502).as_deref(),
            Some("2026-12-01T08:25:02Z")
        );
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(rfc3339(-1), None);
    }
}
