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
pub fn exit_file(_ctx: TracePointContext) -> u32 {
    let _ = try_exit_file();
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

fn try_exit_file() -> Option<()> {
    let Current { id, who, call, ret } = current_call()?;
    if call.syscall >= sc::FIRST_NET {
        return None;
    }
    let current = CurrentTask::get();
    let task = current.task();
    // SAFETY: this CPU's slot.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let (cwd, root) = current.cwd_and_root()?;

    let mut flags = 0u16;
    let mut at = HEADER;
    let (path_len, unreadable, cut) = put_user_str(buf, at, call.ptr1);
    if unreadable {
        flags |= file_flags::PATH_UNREADABLE;
    }
    if cut {
        flags |= file_flags::PATH_TRUNCATED;
    }
    let path_relative = path_len > 0 && buf[at & (SCRATCH_SIZE - 1)] != b'/';
    at += path_len;
    let (path2_len, _, cut) = put_user_str(buf, at, call.ptr2);
    if cut {
        flags |= file_flags::PATH2_TRUNCATED;
    }
    let path2_relative = path2_len > 0 && buf[at & (SCRATCH_SIZE - 1)] != b'/';
    at += path2_len;

    // symlink's first path is the link's target text: it is not resolved against anything.
    let mut base_len = 0;
    if path_relative && call.syscall != sc::SYMLINK && call.syscall != sc::SYMLINKAT {
        if let Some(dir) = base_dir(&current, call.dfd, cwd) {
            let (n, cut) = put_path(buf, at, &task, dir, root);
            if cut {
                flags |= file_flags::BASE_TRUNCATED;
            }
            base_len = n;
        }
    }
    at += base_len;
    let mut base2_len = 0;
    if path2_relative {
        if let Some(dir) = base_dir(&current, call.dfd2, cwd) {
            let (n, cut) = put_path(buf, at, &task, dir, root);
            if cut {
                flags |= file_flags::BASE2_TRUNCATED;
            }
            base2_len = n;
        }
    }
    at += base2_len;

    // The file the kernel acted on: the newly opened fd, or the fd argument.
    let is_open = matches!(
        call.syscall,
        sc::OPEN | sc::OPENAT | sc::OPENAT2 | sc::CREAT
    );
    let acted_on = if is_open && ret >= 0 {
        ret as i32
    } else {
        call.fd
    };
    let mut resolved_len = 0;
    let mut ino = 0;
    if acted_on >= 0 && (call.fd >= 0 || ret >= 0) {
        if let Some(file) = current.open_file(acted_on) {
            let (n, cut) = put_path(buf, at, &task, file.path, root);
            if cut {
                flags |= file_flags::RESOLVED_TRUNCATED;
            }
            resolved_len = n;
            ino = file.ino();
        }
    }
    at += resolved_len;

    let record = FileRecord {
        header: header(kind::FILE, at, who),
        start_boottime: current.process_start(),
        ret,
        arg: call.arg,
        ino,
        pid: id as u32,
        tgid: (id >> 32) as u32,
        flags: call.flags,
        mode: call.mode,
        uid: call.uid,
        gid: call.gid,
        dfd: call.dfd,
        dfd2: call.dfd2,
        fd: acted_on,
        syscall: call.syscall,
        str_flags: flags,
        path_len: path_len as u16,
        path2_len: path2_len as u16,
        base_len: base_len as u16,
        base2_len: base2_len as u16,
        resolved_len: resolved_len as u16,
        _pad: [0; 3],
        comm: current_comm(),
    };
    // SAFETY: the scratch buffer is larger than the record, and 8-byte aligned like every map
    // value: an aligned write is a few word stores, an unaligned one a store per byte.
    unsafe { buf.as_mut_ptr().cast::<FileRecord>().write(record) };
    if at > SCRATCH_SIZE {
        return None;
    }
    submit_bytes(kind::FILE, buf.get(..at)?);
    Some(())
}
