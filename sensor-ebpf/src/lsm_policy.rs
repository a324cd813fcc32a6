//! `executables` and `files` rules in `enforce` mode, where the kernel has BPF LSM: the
//! `bprm_check_security` and `file_open` hooks refuse (`-EPERM`) an agent's exec or open that
//! its rule does not allow, before it happens. The rules are the entries marked
//! `exec_allow::ENFORCE` of the LPM tries `EXEC_POLICY`, `FILE_READ_POLICY` and
//! `FILE_WRITE_POLICY`, keyed by agent and path as in kill mode (`exec_policy`). A process that is no agent's and the daemon
//! itself pay one map lookup, an agent without an enforced rule two (its catch-all entry, before
//! any path is walked), and are never refused. A refused exec never reaches `sched_process_exec`, so it is reported
//! here, as a file record of the executable (`syscall::EXEC_DENIED`); a refused open is
//! reported by its syscall's exit, failed with `EPERM`.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task, bpf_probe_read_kernel},
    },
    macros::lsm,
    programs::LsmContext,
};
use sensor_common::{FILENAME_CAP, FileRecord, SCRATCH_SIZE, file_flags, kind, syscall as sc};

use crate::{
    bounds::opaque,
    exec_policy::{PATH_CUT, check_path, rule_of, verdict},
    globals::{config, offsets},
    kernel::{KPtr, Task, as_number, current_comm},
    maps::{EXEC_POLICY, FILE_READ_POLICY, FILE_WRITE_POLICY, PATHBUF, SCRATCH, TRACKED},
    output::submit_bytes,
    process::header,
};

const EPERM: i32 = 1;
/// `fmode_t` bits (include/linux/fs.h), the same on every kernel.
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;
/// The open flag exec's own open of the program (and of its ELF interpreter) carries
/// (`__FMODE_EXEC`); `f_mode` gets `FMODE_EXEC` only after `file_open` on some kernels.
const O_FMODE_EXEC: u32 = 0x20;
const HEADER: usize = size_of::<FileRecord>();

/// Each program returns the verdict of the LSM programs before it when that is a refusal.
#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check(ctx: LsmContext) -> i32 {
    // int bprm_check_security(struct linux_binprm *bprm), then the verdict so far.
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    refusal(check_exec(as_number(ctx.arg::<*const u8>(0))))
}

#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    // int file_open(struct file *file), then the verdict so far.
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    refusal(check_open(as_number(ctx.arg::<*const u8>(0))))
}

/// `-EPERM` for a check's 1, else 0, as constants: the verifier (6.12 and later) wants an LSM
/// program's return within [-4095, 0], and would not know the range of `-check` (the compiler
/// knows the check returns 0 or 1; the verifier does not).
#[inline(always)]
fn refusal(check: u64) -> i32 {
    if opaque(check as usize) != 0 {
        -EPERM
    } else {
        0
    }
}

/// The calling process's agent, if it is one (never the daemon).
#[inline(always)]
fn agent_of_current() -> Option<(u32, sensor_common::TrackedProcess)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == config().sensor_tgid {
        return None;
    }
    // SAFETY: copied out at once.
    let t = unsafe { TRACKED.get(tgid) }.copied()?;
    (t.agent != 0).then_some((tgid, t))
}

/// The absolute path of the file at `file` (a `struct file *`), walked from the current
/// task's root into this CPU's path buffer: where it starts, its length with [`PATH_CUT`] when
/// it is cut (or could not be walked), and its dentry.
#[inline(always)]
fn walk_file(task: &Task, file: KPtr) -> (*const u8, u64, u64) {
    let off = task.off;
    let Some(buf) = PATHBUF.get_ptr(0) else {
        return (core::ptr::null(), PATH_CUT, 0);
    };
    let buf = buf as *const u8;
    if let (Some(path), Some((_, root))) = (task.path_at(file, off.file_path), task.cwd_and_root())
        && let Some(w) = task.walk(path, root)
    {
        let cut = if w.truncated { PATH_CUT } else { 0 };
        let len = (w.len & (FILENAME_CAP as usize - 1)) as u64;
        // SAFETY: start + len stays in the path buffer's two windows.
        let src = unsafe { buf.add(w.start & (FILENAME_CAP as usize - 1)) };
        return (src, len | cut, path.dentry.0 as u64);
    }
    (buf, PATH_CUT, 0)
}

