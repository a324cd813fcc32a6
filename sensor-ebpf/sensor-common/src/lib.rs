//! Records and map values shared by the kernel programs (`sensor-ebpf`) and the daemon
//! (`sensor`). Everything here is `#[repr(C)]` plain data whose layout is asserted at compile
//! time, so both sides agree byte for byte. With the `user` feature, the daemon gets the
//! `aya::Pod` impls it needs to hand globals to the loader.
//!
//! Pids and tids are as the root pid namespace sees them; times are `CLOCK_BOOTTIME`
//! nanoseconds; a `comm` is the task's name, NUL-padded (at most 15 bytes and a NUL).
#![no_std]
#![warn(missing_docs)]

/// Version of the record layouts below; bumped on any change to a record's bytes.
pub const RECORD_VERSION: u16 = 4;

/// Kinds of ring-buffer record (`RecordHeader::kind`), also the index of their loss counter.
pub mod kind {
    /// An [`ExecRecord`](super::ExecRecord).
    pub const EXEC: u16 = 1;
    /// A [`ForkRecord`](super::ForkRecord).
    pub const FORK: u16 = 2;
    /// An [`ExitRecord`](super::ExitRecord).
    pub const EXIT: u16 = 3;
    /// A [`FileRecord`](super::FileRecord).
    pub const FILE: u16 = 4;
    /// A [`NetRecord`](super::NetRecord).
    pub const NET: u16 = 5;
    /// Reserved: an in-flight syscall that could not be remembered between enter and exit,
    /// before the exit programs read the arguments from the registers themselves.
    pub const INFLIGHT: u16 = 6;
    /// A process could not be entered in the tracked-process map (full): its activity, and
    /// its descendants', goes unattributed. Counted in the loss counters, never a record kind.
    pub const TRACKING: u16 = 7;
    /// A cgroup v2 directory was made ([`CgroupRecord`](super::CgroupRecord)).
    pub const CGROUP: u16 = 8;
    /// Plaintext an opted-in agent passed through its TLS library ([`TlsRecord`](super::TlsRecord)).
    pub const TLS: u16 = 9;
    /// Bytes an opted-in agent's process wrote to or read from a pipe
    /// ([`PipeRecord`](super::PipeRecord)).
    pub const PIPE: u16 = 10;
    /// Number of slots in the per-CPU loss counter map (kinds are < this).
    pub const COUNT: u32 = 11;
}

/// Most argv bytes the kernel side can copy for one exec (the configured bound is clamped to it).
pub const ARGS_CAP: u32 = 18 * 1024;
/// Most environment bytes copied for the environment-marker check.
pub const ENV_CAP: u32 = 2048;
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
    /// The process's attribution as the kernel had it when the event happened.
    pub attribution: TrackedProcess,
}

/// How a process came to be attributed to an agent ([`TrackedProcess::method`]).
pub mod method {
    /// Observed without an agent (all processes, or a `--pid` tree).
    pub const NONE: u8 = 0;
    /// An orchestrator registered the process over the registration socket.
    pub const REGISTRATION: u8 = 1;
    /// The process runs in a cgroup (container, pod) an agent's selector names.
    pub const CGROUP: u8 = 2;
    /// The exec'd file is one an agent's selector names.
    pub const EXECUTABLE: u8 = 3;
    /// The process runs as a uid an agent's selector names.
    pub const UID: u8 = 4;
    /// An opt-in environment marker (the process could forge it).
    pub const ENVIRONMENT: u8 = 5;
    /// The process's argv (and executable) matched an agent's argv selector, checked by the
    /// daemon at exec: whoever starts a process chooses its argv.
    pub const ARGV: u8 = 7;
    /// The process runs in a container (or pod) whose runtime metadata an agent's selector
    /// names: its image, labels, Kubernetes namespace, pod or service account.
    pub const CONTAINER: u8 = 6;

    /// How much an attribution method is trusted: never let a lower one override a higher.
    pub const fn trust(method: u8) -> u8 {
        match method {
            REGISTRATION | CGROUP | CONTAINER => 3,
            EXECUTABLE | UID | ARGV => 2,
            ENVIRONMENT => 1,
            _ => 0,
        }
    }

    /// The method's name, as records and `register --list` write it.
    pub const fn name(method: u8) -> &'static str {
        match method {
            REGISTRATION => "registration",
            CGROUP => "cgroup",
            EXECUTABLE => "executable",
            UID => "uid",
            ENVIRONMENT => "environment",
            CONTAINER => "container",
            ARGV => "argv",
            _ => "none",
        }
    }
}

/// Flags of a [`TrackedProcess`].
pub mod tracked_flags {
    /// Attributed because an ancestor was (copied at fork), not by a match of its own.
    pub const INHERITED: u8 = 1 << 0;
    /// Only in record headers, never stored: the process is not tracked, but runs in a cgroup
    /// made since start that the daemon has not decided on yet, so the record is reported for
    /// the daemon to attribute (see [`TrackedProcess::held`]).
    pub const HELD: u8 = 1 << 1;
    /// The process (or the ancestor it inherited this from) exec'd and the daemon has yet to
    /// decide what only it can (argv selectors, the marker): the attribution is tentative.
    pub const PENDING: u8 = 1 << 2;
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
    /// The executable's absolute path filled the window and is cut at the top.
    pub const EXE_TRUNCATED: u32 = 1 << 5;
    /// No selector attributed the process, and the environment-marker check is on: the start
    /// of its environment follows, for the daemon to look for the marker.
    pub const ENV_INCLUDED: u32 = 1 << 6;
    /// No selector attributed the process in the kernel: reported only for the daemon's own
    /// checks (argv selectors, the environment marker), and dropped there unless one matches.
    pub const UNMATCHED: u32 = 1 << 7;
    /// The kernel keeps no login uid (no `task_struct::loginuid`); `loginuid` is meaningless.
    pub const NO_LOGINUID: u32 = 1 << 4;
    /// The working directory's path filled the window and is cut at the top.
    pub const CWD_TRUNCATED: u32 = 1 << 8;
    /// The agent's `executables` rule in `kill` mode does not allow this executable: the
    /// process was sent SIGKILL as the exec completed, before the program ran.
    pub const POLICY_KILLED: u32 = 1 << 9;
}

