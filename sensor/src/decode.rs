//! The only code that reads raw kernel bytes: a pure function from one ring-buffer record to a
//! typed [`KernelEvent`]. Malformed records are errors with a kind, which the pipeline counts.
use sensor_common::{
    CgroupRecord, ExecRecord, ExitRecord, FileRecord, ForkRecord, NetRecord, PipeRecord,
    RECORD_VERSION, RecordHeader, TlsRecord, TrackedProcess, exec_flags, exit_flags, file_flags,
    fork_flags, kind, pipe_direction, pipe_flags, tls_direction, tls_flags,
};

/// A decoded kernel record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A process ran a new program.
    Exec(ExecEvent),
    /// A process or thread was created.
    Fork(ForkEvent),
    /// A thread ended (with the last one, the process).
    Exit(ExitEvent),
    /// A file syscall.
    File(FileEvent),
    /// A network syscall, or a connect completing.
    Net(NetEvent),
    /// A cgroup was made.
    Cgroup(CgroupEvent),
    /// Plaintext an opted-in agent passed through its TLS library.
    Tls(TlsEvent),
    /// Bytes an opted-in agent's process moved through a pipe.
    Pipe(PipeEvent),
}

impl KernelEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub fn ktime_ns(&self) -> u64 {
        match self {
            Self::Exec(e) => e.ktime_ns,
            Self::Fork(e) => e.ktime_ns,
            Self::Exit(e) => e.ktime_ns,
            Self::File(e) => e.ktime_ns,
            Self::Net(e) => e.ktime_ns,
            Self::Cgroup(e) => e.ktime_ns,
            Self::Tls(e) => e.ktime_ns,
            Self::Pipe(e) => e.ktime_ns,
        }
    }

    /// The process the record is about (none for a cgroup's).
    pub fn tgid(&self) -> Option<u32> {
        match self {
            Self::Exec(e) => Some(e.tgid),
            Self::Fork(e) => Some(e.child_tgid),
            Self::Exit(e) => Some(e.tgid),
            Self::File(e) => Some(e.tgid),
            Self::Net(e) => Some(e.tgid),
            Self::Cgroup(_) => None,
            Self::Tls(e) => Some(e.tgid),
            Self::Pipe(e) => Some(e.tgid),
        }
    }

    /// Replaces the kernel's attribution (with the daemon's decision on a held cgroup).
    pub fn set_attribution(&mut self, a: TrackedProcess) {
        match self {
            Self::Exec(e) => e.attribution = a,
            Self::Fork(e) => e.attribution = a,
            Self::Exit(e) => e.attribution = a,
            Self::File(e) => e.attribution = a,
            Self::Net(e) => e.attribution = a,
            Self::Cgroup(_) => {}
            Self::Tls(e) => e.attribution = a,
            Self::Pipe(e) => e.attribution = a,
        }
    }

    /// The agent attribution the kernel had for the process (none for a cgroup's).
    pub fn attribution(&self) -> TrackedProcess {
        match self {
            Self::Exec(e) => e.attribution,
            Self::Fork(e) => e.attribution,
            Self::Exit(e) => e.attribution,
            Self::File(e) => e.attribution,
            Self::Net(e) => e.attribution,
            Self::Cgroup(_) => TrackedProcess::default(),
            Self::Tls(e) => e.attribution,
            Self::Pipe(e) => e.attribution,
        }
    }
}

