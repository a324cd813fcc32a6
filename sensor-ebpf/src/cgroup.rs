//! Cgroup v2 changes that decide attribution. New directories (`cgroup_mkdir`): reported to the
//! daemon and held until it has decided whether they are an agent's (a cgroup selector, or a
//! container's metadata), so the first processes of a new container or agent cgroup are
//! attributed like the later ones. Processes moved into an agent's cgroup
//! (`cgroup_attach_task`): attributed at the move, not at their next exec.
use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_probe_read_kernel_str},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use sensor_common::{CGROUP_PATH_CAP, CgroupRecord, TrackedProcess, kind};

use crate::{
    filter::attribute_migration,
    globals::{config, offsets},
    kernel::KPtr,
    maps::{HELD_CGROUPS, HOLDING_UNTIL, SCRATCH},
    output::submit_bytes,
    process::header,
};

/// How long after the last new cgroup untracked processes are checked against the held ones.
/// Longer than the daemon ever needs to decide; a cgroup still held then is released.
const HOLD_WINDOW_NS: u64 = 10_000_000_000;

const HEADER: usize = size_of::<CgroupRecord>();

#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    let _ = try_mkdir(&ctx);
    0
}

/// The id of a cgroup of the unified (v2) hierarchy (whose hierarchy id is 0: its ids are what
/// processes report); `None` for a v1 cgroup.
#[inline(always)]
fn unified_id(cgroup: KPtr) -> Option<u64> {
    let off = offsets();
    let hierarchy = cgroup
        .follow(off.cgroup_root)?
        .read::<i32>(off.cgroup_root_hierarchy_id)?;
    if hierarchy != 0 {
        return None;
    }
    cgroup
        .follow(off.cgroup_kn)?
        .read::<u64>(off.kernfs_node_id)
}

/// A process (or one thread: `cgroup.threads`) moved into a cgroup, fired once per move after
/// it succeeded, for the thread group's leader: (cgroup, path, task, whole thread group).
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: RawTracePointContext) -> i32 {
    let _ = try_attach(&ctx);
    0
}

fn try_attach(ctx: &RawTracePointContext) -> Option<()> {
    let id = unified_id(KPtr(ctx.arg::<*const u8>(0)))?;
    let tgid = KPtr(ctx.arg::<*const u8>(2)).read::<u32>(offsets().task_tgid)?;
    attribute_migration(tgid, id);
    Some(())
}

fn try_mkdir(ctx: &RawTracePointContext) -> Option<()> {
    if config().hold_new_cgroups == 0 {
        return None;
    }
    let id = unified_id(KPtr(ctx.arg::<*const u8>(0)))?;
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // Held before it is reported: no process can be in it yet (it is not visible until this
    // tracepoint returns), so none of its records can precede this one.
    let _ = HELD_CGROUPS.insert(id, now, 0);
    if let Some(until) = HOLDING_UNTIL.get_ptr_mut(0) {
        // SAFETY: one u64 slot; racing writers all store a time in the near future.
        unsafe { *until = now + HOLD_WINDOW_NS };
    }
    // SAFETY: the scratch slot is this CPU's and lives as long as the map.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let path = ctx.arg::<*const u8>(1);
    // SAFETY: the helper bounds the read by the size given and copes with bad addresses.
    let copied = unsafe {
        bpf_probe_read_kernel_str(
            buf.as_mut_ptr().add(HEADER) as *mut _,
            CGROUP_PATH_CAP,
            path as *const _,
        )
    };
    // The count includes the NUL; nothing readable is reported as an empty path.
    let path_len = if copied > 0 { copied as u32 - 1 } else { 0 };
    let size = HEADER + path_len as usize;
    let record = CgroupRecord {
        header: header(kind::CGROUP, size, TrackedProcess::default()),
        id,
        path_len,
        _pad: 0,
    };
    // SAFETY: the record fits at the start of the scratch buffer.
    unsafe { core::ptr::write_unaligned(buf.as_mut_ptr() as *mut CgroupRecord, record) };
    submit_bytes(kind::CGROUP, buf, size);
    Some(())
}