/// A successful execve/execveat, seen at `sched_process_exec` with the new image in place.
/// Followed by `args_len` bytes of argv (NUL-separated, as in the process's memory), then
/// `filename_len` bytes of the file name as passed to exec (no NUL), then `exe_len` bytes of
/// the absolute path of the file the kernel runs (`bprm->file`: for a script, its interpreter),
/// then `cwd_len` bytes of the working directory's absolute path (`fs->pwd`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecRecord {
    /// `kind` is [`kind::EXEC`].
    pub header: RecordHeader,
    /// Start time of the process (its thread group leader), ns since boot (`start_boottime`).
    pub start_boottime: u64,
    /// Start time of the parent process's group leader.
    pub parent_start_boottime: u64,
    /// cgroup v2 id (inode number of the cgroup directory).
    pub cgroup_id: u64,
    /// Thread id of the task that exec'd (equals `tgid` after exec).
    pub pid: u32,
    /// Thread group id (the process id).
    pub tgid: u32,
    /// Thread group id of the real parent.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id, after exec (set-user-id applied).
    pub euid: u32,
    /// Effective group id, after exec.
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
    /// Bytes of the executable's absolute path that follow the file name.
    pub exe_len: u32,
    /// Bytes of the working directory's absolute path that follow the executable's path.
    pub cwd_len: u32,
    /// Bytes of environment that follow the working directory (with `ENV_INCLUDED`).
    pub env_len: u32,
    /// [`exec_flags`].
    pub flags: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// The task's name after exec (the new image's file name).
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
    /// `kind` is [`kind::FORK`]; the attribution is the parent's.
    pub header: RecordHeader,
    /// Start time of the child's process (for a thread: its group leader's).
    pub start_boottime: u64,
    /// Start time of the parent process's group leader.
    pub parent_start_boottime: u64,
    /// cgroup v2 id of the parent, which the child starts in.
    pub cgroup_id: u64,
    /// Child thread id.
    pub child_pid: u32,
    /// Child thread group id (the parent's, for a thread).
    pub child_tgid: u32,
    /// Thread id of the task that called fork/clone.
    pub parent_pid: u32,
    /// Thread group id of the task that called fork/clone.
    pub parent_tgid: u32,
    /// Real user id of the parent (the child's too).
    pub uid: u32,
    /// Real group id of the parent (the child's too).
    pub gid: u32,
    /// [`fork_flags`].
    pub flags: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// The parent's name, which the child starts with.
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
    /// `kind` is [`kind::EXIT`].
    pub header: RecordHeader,
    /// Start time of the process (its group leader), to name the same entity as exec and fork.
    pub start_boottime: u64,
    /// Thread id of the exiting task.
    pub pid: u32,
    /// Thread group id of the exiting task.
    pub tgid: u32,
    /// `task_struct::exit_code`: `status << 8 | signal`, 0x80 set on a core dump.
    pub exit_code: u32,
    /// [`exit_flags`].
    pub flags: u32,
    /// The exiting task's name.
    pub comm: [u8; 16],
}

/// The file and network syscalls the programs follow (`FileRecord::syscall`,
/// `NetRecord::syscall`), independent of the architecture's syscall numbers.
#[allow(
    missing_docs,
    reason = "each constant is the syscall of its name (man 2 NAME)"
)]
pub mod syscall {
    pub const OPEN: u16 = 1;
    pub const OPENAT: u16 = 2;
    pub const OPENAT2: u16 = 3;
    pub const CREAT: u16 = 4;
    pub const RENAME: u16 = 5;
    pub const RENAMEAT: u16 = 6;
    pub const RENAMEAT2: u16 = 7;
    pub const UNLINK: u16 = 8;
    pub const UNLINKAT: u16 = 9;
    pub const RMDIR: u16 = 10;
    pub const MKDIR: u16 = 11;
    pub const MKDIRAT: u16 = 12;
    pub const CHMOD: u16 = 13;
    pub const FCHMOD: u16 = 14;
    pub const FCHMODAT: u16 = 15;
    pub const FCHMODAT2: u16 = 16;
    pub const CHOWN: u16 = 17;
    pub const LCHOWN: u16 = 18;
    pub const FCHOWN: u16 = 19;
    pub const FCHOWNAT: u16 = 20;
    pub const TRUNCATE: u16 = 21;
    pub const FTRUNCATE: u16 = 22;
    pub const LINK: u16 = 23;
    pub const LINKAT: u16 = 24;
    pub const SYMLINK: u16 = 25;
    pub const SYMLINKAT: u16 = 26;
    /// This and above: network.
    pub const FIRST_NET: u16 = 40;
    pub const CONNECT: u16 = 40;
    pub const ACCEPT: u16 = 41;
    pub const ACCEPT4: u16 = 42;
    pub const BIND: u16 = 43;
    pub const LISTEN: u16 = 44;
    pub const SENDTO: u16 = 45;
    pub const SENDMSG: u16 = 46;
    pub const SENDMMSG: u16 = 47;
    pub const RECVFROM: u16 = 48;
    pub const RECVMSG: u16 = 49;
    /// Not a syscall: the outcome of a non-blocking connect (`inet_sock_set_state`).
    pub const CONNECT_RESULT: u16 = 60;
    /// Not a syscall: an exec refused by the BPF LSM `bprm_check_security` program (an
    /// `executables` rule in `enforce` mode), reported as a file record of the executable.
    pub const EXEC_DENIED: u16 = 61;
}

/// Arguments of a file or network syscall normalised to one layout: read from the task's
/// saved registers by the `sys_exit_*` program that reports the call with its outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallArgs {
    /// [`syscall`] constant.
    pub syscall: u16,
    /// Padding; always 0.
    pub _pad: u16,
    /// Open flags, rename/link/unlink/chmod/chown `AT_*`/`RENAME_*` flags, send/recv and
    /// accept4 flags, listen's backlog.
    pub flags: u32,
    /// Mode of open/creat/mkdir/chmod.
    pub mode: u32,
    /// Directory fd the first path is relative to (`AT_FDCWD` = -100).
    pub dfd: i32,
    /// Directory fd the second path is relative to (rename, link, symlink).
    pub dfd2: i32,
    /// The fd argument of fd-based calls (fchmod, connect, sendto, ...); -1 for others.
    pub fd: i32,
    /// chown's owner (`u32::MAX`: unchanged).
    pub uid: u32,
    /// chown's group (`u32::MAX`: unchanged).
    pub gid: u32,
    /// User pointer: the first path, or a network call's sockaddr.
    pub ptr1: u64,
    /// User pointer: the second path, or a network call's msghdr / buffer.
    pub ptr2: u64,
    /// truncate length, openat2 resolve flags, sockaddr length (recvfrom: a pointer to it).
    pub arg: u64,
    /// Buffer length (sendto, recvfrom), sendmmsg's vlen.
    pub arg2: u64,
}

