//! Time for the report: RFC 3339 timestamps read back into nanoseconds (records' `@timestamp`,
//! `--since` and `--until`), and the activity histogram's buckets, which widen as the trail's
//! time span grows so their number stays bounded.
use serde::Serialize;

/// Nanoseconds since the Unix epoch of an RFC 3339 time in UTC (`Z` or `+00:00`), seconds
/// optionally with a fraction of up to 9 digits; `None` for anything else.
pub use crate::record::time::parse as parse_rfc3339;

/// RFC 3339 (UTC, seconds) of a second count.
pub fn seconds_rfc3339(secs: i64) -> String {
    let full = crate::record::time::rfc3339(i128::from(secs) * 1_000_000_000);
    // `…:SS.000000000Z` → `…:SSZ`
    match full.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => full,
    }
}

/// Activity over time in at most [`Histogram::BUCKETS`] buckets: the width doubles (pairs of
/// buckets merge) whenever a record falls beyond the last one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Histogram {
    /// The first bucket's start (seconds since the epoch).
    pub start: i64,
    /// Each bucket's width in seconds.
    pub bucket_seconds: i64,
    /// Per bucket: records of processes, files, network, and everything else.
    pub buckets: Vec<[u64; 4]>,
}

impl Histogram {
    /// The most buckets kept.
    pub const BUCKETS: usize = 120;

    /// Counts a record at `secs` in column `column` (0 process, 1 file, 2 network, 3 other).
    pub fn add(&mut self, secs: i64, column: usize) {
        if self.bucket_seconds == 0 {
            self.start = secs;
            self.bucket_seconds = 1;
        }
        // Earlier than the first bucket (clocks and runs interleave a little): the first.
        let offset = (secs - self.start).max(0);
        while offset / self.bucket_seconds >= Self::BUCKETS as i64 {
            self.widen();
        }
        let i = (offset / self.bucket_seconds) as usize;
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, [0; 4]);
        }
        self.buckets[i][column] += 1;
    }

    fn widen(&mut self) {
        self.bucket_seconds *= 2;
        let merged = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut sum = pair[0];
                if let Some(b) = pair.get(1) {
                    for (s, x) in sum.iter_mut().zip(b) {
                        *s += x;
                    }
                }
                sum
            })
            .collect();
        self.buckets = merged;
    }

    /// Records counted.
    pub fn total(&self) -> u64 {
        self.buckets.iter().flatten().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_timestamps_and_user_times_parse_to_the_nanosecond() {
        let t = 1_796_614_229_123_456_789i128;
        let written = crate::record::time::rfc3339(t);
        assert_eq!(parse_rfc3339(&written), Some(t));
        assert_eq!(
            parse_rfc3339("2026-12-07T02:50:29Z"),
            Some(1_796_611_829 * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T02:50:29.5+00:00"),
            Some(1_796_611_829_500_000_000)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "2026-12-07",
            "2026-13-07T02:50:29Z",
            "2026-12-07T02:50:29+01:00",
            "2026-12-07T02:50:29.Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(seconds_rfc3339(1_796_611_829), "2026-12-07T02:50:29Z");
    }

    #[test]
    fn the_histogram_widens_and_keeps_every_record() {
        let mut h = Histogram::default();
        for s in 0..1000 {
            h.add(1000 + s, (s % 4) as usize);
        }
        assert!(h.buckets.len() <= Histogram::BUCKETS);
        assert_eq!(h.total(), 1000);
        assert_eq!(h.bucket_seconds, 16);
        assert_eq!(h.buckets[0], [4, 4, 4, 4]);
    }
}
