//! `sys_enter_*` programs for the file and network syscalls: each saves its syscall's
//! arguments, normalised to one layout, for the matching `sys_exit_*` program (`file`, `net`),
//! which reports the call with its outcome. One program per syscall, so no architecture's
//! syscall numbers are needed; only observed processes pay more than one map lookup.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{PendingCall, kind, syscall as sc};

use crate::{filter::observed, globals::config, maps::INFLIGHT, output::count_lost};

const AT_FDCWD: i32 = -100;
const O_CREAT_WRONLY_TRUNC: u32 = 0o1101;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    let at = config().syscall_args_offset as usize + n * 8;
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    unsafe { ctx.read_at::<u64>(at) }.unwrap_or(0)
}

/// Saves `call` of thread `id` for the exit program.
#[inline(always)]
fn remember(id: u64, call: PendingCall) -> u32 {
    if INFLIGHT.insert(&id, &call, 0).is_err() {
        count_lost(kind::INFLIGHT);
    }
    0
}

fn call(syscall: u16) -> PendingCall {
    PendingCall {
        syscall,
        dfd: AT_FDCWD,
        dfd2: AT_FDCWD,
        fd: -1,
        uid: u32::MAX,
        gid: u32::MAX,
        ..Default::default()
    }
}

/// Defines a `sys_enter_*` program from how its arguments map onto a `PendingCall`.
macro_rules! enter {
    ($name:ident, $syscall:expr, |$ctx:ident, $c:ident| $fill:block) => {
        #[tracepoint]
        pub fn $name($ctx: TracePointContext) -> u32 {
            // Decided first: a process that is not observed pays one lookup, not the
            // argument reads.
            let id = bpf_get_current_pid_tgid();
            if observed((id >> 32) as u32).is_none() {
                return 0;
            }
            let mut $c = call($syscall);
            $fill;
            remember(id, $c)
        }
    };
}

// Files. Paths go in ptr1 (and ptr2), directory fds in dfd (and dfd2).
enter!(enter_open, sc::OPEN, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.flags = arg(&ctx, 1) as u32;
    c.mode = arg(&ctx, 2) as u32;
});
enter!(enter_openat, sc::OPENAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.flags = arg(&ctx, 2) as u32;
    c.mode = arg(&ctx, 3) as u32;
});
enter!(enter_openat2, sc::OPENAT2, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how = arg(&ctx, 2) as *const [u64; 3];
    // SAFETY: a user pointer; a bad one is an error.
    if let Ok(h) = unsafe { bpf_probe_read_user(how) } {
        c.flags = h[0] as u32;
        c.mode = h[1] as u32;
        c.arg = h[2];
    }
});
enter!(enter_creat, sc::CREAT, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.mode = arg(&ctx, 1) as u32;
    c.flags = O_CREAT_WRONLY_TRUNC;
});
enter!(enter_rename, sc::RENAME, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.ptr2 = arg(&ctx, 1);
});
enter!(enter_renameat, sc::RENAMEAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.dfd2 = arg(&ctx, 2) as i32;
    c.ptr2 = arg(&ctx, 3);
});
enter!(enter_renameat2, sc::RENAMEAT2, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.dfd2 = arg(&ctx, 2) as i32;
    c.ptr2 = arg(&ctx, 3);
    c.flags = arg(&ctx, 4) as u32;
});
enter!(enter_unlink, sc::UNLINK, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
});
enter!(enter_unlinkat, sc::UNLINKAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.flags = arg(&ctx, 2) as u32;
});
enter!(enter_rmdir, sc::RMDIR, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
});
enter!(enter_mkdir, sc::MKDIR, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.mode = arg(&ctx, 1) as u32;
});
enter!(enter_mkdirat, sc::MKDIRAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.mode = arg(&ctx, 2) as u32;
});
enter!(enter_chmod, sc::CHMOD, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.mode = arg(&ctx, 1) as u32;
});
enter!(enter_fchmod, sc::FCHMOD, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.mode = arg(&ctx, 1) as u32;
});
enter!(enter_fchmodat, sc::FCHMODAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.mode = arg(&ctx, 2) as u32;
});
enter!(enter_fchmodat2, sc::FCHMODAT2, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.mode = arg(&ctx, 2) as u32;
    c.flags = arg(&ctx, 3) as u32;
});
enter!(enter_chown, sc::CHOWN, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.uid = arg(&ctx, 1) as u32;
    c.gid = arg(&ctx, 2) as u32;
});
enter!(enter_lchown, sc::LCHOWN, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.uid = arg(&ctx, 1) as u32;
    c.gid = arg(&ctx, 2) as u32;
    c.flags = AT_SYMLINK_NOFOLLOW;
});
enter!(enter_fchown, sc::FCHOWN, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.uid = arg(&ctx, 1) as u32;
    c.gid = arg(&ctx, 2) as u32;
});
enter!(enter_fchownat, sc::FCHOWNAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.uid = arg(&ctx, 2) as u32;
    c.gid = arg(&ctx, 3) as u32;
    c.flags = arg(&ctx, 4) as u32;
});
enter!(enter_truncate, sc::TRUNCATE, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.arg = arg(&ctx, 1);
});
enter!(enter_ftruncate, sc::FTRUNCATE, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.arg = arg(&ctx, 1);
});
enter!(enter_link, sc::LINK, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.ptr2 = arg(&ctx, 1);
});
enter!(enter_linkat, sc::LINKAT, |ctx, c| {
    c.dfd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.dfd2 = arg(&ctx, 2) as i32;
    c.ptr2 = arg(&ctx, 3);
    c.flags = arg(&ctx, 4) as u32;
});
// symlink(target, linkpath): the target is stored as text, never resolved.
enter!(enter_symlink, sc::SYMLINK, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.ptr2 = arg(&ctx, 1);
});
enter!(enter_symlinkat, sc::SYMLINKAT, |ctx, c| {
    c.ptr1 = arg(&ctx, 0);
    c.dfd2 = arg(&ctx, 1) as i32;
    c.ptr2 = arg(&ctx, 2);
});