/// A successful exec: the process, its credentials and namespaces, and the program it now runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one bool per independent kernel flag bit, each its own output field"
)]
pub struct ExecEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The thread that exec'd (equal to `tgid` after exec).
    pub pid: u32,
    /// The process.
    pub tgid: u32,
    /// The real parent's process.
    pub ppid: u32,
    /// The process's start time, ns since boot: with `tgid`, names it across pid reuse.
    pub start_boottime: u64,
    /// The parent's start time, naming the parent the same way.
    pub parent_start_boottime: u64,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id: whose rights the program runs with.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// The audit login uid: the user who logged in, kept across `su` and `sudo`. None when
    /// unset (`(uid_t)-1`) or when the kernel keeps none.
    pub loginuid: Option<u32>,
    /// The audit session id, under the same conditions as `loginuid`.
    pub sessionid: Option<u32>,
    /// The cgroup v2 id (inode number of its directory): which container or unit it runs in.
    pub cgroup_id: u64,
    /// Inode number of its pid namespace.
    pub pid_ns: u32,
    /// Inode number of its mount namespace.
    pub mnt_ns: u32,
    /// The file name as passed to exec (raw bytes: not necessarily UTF-8).
    pub filename: Vec<u8>,
    /// The absolute path of the file the kernel runs (for a script, its interpreter); empty
    /// when it could not be walked.
    pub exe: Vec<u8>,
    /// `exe` was cut at the kernel's limit.
    pub exe_truncated: bool,
    /// The working directory's absolute path at exec; empty when it could not be walked.
    pub cwd: Vec<u8>,
    /// `cwd` was cut at the top (deeper than the kernel's walk goes).
    pub cwd_truncated: bool,
    /// The agent's `executables` rule in kill mode did not allow the program: the kernel sent
    /// the process SIGKILL as the exec completed.
    pub policy_killed: bool,
    /// No selector attributed the process in the kernel: reported for the daemon's argv and
    /// marker checks only.
    pub unmatched: bool,
    /// The start of the environment, when unmatched and the environment-marker check is on.
    pub env: Option<Vec<u8>>,
    /// `filename` was cut at the kernel's limit.
    pub filename_truncated: bool,
    /// argv, split at NULs; the last element may be cut when `args_truncated`.
    pub args: Vec<Vec<u8>>,
    /// argc as the kernel counted it.
    pub args_count: u32,
    /// Bytes argv takes in the process.
    pub args_size: u32,
    /// argv was longer than the kernel copies: `args` is its start.
    pub args_truncated: bool,
    /// argv could not be read from the new image's memory: `args` is empty.
    pub args_unreadable: bool,
    /// The task's `comm` (the kernel's 15-byte name), after the exec.
    pub comm: Vec<u8>,
}

/// A new task from fork or clone: a child process, or a thread of the caller's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The new task's thread id.
    pub child_pid: u32,
    /// The new task's process (the parent's for a thread).
    pub child_tgid: u32,
    /// The thread that called fork or clone.
    pub parent_pid: u32,
    /// The process that called fork or clone.
    pub parent_tgid: u32,
    /// The child process's start time (for a thread: its group leader's), ns since boot.
    pub start_boottime: u64,
    /// The parent process's start time, ns since boot.
    pub parent_start_boottime: u64,
    /// The cgroup v2 id the child starts in.
    pub cgroup_id: u64,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// A new thread in the parent's process rather than a new process.
    pub thread: bool,
    /// The task's `comm` (inherited from the parent).
    pub comm: Vec<u8>,
}

/// A task ended; `process_exit` says whether its process ended with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The thread that exited.
    pub pid: u32,
    /// Its process.
    pub tgid: u32,
    /// The process's start time, ns since boot, naming the same process as its exec and fork.
    pub start_boottime: u64,
    /// How it ended.
    pub status: ExitStatus,
    /// The last thread exited: the process is gone.
    pub process_exit: bool,
    /// The task's `comm`.
    pub comm: Vec<u8>,
}

/// A cgroup v2 directory made (and held in the kernel until the daemon decides on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The cgroup's id: what `cgroup_id` of the processes in it will say.
    pub id: u64,
    /// Relative to the cgroup2 mount, as the kernel names it (`/kubepods/.../<id>`).
    pub path: Vec<u8>,
}

/// Plaintext one `SSL_read`/`SSL_write` call of an opted-in agent moved (up to its bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEvent {
    /// CLOCK_BOOTTIME nanoseconds when the call returned.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The calling thread.
    pub pid: u32,
    /// The process.
    pub tgid: u32,
    /// The process's start time, ns since boot.
    pub start_boottime: u64,
    /// The connection (the library's `SSL *`), unique among the process's open connections.
    pub ssl: u64,
    /// True: the process sent it (`SSL_write`); false: received it.
    pub sent: bool,
    /// Bytes the call moved.
    pub len: u64,
    /// What was copied: the first bytes of it.
    pub data: Vec<u8>,
    /// The plaintext could not be read from the process's memory.
    pub unreadable: bool,
    /// No call: the process freed the connection object (`SSL_free`, `gnutls_deinit`) or reset
    /// it (`SSL_clear`), so the connection ended (`data` is empty); the object, or its
    /// address, may name the process's next connection.
    pub ended: bool,
    /// The agent's content policy (0 full, 1 redacted, 2 digest).
    pub content: u8,
    /// The task's name.
    pub comm: [u8; 16],
}