/// A syscall's number and raw arguments as its `sys_enter_*` record had them, kept by thread
/// until its exit program reports it, on kernels without `bpf_task_pt_regs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SavedCall {
    /// The architecture's syscall number.
    pub nr: u64,
    /// The six argument registers, in order.
    pub args: [u64; 6],
}

/// An address as the kernel copied it from user memory, kept by thread from the LSM hook to the
/// syscall's exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelSockaddr {
    /// Bytes of `bytes` in use (the address length, at most [`SOCKADDR_CAP`]).
    pub len: u32,
    /// Which hook kept it ([`address_hook`]): only the matching syscall's exit takes it.
    pub hook: u32,
    /// The sockaddr, raw.
    pub bytes: [u8; SOCKADDR_CAP as usize],
}

/// The LSM hooks that keep a [`KernelSockaddr`].
pub mod address_hook {
    /// `socket_connect`: a connect's address.
    pub const CONNECT: u32 = 1;
    /// `socket_bind`: a bind's address.
    pub const BIND: u32 = 2;
    /// `socket_sendmsg`: a send's destination (sendto, sendmsg).
    pub const SEND: u32 = 3;
}

/// Flags of a [`FileRecord`].
pub mod file_flags {
    /// The path argument filled [`super::FILENAME_CAP`] and may be cut.
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    /// The second path argument filled [`super::FILENAME_CAP`] and may be cut.
    pub const PATH2_TRUNCATED: u16 = 1 << 1;
    /// The first path's base directory is cut at the top (the walk did not reach the root).
    pub const BASE_TRUNCATED: u16 = 1 << 2;
    /// The second path's base directory is cut at the top.
    pub const BASE2_TRUNCATED: u16 = 1 << 3;
    /// The resolved path is cut at the top.
    pub const RESOLVED_TRUNCATED: u16 = 1 << 4;
    /// The path argument could not be read from user memory.
    pub const PATH_UNREADABLE: u16 = 1 << 5;
    /// The agent's `files` rule in `kill` mode does not allow this open (the resolved path):
    /// the process was sent SIGKILL before the syscall returned to user space.
    pub const POLICY_KILLED: u16 = 1 << 6;
}

/// A file syscall and its outcome, from `sys_exit_*`. Followed by, in order: `path_len` bytes
/// of the path argument as passed, `path2_len` of the second path (rename, link, symlink's
/// link path), `base_len` of the absolute directory a relative path is relative to (the cwd or
/// the dirfd's), `base2_len` likewise for the second path, and `resolved_len` of the absolute
/// path of the file the kernel acted on, when it can tell (the opened file; the fd's file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileRecord {
    /// `kind` is [`kind::FILE`].
    pub header: RecordHeader,
    /// Start time of the calling process (its group leader).
    pub start_boottime: u64,
    /// The syscall's return value (fd, 0, or -errno).
    pub ret: i64,
    /// truncate length; openat2 resolve flags.
    pub arg: u64,
    /// Inode number of the resolved file, 0 when unknown.
    pub ino: u64,
    /// Thread id of the caller.
    pub pid: u32,
    /// Thread group id of the caller.
    pub tgid: u32,
    /// The call's flags ([`CallArgs::flags`]).
    pub flags: u32,
    /// The call's mode ([`CallArgs::mode`]).
    pub mode: u32,
    /// chown's owner (`u32::MAX`: unchanged or not a chown).
    pub uid: u32,
    /// chown's group (`u32::MAX`: unchanged or not a chown).
    pub gid: u32,
    /// Directory fd the first path is relative to (`AT_FDCWD` = -100).
    pub dfd: i32,
    /// Directory fd the second path is relative to.
    pub dfd2: i32,
    /// The file acted on: the fd an open returned, or the fd argument; -1 for neither.
    pub fd: i32,
    /// [`syscall`] constant.
    pub syscall: u16,
    /// [`file_flags`].
    pub str_flags: u16,
    /// Bytes of the path argument that follow the record.
    pub path_len: u16,
    /// Bytes of the second path argument that follow.
    pub path2_len: u16,
    /// Bytes of the first path's base directory that follow (0: absolute, or unknown).
    pub base_len: u16,
    /// Bytes of the second path's base directory that follow.
    pub base2_len: u16,
    /// Bytes of the resolved absolute path that follow (0: unknown).
    pub resolved_len: u16,
    /// Padding; always 0.
    pub _pad: [u16; 3],
    /// The caller's name.
    pub comm: [u8; 16],
}

/// A network syscall (or a non-blocking connect's outcome). Addresses from the socket are in
/// network byte order, IPv4 in the first 4 bytes; ports are host order. Followed by `addr_len`
/// bytes of the sockaddr the process passed or received (raw, as in user memory), then
/// `payload_len` bytes of the datagram when it is DNS (UDP port 53).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetRecord {
    /// `kind` is [`kind::NET`].
    pub header: RecordHeader,
    /// Start time of the calling process (its group leader).
    pub start_boottime: u64,
    /// The syscall's return value (-errno on failure); 0 for `CONNECT_RESULT`.
    pub ret: i64,
    /// Identifies the socket across records (the kernel's `struct sock` address, hashed by
    /// userspace before it is shown).
    pub sock_id: u64,
    /// Bytes sent or received (the call's return) or sendmmsg's message count.
    pub bytes: u64,
    /// Thread id of the caller.
    pub pid: u32,
    /// Thread group id of the caller.
    pub tgid: u32,
    /// The socket's fd (for accept: the new socket's).
    pub fd: i32,
    /// listen backlog, send/recv flags, accept4 flags.
    pub arg: u32,
    /// [`syscall`] constant.
    pub syscall: u16,
    /// The socket's address family (`AF_INET`, `AF_INET6`, ...); 0 when unknown.
    pub family: u16,
    /// The socket's type (`SOCK_STREAM`, `SOCK_DGRAM`, ...); 0 when unknown.
    pub sock_type: u16,
    /// The socket's protocol (`IPPROTO_TCP`, ...); 0 when unknown.
    pub protocol: u16,
    /// The socket's local port.
    pub local_port: u16,
    /// The socket's peer port.
    pub remote_port: u16,
    /// TCP state after the change (`CONNECT_RESULT`).
    pub new_state: u16,
    /// TCP state before the change (`CONNECT_RESULT`).
    pub old_state: u16,
    /// `sk->sk_err` (CONNECT_RESULT: why a connect failed).
    pub sk_err: i32,
    /// Bytes of sockaddr that follow the record.
    pub addr_len: u16,
    /// Bytes of DNS datagram that follow the sockaddr.
    pub payload_len: u16,
    /// The socket's local address.
    pub local_addr: [u8; 16],
    /// The socket's peer address.
    pub remote_addr: [u8; 16],
    /// The caller's name.
    pub comm: [u8; 16],
}

