//! TLS plaintext of opted-in agents: uprobes on the TLS library's `SSL_write`, `SSL_read` and
//! their `_ex` forms remember the call (connection, buffer) by thread, and one uretprobe on all
//! four copies what the call moved, bounded by the agent's `max_bytes`, into a [`TlsRecord`].
//! A uprobe on `SSL_free` and `SSL_clear` (GnuTLS: `gnutls_deinit`) says when a connection
//! object ends (a [`TlsRecord`] with no data, flagged [`tls_flags::ENDED`]): the library hands
//! its address, or the program the object itself, to the next connection.
//! A uprobe on GnuTLS's `gnutls_record_uncork` and its return mark the thread as flushing
//! that session (`TLS_FLUSHING`): the sends the library makes there carry the bytes of the
//! corked sends (`gnutls_record_cork`), each already copied as it went into the cork, so they
//! are not copied again.
//! A process that is not an opted-in agent's pays two map lookups per call and is never copied.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::bpf_probe_read_user as read_user_bytes,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{TLS_DATA_CAP, TlsCall, TlsRecord, kind, tls_direction, tls_flags};

use crate::{
    filter::observed,
    kernel::{CurrentTask, current_comm},
    maps::{SCRATCH, TLS_AGENTS, TLS_CALLS, TLS_FLUSHING},
    output::{submit, submit_bytes},
    process::header,
};

const HEADER: usize = size_of::<TlsRecord>();

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, tls_direction::WRITE, false);
    0
}

#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, tls_direction::WRITE, true);
    0
}

#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, tls_direction::READ, false);
    0
}

#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, tls_direction::READ, true);
    0
}

/// `SSL_free(ssl)`, `SSL_clear(ssl)`, `gnutls_deinit(session)`: the connection object of an
/// opted-in agent's process ends here, before it (or its memory) can name another connection.
#[uprobe]
pub fn ssl_free(ctx: ProbeContext) -> u32 {
    let _ = try_free(&ctx);
    0
}

fn try_free(ctx: &ProbeContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: copied out at once.
    let capture = *unsafe { TLS_AGENTS.get(who.agent) }?;
    let ssl = ctx.arg::<u64>(0)?;
    if ssl == 0 {
        return None;
    }
    let r = TlsRecord {
        header: header(kind::TLS, HEADER, who),
        start_boottime: CurrentTask::get().process_start(),
        ssl,
        len: 0,
        pid: id as u32,
        tgid: (id >> 32) as u32,
        data_len: 0,
        content: capture.content as u8,
        direction: 0,
        flags: tls_flags::ENDED,
        comm: current_comm(),
    };
    submit(kind::TLS, &r);
    Some(())
}

/// `gnutls_record_uncork(session, flags)`: an opted-in agent's thread starts flushing what
/// it corked on `session`.
#[uprobe]
pub fn tls_flush(ctx: ProbeContext) -> u32 {
    let _ = try_flush(&ctx);
    0
}

fn try_flush(ctx: &ProbeContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: only whether it is there.
    unsafe { TLS_AGENTS.get(who.agent) }?;
    let session = ctx.arg::<u64>(0)?;
    TLS_FLUSHING.insert(id, session, 0).ok()
}

/// The flush returned (done, or `GNUTLS_E_AGAIN`: the rest stays corked, and the retry is a
/// flush again).
#[uretprobe]
pub fn tls_flush_return(_ctx: RetProbeContext) -> u32 {
    let _ = TLS_FLUSHING.remove(bpf_get_current_pid_tgid());
    0
}

/// `SSL_write(ssl, buf, num)`, `SSL_write_ex(ssl, buf, num, size_t *written)`, and the same
/// for reads: remembers the call of an opted-in agent's thread until it returns. A send
/// inside a flush of the same session (see `tls_flush`) is not remembered.
#[inline(always)]
fn enter(ctx: &ProbeContext, direction: u8, ex: bool) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    let who = observed((id >> 32) as u32)?;
    // SAFETY: copied out at once.
    let capture = *unsafe { TLS_AGENTS.get(who.agent) }?;
    let ssl = ctx.arg::<u64>(0)?;
    // SAFETY: copied out at once.
    if direction == tls_direction::WRITE && unsafe { TLS_FLUSHING.get(id) }.copied() == Some(ssl) {
        return None;
    }
    let call = TlsCall {
        ssl,
        buf: ctx.arg::<u64>(1)?,
        moved: if ex { ctx.arg::<u64>(3)? } else { 0 },
        capture,
        direction,
        _pad: [0; 7],
    };
    TLS_CALLS.insert(id, call, 0).ok()
}

#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

fn try_return(ctx: &RetProbeContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out, then removed.
    let call = *unsafe { TLS_CALLS.get(id) }?;
    let _ = TLS_CALLS.remove(id);
    let ret: i64 = ctx.ret::<i64>();
    // The plain forms return the bytes moved; the `_ex` forms 1 and the count through a pointer.
    let len = if call.moved != 0 {
        if ret as i32 != 1 {
            return None;
        }
        // SAFETY: a user pointer; a bad one is an error.
        unsafe { bpf_probe_read_user(call.moved as *const u64) }.ok()?
    } else {
        let n = ret as i32;
        if n <= 0 {
            return None;
        }
        n as u64
    };
    let who = observed((id >> 32) as u32)?;
    // SAFETY: this CPU's slot.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // SAFETY: the scratch buffer is a map value (8-byte aligned) larger than the record, and
    // any bit pattern is a valid record.
    let r = unsafe { &mut *buf.as_mut_ptr().cast::<TlsRecord>() };
    r.header = header(kind::TLS, HEADER, who);
    r.start_boottime = CurrentTask::get().process_start();
    r.ssl = call.ssl;
    r.len = len;
    r.pid = id as u32;
    r.tgid = (id >> 32) as u32;
    r.content = call.capture.content as u8;
    r.direction = call.direction;
    r.comm = current_comm();
    let bound = call.capture.max_bytes.min(TLS_DATA_CAP) as u64;
    let (want, mut flags) = if len > bound {
        (bound, tls_flags::TRUNCATED)
    } else {
        (len, 0)
    };
    // The size's bound is checked against the constant on the very value passed, hidden from
    // the compiler first (`bounds`): otherwise it proves `want <= max_bytes <= CAP`, drops the
    // check, and 5.10's verifier, which cannot carry a bound from a comparison of two registers
    // (or to a copy of one), refuses a copy that could run past the scratch buffer.
    let n = crate::bounds::opaque(want as usize);
    let mut copied = 0u32;
    // SAFETY: HEADER + TLS_DATA_CAP fits in the scratch buffer (asserted in sensor-common).
    let dst = unsafe { buf.as_mut_ptr().add(HEADER) };
    if n <= TLS_DATA_CAP as usize {
        if unsafe { read_user_bytes(dst.cast(), n as u32, call.buf as *const _) } == 0 {
            copied = n as u32;
        } else {
            flags |= tls_flags::UNREADABLE;
        }
    }
    r.data_len = copied;
    r.flags = flags;
    let size = HEADER + copied as usize;
    r.header.size = size as u32;
    submit_bytes(kind::TLS, buf, size);
    Some(())
}
