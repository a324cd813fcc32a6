//! Records and map values shared by the kernel programs (`sensor-ebpf`) and the daemon
//! (`sensor`). Everything here is `#[repr(C)]` plain data whose layout is asserted at compile
//! time, so both sides agree byte for byte. With the `user` feature, the daemon gets the
//! `aya::Pod` impls it needs to hand globals to the loader.
#![no_std]

/// Version of the record layouts below; bumped on any change to a record's bytes.
pub const RECORD_VERSION: u16 = 1;

/// Kinds of ring-buffer record (`RecordHeader::kind`), also the index of their loss counter.
pub mod kind {
    pub const EXEC: u16 = 1;
    pub const FORK: u16 = 2;
    pub const EXIT: u16 = 3;
    /// Number of slots in the per-CPU loss counter map (kinds are < this).
    pub const COUNT: u32 = 8;
}

/// Most argv bytes the kernel side can copy for one exec (the configured bound is clamped to it).
pub const ARGS_CAP: u32 = 24 * 1024;
/// Most bytes of an exec'd file name copied (PATH_MAX, including the terminating NUL).
pub const FILENAME_CAP: u32 = 4096;
/// Size of the per-CPU scratch buffer a record is assembled in before it is copied out.
pub const SCRATCH_SIZE: usize = 32 * 1024;
/// A kernel offset that the running kernel's BTF does not have (the field is not read).
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Fixed header that starts every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of [`kind`].
    pub kind: u16,
    /// [`RECORD_VERSION`] of the program that wrote it.
    pub version: u16,
    /// Total size of the record in bytes, header and trailing data included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the event happened (CLOCK_BOOTTIME).
    pub ktime_ns: u64,
}

/// Flags of an [`ExecRecord`].
pub mod exec_flags {
    /// argv was longer than the configured bound and was cut at it.
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    /// argv could not be read from the new image's memory.
    pub const ARGS_UNREADABLE: u32 = 1 << 1;
    /// The file name filled [`super::FILENAME_CAP`] and may be cut.
    pub const FILENAME_TRUNCATED: u32 = 1 << 2;
    /// The file name could not be read.
    pub const FILENAME_UNREADABLE: u32 = 1 << 3;
    /// The kernel keeps no login uid (no `task_struct::loginuid`); `loginuid` is meaningless.
    pub const NO_LOGINUID: u32 = 1 << 4;
}

/// A successful execve/execveat, seen at `sched_process_exec` with the new image in place.
/// Followed by `args_len` bytes of argv (NUL-separated, as in the process's memory) and then
/// `filename_len` bytes of the file name as passed to exec (no NUL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// Start time of the process (its thread group leader), ns since boot (`start_boottime`).
    pub start_boottime: u64,
    /// Start time of the parent process's group leader.
    pub parent_start_boottime: u64,
    /// cgroup v2 id (inode number of the cgroup directory).
    pub cgroup_id: u64,
    /// Thread id of the task that exec'd (equals `tgid` after exec).
    pub pid: u32,
    pub tgid: u32,
    /// Thread group id of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid (`u32::MAX` when unset).
    pub loginuid: u32,
    /// Audit session id.
    pub sessionid: u32,
    /// Inode number of the process's pid namespace.
    pub pid_ns: u32,
    /// Inode number of the process's mount namespace.
    pub mnt_ns: u32,
    /// argc as the kernel counted it.
    pub args_count: u32,
    /// Bytes of argv in the process's memory (`arg_end - arg_start`).
    pub args_size: u32,
    /// Bytes of argv that follow this record.
    pub args_len: u32,
    /// Bytes of file name that follow the argv bytes.
    pub filename_len: u32,
    /// [`exec_flags`].
    pub flags: u32,
    pub comm: [u8; 16],
}

/// Flags of a [`ForkRecord`].
pub mod fork_flags {
    /// The child is a thread of the parent's process (CLONE_THREAD), not a new process.
    pub const THREAD: u32 = 1 << 0;
}

/// A new task, seen at `sched_process_fork` before the child first runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkRecord {
    pub header: RecordHeader,
    /// Start time of the child's process (for a thread: its group leader's).
    pub start_boottime: u64,
    /// Start time of the parent process's group leader.
    pub parent_start_boottime: u64,
    pub cgroup_id: u64,
    /// Child thread id and thread group id.
    pub child_pid: u32,
    pub child_tgid: u32,
    /// Thread and thread group id of the task that called fork/clone.
    pub parent_pid: u32,
    pub parent_tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// [`fork_flags`].
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// Flags of an [`ExitRecord`].
pub mod exit_flags {
    /// The last thread of the process exited: this is the process's exit.
    pub const GROUP_DEAD: u32 = 1 << 0;
}