/// Most bytes of a sockaddr copied (sizeof(struct sockaddr_un)).
pub const SOCKADDR_CAP: u32 = 112;
/// Most bytes of a DNS datagram copied.
pub const DNS_PAYLOAD_CAP: u32 = 512;

/// Who started a non-blocking connect, until the socket's state says how it ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectOwner {
    /// Start time of the connecting process (its group leader).
    pub start_boottime: u64,
    /// Thread id of the task that called connect.
    pub pid: u32,
    /// Thread group id of the task that called connect.
    pub tgid: u32,
    /// The socket's fd.
    pub fd: i32,
    /// Padding; always 0.
    pub _pad: u32,
    /// The caller's name.
    pub comm: [u8; 16],
}

/// Byte offsets of kernel struct members, resolved from the running kernel's BTF by the loader
/// and handed to the programs as a read-only global (Rust eBPF has no CO-RE). A member the
/// kernel lacks is [`OFFSET_ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// `task_struct.group_leader`.
    pub task_group_leader: u32,
    /// `task_struct.start_boottime`.
    pub task_start_boottime: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `task_struct.cred`.
    pub task_cred: u32,
    /// `task_struct.nsproxy`.
    pub task_nsproxy: u32,
    /// `task_struct.thread_pid`.
    pub task_thread_pid: u32,
    /// `task_struct.loginuid` (absent without `CONFIG_AUDIT`).
    pub task_loginuid: u32,
    /// `task_struct.sessionid` (absent without `CONFIG_AUDIT`).
    pub task_sessionid: u32,
    /// `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `task_struct.signal`.
    pub task_signal: u32,
    /// `signal_struct.live`.
    pub signal_live: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// `mm_struct.env_start`.
    pub mm_env_start: u32,
    /// `mm_struct.env_end`.
    pub mm_env_end: u32,
    /// `cred.euid`.
    pub cred_euid: u32,
    /// `cred.egid`.
    pub cred_egid: u32,
    /// `nsproxy.mnt_ns`.
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`.
    pub mnt_ns_inum: u32,
    /// `pid.level`.
    pub pid_level: u32,
    /// `pid.numbers`.
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`, the stride of `pid.numbers`.
    pub upid_size: u32,
    /// `upid.ns`.
    pub upid_ns: u32,
    /// `pid_namespace.ns.inum`.
    pub pid_ns_inum: u32,
    /// `linux_binprm.filename`.
    pub bprm_filename: u32,
    /// `linux_binprm.argc`.
    pub bprm_argc: u32,
    /// `linux_binprm.file`.
    pub bprm_file: u32,
    // Paths: task->fs, struct path, dentries and mounts (for the kernel-side d_path walk).
    /// `task_struct.fs`.
    pub task_fs: u32,
    /// `fs_struct.pwd`.
    pub fs_pwd: u32,
    /// `fs_struct.root`.
    pub fs_root: u32,
    /// `path.mnt`.
    pub path_mnt: u32,
    /// `path.dentry`.
    pub path_dentry: u32,
    /// `dentry.d_parent`.
    pub dentry_parent: u32,
    /// `dentry.d_name`.
    pub dentry_name: u32,
    /// `qstr.name`.
    pub qstr_name: u32,
    /// `qstr.len`.
    pub qstr_len: u32,
    /// `dentry.d_inode`.
    pub dentry_inode: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
    /// `inode.i_sb`.
    pub inode_sb: u32,
    /// `inode.i_mode`.
    pub inode_mode: u32,
    /// `super_block.s_dev`.
    pub sb_dev: u32,
    /// `vfsmount.mnt_root`.
    pub vfsmount_root: u32,
    /// `mount.mnt`.
    pub mount_mnt: u32,
    /// `mount.mnt_parent`.
    pub mount_parent: u32,
    /// `mount.mnt_mountpoint`.
    pub mount_mountpoint: u32,
    // Files: task->files->fdt->fd[n]->f_path / private_data.
    /// `task_struct.files`.
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.fd`.
    pub fdt_fd: u32,
    /// `fdtable.max_fds`.
    pub fdt_max_fds: u32,
    /// `file.f_path`.
    pub file_path: u32,
    /// `file.private_data`.
    pub file_private: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `file.f_flags`.
    pub file_flags: u32,
    // Sockets: socket->sk, and struct sock's common part.
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `sock.skc_family`.
    pub sk_family: u32,
    /// `sock.skc_num`.
    pub sk_num: u32,
    /// `sock.skc_dport`.
    pub sk_dport: u32,
    /// `sock.skc_rcv_saddr`.
    pub sk_rcv_saddr: u32,
    /// `sock.skc_daddr`.
    pub sk_daddr: u32,
    /// `sock.skc_v6_rcv_saddr` (absent without IPv6).
    pub sk_v6_rcv_saddr: u32,
    /// `sock.skc_v6_daddr` (absent without IPv6).
    pub sk_v6_daddr: u32,
    /// `sock.sk_type` (absent before Linux 5.6, where it is a bitfield).
    pub sk_type: u32,
    /// `sock.sk_protocol` (absent before Linux 5.6, where it is a bitfield).
    pub sk_protocol: u32,
    /// `sock.sk_err`.
    pub sk_err: u32,
    // cgroup_mkdir
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `cgroup.root`.
    pub cgroup_root: u32,
    /// `cgroup_root.hierarchy_id`.
    pub cgroup_root_hierarchy_id: u32,
    /// `kernfs_node.id`.
    pub kernfs_node_id: u32,
    /// `msghdr.msg_name`: the kernel's copy of a send's address, read by the `socket_sendmsg`
    /// LSM hook.
    pub msghdr_name: u32,
    /// `msghdr.msg_namelen`.
    pub msghdr_namelen: u32,
    /// `linux_binprm.buf`: the file's first bytes, read before the LSM's exec check (a `#!`
    /// script is judged by its interpreter, as the exec record reports it).
    pub bprm_buf: u32,
    /// `file.f_mode`: how a file is opened (`FMODE_READ`, `FMODE_WRITE`, `FMODE_EXEC`), for the
    /// BPF LSM `file_open` check.
    pub file_mode: u32,
    /// Where the syscall arguments are in `struct pt_regs` (x86-64: di, si, dx, r10, r8, r9;
    /// arm64: orig_x0, then regs[1..6], since x0 holds the return value by then): the exit
    /// programs read them there, so no enter program has to save them.
    pub regs_args: [u32; 6],
    /// Where `struct pt_regs` keeps the syscall's number.
    pub regs_nr: u32,
    /// Where `struct pt_regs` keeps the syscall's return value, at exit.
    pub regs_ret: u32,
    /// How the path walk and the fd lookup read `struct dentry`, `struct mount` and
    /// `struct file`: a few probe reads of whole byte ranges instead of one per member (each
    /// helper call costs more than the copy), planned by the loader from BTF for this kernel's
    /// layout. This one: `struct dentry`.
    pub dentry_read: DentryRead,
    /// How `struct mount` is read (see `dentry_read`).
    pub mount_read: MountRead,
    /// How `struct file` is read (see `dentry_read`).
    pub file_read: FileRead,
}

