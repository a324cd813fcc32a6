//! Empty programs of each optional kind (and one per helper the programs may do without), loaded and attached once by `agent-sensor probe` to
//! learn for certain what this kernel allows (a program type can exist and still be refused at
//! load or attach, as fentry and LSM are on some locked-down kernels). They do nothing.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::{btf_tracepoint, fentry, kprobe, lsm, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, LsmContext, ProbeContext, TracePointContext},
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

/// Loads where the kernel has `bpf_get_current_task_btf` and `bpf_task_pt_regs` (Linux >=
/// 5.15): then the syscall exit programs read arguments from the saved registers.
#[tracepoint]
pub fn probe_task_regs(_ctx: TracePointContext) -> u32 {
    // SAFETY: plain helper calls.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) };
    u32::from(regs == 0)
}
