//! Pipe traffic of opted-in agents (an MCP server's stdio, for one): `read`, `write`, `readv`
//! and `writev` (and `preadv2` and `pwritev2`, which a pipe takes only at its current
//! position, as `readv` and `writev`) on a pipe by a process whose agent turns stdio capture
//! on are remembered at the
//! syscall's entry (the fd is checked to be a pipe there, by its inode's mode) and copied at
//! its exit, bounded by the agent's `max_bytes`, into a [`PipeRecord`] with the pipe's stream
//! position, so the daemon can tell a hole (a loss or a cut) from a whole stream. A cut call's
//! record also carries the call's last bytes (up to [`PIPE_TAIL_CAP`]): where a message ends,
//! and the members a JSON-RPC message puts last (its `id`, for some writers). A vectored
//! call gives one record per iovec it moved bytes through, for its first [`PIPE_IOV_CAP`]
//! iovecs, and one record without data (a hole) for the bytes of the rest. `vmsplice` is
//! captured as `writev` on a pipe's write end and as `readv` on its read end (the kernel's
//! choice too: by the file's `f_mode`, write first). `splice`, `tee` and `sendfile` move bytes
//! between files without the process's memory: on each captured pipe end they move bytes into
//! or out of, they give one record without data (a hole) of the bytes they moved. Any other
//! process pays one map lookup per call (two if it is another agent's), and is never copied.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::bpf_probe_read_user as read_user_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{
    PIPE_IOV_CAP, PIPE_TAIL_CAP, PipeCall, PipeKey, PipeMove, PipeRecord, TLS_DATA_CAP, TlsCapture,
    TrackedProcess, kind, pipe_direction, pipe_flags,
};

use crate::{
    filter::observed,
    globals::{config, offsets},
    kernel::{CurrentTask, current_comm},
    maps::{PIPE_AGENTS, PIPE_CALLS, PIPE_MOVES, PIPE_OFFSETS, SCRATCH},
    output::submit_bytes,
    process::header,
};

const HEADER: usize = size_of::<PipeRecord>();
const S_IFMT: u16 = 0o170000;
const S_IFIFO: u16 = 0o010000;
/// `f_mode` bits: the file was opened for writing (a pipe's write end).
const FMODE_WRITE: u32 = 0x2;
/// Not a direction: taken from the file's `f_mode` (`vmsplice`).
const BY_MODE: u8 = u8::MAX;

#[tracepoint]
pub fn enter_pipe_write(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::WRITE, false);
    0
}

#[tracepoint]
pub fn enter_pipe_read(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::READ, false);
    0
}

#[tracepoint]
pub fn enter_pipe_writev(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::WRITE, true);
    0
}

#[tracepoint]
pub fn enter_pipe_readv(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, pipe_direction::READ, true);
    0
}

/// `vmsplice(fd, iov, nr_segs, flags)`: `writev` on a pipe's write end, `readv` on its read
/// end.
#[tracepoint]
pub fn enter_pipe_vmsplice(ctx: TracePointContext) -> u32 {
    let _ = enter(&ctx, BY_MODE, true);
    0
}

/// `splice(fd_in, off_in, fd_out, off_out, len, flags)`: out of `fd_in`, into `fd_out`.
#[tracepoint]
pub fn enter_pipe_splice(ctx: TracePointContext) -> u32 {
    let _ = enter_move(&ctx, 0, 2);
    0
}

/// `tee(fd_in, fd_out, len, flags)`: into `fd_out` only (`fd_in`'s bytes stay in its pipe,
/// for a later read).
#[tracepoint]
pub fn enter_pipe_tee(ctx: TracePointContext) -> u32 {
    let _ = enter_move(&ctx, NO_FD, 1);
    0
}

/// `sendfile(out_fd, in_fd, offset, count)`: out of `in_fd`, into `out_fd`.
#[tracepoint]
pub fn enter_pipe_sendfile(ctx: TracePointContext) -> u32 {
    let _ = enter_move(&ctx, 1, 0);
    0
}

/// No such argument.
const NO_FD: usize = usize::MAX;

/// A `sys_enter_*` record's argument `n`.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> Option<u64> {
    let at = config().syscall_args_offset as usize + n * 8;
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    unsafe { ctx.read_at::<u64>(at) }.ok()
}

