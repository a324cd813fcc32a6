//! File syscalls: one `sys_exit_*` program for all of them reports the call saved by its
//! enter program with the outcome, the paths as passed, the absolute directory each relative
//! path is relative to, and the absolute path of the file the kernel acted on.
use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{FILENAME_CAP, FileRecord, SCRATCH_SIZE, file_flags, kind, syscall as sc};

use crate::{
    exec_policy::{PATH_CUT, kill_forbidden_open},
    kernel::{CurrentTask, Task, current_comm},
    maps::{PATHBUF, SCRATCH},
    output::submit_bytes,
    path::KPath,
    process::header,
    syscalls::{Current, current_call},
};

const HEADER: usize = size_of::<FileRecord>();
/// Where the last string may start: one more full string must still fit.
const LAST_START: usize = SCRATCH_SIZE - FILENAME_CAP as usize;
const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn exit_file(ctx: TracePointContext) -> u32 {
    let _ = try_exit_file(&ctx);
    0
}

/// Copies a NUL-terminated user string to `at`; returns its length (no NUL), and whether it
/// was unreadable or filled the cap.
#[inline(always)]
fn put_user_str(buf: &mut [u8; SCRATCH_SIZE], at: usize, src: u64) -> (usize, bool, bool) {
    if src == 0 || at > LAST_START {
        return (0, src != 0, false);
    }
    // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE.
    let n = unsafe {
        bpf_probe_read_user_str(
            buf.as_mut_ptr().add(at).cast(),
            FILENAME_CAP,
            src as *const _,
        )
    };
    if n <= 0 {
        return (0, true, false);
    }
    let n = n as usize;
    (
        (n - 1) & (FILENAME_CAP as usize - 1),
        false,
        n >= FILENAME_CAP as usize,
    )
}

/// Walks `path` and copies the result to `at`; returns its length and whether it was cut.
#[inline(always)]
fn put_path(
    buf: &mut [u8; SCRATCH_SIZE],
    at: usize,
    task: &Task,
    path: KPath,
    root: KPath,
) -> (usize, bool) {
    if at > LAST_START {
        return (0, false);
    }
    let Some(w) = task.walk(path, root) else {
        return (0, false);
    };
    let Some(pathbuf) = PATHBUF.get_ptr(0) else {
        return (0, false);
    };
    let len = w.len & (FILENAME_CAP as usize - 1);
    // SAFETY: at + len <= SCRATCH_SIZE; start + len stays in the path buffer.
    unsafe {
        bpf_probe_read_kernel(
            buf.as_mut_ptr().add(at).cast(),
            len as u32,
            (pathbuf as *const u8)
                .add(w.start & (FILENAME_CAP as usize - 1))
                .cast(),
        )
    };
    (len, w.truncated)
}

/// The directory a relative path argument is relative to.
#[inline(always)]
fn base_dir(current: &CurrentTask, dfd: i32, cwd: KPath) -> Option<KPath> {
    if dfd == AT_FDCWD {
        Some(cwd)
    } else {
        current.open_file(dfd).map(|f| f.path)
    }
}

/// The record at the start of the scratch buffer, ahead of its strings.
#[inline(always)]
fn record_in(buf: &mut [u8; SCRATCH_SIZE]) -> &mut FileRecord {
    // SAFETY: the scratch buffer is a map value (8-byte aligned) larger than the record, and
    // any bit pattern is a valid record.
    unsafe { &mut *buf.as_mut_ptr().cast::<FileRecord>() }
}

