//! Timestamps as records carry them: RFC 3339 in UTC with nanoseconds, formatted by hand (no
//! time crate needed for that).

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = i128;

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-12-01T11:33:00.123456789Z`.
pub fn rfc3339(t: UnixNanos) -> String {
    Timestamp::of(t).as_str().to_owned()
}

/// An RFC 3339 timestamp as records carry it, formatted by hand into an inline buffer: every
/// record has two or three, and `core::fmt` plus an allocation each was a visible cost. It
/// keeps the time it was made from, so rules need not parse their record's text back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    secs: i64,
    subsec_nanos: u32,
    len: u8,
    bytes: [u8; Self::CAPACITY],
}

/// `YYYY-MM-DDTHH:MM:SS.` of the last seconds formatted, per thread: records come in time
/// order, so most share their second with the one before; two, because a record's event
/// time and creation time are often in different seconds.
#[derive(Clone, Copy)]
struct SecondPrefix {
    secs: i64,
    bytes: [u8; 20],
}

thread_local! {
    static LAST_SECONDS: std::cell::Cell<[SecondPrefix; 2]> = const {
        std::cell::Cell::new([SecondPrefix { secs: i64::MIN, bytes: [0; 20] }; 2])
    };
}

impl Timestamp {
    /// Room for any year an i64 second count reaches, sign included.
    const CAPACITY: usize = 48;

    /// The timestamp of `t`.
    pub fn of(t: UnixNanos) -> Self {
        let secs = t.div_euclid(1_000_000_000) as i64;
        let nanos = t.rem_euclid(1_000_000_000) as u32;
        let mut out = Self {
            secs,
            subsec_nanos: nanos,
            len: 30,
            bytes: [0; Self::CAPACITY],
        };
        let prefix = LAST_SECONDS.with(|last| {
            let [newer, older] = last.get();
            if newer.secs == secs {
                return Some(newer.bytes);
            }
            if older.secs == secs {
                return Some(older.bytes);
            }
            let bytes = second_prefix(secs)?;
            last.set([SecondPrefix { secs, bytes }, newer]);
            Some(bytes)
        });
        let Some(prefix) = prefix else {
            return Self::formatted(secs, nanos);
        };
        out.bytes[..20].copy_from_slice(&prefix);
        let mut n = nanos;
        for i in (20..29).rev() {
            out.bytes[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.bytes[29] = b'Z';
        out
    }

    /// Years outside 0000-9999 (never a real record's): the general formatter.
    #[cold]
    fn formatted(secs: i64, nanos: u32) -> Self {
        use std::io::Write as _;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut out = Self {
            secs,
            subsec_nanos: nanos,
            len: 0,
            bytes: [0; Self::CAPACITY],
        };
        let mut cursor = &mut out.bytes[..];
        let _ = write!(
            cursor,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
        let left = cursor.len();
        out.len = (Self::CAPACITY - left) as u8;
        out
    }

    /// Nanoseconds since the epoch: what it was made from.
    pub fn unix_nanos(&self) -> UnixNanos {
        UnixNanos::from(self.secs) * 1_000_000_000 + UnixNanos::from(self.subsec_nanos)
    }

    /// The timestamp's text.
    pub fn as_str(&self) -> &str {
        // SAFETY: only ASCII digits and separators are ever written.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..usize::from(self.len)]) }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for a second since the epoch; none for a year past four digits.
fn second_prefix(secs: i64) -> Option<[u8; 20]> {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return None;
    }
    let sod = secs.rem_euclid(86_400) as u32;
    let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let y = y as u32;
    let mut b = [0u8; 20];
    b[..2].copy_from_slice(&two(y / 100));
    b[2..4].copy_from_slice(&two(y % 100));
    b[4] = b'-';
    b[5..7].copy_from_slice(&two(m));
    b[7] = b'-';
    b[8..10].copy_from_slice(&two(d));
    b[10] = b'T';
    b[11..13].copy_from_slice(&two(sod / 3600));
    b[13] = b':';
    b[14..16].copy_from_slice(&two(sod % 3600 / 60));
    b[16] = b':';
    b[17..19].copy_from_slice(&two(sod % 60));
    b[19] = b'.';
    Some(b)
}

impl std::ops::Deref for Timestamp {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A string in the schema, as it was when timestamps were `String`s.
impl schemars::JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        String::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        String::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The time of an RFC 3339 timestamp in UTC, as records carry it
/// (`2026-12-07T06:01:02.123456789Z`) and as people write it: `T`, `t` or a space before the
/// time, a fraction of 1 to 9 digits or none, `Z`, `z` or `+00:00`; `None` for anything else.
pub fn parse(text: &str) -> Option<UnixNanos> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Digits by hand: every record's time is read here, and `str::parse` costs ten times
    // as much.
    let digits = |d: &[u8]| -> Option<i64> {
        d.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let rest = &b[19..];
    let zone = rest.iter().position(|&c| matches!(c, b'Z' | b'z' | b'+'))?;
    if !matches!(&rest[zone..], b"Z" | b"z" | b"+00:00") {
        return None;
    }
    let frac = match &rest[..zone] {
        [b'.', d @ ..] if !d.is_empty() && d.len() <= 9 => {
            i128::from(digits(d)?) * 10i128.pow(9 - d.len() as u32)
        }
        [] => 0,
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(i128::from(seconds) * 1_000_000_000 + frac)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_the_timestamps_records_carry() {
        for t in [0, 951_827_696_789_000_000, 1_796_124_780_000_000_001, -1] {
            assert_eq!(parse(&rfc3339(t)), Some(t), "{}", rfc3339(t));
            // What rules read instead of the text (`Fields::nanos`) says the same.
            assert_eq!(Timestamp::of(t).unix_nanos(), t);
        }
        assert_eq!(parse("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse("1970-01-01 00:00:01.5+00:00"), Some(1_500_000_000));
        assert_eq!(parse("1970-01-01t00:00:01z"), Some(1_000_000_000));
        for bad in [
            "",
            "yesterday",
            "1970-01-01T00:00:01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+01:00",
            "1970-01-01T00:00:00.5+00:00junk",
            "1970-01-01T00:00:00.1234567890Z",
            "1970-01-0xT00:00:00Z",
            "1970-01-01T00:00:00.12a4Z",
            "1970-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_epoch_and_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789.
        assert_eq!(
            rfc3339(951_827_696_789_000_000),
            "2000-02-29T12:34:56.789000000Z"
        );
        assert_eq!(
            rfc3339(1_796_124_780_000_000_001),
            "2026-12-01T11:33:00.000000001Z"
        );
        // Before the epoch.
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    /// The hand formatter against the general one (`core::fmt`), across leap days, century
    /// years, second boundaries (the cached prefix) and the fallback beyond year 9999.
    #[test]
    fn hand_formatting_matches_the_general_formatter() {
        let reference = |t: UnixNanos| {
            let secs = t.div_euclid(1_000_000_000) as i64;
            Timestamp::formatted(secs, t.rem_euclid(1_000_000_000) as u32)
        };
        let mut samples = vec![
            0,
            -1,
            999_999_999,
            1_000_000_000,
            951_782_400_000_000_000,
            4_107_542_399_999_999_999,
            253_402_300_799_999_999_999,
            253_402_300_800_000_000_000,
            -62_167_219_200_000_000_000,
            -62_167_219_200_000_000_001,
        ];
        let mut t: UnixNanos = 1_796_124_780_000_000_000;
        for _ in 0..10_000 {
            t += 123_456_789_123;
            samples.push(t);
            samples.push(t + 1);
        }
        for t in samples {
            assert_eq!(Timestamp::of(t), reference(t), "at {t}");
            assert_eq!(Timestamp::of(t).as_str(), reference(t).as_str(), "at {t}");
        }
        assert_eq!(
            Timestamp::of(253_402_300_800_000_000_000).as_str(),
            "10000-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            serde_json::to_string(&Timestamp::of(0)).unwrap(),
            "\"1970-01-01T00:00:00.000000000Z\""
        );
    }
}