/// `read(fd, buf, count)`, `write(fd, buf, count)`, and with `vectored` `readv(fd, iov,
/// iovcnt)`, `writev(fd, iov, iovcnt)`, `vmsplice(fd, iov, nr_segs, flags)`: remembers the
/// call of an opted-in agent's thread on a pipe until it returns.
#[inline(always)]
fn enter(ctx: &TracePointContext, direction: u8, vectored: bool) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: copied out at once.
    let capture = *unsafe { PIPE_AGENTS.get(who.agent) }?;
    let fd = arg(ctx, 0)? as i32;
    let buf = arg(ctx, 1)?;
    let iovs = if vectored {
        // No iovec, nothing moved: not remembered (and 0 would mean a plain call).
        let n = arg(ctx, 2)?.min(u64::from(u16::MAX)) as u16;
        if n == 0 {
            return None;
        }
        n
    } else {
        0
    };
    let mut call = pipe_end(fd, direction, capture)?;
    call.buf = buf;
    call.iovs = iovs;
    PIPE_CALLS.insert(id, call, 0).ok()
}

/// `fd` as a pipe end moving bytes in `direction` (or its `f_mode`'s, [`BY_MODE`]); `None`
/// when it is not a pipe.
#[inline(always)]
fn pipe_end(fd: i32, direction: u8, capture: TlsCapture) -> Option<PipeCall> {
    let off = offsets();
    let file = CurrentTask::get().file(fd)?;
    let inode = file.follow(off.file_inode)?;
    let mode = inode.read::<u16>(off.inode_mode)?;
    if mode & S_IFMT != S_IFIFO {
        return None;
    }
    let direction = if direction != BY_MODE {
        direction
    } else if file.read::<u32>(off.file_mode)? & FMODE_WRITE != 0 {
        pipe_direction::WRITE
    } else {
        pipe_direction::READ
    };
    Some(PipeCall {
        inode: inode.0 as u64,
        ino: inode.read::<u64>(off.inode_ino).unwrap_or(0),
        buf: 0,
        capture,
        fd,
        direction,
        _pad: 0,
        iovs: 0,
    })
}

/// `splice`, `tee`, `sendfile`: remembers the pipe ends among the call's `from` (read) and
/// `to` (written) descriptors (argument numbers; [`NO_FD`]: none) until it returns.
#[inline(always)]
fn enter_move(ctx: &TracePointContext, from: usize, to: usize) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: copied out at once.
    let capture = *unsafe { PIPE_AGENTS.get(who.agent) }?;
    let mut ends = PipeMove::default();
    if from != NO_FD
        && let Some(end) = pipe_end(arg(ctx, from)? as i32, pipe_direction::READ, capture)
    {
        ends.ends[0] = end;
    }
    if let Some(end) = pipe_end(arg(ctx, to)? as i32, pipe_direction::WRITE, capture) {
        ends.ends[1] = end;
    }
    if ends.ends[0].inode == 0 && ends.ends[1].inode == 0 {
        return None;
    }
    PIPE_MOVES.insert(id, ends, 0).ok()
}

#[tracepoint]
pub fn exit_pipe(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, false);
    0
}

#[tracepoint]
pub fn exit_pipe_vectored(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, true);
    0
}

/// `splice`, `tee`, `sendfile` at their exit: the bytes they moved, a hole in each captured
/// pipe end's stream.
#[tracepoint]
pub fn exit_pipe_moved(ctx: TracePointContext) -> u32 {
    let _ = try_exit_moved(&ctx);
    0
}

#[inline(always)]
fn try_exit_moved(ctx: &TracePointContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out, then removed.
    let ends = *unsafe { PIPE_MOVES.get(id) }?;
    let _ = PIPE_MOVES.remove(id);
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    let ret = unsafe { ctx.read_at::<i64>(config().syscall_ret_offset as usize) }.ok()?;
    if ret <= 0 {
        return None;
    }
    let who = observed((id >> 32) as u32)?;
    for call in &ends.ends {
        if call.inode != 0 {
            let offset = advance(call, ret as u64);
            let at = Piece { id, who, call };
            at.send(offset, ret as u64, 0, pipe_flags::UNREADABLE);
        }
    }
    Some(())
}

/// The stream position of `call`'s pipe end before its `len` bytes, which it counts: for
/// every call seen, sent or not, so that a record the ring buffer had no room for leaves a
/// hole the daemon sees.
#[inline(always)]
fn advance(call: &PipeCall, len: u64) -> u64 {
    let key = PipeKey {
        inode: call.inode,
        direction: call.direction as u64,
    };
    // SAFETY: copied out at once.
    let offset = unsafe { PIPE_OFFSETS.get(key) }.copied().unwrap_or(0);
    let _ = PIPE_OFFSETS.insert(key, offset + len, 0);
    offset
}

