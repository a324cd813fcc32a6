//! The only code that writes to the ring buffer: its wakeup policy and the loss counters.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};

use sensor_common::SCRATCH_SIZE;

use crate::{
    globals::config,
    maps::{EVENTS, LOST},
};

/// Wakes the consumer only with the record that brings the waiting bytes to `wakeup_bytes`: a
/// wakeup (an interrupt to the consumer's CPU, a VM exit under a hypervisor) costs several times
/// the probe itself. Below the threshold the consumer's timer collects the records in time;
/// above it the consumer has been woken and is reading, so waking it again per record (what
/// "at or above the threshold" would do whenever it falls behind) only slows the writer.
#[inline(always)]
fn wakeup_flags(size: u64) -> u64 {
    let threshold = config().wakeup_bytes;
    if threshold == 0 {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if waiting < threshold && waiting + size >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Counts a record of `kind` that the ring buffer had no room for.
#[inline(always)]
pub fn count_lost(kind: u16) {
    if let Some(counter) = LOST.get_ptr_mut(kind as u32) {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe { *counter += 1 };
    }
}

/// Sends a fixed-size record.
#[inline(always)]
pub fn submit<T>(kind: u16, record: &T) {
    if EVENTS
        .output::<T>(record, wakeup_flags(size_of::<T>() as u64))
        .is_err()
    {
        count_lost(kind);
    }
}

/// Sends the first `len` bytes of the scratch buffer, where a variable-length record was
/// assembled.
#[inline(always)]
pub fn submit_bytes(kind: u16, buf: &[u8; SCRATCH_SIZE], len: usize) {
    // The helper's size must carry an upper bound the verifier can see, right here (`bounds`).
    let len = crate::bounds::opaque(len);
    if len == 0 || len > SCRATCH_SIZE {
        return;
    }
    // SAFETY: len <= the buffer's size.
    let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr(), len) };
    if EVENTS
        .output::<[u8]>(bytes, wakeup_flags(len as u64))
        .is_err()
    {
        count_lost(kind);
    }
}
