//! What native rules remember between records, bounded: per rule and agent, the alerts of
//! the current rate-limit window; per rule, step and key (agent, process or tree), the
//! partial match of a sequence that reached that step. Time is the records' own `@timestamp`, so a replay gives
//! the daemon's alerts. When a table is full, what can no longer matter (an expired window
//! or step) goes first, then the oldest half; those are counted as evictions.
use std::collections::HashMap;

/// Entries each table holds at most.
pub const CAPACITY: usize = 16_384;

/// A table of per-key state, each entry with the time (ns) it started.
pub struct Bounded<V> {
    entries: HashMap<(usize, String), (i128, V)>,
    capacity: usize,
    /// Entries dropped while they could still matter.
    pub evictions: u64,
}

impl<V> Bounded<V> {
    /// An empty table of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            evictions: 0,
        }
    }

    /// The entry of `rule` and `key`.
    pub fn get_mut(&mut self, rule: usize, key: &str) -> Option<&mut (i128, V)> {
        // A borrowed lookup would need a key type of its own; keys are short.
        self.entries.get_mut(&(rule, key.to_owned()))
    }

    /// Removes the entry of `rule` and `key`.
    pub fn remove(&mut self, rule: usize, key: &str) -> Option<(i128, V)> {
        self.entries.remove(&(rule, key.to_owned()))
    }

    /// Sets the entry of `rule` and `key`; `now` and `lifetime` (ns) say which entries have
    /// expired when room must be made.
    pub fn insert(
        &mut self,
        rule: usize,
        key: &str,
        started: i128,
        value: V,
        now: i128,
        lifetime: &dyn Fn(usize) -> i128,
    ) {
        let k = (rule, key.to_owned());
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&k) {
            self.entries
                .retain(|(r, _), (t, _)| now.saturating_sub(*t) <= lifetime(*r));
            if self.entries.len() >= self.capacity * 3 / 4 {
                let mut times: Vec<i128> = self.entries.values().map(|(t, _)| *t).collect();
                times.sort_unstable();
                let cut = times[(times.len() / 2).saturating_sub(1)];
                let before = self.entries.len();
                self.entries.retain(|_, (t, _)| *t > cut);
                self.evictions += (before - self.entries.len()) as u64;
            }
        }
        self.entries.insert(k, (started, value));
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Nanoseconds since the epoch of an RFC 3339 UTC timestamp as records carry it
/// (`2026-12-07T06:01:02.123456789Z`; the fraction may be shorter or absent).
pub fn nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &text[19..];
    let rest = rest.strip_suffix('Z')?;
    let frac = match rest.strip_prefix('.') {
        Some(digits)
            if !digits.is_empty()
                && digits.len() <= 9
                && digits.bytes().all(|c| c.is_ascii_digit()) =>
        {
            digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32)
        }
        None if rest.is_empty() => 0,
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
    use crate::record::time::rfc3339;

    #[test]
    fn reads_back_the_timestamps_records_carry() {
        for t in [0, 951_827_696_789_000_000, 1_796_124_780_000_000_001, -1] {
            assert_eq!(nanos(&rfc3339(t)), Some(t), "{}", rfc3339(t));
        }
        assert_eq!(nanos("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        for bad in [
            "",
            "yesterday",
            "1970-01-01T00:00:01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+01:00",
        ] {
            assert_eq!(nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_full_table_forgets_expired_entries_first_then_counts_evictions() {
        let mut t: Bounded<()> = Bounded::new(4);
        let lifetime = |_| 10;
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            t.insert(0, key, i as i128, (), i as i128, &lifetime);
        }
        // At 13, a (0) and b (1) and c (2) have expired: forgotten, not evicted.
        t.insert(0, "e", 13, (), 13, &lifetime);
        assert_eq!((t.len(), t.evictions), (2, 0));
        let mut t: Bounded<()> = Bounded::new(4);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            t.insert(0, key, i as i128, (), i as i128, &lifetime);
        }
        // At 5 nothing has expired: the oldest half goes, counted.
        t.insert(0, "e", 5, (), 5, &lifetime);
        assert_eq!(t.evictions, 2);
        assert!(t.get_mut(0, "a").is_none() && t.get_mut(0, "c").is_some());
        assert_eq!(t.len(), 3);
    }
}