// Network. The socket fd in fd; the sockaddr (or msghdr, or buffer) in ptr1/ptr2.
enter!(enter_connect, sc::CONNECT, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.arg = arg(&ctx, 2);
    crate::net::watch_nonblocking_connect(c.fd);
});
enter!(enter_accept, sc::ACCEPT, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
});
enter!(enter_accept4, sc::ACCEPT4, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.flags = arg(&ctx, 3) as u32;
});
enter!(enter_bind, sc::BIND, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr1 = arg(&ctx, 1);
    c.arg = arg(&ctx, 2);
});
enter!(enter_listen, sc::LISTEN, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.flags = arg(&ctx, 1) as u32;
});
// sendto(fd, buf, len, flags, addr, addrlen): buffer in ptr2, address in ptr1.
enter!(enter_sendto, sc::SENDTO, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr2 = arg(&ctx, 1);
    c.arg2 = arg(&ctx, 2);
    c.flags = arg(&ctx, 3) as u32;
    c.ptr1 = arg(&ctx, 4);
    c.arg = arg(&ctx, 5);
});
// sendmsg(fd, msg, flags), recvmsg(fd, msg, flags): the msghdr in ptr2.
enter!(enter_sendmsg, sc::SENDMSG, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr2 = arg(&ctx, 1);
    c.flags = arg(&ctx, 2) as u32;
});
// sendmmsg(fd, mmsg, vlen, flags): the first mmsghdr in ptr2, vlen in arg2.
enter!(enter_sendmmsg, sc::SENDMMSG, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr2 = arg(&ctx, 1);
    c.arg2 = arg(&ctx, 2);
    c.flags = arg(&ctx, 3) as u32;
});
// recvfrom(fd, buf, size, flags, addr, addrlen*): the kernel fills addr.
enter!(enter_recvfrom, sc::RECVFROM, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr2 = arg(&ctx, 1);
    c.arg2 = arg(&ctx, 2);
    c.flags = arg(&ctx, 3) as u32;
    c.ptr1 = arg(&ctx, 4);
    c.arg = arg(&ctx, 5);
});
enter!(enter_recvmsg, sc::RECVMSG, |ctx, c| {
    c.fd = arg(&ctx, 0) as i32;
    c.ptr2 = arg(&ctx, 1);
    c.flags = arg(&ctx, 2) as u32;
});

/// The saved call of this thread, removed (it is consumed by the exit program).
#[inline(always)]
pub fn take_pending() -> Option<(u64, PendingCall)> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the entry is removed.
    let call = unsafe { INFLIGHT.get(&id) }.copied()?;
    let _ = INFLIGHT.remove(&id);
    Some((id, call))
}

/// The syscall's return value in a `sys_exit_*` record.
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: reading the tracepoint record.
    unsafe { ctx.read_at::<i64>(config().syscall_ret_offset as usize) }.unwrap_or(0)
}