impl TlsEvent {
    /// The call moved more than the agent's bound (`data` is its start).
    pub fn truncated(&self) -> bool {
        !self.unreadable && self.len > self.data.len() as u64
    }
}

/// Bytes one `read` or `write` on a pipe by an opted-in agent's process moved (up to its bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeEvent {
    /// CLOCK_BOOTTIME nanoseconds when the call returned.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The calling thread.
    pub pid: u32,
    /// The process.
    pub tgid: u32,
    /// The process's start time, ns since boot.
    pub start_boottime: u64,
    /// The pipe (its inode's address): unique among pipes that exist.
    pub pipe: u64,
    /// The pipe's inode number.
    pub ino: u64,
    /// The file descriptor the call was on.
    pub fd: i32,
    /// True: the process wrote the bytes; false: read them.
    pub written: bool,
    /// Where the call's bytes start in the pipe's stream of this direction.
    pub offset: u64,
    /// Bytes the call moved.
    pub len: u64,
    /// What was copied: the first bytes of them.
    pub data: Vec<u8>,
    /// A cut call's last bytes, copied after `data` (none otherwise): they end the call, at
    /// `offset + len - tail.len()`.
    pub tail: Vec<u8>,
    /// The bytes could not be read from the process's memory.
    pub unreadable: bool,
    /// The agent's content policy (0 full, 1 redacted, 2 digest).
    pub content: u8,
    /// The task's name.
    pub comm: [u8; 16],
}

/// A file syscall with its outcome. Paths are raw bytes as the kernel had them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The calling thread.
    pub pid: u32,
    /// The calling process.
    pub tgid: u32,
    /// The process's start time, ns since boot.
    pub start_boottime: u64,
    /// A `sensor_common::syscall` constant.
    pub syscall: u16,
    /// The syscall's return: an fd, 0, or `-errno`.
    pub ret: i64,
    /// The call's flags argument (open's `O_*`, the `AT_*` flags of the `*at` calls).
    pub flags: u32,
    /// The mode argument (open with `O_CREAT`, mkdir, chmod).
    pub mode: u32,
    /// chown's owner; `u32::MAX` when left unchanged.
    pub uid: u32,
    /// chown's group; `u32::MAX` when left unchanged.
    pub gid: u32,
    /// truncate's length, openat2's resolve flags.
    pub arg: u64,
    /// Inode of the file acted on, when known.
    pub ino: u64,
    /// The directory fd `path` is relative to (`AT_FDCWD` for the working directory).
    pub dfd: i32,
    /// The directory fd `path2` is relative to.
    pub dfd2: i32,
    /// The fd argument, or the fd an open returned.
    pub fd: i32,
    /// The path argument as passed.
    pub path: Vec<u8>,
    /// The second path argument (rename, link, symlink), as passed.
    pub path2: Vec<u8>,
    /// The absolute directory a relative `path` is relative to (empty when absolute).
    pub base: Vec<u8>,
    /// The same for `path2`.
    pub base2: Vec<u8>,
    /// The absolute path of the file the kernel acted on (opened file, fd's file).
    pub resolved: Vec<u8>,
    /// `sensor_common::file_flags`.
    pub str_flags: u16,
    /// The task's `comm`.
    pub comm: Vec<u8>,
}

impl FileEvent {
    /// A path or its base directory was cut at the kernel's limit: the full path is not known.
    pub fn path_truncated(&self) -> bool {
        self.str_flags & (file_flags::PATH_TRUNCATED | file_flags::BASE_TRUNCATED) != 0
    }
}

