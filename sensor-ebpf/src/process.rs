//! Process lifecycle: exec, fork/clone and exit, from the scheduler's raw tracepoints (their
//! arguments are the kernel's own `task_struct *` and `linux_binprm *`, so nothing is looked
//! up after the fact and short-lived processes come out complete).
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use sensor_common::{
    ARGS_CAP, ENV_CAP, ExeKey, ExecRecord, ExitRecord, FILENAME_CAP, ForkRecord, RECORD_VERSION,
    RecordHeader, SCRATCH_SIZE, TrackedProcess, exec_flags, exit_flags, fork_flags, kind,
    tracked_flags,
};

use crate::{
    bounds::scratch_offset,
    exec_policy::{PATH_CUT, kill_forbidden_exec},
    filter::{attribute_exec, observed},
    globals::{config, offsets},
    kernel::{KPtr, Task, current_comm},
    maps::{PATHBUF, SCRATCH, TRACKED},
    output::{submit, submit_bytes},
};

const EXEC_HEADER: usize = size_of::<ExecRecord>();

#[inline(always)]
pub fn header(kind: u16, size: usize, attribution: TrackedProcess) -> RecordHeader {
    RecordHeader {
        kind,
        version: RECORD_VERSION,
        size: size as u32,
        // SAFETY: a plain helper call.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        attribution,
    }
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Option<()> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let off = offsets();
    let cfg = config();
    if tgid == cfg.sensor_tgid {
        return None;
    }
    let task = Task::new(ctx.arg::<*const u8>(0), off);
    let bprm = KPtr(ctx.arg::<*const u8>(2));
    // The process's own selectors decide its agent now, before anything is reported.
    let exe_key = bprm
        .follow(off.bprm_file)
        .and_then(|file| task.path_at(file, off.file_path))
        .map(|p| {
            let inode = p.dentry.follow(off.dentry_inode);
            ExeKey {
                ino: inode
                    .and_then(|i| i.read::<u64>(off.inode_ino))
                    .unwrap_or(0),
                dev: inode
                    .and_then(|i| i.follow(off.inode_sb))
                    .and_then(|sb| sb.read::<u32>(off.sb_dev))
                    .unwrap_or(0),
                _pad: 0,
            }
        });
    // SAFETY: plain helper calls.
    let (cgroup_id, uid) = unsafe {
        (
            bpf_get_current_cgroup_id(),
            bpf_get_current_uid_gid() as u32,
        )
    };
    let mut flags = 0;
    let attribution = match attribute_exec(tgid, cgroup_id, exe_key, uid) {
        Some(a) => a,
        None if cfg.hold_new_cgroups != 0 && crate::filter::is_held(cgroup_id) => {
            TrackedProcess::held(cgroup_id)
        }
        None if cfg.all_processes != 0 => TrackedProcess::default(),
        None if cfg.unmatched_execs != 0 => {
            flags |= exec_flags::UNMATCHED;
            if cfg.env_marker != 0 {
                flags |= exec_flags::ENV_INCLUDED;
            }
            TrackedProcess::default()
        }
        None => return None,
    };
    let attribution = if cfg.pend_execs != 0 && crate::filter::daemon_may_change(attribution) {
        let pending = TrackedProcess {
            flags: attribution.flags | tracked_flags::PENDING,
            ..attribution
        };
        if TRACKED.insert(tgid, pending, 0).is_err() {
            crate::output::count_lost(kind::TRACKING);
        }
        pending
    } else {
        attribution
    };
    // SAFETY: the scratch slot is this CPU's and lives as long as the map.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };

    // argv, straight from the new image's memory: exactly what the program will see.
    let mut args_len: u32 = 0;
    let mut args_size: u64 = 0;
    match task.args_range() {
        Some((start, end)) if end >= start => {
            args_size = end - start;
            let cfg_max = config().args_max;
            let max = if cfg_max > ARGS_CAP {
                ARGS_CAP
            } else {
                cfg_max
            };
            args_len = if args_size > max as u64 {
                flags |= exec_flags::ARGS_TRUNCATED;
                max
            } else {
                args_size as u32
            };
            if args_len > ARGS_CAP {
                return None;
            }
            // SAFETY: EXEC_HEADER + args_len <= SCRATCH_SIZE (asserted in sensor-common).
            let ret = unsafe {
                bpf_probe_read_user(
                    buf.as_mut_ptr().add(EXEC_HEADER).cast(),
                    args_len,
                    start as *const _,
                )
            };
            if ret < 0 {
                flags |= exec_flags::ARGS_UNREADABLE;
                args_len = 0;
            }
        }
        _ => flags |= exec_flags::ARGS_UNREADABLE,
    }

    // The file name as passed to exec, after argv.
    let mut filename_len: u32 = 0;
    let filename_at = scratch_offset(
        EXEC_HEADER + args_len as usize,
        SCRATCH_SIZE - FILENAME_CAP as usize,
    );
    match (bprm.read::<*const u8>(off.bprm_filename), filename_at) {
        (Some(name), Some(at)) if !name.is_null() => {
            // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE.
            let ret = unsafe {
                bpf_probe_read_kernel_str(
                    buf.as_mut_ptr().add(at).cast(),
                    FILENAME_CAP,
                    name.cast(),
                )
            };
            if ret > 0 {
                // The count includes the NUL; a full buffer may mean a cut name.
                filename_len = ret as u32 - 1;
                if ret as u32 >= FILENAME_CAP {
                    flags |= exec_flags::FILENAME_TRUNCATED;
                }
            } else {
                flags |= exec_flags::FILENAME_UNREADABLE;
            }
        }
        _ => flags |= exec_flags::FILENAME_UNREADABLE,
    }
    let filename_len = filename_len & (FILENAME_CAP - 1);

    // The absolute path of the file the kernel runs, from its dentries.
    let mut exe_len: u32 = 0;
    let mut exe_dentry: u64 = 0;
    let exe_at = EXEC_HEADER + args_len as usize + filename_len as usize;
    if let (Some(file), Some((_, root))) = (bprm.follow(off.bprm_file), task.cwd_and_root())
        && let Some(path) = task.path_at(file, off.file_path)
        && let Some(w) = task.walk(path, root)
    {
        exe_dentry = path.dentry.0 as u64;
        exe_len = (w.len & (FILENAME_CAP as usize - 1)) as u32;
        if w.truncated {
            flags |= exec_flags::EXE_TRUNCATED;
        }
        let at = scratch_offset(exe_at, SCRATCH_SIZE - FILENAME_CAP as usize);
        if let (Some(pathbuf), Some(at)) = (PATHBUF.get_ptr(0), at) {
            // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE; start + len stays in the path
            // buffer.
            unsafe {
                bpf_probe_read_kernel(
                    buf.as_mut_ptr().add(at).cast(),
                    exe_len,
                    (pathbuf as *const u8)
                        .add(w.start & (FILENAME_CAP as usize - 1))
                        .cast(),
                )
            };
        }
    }

    // An agent's `executables` rule in kill mode (a global function: a call, no branch here).
    let cut = if flags & exec_flags::EXE_TRUNCATED != 0 {
        PATH_CUT
    } else {
        0
    };
    let killed = kill_forbidden_exec(
        u64::from(attribution.agent),
        exe_at as u64,
        u64::from(exe_len) | cut,
        exe_dentry,
    );
    flags |= (killed as u32 & 1) * exec_flags::POLICY_KILLED;

    // The working directory the program starts in: what its relative paths mean.
    let cwd_at = exe_at + exe_len as usize;
    let copied = copy_cwd(task.ptr.0 as u64, cwd_at as u64);
    let cwd_len = (copied as u32) & (FILENAME_CAP - 1);
    // Branch-free: each branch here would double the states older verifiers explore.
    flags |= ((copied >> 32) as u32 & 1) * exec_flags::CWD_TRUNCATED;

    // The start of the environment, for the daemon's marker check.
    let env_at = cwd_at + cwd_len as usize;
    let mut env_len: u32 = 0;
    if flags & exec_flags::ENV_INCLUDED != 0
        && let Some((start, end)) = task.env_range()
    {
        let size = end.saturating_sub(start);
        let n = if size > ENV_CAP as u64 {
            ENV_CAP
        } else {
            size as u32
        };
        let at = scratch_offset(env_at, SCRATCH_SIZE - ENV_CAP as usize);
        if let (true, Some(at)) = (n > 0, at) {
            // SAFETY: at + ENV_CAP <= SCRATCH_SIZE.
            if unsafe { bpf_probe_read_user(buf.as_mut_ptr().add(at).cast(), n, start as *const _) }
                == 0
            {
                env_len = n;
            }
        }
    }

    let loginuid = task.loginuid();
    if loginuid.is_none() {
        flags |= exec_flags::NO_LOGINUID;
    }
    let size = env_at + env_len as usize;
    if size > SCRATCH_SIZE {
        return None;
    }
    // The record is written field by field where it is sent from: built on the stack first,
    // its 144 bytes made this program's frame too large for kernels without private stacks.
    // SAFETY: the scratch buffer is a map value (8-byte aligned) larger than the record.
    let record = unsafe { &mut *buf.as_mut_ptr().cast::<ExecRecord>() };
    record.header = header(kind::EXEC, size, attribution);
    let (euid, egid) = task.effective_ids();
    record.euid = euid;
    record.egid = egid;
    let uid_gid = bpf_get_current_uid_gid();
    record.uid = uid_gid as u32;
    record.gid = (uid_gid >> 32) as u32;
    let parent = task.real_parent();
    record.start_boottime = task.process_start();
    record.parent_start_boottime = parent.map_or(0, |p| p.process_start());
    record.ppid = parent.map_or(0, |p| p.tgid());
    record.cgroup_id = cgroup_id;
    record.pid = task.pid();
    record.tgid = tgid;
    record.loginuid = loginuid.unwrap_or(u32::MAX);
    record.sessionid = task.sessionid();
    record.pid_ns = task.pid_ns();
    record.mnt_ns = task.mnt_ns();
    record.args_count = bprm.read::<u32>(off.bprm_argc).unwrap_or(0);
    record.args_size = if args_size > u32::MAX as u64 {
        u32::MAX
    } else {
        args_size as u32
    };
    record.args_len = args_len;
    record.filename_len = filename_len;
    record.exe_len = exe_len;
    record.cwd_len = cwd_len;
    record.env_len = env_len;
    record.flags = flags;
    record._pad = 0;
    record.comm = current_comm();
    submit_bytes(kind::EXEC, buf, size);
    Some(())
}