fn try_exit_file(ctx: &TracePointContext) -> Option<()> {
    let Current { id, who, call, ret } = current_call(ctx)?;
    if call.syscall >= sc::FIRST_NET {
        return None;
    }
    let current = CurrentTask::get();
    let task = current.task();
    // SAFETY: this CPU's slot.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // The record is filled in where it is sent from, as soon as each value is known: values
    // kept in registers across the many helper calls below would be spilled to the stack,
    // whose 512 bytes this program shares with the path walk on kernels without private
    // stacks.
    let record = record_in(buf);
    record.header = header(kind::FILE, HEADER, who);
    record.ret = ret;
    record.arg = call.arg;
    record.ino = 0;
    record.pid = id as u32;
    record.tgid = (id >> 32) as u32;
    record.flags = call.flags;
    record.mode = call.mode;
    record.uid = call.uid;
    record.gid = call.gid;
    record.dfd = call.dfd;
    record.dfd2 = call.dfd2;
    record.syscall = call.syscall;
    record.str_flags = 0;
    record.base_len = 0;
    record.base2_len = 0;
    record.resolved_len = 0;
    record._pad = [0; 3];
    // The file the kernel acted on: the newly opened fd, or the fd argument.
    let is_open = matches!(
        call.syscall,
        sc::OPEN | sc::OPENAT | sc::OPENAT2 | sc::CREAT
    );
    record.fd = if is_open && ret >= 0 {
        ret as i32
    } else {
        call.fd
    };
    let acted_on_known = record.fd >= 0 && (call.fd >= 0 || ret >= 0);
    let (ptr2, symlink) = (
        call.ptr2,
        call.syscall == sc::SYMLINK || call.syscall == sc::SYMLINKAT,
    );
    let (cwd, root) = current.cwd_and_root()?;

    let mut at = HEADER;
    let (path_len, unreadable, cut) = put_user_str(buf, at, call.ptr1);
    let record = record_in(buf);
    if unreadable {
        record.str_flags |= file_flags::PATH_UNREADABLE;
    }
    if cut {
        record.str_flags |= file_flags::PATH_TRUNCATED;
    }
    record.path_len = path_len as u16;
    let path_relative = path_len > 0 && buf[at & (SCRATCH_SIZE - 1)] != b'/';
    at += path_len;
    let (path2_len, _, cut) = put_user_str(buf, at, ptr2);
    let record = record_in(buf);
    if cut {
        record.str_flags |= file_flags::PATH2_TRUNCATED;
    }
    record.path2_len = path2_len as u16;
    let path2_relative = path2_len > 0 && buf[at & (SCRATCH_SIZE - 1)] != b'/';
    at += path2_len;

    // symlink's first path is the link's target text: it is not resolved against anything.
    if path_relative && !symlink {
        let dfd = record_in(buf).dfd;
        if let Some(dir) = base_dir(&current, dfd, cwd) {
            let (n, cut) = put_path(buf, at, &task, dir, root);
            let record = record_in(buf);
            if cut {
                record.str_flags |= file_flags::BASE_TRUNCATED;
            }
            record.base_len = n as u16;
            at += n;
        }
    }
    if path2_relative {
        let dfd2 = record_in(buf).dfd2;
        if let Some(dir) = base_dir(&current, dfd2, cwd) {
            let (n, cut) = put_path(buf, at, &task, dir, root);
            let record = record_in(buf);
            if cut {
                record.str_flags |= file_flags::BASE2_TRUNCATED;
            }
            record.base2_len = n as u16;
            at += n;
        }
    }

    if acted_on_known {
        let fd = record_in(buf).fd;
        if let Some(file) = current.open_file(fd) {
            let ino = file.ino();
            let (n, cut) = put_path(buf, at, &task, file.path, root);
            let record = record_in(buf);
            if cut {
                record.str_flags |= file_flags::RESOLVED_TRUNCATED;
            }
            record.resolved_len = n as u16;
            record.ino = ino;
            // An agent's `files` rule in kill mode, on the file opened (a global function: a
            // call, no branch here). A path that could not be walked whole is not allowed.
            let len = n as u64 | if cut || n == 0 { PATH_CUT } else { 0 };
            let killed = kill_forbidden_open(at as u64, len, file.path.dentry.0 as u64);
            let record = record_in(buf);
            record.str_flags |= (killed as u16 & 1) * file_flags::POLICY_KILLED;
            at += n;
        }
    }

    if at > SCRATCH_SIZE {
        return None;
    }
    let record = record_in(buf);
    record.header.size = at as u32;
    record.start_boottime = current.process_start();
    record.comm = current_comm();
    submit_bytes(kind::FILE, buf, at);
    Some(())
}