/// A network syscall, or the outcome of a non-blocking connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEvent {
    /// CLOCK_BOOTTIME nanoseconds when it happened.
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    /// The calling thread.
    pub pid: u32,
    /// The calling process.
    pub tgid: u32,
    /// The process's start time, ns since boot.
    pub start_boottime: u64,
    /// A `sensor_common::syscall` constant (`CONNECT_RESULT` for a completed connect).
    pub syscall: u16,
    /// The syscall's return: a count, an fd, 0, or `-errno`.
    pub ret: i64,
    /// The kernel socket's address: names the socket across records; hashed before it is shown.
    pub sock_id: u64,
    /// Bytes sent or received, or sendmmsg's message count.
    pub bytes: u64,
    /// The socket's fd.
    pub fd: i32,
    /// listen's backlog, the send and receive flags, accept4's flags.
    pub arg: u32,
    /// The socket's address family (`AF_*`).
    pub family: u16,
    /// The socket's type (`SOCK_*`).
    pub sock_type: u16,
    /// The socket's protocol number (`IPPROTO_*`).
    pub protocol: u16,
    /// The socket's own port, host byte order.
    pub local_port: u16,
    /// The peer's port, host byte order; 0 when not connected.
    pub remote_port: u16,
    /// The socket's own address: IPv6, or IPv4 in the first four bytes.
    pub local_addr: [u8; 16],
    /// The peer's address, laid out as `local_addr`.
    pub remote_addr: [u8; 16],
    /// A completed connect's TCP state after the change (`TCP_ESTABLISHED` on success).
    pub new_state: u16,
    /// The TCP state before it.
    pub old_state: u16,
    /// The socket's error: why a connect failed.
    pub sk_err: i32,
    /// The sockaddr the process passed or received, raw.
    pub sockaddr: Vec<u8>,
    /// The datagram, for DNS.
    pub payload: Vec<u8>,
    /// The task's `comm`.
    pub comm: Vec<u8>,
}

/// How a task ended, decoded from `task_struct::exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this status.
    Exited(u8),
    /// A signal ended it.
    Signaled {
        /// The signal's number.
        signal: u8,
        /// It left a core dump.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Decodes `exit_code`: `status << 8`, or the signal with 0x80 set on a core dump.
    pub(crate) fn from_raw(code: u32) -> Self {
        let signal = (code & 0x7f) as u8;
        if signal == 0 {
            Self::Exited(((code >> 8) & 0xff) as u8)
        } else {
            Self::Signaled {
                signal,
                core_dumped: code & 0x80 != 0,
            }
        }
    }
}

/// Why a record could not be decoded; `kind()` names the counter it is counted under.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a record header.
    #[error("record of {len} bytes is shorter than its header")]
    ShortHeader {
        /// The bytes that arrived.
        len: usize,
    },
    /// A kind this daemon does not know.
    #[error("record kind {0} is unknown")]
    UnknownKind(u16),
    /// Written by kernel programs of another layout version.
    #[error("record version {found} differs from the daemon's {expected}")]
    Version {
        /// The record's version.
        found: u16,
        /// The daemon's ([`RECORD_VERSION`]).
        expected: u16,
    },
    /// Shorter than its header says.
    #[error("record says {claimed} bytes but {len} arrived")]
    SizeMismatch {
        /// The size in its header.
        claimed: u32,
        /// The bytes that arrived.
        len: usize,
    },
    /// Too short for its kind's fixed part, or for the trailing data its lengths claim.
    #[error("{what} record of {len} bytes is too short for its fixed part or trailing data")]
    Truncated {
        /// The record's kind.
        what: &'static str,
        /// Its size.
        len: usize,
    },
}

impl DecodeError {
    /// The name it is counted under in the pipeline's decode-error counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ShortHeader { .. } => "short_header",
            Self::UnknownKind(_) => "unknown_kind",
            Self::Version { .. } => "version",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Truncated { .. } => "truncated",
        }
    }
}

/// Reads a `#[repr(C)]` record of plain integers from the front of `bytes`.
fn read_record<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Truncated {
            what,
            len: bytes.len(),
        });
    }
    // SAFETY: length checked; T is plain integers (any bit pattern valid), read unaligned.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// Decodes one ring-buffer record (its header, the fixed part of its kind and its trailing
