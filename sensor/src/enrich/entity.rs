//! `process.entity_id`: a name for one process that no other process on any host ever shares,
//! and that the kernel events and the procfs snapshot derive identically, across sensor
//! restarts. It hashes the boot id, the tgid and the process start time in clock ticks (the
//! resolution procfs reports; a pid cannot wrap around within one tick).
use sha2::{Digest, Sha256};

/// Makes entity ids for the processes of this boot.
#[derive(Clone, Debug)]
pub struct EntityIds {
    boot_id: String,
    /// Nanoseconds per clock tick (`sysconf(_SC_CLK_TCK)`).
    ns_per_tick: u64,
}

impl EntityIds {
    /// The ids of the boot `boot_id` (`/proc/sys/kernel/random/boot_id`), at this kernel's
    /// clock-tick rate.
    pub fn new(boot_id: &str) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks = if ticks > 0 { ticks as u64 } else { 100 };
        Self {
            boot_id: boot_id.to_owned(),
            ns_per_tick: 1_000_000_000 / ticks,
        }
    }

    /// Start time in ticks since boot, as in field 22 of `/proc/PID/stat`.
    pub(crate) fn ticks(&self, start_boottime_ns: u64) -> u64 {
        start_boottime_ns / self.ns_per_tick
    }

    /// A start time in ticks as nanoseconds since boot: [`Self::ticks`] gives the ticks back.
    pub(crate) fn boottime_ns(&self, ticks: u64) -> u64 {
        ticks * self.ns_per_tick
    }

    /// The entity id of process `tgid` that started `start_boottime_ns` after boot (the
    /// builder goes through [`Self::ticks`], which its process table keeps).
    #[cfg(test)]
    fn for_kernel(&self, tgid: u32, start_boottime_ns: u64) -> String {
        self.for_ticks(tgid, self.ticks(start_boottime_ns))
    }

    /// The entity id from a procfs start time in ticks.
    pub(crate) fn for_ticks(&self, tgid: u32, start_ticks: u64) -> String {
        let mut hash = Sha256::new();
        hash.update(self.boot_id.as_bytes());
        hash.update(b"\0");
        hash.update(tgid.to_le_bytes());
        hash.update(start_ticks.to_le_bytes());
        crate::record::hex(&hash.finalize()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_procfs_times_name_the_same_process() {
        let ids = EntityIds {
            boot_id: "b".into(),
            ns_per_tick: 10_000_000,
        };
        assert_eq!(ids.for_kernel(42, 1_234_567_890), ids.for_ticks(42, 123));
        assert_eq!(ids.for_kernel(42, 1_234_567_890).len(), 32);
    }

    #[test]
    fn differs_by_pid_start_and_boot() {
        let a = EntityIds {
            boot_id: "boot-a".into(),
            ns_per_tick: 10_000_000,
        };
        let b = EntityIds {
            boot_id: "boot-b".into(),
            ns_per_tick: 10_000_000,
        };
        let id = a.for_ticks(100, 5);
        assert_ne!(id, a.for_ticks(101, 5), "pid reuse must not collide");
        assert_ne!(id, a.for_ticks(100, 6), "a reused pid starts later");
        assert_ne!(id, b.for_ticks(100, 5), "another boot or host");
        assert_eq!(id, a.for_ticks(100, 5), "stable across sensor restarts");
    }
}