/// Longest byte range of a kernel object copied by one probe read ([`Gather`]).
pub const SEGMENT_MAX: u32 = 64;
/// Byte ranges per object read: the members a probe needs sit within 64 bytes on Linux 6.12+,
/// but `struct file` spreads them over 192 bytes on 5.10 and 6.1.
pub const SEGMENTS: usize = 2;
/// Size of the buffer a [`Gather`] copies into: segment `i` lands at `i * SEGMENT_MAX`.
pub const CHUNK_BYTES: usize = SEGMENTS * SEGMENT_MAX as usize;

/// A byte range of a kernel struct: `start` is 8-byte aligned, `len` at most [`SEGMENT_MAX`]
/// (0: unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Offset of the range in the struct, in bytes.
    pub start: u32,
    /// Length of the range in bytes.
    pub len: u32,
}

/// The byte ranges of one kernel object to copy, in order, into a chunk of [`CHUNK_BYTES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gather {
    /// The ranges; segment `i` is copied to `i * SEGMENT_MAX` in the chunk.
    pub segments: [Window; SEGMENTS],
}

impl Gather {
    /// Nothing to read: the programs treat the object as unreadable.
    pub const NONE: Self = Self {
        segments: [Window { start: 0, len: 0 }; SEGMENTS],
    };
}

/// Where the walk finds a dentry's members in its copied chunk (byte positions in the chunk).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DentryRead {
    /// What to copy.
    pub gather: Gather,
    /// `d_parent`.
    pub parent: u32,
    /// `d_name.len`.
    pub name_len: u32,
    /// `d_name.name`.
    pub name_ptr: u32,
    /// Padding; always 0.
    pub _pad: u32,
}

/// Where the walk finds a mount's members (`mnt_parent`, `mnt_mountpoint`, `mnt.mnt_root`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountRead {
    /// What to copy.
    pub gather: Gather,
    /// `mnt_parent`.
    pub parent: u32,
    /// `mnt_mountpoint`.
    pub mountpoint: u32,
    /// `mnt.mnt_root`.
    pub root: u32,
    /// Padding; always 0.
    pub _pad: u32,
}

/// Where the fd lookup finds an open file's members (`f_path`, `f_inode`, `private_data`,
/// `f_flags`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRead {
    /// What to copy.
    pub gather: Gather,
    /// `f_path.mnt`.
    pub path_mnt: u32,
    /// `f_path.dentry`.
    pub path_dentry: u32,
    /// `f_inode`.
    pub inode: u32,
    /// `private_data` (a socket file's `struct socket`).
    pub private: u32,
    /// `f_flags`.
    pub flags: u32,
    /// Padding; always 0.
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
        mm_env_start: OFFSET_ABSENT,
        mm_env_end: OFFSET_ABSENT,
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
        bprm_file: OFFSET_ABSENT,
        task_fs: OFFSET_ABSENT,
        fs_pwd: OFFSET_ABSENT,
        fs_root: OFFSET_ABSENT,
        path_mnt: OFFSET_ABSENT,
        path_dentry: OFFSET_ABSENT,
        dentry_parent: OFFSET_ABSENT,
        dentry_name: OFFSET_ABSENT,
        qstr_name: OFFSET_ABSENT,
        qstr_len: OFFSET_ABSENT,
        dentry_inode: OFFSET_ABSENT,
        inode_ino: OFFSET_ABSENT,
        inode_sb: OFFSET_ABSENT,
        inode_mode: OFFSET_ABSENT,
        sb_dev: OFFSET_ABSENT,
        vfsmount_root: OFFSET_ABSENT,
        mount_mnt: OFFSET_ABSENT,
        mount_parent: OFFSET_ABSENT,
        mount_mountpoint: OFFSET_ABSENT,
        task_files: OFFSET_ABSENT,
        files_fdt: OFFSET_ABSENT,
        fdt_fd: OFFSET_ABSENT,
        fdt_max_fds: OFFSET_ABSENT,
        file_path: OFFSET_ABSENT,
        file_private: OFFSET_ABSENT,
        file_inode: OFFSET_ABSENT,
        file_flags: OFFSET_ABSENT,
        socket_sk: OFFSET_ABSENT,
        sk_family: OFFSET_ABSENT,
        sk_num: OFFSET_ABSENT,
        sk_dport: OFFSET_ABSENT,
        sk_rcv_saddr: OFFSET_ABSENT,
        sk_daddr: OFFSET_ABSENT,
        sk_v6_rcv_saddr: OFFSET_ABSENT,
        sk_v6_daddr: OFFSET_ABSENT,
        sk_type: OFFSET_ABSENT,
        sk_protocol: OFFSET_ABSENT,
        sk_err: OFFSET_ABSENT,
        cgroup_kn: OFFSET_ABSENT,
        cgroup_root: OFFSET_ABSENT,
        cgroup_root_hierarchy_id: OFFSET_ABSENT,
        kernfs_node_id: OFFSET_ABSENT,
        msghdr_name: OFFSET_ABSENT,
        msghdr_namelen: OFFSET_ABSENT,
        bprm_buf: OFFSET_ABSENT,
        file_mode: OFFSET_ABSENT,
        regs_args: [OFFSET_ABSENT; 6],
        regs_nr: OFFSET_ABSENT,
        regs_ret: OFFSET_ABSENT,
        dentry_read: DentryRead {
            gather: Gather::NONE,
            parent: 0,
            name_len: 0,
            name_ptr: 0,
            _pad: 0,
        },
        mount_read: MountRead {
            gather: Gather::NONE,
            parent: 0,
            mountpoint: 0,
            root: 0,
            _pad: 0,
        },
        file_read: FileRead {
            gather: Gather::NONE,
            path_mnt: 0,
            path_dentry: 0,
            inode: 0,
            private: 0,
            flags: 0,
            _pad: 0,
        },
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
    /// Offset of the first argument in a `syscalls:sys_enter_*` record (from tracefs).
    pub syscall_args_offset: u32,
    /// Non-zero: unmatched execs (see `unmatched_execs`) carry the start of their environment,
    /// so the daemon can look for the (weak, opt-in) environment marker.
    pub env_marker: u32,
    /// Non-zero: cgroup v2 directories made from now on are reported ([`CgroupRecord`]) and
    /// held until the daemon has decided whether they are an agent's: until then, the records
    /// of untracked processes in them are reported, flagged [`tracked_flags::HELD`], so a
    /// container's first processes are attributed even before its metadata is known.
    pub hold_new_cgroups: u32,
    /// Non-zero: report execs no selector attributed in the kernel (flagged
    /// [`exec_flags::UNMATCHED`]) for the daemon's argv-selector and marker checks.
    pub unmatched_execs: u32,
    /// Non-zero: an exec whose attribution the daemon may still change (unmatched, or only
    /// inherited or image-based) is entered in the tracked-process map as pending
    /// ([`tracked_flags::PENDING`]), so that what it and its children do before the daemon
    /// has decided is reported, for the daemon to attribute (or drop).
    pub pend_execs: u32,
    /// Non-zero: the kernel has `bpf_get_current_task_btf` and `bpf_task_pt_regs` (Linux >=
    /// 5.15), so the exit programs read a syscall's arguments from its saved registers and the
    /// current task with plain loads. Zero: an enter program saves the arguments
    /// ([`SavedCall`]) and the task is read with probe reads.
    pub task_regs: u32,
    /// Wake the consumer once this many bytes are waiting; below it, records are submitted
    /// without a wakeup and the consumer's timer collects them (batching wakeups is most of the
    /// cost saved per event).
    pub wakeup_bytes: u64,
    /// Offset of `ret` in a `syscalls:sys_exit_*` record (from tracefs), read where
    /// `task_regs` is zero.
    pub syscall_ret_offset: u32,
    /// Non-zero: the BPF LSM `socket_connect`, `socket_bind` and `socket_sendmsg` hooks keep the
    /// kernel's own copy of the address of each observed connect, bind and send
    /// ([`KernelSockaddr`]), which `exit_net` reports instead of re-reading user memory (which
    /// another thread may have changed since the kernel copied it).
    pub lsm_addresses: u32,
    /// Non-zero: an agent's exec is checked against its `executables` rule in `kill` mode
    /// (`EXEC_POLICY`), and killed when the rule does not allow it. Also on for rules in
    /// `enforce` mode: an exec the BPF LSM check could not judge (the exec that makes a process
    /// an agent's by its executable) is killed.
    pub exec_kill: u32,
    /// Non-zero: an agent's successful open is checked against its `files` rule in `kill` mode
    /// (`FILE_READ_POLICY` / `FILE_WRITE_POLICY`, entries without [`exec_allow::ENFORCE`]),
    /// and the process killed when the rule does not allow the file opened.
    pub file_kill: u32,
}