/// A task exiting, seen at `sched_process_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// Start time of the process (its group leader), to name the same entity as exec and fork.
    pub start_boottime: u64,
    pub pid: u32,
    pub tgid: u32,
    /// `task_struct::exit_code`: `status << 8 | signal`, 0x80 set on a core dump.
    pub exit_code: u32,
    /// [`exit_flags`].
    pub flags: u32,
    pub comm: [u8; 16],
}

/// Byte offsets of kernel struct members, resolved from the running kernel's BTF by the loader
/// and handed to the programs as a read-only global (Rust eBPF has no CO-RE). A member the
/// kernel lacks is [`OFFSET_ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_cred: u32,
    pub task_nsproxy: u32,
    pub task_thread_pid: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub nsproxy_mnt_ns: u32,
    pub mnt_ns_inum: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_ns: u32,
    pub pid_ns_inum: u32,
    pub bprm_filename: u32,
    pub bprm_argc: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    /// Every member absent: what the programs see if the loader set nothing.
    pub const ABSENT: Self = Self {
        task_pid: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_real_parent: OFFSET_ABSENT,
        task_group_leader: OFFSET_ABSENT,
        task_start_boottime: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        task_cred: OFFSET_ABSENT,
        task_nsproxy: OFFSET_ABSENT,
        task_thread_pid: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        task_sessionid: OFFSET_ABSENT,
        task_exit_code: OFFSET_ABSENT,
        task_signal: OFFSET_ABSENT,
        signal_live: OFFSET_ABSENT,
        mm_arg_start: OFFSET_ABSENT,
        mm_arg_end: OFFSET_ABSENT,
        cred_euid: OFFSET_ABSENT,
        cred_egid: OFFSET_ABSENT,
        nsproxy_mnt_ns: OFFSET_ABSENT,
        mnt_ns_inum: OFFSET_ABSENT,
        pid_level: OFFSET_ABSENT,
        pid_numbers: OFFSET_ABSENT,
        upid_size: OFFSET_ABSENT,
        upid_ns: OFFSET_ABSENT,
        pid_ns_inum: OFFSET_ABSENT,
        bprm_filename: OFFSET_ABSENT,
        bprm_argc: OFFSET_ABSENT,
        _pad: 0,
    };
}

/// Run-time settings of the programs, set by the loader as a read-only global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramConfig {
    /// Non-zero: observe every process, not only those in the tracked-process map.
    pub all_processes: u32,
    /// Bound on argv bytes copied per exec (clamped to [`ARGS_CAP`]).
    pub args_max: u32,
    /// Non-zero: `sched_process_exit` passes `group_dead` as its second argument (Linux >= 6.16);
    /// otherwise the program reads `signal->live`.
    pub exit_has_group_dead: u32,
    /// The daemon's own tgid: never observed, so its own activity cannot feed back into it.
    pub sensor_tgid: u32,
    /// Wake the consumer once this many bytes are waiting; below it, records are submitted
    /// without a wakeup and the consumer's timer collects them (batching wakeups is most of the
    /// cost saved per event).
    pub wakeup_bytes: u64,
}

impl ProgramConfig {
    pub const DEFAULT: Self = Self {
        all_processes: 0,
        args_max: 4096,
        exit_has_group_dead: 0,
        sensor_tgid: 0,
        wakeup_bytes: 0,
    };
}

/// Value of the tracked-process map (keyed by tgid): why the process is observed. Children
/// inherit their parent's value in the kernel, at fork, before they first run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedProcess {
    /// Opaque to the kernel: set by userspace (later, the agent identity index).
    pub tag: u32,
    pub _pad: u32,
}

// Layouts both sides rely on.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<RecordHeader>() == 16);
    assert!(size_of::<ExecRecord>() == 120);
    assert!(size_of::<ForkRecord>() == 88);
    assert!(size_of::<ExitRecord>() == 56);
    assert!(size_of::<KernelOffsets>() == 28 * 4);
    assert!(size_of::<ProgramConfig>() == 24);
    assert!(size_of::<TrackedProcess>() == 8);
    assert!(align_of::<ExecRecord>() == 8);
    assert!(size_of::<ExecRecord>() + ARGS_CAP as usize + FILENAME_CAP as usize <= SCRATCH_SIZE);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding fields; any bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ProgramConfig {}
    unsafe impl aya::Pod for super::TrackedProcess {}
}
