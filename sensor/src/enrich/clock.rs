//! Time: converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time (how records are
//! stamped is `record::time`).

pub use crate::record::time::UnixNanos;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
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
    /// The offset between the two clocks now.
    pub fn sample() -> Self {
        // Bracket the realtime read with two boottime reads to halve the sampling error.
        let before = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            offset: real - i128::midpoint(before, after),
        }
    }

    #[cfg(test)]
    fn with_offset(offset: i128) -> Self {
        Self { offset }
    }

    /// The wall-clock time of a kernel stamp (`boot_ns` on CLOCK_BOOTTIME).
    pub fn to_unix(self, boot_ns: u64) -> UnixNanos {
        i128::from(boot_ns) + self.offset
    }

    /// The wall-clock time now: for what the sensor does itself rather than what the kernel
    /// stamped.
    pub fn now() -> UnixNanos {
        clock_ns(libc::CLOCK_REALTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
