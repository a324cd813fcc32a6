//! Which processes are observed: every process, or the tracked process trees; never the
//! daemon itself. One map lookup for a process that is not observed.
use crate::{globals::config, maps::TRACKED};

#[inline(always)]
pub fn observed(tgid: u32) -> bool {
    let cfg = config();
    // SAFETY: the value is only tested for presence.
    tgid != cfg.sensor_tgid && (cfg.all_processes != 0 || unsafe { TRACKED.get(&tgid) }.is_some())
}
