//! Read-only globals the loader sets before loading: kernel struct offsets from BTF and the
//! programs' run-time settings. They live in `.rodata`, which the loader freezes, so the
//! verifier knows their values as constants.
use core::mem::MaybeUninit;

use sensor_common::{KernelOffsets, ProgramConfig};

/// A global the loader overrides. Its default must never be folded into the code, so the
/// programs reach it only through a pointer the compiler cannot see through ([`Rodata::get`]);
/// members are then read one by one where used, not copied whole (a copy of the offsets is
/// over 300 bytes of the 512-byte BPF stack).
#[repr(transparent)]
pub struct Rodata<T>(MaybeUninit<T>);

// SAFETY: never written by the programs.
unsafe impl<T> Sync for Rodata<T> {}

impl<T> Rodata<T> {
    const fn new(value: T) -> Self {
        Self(MaybeUninit::new(value))
    }

    #[inline(always)]
    fn get(&'static self) -> &'static T {
        // SAFETY: always initialised; `black_box` hides the initialiser from the optimiser.
        unsafe { &*core::hint::black_box(self.0.as_ptr()) }
    }
}

#[unsafe(no_mangle)]
static OFFSETS: Rodata<KernelOffsets> = Rodata::new(KernelOffsets::ABSENT);

#[unsafe(no_mangle)]
static CONFIG: Rodata<ProgramConfig> = Rodata::new(ProgramConfig::DEFAULT);

#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    OFFSETS.get()
}

#[inline(always)]
pub fn config() -> &'static ProgramConfig {
    CONFIG.get()
}