/// The exec check: 1 (refuse with `EPERM`) when `bprm`'s file is not allowed by the calling agent's enforced
/// executables rule, else 0. A global function, verified once on its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn check_exec(bprm: u64) -> u64 {
    let Some((tgid, attribution)) = agent_of_current() else {
        return 0;
    };
    let off = offsets();
    let bprm = KPtr(bprm as *const u8);
    // A `#!` script: binfmt_script runs this check again for its interpreter, which is what
    // the rule judges (the exec record's `process.executable`).
    if bprm.read::<u16>(off.bprm_buf) == Some(u16::from_le_bytes(*b"#!")) {
        return 0;
    }
    // One lookup before any walk: is the agent's executables rule enforced?
    let enforced = rule_of(&EXEC_POLICY, attribution.agent)
        .is_some_and(|kind| kind & sensor_common::exec_allow::ENFORCE != 0);
    if !enforced {
        return 0;
    }
    let Some(file) = bprm.follow(off.bprm_file) else {
        return 0;
    };
    // SAFETY: a plain helper call.
    let task = Task::new(unsafe { bpf_get_current_task() } as *const u8, off);
    let (src, len, dentry) = walk_file(&task, file);
    let v = check_path(&EXEC_POLICY, u64::from(attribution.agent), src, len, dentry);
    if v & verdict::FORBIDDEN == 0 || v & verdict::ENFORCED == 0 {
        return 0;
    }
    report_denied_exec(&task, tgid, attribution, src, len);
    1
}

/// The open check: 1 (refuse with `EPERM`) when the calling agent's enforced files rule does not allow
/// `file` to be opened as it is being opened (for writing: the write set; else for reading:
/// the read set), else 0. The exec'd file itself (and its interpreter) is the executables
/// rule's business. A global function, verified once on its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn check_open(file: u64) -> u64 {
    let Some((_, attribution)) = agent_of_current() else {
        return 0;
    };
    let agent = attribution.agent;
    let off = offsets();
    let file = KPtr(file as *const u8);
    let mode = file.read::<u32>(off.file_mode).unwrap_or(0);
    let flags = file.read::<u32>(off.file_flags).unwrap_or(0);
    if mode & FMODE_EXEC != 0 || flags & O_FMODE_EXEC != 0 {
        return 0;
    }
    let write = mode & FMODE_WRITE != 0;
    if !write && mode & FMODE_READ == 0 {
        return 0;
    }
    // One lookup before any walk: does the agent have an enforced rule for this access? (A
    // rule in kill mode is the open syscall's exit's business.)
    let enforced = if write {
        rule_of(&FILE_WRITE_POLICY, agent)
    } else {
        rule_of(&FILE_READ_POLICY, agent)
    }
    .is_some_and(|kind| kind & sensor_common::exec_allow::ENFORCE != 0);
    if !enforced {
        return 0;
    }
    // SAFETY: a plain helper call.
    let task = Task::new(unsafe { bpf_get_current_task() } as *const u8, off);
    let (src, len, dentry) = walk_file(&task, file);
    let v = if write {
        check_path(&FILE_WRITE_POLICY, u64::from(agent), src, len, dentry)
    } else {
        check_path(&FILE_READ_POLICY, u64::from(agent), src, len, dentry)
    };
    u64::from(v & verdict::FORBIDDEN != 0)
}

/// Reports a refused exec: a file record of the executable (`EXEC_DENIED`, `-EPERM`), its
/// path as the resolved path.
#[inline(always)]
fn report_denied_exec(
    task: &Task,
    tgid: u32,
    attribution: sensor_common::TrackedProcess,
    src: *const u8,
    len: u64,
) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch buffer, larger than a record and its path.
    let buf = unsafe { &mut *buf };
    let n = (len as usize) & (FILENAME_CAP as usize - 1);
    // Written in place: a FileRecord on the stack would take a third of it.
    // SAFETY: map values are 8-byte aligned; the buffer is larger than a FileRecord.
    let r = unsafe { &mut *buf.as_mut_ptr().cast::<FileRecord>() };
    r.header = header(kind::FILE, HEADER + n, attribution);
    r.start_boottime = task.process_start();
    r.ret = -i64::from(EPERM);
    r.arg = 0;
    r.ino = 0;
    r.pid = bpf_get_current_pid_tgid() as u32;
    r.tgid = tgid;
    r.flags = 0;
    r.mode = 0;
    r.uid = u32::MAX;
    r.gid = u32::MAX;
    r.dfd = -100;
    r.dfd2 = -100;
    r.fd = -1;
    r.syscall = sc::EXEC_DENIED;
    r.str_flags = if len & PATH_CUT != 0 {
        file_flags::RESOLVED_TRUNCATED
    } else {
        0
    };
    r.path_len = 0;
    r.path2_len = 0;
    r.base_len = 0;
    r.base2_len = 0;
    r.resolved_len = n as u16;
    r._pad = [0; 3];
    r.comm = current_comm();
    if src.is_null() {
        return;
    }
    // SAFETY: HEADER + n <= SCRATCH_SIZE; the source is this CPU's path buffer.
    unsafe { bpf_probe_read_kernel(buf.as_mut_ptr().add(HEADER).cast(), n as u32, src.cast()) };
    submit_bytes(kind::FILE, buf, HEADER + n);
}

const _: () = assert!(HEADER + FILENAME_CAP as usize <= SCRATCH_SIZE);