/// Set in [`copy_cwd`]'s result when the walk was cut at the top.
const CWD_CUT: u64 = 1 << 32;

/// Copies the working directory's absolute path of the task at `task` into this CPU's scratch
/// buffer at `at`; returns its length, with [`CWD_CUT`]. A global function, verified once on
/// its own: inline in the exec program, its branches multiplied the states 6.1's verifier
/// explores (187k instructions verified became 480k).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn copy_cwd(task: u64, at: u64) -> u64 {
    let task = Task::new(task as *const u8, offsets());
    let Some(at) = scratch_offset(at as usize, SCRATCH_SIZE - FILENAME_CAP as usize) else {
        return 0;
    };
    let Some((cwd, root)) = task.cwd_and_root() else {
        return 0;
    };
    let Some(w) = task.walk(cwd, root) else {
        return 0;
    };
    let (Some(buf), Some(pathbuf)) = (SCRATCH.get_ptr_mut(0), PATHBUF.get_ptr(0)) else {
        return 0;
    };
    let len = (w.len & (FILENAME_CAP as usize - 1)) as u32;
    // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE; start + len stays in the path buffer.
    unsafe {
        bpf_probe_read_kernel(
            (buf as *mut u8).add(at).cast(),
            len,
            (pathbuf as *const u8)
                .add(w.start & (FILENAME_CAP as usize - 1))
                .cast(),
        )
    };
    u64::from(len) | if w.truncated { CWD_CUT } else { 0 }
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Option<()> {
    let off = offsets();
    let parent = Task::new(ctx.arg::<*const u8>(0), off);
    let child = Task::new(ctx.arg::<*const u8>(1), off);
    let parent_tgid = parent.tgid();
    let child_tgid = child.tgid();
    let thread = child_tgid == parent_tgid;
    if !thread {
        // Inherit tracking here, before the child first runs, so no activity escapes.
        // SAFETY: the value is copied out at once.
        if let Some(value) = unsafe { TRACKED.get(parent_tgid) }.copied() {
            let value = TrackedProcess {
                flags: value.flags | tracked_flags::INHERITED,
                ..value
            };
            if TRACKED.insert(child_tgid, value, 0).is_err() {
                crate::output::count_lost(kind::TRACKING);
            }
        }
    }
    let attribution = observed(parent_tgid)?;
    let uid_gid = bpf_get_current_uid_gid();
    let record = ForkRecord {
        header: header(kind::FORK, size_of::<ForkRecord>(), attribution),
        start_boottime: child.process_start(),
        parent_start_boottime: parent.process_start(),
        // SAFETY: a plain helper call.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        child_pid: child.pid(),
        child_tgid,
        parent_pid: parent.pid(),
        parent_tgid,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        flags: if thread { fork_flags::THREAD } else { 0 },
        _pad: 0,
        comm: current_comm(),
    };
    submit(kind::FORK, &record);
    Some(())
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &RawTracePointContext) -> Option<()> {
    let task = Task::new(ctx.arg::<*const u8>(0), offsets());
    let tgid = task.tgid();
    let group_dead = if config().exit_has_group_dead != 0 {
        ctx.arg::<u64>(1) & 0xff != 0
    } else {
        task.group_dead()
    };
    let wanted = observed(tgid);
    if group_dead {
        // Ignoring the result: most processes were never tracked.
        let _ = TRACKED.remove(tgid);
    }
    let attribution = wanted?;
    let record = ExitRecord {
        header: header(kind::EXIT, size_of::<ExitRecord>(), attribution),
        start_boottime: task.process_start(),
        pid: task.pid(),
        tgid,
        exit_code: task.exit_code(),
        flags: if group_dead {
            exit_flags::GROUP_DEAD
        } else {
            0
        },
        comm: current_comm(),
    };
    submit(kind::EXIT, &record);
    Some(())
}