/// What a call on a pipe moved, at its exit: its record (the iovecs' records, `vectored`), and
/// its bytes counted in the pipe's stream position.
#[inline(always)]
fn try_exit(ctx: &TracePointContext, vectored: bool) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out, then removed.
    let call = *unsafe { PIPE_CALLS.get(id) }?;
    let _ = PIPE_CALLS.remove(id);
    if vectored != (call.iovs != 0) {
        return None;
    }
    // SAFETY: reading the tracepoint record; a bad offset is an error, not a fault.
    let ret = unsafe { ctx.read_at::<i64>(config().syscall_ret_offset as usize) }.ok()?;
    if ret <= 0 {
        return None;
    }
    let len = ret as u64;
    let who = observed((id >> 32) as u32)?;
    let offset = advance(&call, len);
    let at = Piece {
        id,
        who,
        call: &call,
    };
    if !vectored {
        at.send(offset, len, call.buf, 0);
        return Some(());
    }
    // The call moved its `len` bytes through the iovecs in order, filling each before the next.
    let mut done = 0u64;
    for i in 0..PIPE_IOV_CAP {
        if done >= len || i >= u32::from(call.iovs) {
            break;
        }
        // SAFETY: a user pointer; a bad one is an error.
        let Ok(iov) =
            (unsafe { bpf_probe_read_user((call.buf + u64::from(i) * 16) as *const [u64; 2]) })
        else {
            at.send(offset + done, len - done, 0, pipe_flags::UNREADABLE);
            return Some(());
        };
        let piece = iov[1].min(len - done);
        if piece != 0 {
            at.send(offset + done, piece, iov[0], 0);
            done += piece;
        }
    }
    if done < len {
        // Bytes of iovecs past the cap: a hole the daemon sees at once.
        at.send(offset + done, len - done, 0, pipe_flags::TRUNCATED);
    }
    Some(())
}

/// The caller of a call on a pipe, for its records.
struct Piece<'a> {
    id: u64,
    who: TrackedProcess,
    call: &'a PipeCall,
}

impl Piece<'_> {
    /// Sends the record of `len` bytes moved from `offset` of the stream, copied (bounded) from
    /// `src`; none copied and `flags` set when `src` is 0.
    #[inline(always)]
    fn send(&self, offset: u64, len: u64, src: u64, flags: u16) -> Option<()> {
        let (id, call) = (self.id, self.call);
        let capture: TlsCapture = call.capture;
        // SAFETY: this CPU's slot.
        let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
        // SAFETY: the scratch buffer is a map value (8-byte aligned) larger than the record,
        // and any bit pattern is a valid record.
        let r = unsafe { &mut *buf.as_mut_ptr().cast::<PipeRecord>() };
        r.header = header(kind::PIPE, HEADER, self.who);
        r.start_boottime = CurrentTask::get().process_start();
        r.inode = call.inode;
        r.ino = call.ino;
        r.offset = offset;
        r.len = len;
        r.pid = id as u32;
        r.tgid = (id >> 32) as u32;
        r.fd = call.fd;
        r.content = capture.content as u8;
        r.direction = call.direction;
        r._pad = [0; 2];
        r.comm = current_comm();
        let mut copied = 0u32;
        let mut tail = 0u32;
        let mut flags = flags;
        if src != 0 {
            let bound = capture.max_bytes.min(TLS_DATA_CAP) as u64;
            let want = if len > bound {
                flags |= pipe_flags::TRUNCATED;
                bound
            } else {
                len
            };
            // Bounded against the constant on the very value passed (see `tls` and `bounds`).
            let n = crate::bounds::opaque(want as usize);
            // SAFETY: HEADER + TLS_DATA_CAP fits in the scratch buffer (asserted in
            // sensor-common).
            let dst = unsafe { buf.as_mut_ptr().add(HEADER) };
            if n <= TLS_DATA_CAP as usize {
                if unsafe { read_user_bytes(dst.cast(), n as u32, src as *const _) } == 0 {
                    copied = n as u32;
                } else {
                    flags |= pipe_flags::UNREADABLE;
                }
            }
            // A cut call's end, after its start: at most PIPE_TAIL_CAP bytes, none of them
            // among the first.
            if copied as u64 == want && len > want {
                let rest = (len - want).min(u64::from(PIPE_TAIL_CAP));
                let at = crate::bounds::opaque(copied as usize);
                let t = crate::bounds::opaque(rest as usize);
                if at <= TLS_DATA_CAP as usize && t <= PIPE_TAIL_CAP as usize {
                    // SAFETY: HEADER + TLS_DATA_CAP + PIPE_TAIL_CAP fits in the scratch
                    // buffer (asserted in sensor-common).
                    let dst = unsafe { buf.as_mut_ptr().add(HEADER + at) };
                    let from = src + len - rest;
                    if unsafe { read_user_bytes(dst.cast(), t as u32, from as *const _) } == 0 {
                        tail = t as u32;
                    }
                }
            }
        }
        r.data_len = copied;
        r.tail_len = tail as u16;
        r.flags = flags;
        let size = HEADER + copied as usize + tail as usize;
        r.header.size = size as u32;
        submit_bytes(kind::PIPE, buf, size);
        Some(())
    }
}
