//! Read-only globals the loader sets before loading: kernel struct offsets from BTF and the
//! programs' run-time settings.
use aya_ebpf::Global;
use sensor_common::{KernelOffsets, ProgramConfig};

#[unsafe(no_mangle)]
static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::ABSENT);

#[unsafe(no_mangle)]
static CONFIG: Global<ProgramConfig> = Global::new(ProgramConfig::DEFAULT);

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    OFFSETS.load()
}

#[inline(always)]
pub fn config() -> ProgramConfig {
    CONFIG.load()
}
