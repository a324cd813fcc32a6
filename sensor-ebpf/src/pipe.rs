//! Pipe traffic of opted-in agents (an MCP server's stdio, for one): `read` and `write` on a
//! pipe by a process whose agent turns stdio capture on are remembered at the syscall's entry
//! (the fd is checked to be a pipe there, by its inode's mode) and copied at its exit, bounded
//! by the agent's `max_bytes`, into a [`PipeRecord`] with the pipe's stream position, so the
//! daemon can tell a hole (a loss or a cut) from a whole stream. Any other process pays one
//! map lookup per call (two if it is another agent's), and is never copied.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::bpf_probe_read_user as read_user_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{
    PipeCall, PipeKey, PipeRecord, TLS_DATA_CAP, kind, pipe_direction, pipe_flags,
};

use crate::{
    filter::observed,
    globals::{config, offsets},
    kernel::{CurrentTask, current_comm},
    maps::{PIPE_AGENTS, PIPE_CALLS, PIPE_OFFSETS, SCRATCH},
    output::submit_bytes,
    process::header,
};

const HEADER: usize = size_of::<PipeRecord>();
const S_IFMT: u16 = 0o170000;
const S_IFIFO: u16 = 0o010000;

#[tracepoint]
pub fn enter_pipe_write(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::WRITE);
    0
}

#[tracepoint]
pub fn enter_pipe_read(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::READ);
    0
}

/// A `sys_enter_*` record's argument `n`.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> Option<u64> {
    let at = config().syscall_args_offset as usize + n * 8;
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    unsafe { ctx.read_at::<u64>(at) }.ok()
}

/// `read(fd, buf, count)`, `write(fd, buf, count)`: remembers the call of an opted-in agent's
/// thread on a pipe until it returns.
#[inline(always)]
fn enter(ctx: &TracePointContext, direction: u8) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: copied out at once.
    let capture = *unsafe { PIPE_AGENTS.get(who.agent) }?;
    let fd = arg(ctx, 0)? as i32;
    let buf = arg(ctx, 1)?;
    let off = offsets();
    let file = CurrentTask::get().file(fd)?;
    let inode = file.follow(off.file_inode)?;
    let mode = inode.read::<u16>(off.inode_mode)?;
    if mode & S_IFMT != S_IFIFO {
        return None;
    }
    let call = PipeCall {
        inode: inode.0 as u64,
        ino: inode.read::<u64>(off.inode_ino).unwrap_or(0),
        buf,
        capture,
        fd,
        direction,
        _pad: [0; 3],
    };
    PIPE_CALLS.insert(id, call, 0).ok()
}

#[tracepoint]
pub fn exit_pipe(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out, then removed.
    let call = *unsafe { PIPE_CALLS.get(id) }?;
    let _ = PIPE_CALLS.remove(id);
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    let ret = unsafe { ctx.read_at::<i64>(config().syscall_ret_offset as usize) }.ok()?;
    if ret <= 0 {
        return None;
    }
    let len = ret as u64;
    let who = observed((id >> 32) as u32)?;
    // The stream position: counted for every call seen, sent or not, so that a record the ring
    // buffer had no room for leaves a hole the daemon sees.
    let key = PipeKey {
        inode: call.inode,
        direction: call.direction as u64,
    };
    // SAFETY: copied out at once.
    let offset = unsafe { PIPE_OFFSETS.get(key) }.copied().unwrap_or(0);
    let _ = PIPE_OFFSETS.insert(key, offset + len, 0);
    // SAFETY: this CPU's slot.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // SAFETY: the scratch buffer is a map value (8-byte aligned) larger than the record, and
    // any bit pattern is a valid record.
    let r = unsafe { &mut *buf.as_mut_ptr().cast::<PipeRecord>() };
    r.header = header(kind::PIPE, HEADER, who);
    r.start_boottime = CurrentTask::get().process_start();
    r.inode = call.inode;
    r.ino = call.ino;
    r.offset = offset;
    r.len = len;
    r.pid = id as u32;
    r.tgid = (id >> 32) as u32;
    r.fd = call.fd;
    r.content = call.capture.content as u8;
    r.direction = call.direction;
    r._pad = [0; 3];
    r.last = 0;
    r.comm = current_comm();
    let bound = call.capture.max_bytes.min(TLS_DATA_CAP) as u64;
    let (want, mut flags) = if len > bound {
        // SAFETY: a user pointer; a bad one is an error.
        r.last = unsafe { bpf_probe_read_user((call.buf + len - 1) as *const u8) }.unwrap_or(0);
        (bound, pipe_flags::TRUNCATED)
    } else {
        (len, 0)
    };
    // Bounded against the constant on the very value passed (see `tls` and `bounds`).
    let n = crate::bounds::opaque(want as usize);
    let mut copied = 0u32;
    // SAFETY: HEADER + TLS_DATA_CAP fits in the scratch buffer (asserted in sensor-common).
    let dst = unsafe { buf.as_mut_ptr().add(HEADER) };
    if n <= TLS_DATA_CAP as usize {
        if unsafe { read_user_bytes(dst.cast(), n as u32, call.buf as *const _) } == 0 {
            copied = n as u32;
        } else {
            flags |= pipe_flags::UNREADABLE;
        }
    }
    r.data_len = copied;
    r.flags = flags;
    let size = HEADER + copied as usize;
    r.header.size = size as u32;
    submit_bytes(kind::PIPE, buf, size);
    Some(())
}
