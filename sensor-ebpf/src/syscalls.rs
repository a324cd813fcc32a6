//! Which file or network syscall a `sys_exit_*` program reports, and its arguments, read at
//! exit from the task's saved registers and normalised to one layout ([`CallArgs`]). With no
//! enter program to save them, an unobserved process pays one program and one map lookup per
//! call, and an observed one no map insert and delete. `connect` alone keeps an enter
//! program: a non-blocking connect's outcome can arrive before its exit (see `net`). Kernels
//! before 5.15 cannot read the saved registers: there `enter_save` keeps the arguments.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{CallArgs, SavedCall, TrackedProcess, syscall as sc};

use crate::{
    filter::observed,
    globals::{config, offsets},
    maps::{SAVED_CALLS, SYSCALL_IDS},
};

const AT_FDCWD: i32 = -100;
const O_CREAT_WRONLY_TRUNC: u32 = 0o1101;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;

/// The syscall the calling thread is returning from, if the thread is observed and the call
/// followed.
pub struct Current {
    /// `pid_tgid`.
    pub id: u64,
    pub who: TrackedProcess,
    pub call: CallArgs,
    /// The return value.
    pub ret: i64,
}

/// What the exit program reports. Where the kernel has `bpf_task_pt_regs` (Linux >= 5.15), from
/// the current task's `struct pt_regs`: the kernel keeps the arguments there unchanged until
/// the syscall returns to user space, with the syscall's number and its return value. Plain
/// loads through the BTF-typed pointer the helper returns, at offsets resolved from BTF
/// (constants to the verifier); the tracepoint record itself could only be read with a helper
/// call per field. On older kernels, from what the enter program saved ([`save_call`]) and the
/// exit record's `ret`. The choice is a read-only global, so the verifier of each kernel only
/// ever sees one of the two paths.
#[inline(always)]
pub fn current_call(ctx: &TracePointContext) -> Option<Current> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    let (nr, args, ret) = if config().task_regs != 0 {
        registers()?
    } else {
        // SAFETY: copied out before the entry is removed.
        let saved = unsafe { SAVED_CALLS.get(id) }.copied()?;
        let _ = SAVED_CALLS.remove(id);
        // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
        let ret = unsafe { ctx.read_at::<i64>(config().syscall_ret_offset as usize) }.ok()?;
        (saved.nr, saved.args, ret)
    };
    let syscall = *SYSCALL_IDS.get(nr as u32)?;
    if syscall == 0 {
        return None;
    }
    Some(Current {
        id,
        who,
        call: call_args(syscall, &args),
        ret,
    })
}

/// The syscall's number, arguments and return value from the current task's saved registers.
#[inline(always)]
fn registers() -> Option<(u64, [u64; 6], i64)> {
    let off = offsets();
    // SAFETY: plain helper calls and BTF-checked loads (see `current_call`).
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return None;
        }
        let read = |at: u32| core::ptr::read_volatile(regs.add(at as usize).cast::<u64>());
        // The number's low 4 bytes (little-endian): arm64 keeps it in an `s32 syscallno`, and
        // the verifier refuses a load that runs past the end of a member.
        let nr = core::ptr::read_volatile(regs.add(off.regs_nr as usize).cast::<u32>());
        let a = off.regs_args;
        Some((
            u64::from(nr),
            [
                read(a[0]),
                read(a[1]),
                read(a[2]),
                read(a[3]),
                read(a[4]),
                read(a[5]),
            ],
            read(off.regs_ret) as i64,
        ))
    }
}

/// On kernels without `bpf_task_pt_regs`: keeps an observed thread's syscall number and
/// arguments from its `sys_enter_*` record until the exit program reports the call.
#[inline(always)]
fn save_call(ctx: &TracePointContext, id: u64) {
    let at = config().syscall_args_offset as usize;
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    let (Ok(nr), Ok(args)) = (unsafe { ctx.read_at::<i32>(SYSCALL_NR_OFFSET) }, unsafe {
        ctx.read_at::<[u64; 6]>(at)
    }) else {
        return;
    };
    let saved = SavedCall {
        nr: nr as u64,
        args,
    };
    if SAVED_CALLS.insert(id, saved, 0).is_err() {
        crate::output::count_lost(sensor_common::kind::TRACKING);
    }
}

/// Where every `syscalls:*` record keeps `__syscall_nr` (after the 8-byte common header).
const SYSCALL_NR_OFFSET: usize = 8;

/// The enter program of every followed syscall on kernels without `bpf_task_pt_regs`.
#[tracepoint]
pub fn enter_save(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if observed((id >> 32) as u32).is_some() {
        save_call(&ctx, id);
    }
    0
}