/// data), checking every length against the bytes that arrived.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let header: RecordHeader =
        read_record(bytes, "header").map_err(|_| DecodeError::ShortHeader { len: bytes.len() })?;
    if header.version != RECORD_VERSION {
        return Err(DecodeError::Version {
            found: header.version,
            expected: RECORD_VERSION,
        });
    }
    // The ring buffer may pad a record; it must never be shorter than it claims.
    if header.size as usize > bytes.len() {
        return Err(DecodeError::SizeMismatch {
            claimed: header.size,
            len: bytes.len(),
        });
    }
    let bytes = &bytes[..header.size as usize];
    match header.kind {
        kind::EXEC => decode_exec(bytes).map(KernelEvent::Exec),
        kind::FORK => decode_fork(bytes).map(KernelEvent::Fork),
        kind::EXIT => decode_exit(bytes).map(KernelEvent::Exit),
        kind::FILE => decode_file(bytes).map(KernelEvent::File),
        kind::NET => decode_net(bytes).map(KernelEvent::Net),
        kind::CGROUP => decode_cgroup(bytes).map(KernelEvent::Cgroup),
        kind::TLS => decode_tls(bytes).map(KernelEvent::Tls),
        kind::PIPE => decode_pipe(bytes).map(KernelEvent::Pipe),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_exec(bytes: &[u8]) -> Result<ExecEvent, DecodeError> {
    let r: ExecRecord = read_record(bytes, "exec")?;
    let tail = &bytes[size_of::<ExecRecord>()..];
    let lens = [r.args_len, r.filename_len, r.exe_len, r.cwd_len, r.env_len].map(|n| n as usize);
    let [args, filename, exe, cwd, env] = pieces(tail, lens, "exec", bytes.len())?;
    let flags = r.flags;
    Ok(ExecEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        ppid: r.ppid,
        start_boottime: r.start_boottime,
        parent_start_boottime: r.parent_start_boottime,
        uid: r.uid,
        gid: r.gid,
        euid: r.euid,
        egid: r.egid,
        loginuid: (flags & exec_flags::NO_LOGINUID == 0 && r.loginuid != u32::MAX)
            .then_some(r.loginuid),
        sessionid: (flags & exec_flags::NO_LOGINUID == 0 && r.sessionid != u32::MAX)
            .then_some(r.sessionid),
        cgroup_id: r.cgroup_id,
        pid_ns: r.pid_ns,
        mnt_ns: r.mnt_ns,
        filename,
        filename_truncated: flags & exec_flags::FILENAME_TRUNCATED != 0,
        exe,
        exe_truncated: flags & exec_flags::EXE_TRUNCATED != 0,
        cwd,
        cwd_truncated: flags & exec_flags::CWD_TRUNCATED != 0,
        policy_killed: flags & exec_flags::POLICY_KILLED != 0,
        unmatched: flags & exec_flags::UNMATCHED != 0,
        env: (flags & exec_flags::ENV_INCLUDED != 0).then_some(env),
        args: split_args(&args),
        args_count: r.args_count,
        args_size: r.args_size,
        args_truncated: flags & exec_flags::ARGS_TRUNCATED != 0,
        args_unreadable: flags & exec_flags::ARGS_UNREADABLE != 0,
        comm: c_string(&r.comm),
    })
}

fn decode_fork(bytes: &[u8]) -> Result<ForkEvent, DecodeError> {
    let r: ForkRecord = read_record(bytes, "fork")?;
    Ok(ForkEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        child_pid: r.child_pid,
        child_tgid: r.child_tgid,
        parent_pid: r.parent_pid,
        parent_tgid: r.parent_tgid,
        start_boottime: r.start_boottime,
        parent_start_boottime: r.parent_start_boottime,
        cgroup_id: r.cgroup_id,
        uid: r.uid,
        gid: r.gid,
        thread: r.flags & fork_flags::THREAD != 0,
        comm: c_string(&r.comm),
    })
}

