//! Values in the form the verifier needs to bound them. The compiler drops a check it can prove
//! redundant, or keeps a bound on a copy the verifier does not relate to the value used; and
//! older verifiers (5.10, 6.1) can carry contradictory bounds along a path that 6.12 prunes as
//! impossible, then refuse the pointer arithmetic on it. Hiding a value from the compiler and
//! masking it right where it is used gives every verifier a fresh, sane bound.
use sensor_common::SCRATCH_SIZE;

/// `x`, which the compiler can no longer reason about: a check or mask after it stays.
#[inline(always)]
pub fn opaque(x: usize) -> usize {
    // SAFETY: reading a local.
    unsafe { core::ptr::read_volatile(&x) }
}

/// `at` as an offset into the scratch buffer where something of up to `SCRATCH_SIZE - last`
/// bytes is written, or `None` if it would not fit.
#[inline(always)]
pub fn scratch_offset(at: usize, last: usize) -> Option<usize> {
    let at = opaque(at) & (SCRATCH_SIZE - 1);
    (at <= last).then_some(at)
}
