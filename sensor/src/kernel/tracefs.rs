//! tracefs: where it is mounted (mounting it when nothing is), which followed syscalls have an
//! exit tracepoint on this kernel, and the layout of the tracepoint records the programs read.
use std::{fs, path::PathBuf};

use crate::kernel::programs::SYSCALLS;

/// What the loader cannot do without tracefs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TracefsError {
    /// Nothing is mounted, and mounting tracefs failed.
    #[error(
        "tracefs is not mounted and could not be mounted ({0}); run \
         `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NotMounted(std::io::Error),
    /// A syscall tracepoint's format file is missing or lacks the field.
    #[error("cannot read the tracepoint format of {0} in tracefs")]
    Format(&'static str),
}

/// A followed syscall's exit tracepoint on this kernel.
pub(crate) struct ExitEvent {
    /// The syscall's name, as in its tracepoints (`sys_exit_openat`).
    pub(crate) syscall: &'static str,
    /// The sensor's own number for it (`sensor_common::syscall`).
    pub(crate) id: u16,
    /// The syscall's number: the exit record's `__syscall_nr`.
    pub(crate) nr: u32,
    /// The exit program that reports it.
    pub(crate) exit: &'static str,
}

/// The followed syscalls this kernel has an exit tracepoint for.
pub(crate) fn syscall_exit_events(tracefs: &std::path::Path) -> Vec<ExitEvent> {
    SYSCALLS
        .iter()
        .filter_map(|&(syscall, id, nr, exit)| {
            let dir = tracefs.join(format!("events/syscalls/sys_exit_{syscall}"));
            if !dir.exists() {
                tracing::debug!(
                    syscall,
                    "this kernel has no such syscall tracepoint; skipped"
                );
                return None;
            }
            Some(ExitEvent {
                syscall,
                id,
                nr: u32::try_from(nr).ok()?,
                exit,
            })
        })
        .collect()
}

/// Where a syscall tracepoint's record keeps `field` (the layout is the same for every
/// syscall: read from openat's): `dfd` of `sys_enter_openat` is the first argument, which
/// `enter_connect` (and `enter_save`, on kernels without `bpf_task_pt_regs`) read; `ret` of
/// `sys_exit_openat` is the return value, which the exit programs read on those kernels.
pub(crate) fn tracepoint_field_offset(
    tracefs: &std::path::Path,
    event: &'static str,
    field: &str,
) -> Result<u32, TracefsError> {
    let format = fs::read_to_string(tracefs.join(format!("events/syscalls/{event}/format")))
        .map_err(|_| TracefsError::Format(event))?;
    format
        .lines()
        .find_map(|line| {
            let (decl, rest) = line.trim().strip_prefix("field:")?.split_once(';')?;
            (decl.rsplit(' ').next()? == field).then_some(())?;
            rest.trim()
                .strip_prefix("offset:")?
                .split(';')
                .next()?
                .parse()
                .ok()
        })
        .ok_or(TracefsError::Format(event))
}

/// The tracefs mount point, mounting it at the usual place when nothing is mounted.
pub(crate) fn ensure_tracefs() -> Result<PathBuf, TracefsError> {
    if let Some(path) = tracefs_path() {
        return Ok(path);
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::NotMounted(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// Where tracefs is mounted, if it is.
pub(crate) fn tracefs_path() -> Option<PathBuf> {
    crate::enrich::snapshot::mount_point("tracefs")
}

/// Linux 6.16 added `group_dead` to `sched_process_exit`; its format file shows it.
pub(crate) fn exit_passes_group_dead(tracefs: &std::path::Path) -> bool {
    fs::read_to_string(tracefs.join("events/sched/sched_process_exit/format"))
        .is_ok_and(|f| f.contains("group_dead"))
}