fn decode_exit(bytes: &[u8]) -> Result<ExitEvent, DecodeError> {
    let r: ExitRecord = read_record(bytes, "exit")?;
    Ok(ExitEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        start_boottime: r.start_boottime,
        status: ExitStatus::from_raw(r.exit_code),
        process_exit: r.flags & exit_flags::GROUP_DEAD != 0,
        comm: c_string(&r.comm),
    })
}

fn decode_cgroup(bytes: &[u8]) -> Result<CgroupEvent, DecodeError> {
    let r: CgroupRecord = read_record(bytes, "cgroup")?;
    let tail = &bytes[size_of::<CgroupRecord>()..];
    let [path] = pieces(tail, [r.path_len as usize], "cgroup", bytes.len())?;
    Ok(CgroupEvent {
        ktime_ns: r.header.ktime_ns,
        id: r.id,
        path,
    })
}

fn decode_tls(bytes: &[u8]) -> Result<TlsEvent, DecodeError> {
    let r: TlsRecord = read_record(bytes, "tls")?;
    let tail = &bytes[size_of::<TlsRecord>()..];
    let [data] = pieces(tail, [r.data_len as usize], "tls", bytes.len())?;
    Ok(TlsEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        start_boottime: r.start_boottime,
        ssl: r.ssl,
        sent: r.direction == tls_direction::WRITE,
        len: r.len,
        data,
        unreadable: r.flags & tls_flags::UNREADABLE != 0,
        ended: r.flags & tls_flags::ENDED != 0,
        content: r.content,
        comm: r.comm,
    })
}

fn decode_pipe(bytes: &[u8]) -> Result<PipeEvent, DecodeError> {
    let r: PipeRecord = read_record(bytes, "pipe")?;
    let tail = &bytes[size_of::<PipeRecord>()..];
    let [data, tail] = pieces(
        tail,
        [r.data_len as usize, usize::from(r.tail_len)],
        "pipe",
        bytes.len(),
    )?;
    // A tail longer than what the call moved past its start would place bytes before it.
    if (data.len() + tail.len()) as u64 > r.len {
        return Err(DecodeError::Truncated {
            what: "pipe",
            len: bytes.len(),
        });
    }
    Ok(PipeEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        start_boottime: r.start_boottime,
        pipe: r.inode,
        ino: r.ino,
        fd: r.fd,
        written: r.direction == pipe_direction::WRITE,
        offset: r.offset,
        len: r.len,
        data,
        tail,
        unreadable: r.flags & pipe_flags::UNREADABLE != 0,
        content: r.content,
        comm: r.comm,
    })
}

/// Splits `tail` into consecutive pieces of the given lengths.
fn pieces<const N: usize>(
    tail: &[u8],
    lens: [usize; N],
    what: &'static str,
    len: usize,
) -> Result<[Vec<u8>; N], DecodeError> {
    if lens.iter().sum::<usize>() > tail.len() {
        return Err(DecodeError::Truncated { what, len });
    }
    let mut at = 0;
    Ok(lens.map(|n| {
        let piece = tail[at..at + n].to_vec();
        at += n;
        piece
    }))
}

fn decode_file(bytes: &[u8]) -> Result<FileEvent, DecodeError> {
    let r: FileRecord = read_record(bytes, "file")?;
    let tail = &bytes[size_of::<FileRecord>()..];
    let lens = [
        r.path_len,
        r.path2_len,
        r.base_len,
        r.base2_len,
        r.resolved_len,
    ]
    .map(usize::from);
    let [path, path2, base, base2, resolved] = pieces(tail, lens, "file", bytes.len())?;
    Ok(FileEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        start_boottime: r.start_boottime,
        syscall: r.syscall,
        ret: r.ret,
        flags: r.flags,
        mode: r.mode,
        uid: r.uid,
        gid: r.gid,
        arg: r.arg,
        ino: r.ino,
        dfd: r.dfd,
        dfd2: r.dfd2,
        fd: r.fd,
        path,
        path2,
        base,
        base2,
        resolved,
        str_flags: r.str_flags,
        comm: c_string(&r.comm),
    })
}