impl ProgramConfig {
    /// What the programs see if the loader set nothing: tracked processes only, 4 KiB of argv,
    /// arguments read from the saved registers.
    pub const DEFAULT: Self = Self {
        all_processes: 0,
        args_max: 4096,
        exit_has_group_dead: 0,
        sensor_tgid: 0,
        syscall_args_offset: 16,
        env_marker: 0,
        hold_new_cgroups: 0,
        unmatched_execs: 0,
        pend_execs: 0,
        task_regs: 1,
        wakeup_bytes: 0,
        syscall_ret_offset: 16,
        lsm_addresses: 0,
        exec_kill: 0,
        file_kill: 0,
    };
}

/// Value of the tracked-process map (keyed by tgid): which agent a process is and why.
/// Children inherit their parent's value in the kernel, at fork, before they first run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedProcess {
    /// Agent number (1-based index into the daemon's identity registry); 0: no agent.
    pub agent: u32,
    /// Task number the orchestrator registered (0: none), interned by the daemon.
    pub task: u32,
    /// The agent whose process started this agent (a delegation hop), 0 if none.
    pub delegated_from: u32,
    /// [`method`].
    pub method: u8,
    /// [`tracked_flags`].
    pub flags: u8,
    /// Padding; always 0.
    pub _pad: u16,
}

impl TrackedProcess {
    /// The header attribution of an untracked process in a held cgroup: the cgroup id rides in
    /// the otherwise unused `task` (low half) and `delegated_from` (high half).
    pub const fn held(cgroup_id: u64) -> Self {
        Self {
            agent: 0,
            task: cgroup_id as u32,
            delegated_from: (cgroup_id >> 32) as u32,
            method: method::NONE,
            flags: tracked_flags::HELD,
            _pad: 0,
        }
    }

    /// Whether the daemon has yet to decide on this process's last exec (or an ancestor's).
    pub const fn is_pending(&self) -> bool {
        self.flags & tracked_flags::PENDING != 0
    }

    /// The held cgroup's id, for a record flagged [`tracked_flags::HELD`].
    pub const fn held_cgroup(&self) -> Option<u64> {
        if self.flags & tracked_flags::HELD != 0 {
            Some(self.task as u64 | (self.delegated_from as u64) << 32)
        } else {
            None
        }
    }
}

/// Value of the cgroup-selector map: the agent a cgroup's processes are, and whether its path
/// ([`method::CGROUP`]) or its container's metadata ([`method::CONTAINER`]) said so.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupAgent {
    /// Agent number, as in [`TrackedProcess::agent`].
    pub agent: u32,
    /// [`method::CGROUP`] or [`method::CONTAINER`].
    pub method: u8,
    /// Padding; always 0.
    pub _pad: [u8; 3],
}

/// A cgroup v2 directory made (`cgroup_mkdir`), when [`ProgramConfig::hold_new_cgroups`] is
/// set. The path (relative to the cgroup2 mount, as the kernel names it) follows the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupRecord {
    /// `kind` is [`kind::CGROUP`].
    pub header: RecordHeader,
    /// The cgroup's id: its kernfs node id, what `bpf_get_current_cgroup_id` returns.
    pub id: u64,
    /// Bytes of path that follow, without a NUL.
    pub path_len: u32,
    /// Padding; always 0.
    pub _pad: u32,
}

/// Most bytes of a cgroup path reported (PATH_MAX).
pub const CGROUP_PATH_CAP: u32 = 4096;