/// How each syscall's arguments map onto a `CallArgs`. Files: paths in ptr1 (and ptr2),
/// directory fds in dfd (and dfd2). Network: the socket fd in fd; the sockaddr (or msghdr,
/// or buffer) in ptr1/ptr2.
#[inline(always)]
fn call_args(syscall: u16, a: &[u64; 6]) -> CallArgs {
    let mut c = CallArgs {
        syscall,
        dfd: AT_FDCWD,
        dfd2: AT_FDCWD,
        fd: -1,
        uid: u32::MAX,
        gid: u32::MAX,
        ..Default::default()
    };
    match syscall {
        sc::OPEN => {
            c.ptr1 = a[0];
            c.flags = a[1] as u32;
            c.mode = a[2] as u32;
        }
        sc::OPENAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.flags = a[2] as u32;
            c.mode = a[3] as u32;
        }
        sc::OPENAT2 => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how = a[2] as *const [u64; 3];
            // SAFETY: a user pointer; a bad one is an error.
            if let Ok(h) = unsafe { bpf_probe_read_user(how) } {
                c.flags = h[0] as u32;
                c.mode = h[1] as u32;
                c.arg = h[2];
            }
        }
        sc::CREAT => {
            c.ptr1 = a[0];
            c.mode = a[1] as u32;
            c.flags = O_CREAT_WRONLY_TRUNC;
        }
        sc::RENAME => {
            c.ptr1 = a[0];
            c.ptr2 = a[1];
        }
        sc::RENAMEAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.dfd2 = a[2] as i32;
            c.ptr2 = a[3];
        }
        sc::RENAMEAT2 => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.dfd2 = a[2] as i32;
            c.ptr2 = a[3];
            c.flags = a[4] as u32;
        }
        sc::UNLINK => {
            c.ptr1 = a[0];
        }
        sc::UNLINKAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.flags = a[2] as u32;
        }
        sc::RMDIR => {
            c.ptr1 = a[0];
        }
        sc::MKDIR => {
            c.ptr1 = a[0];
            c.mode = a[1] as u32;
        }
        sc::MKDIRAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.mode = a[2] as u32;
        }
        sc::CHMOD => {
            c.ptr1 = a[0];
            c.mode = a[1] as u32;
        }
        sc::FCHMOD => {
            c.fd = a[0] as i32;
            c.mode = a[1] as u32;
        }
        sc::FCHMODAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.mode = a[2] as u32;
        }
        sc::FCHMODAT2 => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.mode = a[2] as u32;
            c.flags = a[3] as u32;
        }
        sc::CHOWN => {
            c.ptr1 = a[0];
            c.uid = a[1] as u32;
            c.gid = a[2] as u32;
        }
        sc::LCHOWN => {
            c.ptr1 = a[0];
            c.uid = a[1] as u32;
            c.gid = a[2] as u32;
            c.flags = AT_SYMLINK_NOFOLLOW;
        }
        sc::FCHOWN => {
            c.fd = a[0] as i32;
            c.uid = a[1] as u32;
            c.gid = a[2] as u32;
        }
        sc::FCHOWNAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.uid = a[2] as u32;
            c.gid = a[3] as u32;
            c.flags = a[4] as u32;
        }
        sc::TRUNCATE => {
            c.ptr1 = a[0];
            c.arg = a[1];
        }
        sc::FTRUNCATE => {
            c.fd = a[0] as i32;
            c.arg = a[1];
        }
        sc::LINK => {
            c.ptr1 = a[0];
            c.ptr2 = a[1];
        }
        sc::LINKAT => {
            c.dfd = a[0] as i32;
            c.ptr1 = a[1];
            c.dfd2 = a[2] as i32;
            c.ptr2 = a[3];
            c.flags = a[4] as u32;
        }
        // symlink(target, linkpath): the target is stored as text, never resolved.
        sc::SYMLINK => {
            c.ptr1 = a[0];
            c.ptr2 = a[1];
        }
        sc::SYMLINKAT => {
            c.ptr1 = a[0];
            c.dfd2 = a[1] as i32;
            c.ptr2 = a[2];
        }
        sc::CONNECT => {
            c.fd = a[0] as i32;
            c.ptr1 = a[1];
            c.arg = a[2];
        }
        sc::ACCEPT => {
            c.fd = a[0] as i32;
        }
        sc::ACCEPT4 => {
            c.fd = a[0] as i32;
            c.flags = a[3] as u32;
        }
        sc::BIND => {
            c.fd = a[0] as i32;
            c.ptr1 = a[1];
            c.arg = a[2];
        }
        sc::LISTEN => {
            c.fd = a[0] as i32;
            c.flags = a[1] as u32;
        }
        // sendto(fd, buf, len, flags, addr, addrlen): buffer in ptr2, address in ptr1.
        sc::SENDTO => {
            c.fd = a[0] as i32;
            c.ptr2 = a[1];
            c.arg2 = a[2];
            c.flags = a[3] as u32;
            c.ptr1 = a[4];
            c.arg = a[5];
        }
        // sendmsg(fd, msg, flags), recvmsg(fd, msg, flags): the msghdr in ptr2.
        sc::SENDMSG => {
            c.fd = a[0] as i32;
            c.ptr2 = a[1];
            c.flags = a[2] as u32;
        }
        // sendmmsg(fd, mmsg, vlen, flags): the first mmsghdr in ptr2, vlen in arg2.
        sc::SENDMMSG => {
            c.fd = a[0] as i32;
            c.ptr2 = a[1];
            c.arg2 = a[2];
            c.flags = a[3] as u32;
        }
        // recvfrom(fd, buf, size, flags, addr, addrlen*): the kernel fills addr.
        sc::RECVFROM => {
            c.fd = a[0] as i32;
            c.ptr2 = a[1];
            c.arg2 = a[2];
            c.flags = a[3] as u32;
            c.ptr1 = a[4];
            c.arg = a[5];
        }
        sc::RECVMSG => {
            c.fd = a[0] as i32;
            c.ptr2 = a[1];
            c.flags = a[2] as u32;
        }
        _ => {}
    }
    c
}

/// A `sys_enter_*` record's argument `n` (only `connect` has an enter program).
#[inline(always)]
fn enter_arg(ctx: &TracePointContext, n: usize) -> u64 {
    let at = config().syscall_args_offset as usize + n * 8;
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    unsafe { ctx.read_at::<u64>(at) }.unwrap_or(0)
}

/// A non-blocking connect's watch must be set before the call: on loopback the handshake can
/// complete inside it.
/// Without `bpf_task_pt_regs` it saves connect's arguments too (connect has no `enter_save`).
#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if observed((id >> 32) as u32).is_some() {
        if config().task_regs == 0 {
            save_call(&ctx, id);
        }
        crate::net::watch_nonblocking_connect(enter_arg(&ctx, 0) as i32);
    }
    0
}
