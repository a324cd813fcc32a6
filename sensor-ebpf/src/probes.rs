//! Empty programs of each optional kind, loaded and attached once by `agent-sensor probe` to
//! learn for certain what this kernel allows (a program type can exist and still be refused at
//! load or attach, as fentry and LSM are on some locked-down kernels). They do nothing.
use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, lsm},
    programs::{BtfTracePointContext, FEntryContext, LsmContext, ProbeContext},
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[fentry(function = "do_exit")]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