fn decode_net(bytes: &[u8]) -> Result<NetEvent, DecodeError> {
    let r: NetRecord = read_record(bytes, "net")?;
    let tail = &bytes[size_of::<NetRecord>()..];
    let [sockaddr, payload] = pieces(
        tail,
        [usize::from(r.addr_len), usize::from(r.payload_len)],
        "net",
        bytes.len(),
    )?;
    Ok(NetEvent {
        ktime_ns: r.header.ktime_ns,
        attribution: r.header.attribution,
        pid: r.pid,
        tgid: r.tgid,
        start_boottime: r.start_boottime,
        syscall: r.syscall,
        ret: r.ret,
        sock_id: r.sock_id,
        bytes: r.bytes,
        fd: r.fd,
        arg: r.arg,
        family: r.family,
        sock_type: r.sock_type,
        protocol: r.protocol,
        local_port: r.local_port,
        remote_port: r.remote_port,
        local_addr: r.local_addr,
        remote_addr: r.remote_addr,
        new_state: r.new_state,
        old_state: r.old_state,
        sk_err: r.sk_err,
        sockaddr,
        payload,
        comm: c_string(&r.comm),
    })
}

/// Splits the NUL-separated argv block of a process. Empty arguments are kept; the block's
/// final NUL does not start another argument. A block cut short ends with a partial argument.
pub(crate) fn split_args(block: &[u8]) -> Vec<Vec<u8>> {
    if block.is_empty() {
        return Vec::new();
    }
    let block = block.strip_suffix(&[0]).unwrap_or(block);
    block.split(|b| *b == 0).map(<[u8]>::to_vec).collect()
}