/// Key of the executable-selector map: the file's inode and device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeKey {
    /// The file's inode number.
    pub ino: u64,
    /// Its file system's device as the kernel encodes it (`super_block::s_dev`:
    /// `major << 20 | minor`), not userspace's `st_dev`.
    pub dev: u32,
    /// Padding; always 0.
    pub _pad: u32,
}

/// Key of the egress policy (`EGRESS_POLICY`, an LPM trie): an agent number, then an IPv6
/// address (IPv4 as IPv4-mapped, `::ffff:a.b.c.d`). The trie's prefix length covers the agent's
/// 32 bits and the range's bits, so one lookup finds the agent's longest matching range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressKey {
    /// The agent number, big-endian (so the trie's bit order is the number's).
    pub agent_be: u32,
    /// The address, network order.
    pub addr: [u8; 16],
}

/// Most ports one allowed range of an enforced egress rule names.
pub const EGRESS_PORTS: usize = 16;

/// What an agent may reach in one address range: an enforced agent has a catch-all entry (its
/// 32 bits alone) that allows nothing, so a destination outside every allowed range is denied.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressAllow {
    /// Non-zero: any port of the range.
    pub any_port: u32,
    /// How many of `ports` are used.
    pub count: u32,
    /// The allowed ports (host order).
    pub ports: [u16; EGRESS_PORTS],
}

/// Path bytes an executables policy key holds: an LPM trie's key is at most 256 bytes.
pub const EXEC_PATH_KEY: usize = 252;

/// Key of the executables policy (`EXEC_POLICY`, an LPM trie): an agent number, then a path.
/// An exact path ends with a NUL byte inside the prefix, so it matches only itself; a
/// directory prefix matches the paths under it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecKey {
    /// The agent number, big-endian (so the trie's bit order is the number's).
    pub agent_be: u32,
    /// The path's first bytes.
    pub path: [u8; EXEC_PATH_KEY],
}

/// What the longest match of an executable's path in `EXEC_POLICY` allows ([`exec_allow`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecAllow {
    /// [`exec_allow`].
    pub kind: u32,
    /// Bytes of path the entry's prefix holds (after the agent's 4).
    pub prefix: u32,
}

/// Kinds of [`ExecAllow`].
pub mod exec_allow {
    /// The agent's catch-all (its 32 bits alone): nothing of the rule matched; not allowed.
    pub const NOTHING: u32 = 0;
    /// The path itself (its prefix ends with the NUL).
    pub const EXACT: u32 = 1;
    /// Any path under the prefix (`/dir/**`).
    pub const SUBTREE: u32 = 2;
    /// The prefix followed by anything without a `/` (`/dir/*`, `/usr/bin/git*`).
    pub const ONE_LEVEL: u32 = 3;
    /// The kinds above, without [`ENFORCE`].
    pub const KIND_MASK: u32 = 0xff;
    /// Set on every entry of an agent whose `executables` or `files` rule is in `enforce` mode:
    /// the BPF LSM exec and open checks refuse what such an agent's rule does not allow, and
    /// act on no other entry (the exec program's kill check acts on every entry; the open
    /// kill check only on entries without it, those of `files` rules in `kill` mode).
    pub const ENFORCE: u32 = 1 << 8;
}

// Layouts both sides rely on.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<RecordHeader>() == 32);
    assert!(size_of::<ExecRecord>() == 152);
    assert!(size_of::<ForkRecord>() == 104);
    assert!(size_of::<ExitRecord>() == 72);
    assert!(size_of::<KernelOffsets>() == 109 * 4);
    assert!(size_of::<CgroupRecord>() == 48);
    assert!(size_of::<ProgramConfig>() == 64);
    assert!(size_of::<ExecKey>() == 256);
    assert!(size_of::<ExecAllow>() == 8);
    assert!(size_of::<TrackedProcess>() == 16);
    assert!(size_of::<ExeKey>() == 16);
    assert!(align_of::<ExecRecord>() == 8);
    assert!(size_of::<CallArgs>() == 64);
    assert!(size_of::<FileRecord>() == 136);
    assert!(size_of::<NetRecord>() == 152);
    assert!(size_of::<ConnectOwner>() == 40);
    assert!(size_of::<EgressKey>() == 20);
    assert!(size_of::<EgressAllow>() == 8 + 2 * EGRESS_PORTS);
    assert!(size_of::<FileRecord>() + 5 * FILENAME_CAP as usize <= SCRATCH_SIZE);
    assert!(size_of::<ExecRecord>() + ARGS_CAP as usize + FILENAME_CAP as usize <= SCRATCH_SIZE);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding fields; any bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ProgramConfig {}
    unsafe impl aya::Pod for super::TrackedProcess {}
    unsafe impl aya::Pod for super::ExeKey {}
    unsafe impl aya::Pod for super::CgroupAgent {}
    unsafe impl aya::Pod for super::SavedCall {}
    unsafe impl aya::Pod for super::KernelSockaddr {}
    unsafe impl aya::Pod for super::TlsCapture {}
    unsafe impl aya::Pod for super::PipeKey {}
    unsafe impl aya::Pod for super::EgressKey {}
    unsafe impl aya::Pod for super::EgressAllow {}
    unsafe impl aya::Pod for super::ExecKey {}
    unsafe impl aya::Pod for super::ExecAllow {}
}

/// Most plaintext bytes one TLS call's record carries (the configured per-agent bound is
/// clamped to it).
pub const TLS_DATA_CAP: u32 = 16 * 1024;

/// Which way a [`TlsRecord`]'s plaintext went.
pub mod tls_direction {
    /// `SSL_write`, `SSL_write_ex`: the process sent it.
    pub const WRITE: u8 = 1;
    /// `SSL_read`, `SSL_read_ex`: the process received it.
    pub const READ: u8 = 2;
}

/// Flags of a [`TlsRecord`].
pub mod tls_flags {
    /// The call moved more than the agent's bound: only the first `data_len` bytes follow.
    pub const TRUNCATED: u16 = 1 << 0;
    /// The plaintext could not be read from the process's memory: no data follows.
    pub const UNREADABLE: u16 = 1 << 1;
    /// No call moved bytes: the process freed the connection object (`SSL_free`,
    /// `gnutls_deinit`) or reset it for another connection (`SSL_clear`), which ends the
    /// connection; the object, or its address, may name the next one. No data follows and the
    /// direction is 0.
    pub const ENDED: u16 = 1 << 2;
}

/// An opted-in agent's capture settings, by agent number (`TLS_AGENTS`), filled by the daemon
/// from the manifest's `capture:` blocks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCapture {
    /// Most plaintext bytes copied per call (at most [`TLS_DATA_CAP`]).
    pub max_bytes: u32,
    /// The agent's content policy, passed through to the daemon (0 full, 1 redacted, 2 digest).
    pub content: u32,
}

