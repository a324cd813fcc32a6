//! Time: converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time, and formats
//! timestamps as RFC 3339 in UTC with nanoseconds (no time crate needed for that).

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = i128;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds since boot on the clock the kernel programs stamp records with.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) as u64
}

/// Maps boot-relative nanoseconds to wall-clock time. The offset drifts when the wall clock is
/// stepped or slewed, so the pipeline re-samples it periodically.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - boottime, in ns.
    offset: i128,
}

impl WallClock {
    pub fn sample() -> Self {
        // Bracket the realtime read with two boottime reads to halve the sampling error.
        let before = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            offset: real - (before + after) / 2,
        }
    }

    #[cfg(test)]
    pub fn with_offset(offset: i128) -> Self {
        Self { offset }
    }

    pub fn to_unix(self, boot_ns: u64) -> UnixNanos {
        i128::from(boot_ns) + self.offset
    }

    pub fn now() -> UnixNanos {
        clock_ns(libc::CLOCK_REALTIME)
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-12-01T11:33:00.123456789Z`.
pub fn rfc3339(t: UnixNanos) -> String {
    let secs = t.div_euclid(1_000_000_000) as i64;
    let nanos = t.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn converts_boot_time_with_the_sampled_offset() {
        let clock = WallClock::with_offset(1_000_000_000_000);
        assert_eq!(clock.to_unix(5), 1_000_000_000_005);
        let live = WallClock::sample();
        let now_boot = boottime_ns();
        let drift = (live.to_unix(now_boot) - WallClock::now()).abs();
        assert!(
            drift < 50_000_000,
            "boot->wall conversion off by {drift} ns"
        );
    }
}