/// The bytes of a fixed-size, NUL-padded C string.
fn c_string(raw: &[u8]) -> Vec<u8> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    raw[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_bytes(direction: u8, flags: u16, len: u64, data: &[u8]) -> Vec<u8> {
        let record = TlsRecord {
            header: RecordHeader {
                kind: kind::TLS,
                version: RECORD_VERSION,
                size: (size_of::<TlsRecord>() + data.len()) as u32,
                ktime_ns: 42,
                attribution: TrackedProcess::default(),
            },
            start_boottime: 1000,
            ssl: 0x55aa_0000,
            len,
            pid: 11,
            tgid: 10,
            data_len: data.len() as u32,
            content: 0,
            direction,
            flags,
            comm: [0; 16],
        };
        let mut out = vec![0u8; size_of::<TlsRecord>()];
        // SAFETY: the buffer is exactly the record's size.
        unsafe {
            out.as_mut_ptr().cast::<TlsRecord>().write_unaligned(record);
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn tls_calls_and_the_end_of_a_connection_decode() {
        let Ok(KernelEvent::Tls(e)) = decode(&tls_bytes(
            tls_direction::WRITE,
            tls_flags::TRUNCATED,
            10,
            b"POST",
        )) else {
            panic!("a TLS call");
        };
        assert!(e.sent && !e.ended && e.truncated());
        assert_eq!(
            (e.tgid, e.ssl, e.len, &e.data[..]),
            (10, 0x55aa_0000, 10, &b"POST"[..])
        );
        let Ok(KernelEvent::Tls(e)) = decode(&tls_bytes(0, tls_flags::ENDED, 0, b"")) else {
            panic!("the end of a connection");
        };
        assert!(e.ended && !e.sent && !e.truncated() && e.data.is_empty());
        assert_eq!(e.ssl, 0x55aa_0000);
        // A data length beyond the record is an error, not a read past it.
        let mut bad = tls_bytes(tls_direction::READ, 0, 4, b"");
        bad[size_of::<RecordHeader>() + 32..size_of::<RecordHeader>() + 36]
            .copy_from_slice(&4u32.to_le_bytes());
        assert!(decode(&bad).is_err());
    }

    fn exec_bytes(args: &[u8], filename: &[u8], flags: u32) -> Vec<u8> {
        let size = size_of::<ExecRecord>() + args.len() + filename.len();
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        let record = ExecRecord {
            header: RecordHeader {
                kind: kind::EXEC,
                version: RECORD_VERSION,
                size: size as u32,
                ktime_ns: 42,
                attribution: TrackedProcess::default(),
            },
            start_boottime: 1000,
            parent_start_boottime: 500,
            cgroup_id: 7,
            pid: 10,
            tgid: 10,
            ppid: 9,
            uid: 1,
            gid: 2,
            euid: 3,
            egid: 4,
            loginuid: u32::MAX,
            sessionid: 5,
            pid_ns: 11,
            mnt_ns: 12,
            args_count: 3,
            args_size: args.len() as u32,
            args_len: args.len() as u32,
            filename_len: filename.len() as u32,
            exe_len: 0,
            cwd_len: 0,
            env_len: 0,
            flags,
            _pad: 0,
            comm,
        };
        let mut out = vec![0u8; size_of::<ExecRecord>()];
        // SAFETY: the buffer is exactly the record's size.
        unsafe {
            out.as_mut_ptr()
                .cast::<ExecRecord>()
                .write_unaligned(record);
        }
        out.extend_from_slice(args);
        out.extend_from_slice(filename);
        out
    }

    #[test]
    fn decodes_an_exec_record_with_its_trailing_data() {
        let bytes = exec_bytes(b"/bin/true\0a b\0\0", b"/bin/true", 0);
        let KernelEvent::Exec(e) = decode(&bytes).unwrap() else {
            panic!("not an exec")
        };
        assert_eq!(
            e.args,
            vec![b"/bin/true".to_vec(), b"a b".to_vec(), b"".to_vec()]
        );
        assert_eq!(e.filename, b"/bin/true");
        assert_eq!(e.comm, b"true");
        assert_eq!(
            (e.pid, e.tgid, e.ppid, e.uid, e.gid, e.euid, e.egid),
            (10, 10, 9, 1, 2, 3, 4)
        );
        assert_eq!(e.loginuid, None);
        assert_eq!(e.sessionid, Some(5));
        assert!(!e.args_truncated);
    }

    #[test]
    fn flags_truncation_and_keeps_the_partial_argument() {
        let bytes = exec_bytes(b"/bin/echo\0abc", b"/bin/echo", exec_flags::ARGS_TRUNCATED);
        let KernelEvent::Exec(e) = decode(&bytes).unwrap() else {
            panic!("not an exec")
        };
        assert!(e.args_truncated);
        assert_eq!(e.args, vec![b"/bin/echo".to_vec(), b"abc".to_vec()]);
    }

    #[test]
    fn rejects_malformed_records_by_kind() {
        assert_eq!(decode(&[1, 2, 3]).unwrap_err().kind(), "short_header");
        let mut bytes = exec_bytes(b"x\0", b"/x", 0);
        bytes[2] = 99; // version
        assert_eq!(decode(&bytes).unwrap_err().kind(), "version");
        let bytes = exec_bytes(b"x\0", b"/x", 0);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).unwrap_err().kind(),
            "size_mismatch"
        );
        let mut bytes = exec_bytes(b"x\0", b"/x", 0);
        bytes[0] = 200; // kind
        assert_eq!(decode(&bytes).unwrap_err().kind(), "unknown_kind");
        // A record claiming more trailing bytes than its size allows.
        let mut bytes = exec_bytes(b"x\0", b"/x", 0);
        let args_len_at = size_of::<ExecRecord>() - 16 - 7 * 4;
        bytes[args_len_at..args_len_at + 4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(decode(&bytes).unwrap_err().kind(), "truncated");
    }

    #[test]
    fn splits_argv_blocks() {
        assert!(split_args(b"").is_empty());
        assert_eq!(split_args(b"a\0"), vec![b"a".to_vec()]);
        assert_eq!(
            split_args(b"a\0\0b\0"),
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            split_args(b"\xff\xfe\0q\"uote\n\0"),
            vec![b"\xff\xfe".to_vec(), b"q\"uote\n".to_vec()]
        );
    }

    #[test]
    fn decodes_exit_status() {
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Exited(3));
        assert_eq!(
            ExitStatus::from_raw(9),
            ExitStatus::Signaled {
                signal: 9,
                core_dumped: false
            }
        );
        assert_eq!(
            ExitStatus::from_raw(0x80 | 0x0b),
            ExitStatus::Signaled {
                signal: 11,
                core_dumped: true
            }
        );
    }
}