/// A TLS call of an opted-in agent's thread, from the library function's entry to its return
/// (by pid_tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsCall {
    /// The `SSL *`: names the connection across calls.
    pub ssl: u64,
    /// The plaintext buffer.
    pub buf: u64,
    /// The `_ex` forms' `size_t *` out-parameter (bytes moved); 0 for `SSL_read`/`SSL_write`.
    pub moved: u64,
    /// The agent's settings when the call began.
    pub capture: TlsCapture,
    /// [`tls_direction`].
    pub direction: u8,
    /// Padding; always 0.
    pub _pad: [u8; 7],
}

/// Plaintext an opted-in agent's process wrote to or read from a TLS connection, at the
/// library function's return. Followed by `data_len` bytes of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsRecord {
    /// `kind` is [`kind::TLS`].
    pub header: RecordHeader,
    /// Start time of the calling process (its group leader).
    pub start_boottime: u64,
    /// The `SSL *` the call was on: names the connection (hashed by userspace before shown).
    pub ssl: u64,
    /// Bytes the call moved (its real length).
    pub len: u64,
    /// Thread id of the caller.
    pub pid: u32,
    /// Thread group id of the caller.
    pub tgid: u32,
    /// Bytes of plaintext that follow.
    pub data_len: u32,
    /// The agent's content policy ([`TlsCapture::content`]).
    pub content: u8,
    /// [`tls_direction`].
    pub direction: u8,
    /// [`tls_flags`].
    pub flags: u16,
    /// The caller's name.
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<TlsCapture>() == 8);
const _: () = assert!(size_of::<TlsCall>() == 40);
const _: () = assert!(size_of::<TlsRecord>() == 88);
const _: () = assert!(size_of::<TlsRecord>() + TLS_DATA_CAP as usize <= SCRATCH_SIZE);

/// Which way a [`PipeRecord`]'s bytes went.
pub mod pipe_direction {
    /// `write`: the process wrote them into the pipe.
    pub const WRITE: u8 = 1;
    /// `read`: the process read them from the pipe.
    pub const READ: u8 = 2;
}

/// Flags of a [`PipeRecord`] (the same bits as [`tls_flags`]).
pub mod pipe_flags {
    /// The call moved more than the agent's bound: only the first `data_len` bytes follow.
    pub const TRUNCATED: u16 = 1 << 0;
    /// The bytes could not be read from the process's memory, or were never in it (moved by
    /// `splice`, `tee` or `sendfile`): no data follows.
    pub const UNREADABLE: u16 = 1 << 1;
}

/// Most bytes of a cut call's end copied after its start (a [`PipeRecord`]'s tail): a
/// JSON-RPC message's last members (the npm MCP SDK writes `id` last) and its newline.
pub const PIPE_TAIL_CAP: u32 = 256;

/// Most iovecs of one `readv`/`writev` whose bytes are copied: each into a [`PipeRecord`] of
/// its own (bounded by the agent's `max_bytes`, like a `read`'s or `write`'s); the bytes the
/// call moved through iovecs after these are one record without data (a hole).
pub const PIPE_IOV_CAP: u32 = 16;

/// A `read`, `write`, `readv` or `writev` of an opted-in agent's thread on a pipe, from the
/// syscall's entry to its exit (by pid_tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PipeCall {
    /// The pipe's inode (its address): names the pipe while it exists.
    pub inode: u64,
    /// Its inode number.
    pub ino: u64,
    /// The user buffer (`read`, `write`), or the `struct iovec` array (`readv`, `writev`).
    pub buf: u64,
    /// The agent's settings when the call began.
    pub capture: TlsCapture,
    /// The file descriptor.
    pub fd: i32,
    /// [`pipe_direction`].
    pub direction: u8,
    /// Padding; always 0.
    pub _pad: u8,
    /// `readv`, `writev`: the count of iovecs in `buf` (at most `u16::MAX`); 0 for `read`
    /// and `write`.
    pub iovs: u16,
}

/// A `splice`, `tee` or `sendfile` of an opted-in agent's thread moving bytes out of a pipe
/// (`ends[0]`) or into one (`ends[1]`), from the syscall's entry to its exit (by pid_tgid).
/// An end whose `inode` is 0 is not a pipe (or not one the call moves bytes through); `buf`
/// and `iovs` are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PipeMove {
    /// The end read from, and the end written to.
    pub ends: [PipeCall; 2],
}

/// Key of the per-pipe stream positions (`PIPE_OFFSETS`): one position per pipe and direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PipeKey {
    /// The pipe's inode address.
    pub inode: u64,
    /// [`pipe_direction`].
    pub direction: u64,
}

/// Bytes an opted-in agent's process wrote to or read from a pipe (an MCP server's stdio, for
/// one), at the syscall's exit. Followed by `data_len` bytes of them (the first), then, when
/// the call was cut, `tail_len` more: its last ones (at most [`PIPE_TAIL_CAP`], never
/// overlapping the first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PipeRecord {
    /// `kind` is [`kind::PIPE`].
    pub header: RecordHeader,
    /// Start time of the calling process (its group leader).
    pub start_boottime: u64,
    /// The pipe's inode address: names the pipe while it exists (never shown).
    pub inode: u64,
    /// Its inode number.
    pub ino: u64,
    /// Where this call's bytes start in the pipe's stream of this direction, as the kernel
    /// counted the calls it saw: a hole between two records is bytes not seen.
    pub offset: u64,
    /// Bytes the call moved (its real length).
    pub len: u64,
    /// Thread id of the caller.
    pub pid: u32,
    /// Thread group id of the caller.
    pub tgid: u32,
    /// The file descriptor.
    pub fd: i32,
    /// Bytes that follow.
    pub data_len: u32,
    /// The agent's content policy ([`TlsCapture::content`]).
    pub content: u8,
    /// [`pipe_direction`].
    pub direction: u8,
    /// [`pipe_flags`].
    pub flags: u16,
    /// Bytes of the call's end that follow the first `data_len` (a cut call's tail); 0 when
    /// the call was not cut.
    pub tail_len: u16,
    /// Padding; always 0.
    pub _pad: [u8; 2],
    /// The caller's name.
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<PipeCall>() == 40);
const _: () = assert!(size_of::<PipeKey>() == 16);
const _: () = assert!(size_of::<PipeRecord>() == 112);
const _: () = assert!(
    size_of::<PipeRecord>() + TLS_DATA_CAP as usize + PIPE_TAIL_CAP as usize <= SCRATCH_SIZE
);
