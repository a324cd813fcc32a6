//! The only code that reads raw kernel bytes: a pure function from one ring-buffer record to a
//! typed [`KernelEvent`]. Malformed records are errors with a kind, which the pipeline counts.
use sensor_common::{
    CgroupRecord, ExecRecord, ExitRecord, FileRecord, ForkRecord, NetRecord, RECORD_VERSION,
    RecordHeader, TrackedProcess, exec_flags, exit_flags, file_flags, fork_flags, kind,
};

/// A decoded kernel record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    Exec(ExecEvent),
    Fork(ForkEvent),
    Exit(ExitEvent),
    File(FileEvent),
    Net(NetEvent),
    Cgroup(CgroupEvent),
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
        }
    }

    pub fn attribution(&self) -> TrackedProcess {
        match self {
            Self::Exec(e) => e.attribution,
            Self::Fork(e) => e.attribution,
            Self::Exit(e) => e.attribution,
            Self::File(e) => e.attribution,
            Self::Net(e) => e.attribution,
            Self::Cgroup(_) => TrackedProcess::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub start_boottime: u64,
    pub parent_start_boottime: u64,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// None when unset (`(uid_t)-1`) or when the kernel keeps none.
    pub loginuid: Option<u32>,
    pub sessionid: Option<u32>,
    pub cgroup_id: u64,
    pub pid_ns: u32,
    pub mnt_ns: u32,
    /// The file name as passed to exec (raw bytes: not necessarily UTF-8).
    pub filename: Vec<u8>,
    /// The absolute path of the file the kernel runs (for a script, its interpreter); empty
    /// when it could not be walked.
    pub exe: Vec<u8>,
    pub exe_truncated: bool,
    /// No selector attributed the process in the kernel: reported for the daemon's argv and
    /// marker checks only.
    pub unmatched: bool,
    /// The start of the environment, when unmatched and the environment-marker check is on.
    pub env: Option<Vec<u8>>,
    pub filename_truncated: bool,
    /// argv, split at NULs; the last element may be cut when `args_truncated`.
    pub args: Vec<Vec<u8>>,
    /// argc as the kernel counted it.
    pub args_count: u32,
    /// Bytes argv takes in the process.
    pub args_size: u32,
    pub args_truncated: bool,
    pub args_unreadable: bool,
    pub comm: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    pub child_pid: u32,
    pub child_tgid: u32,
    pub parent_pid: u32,
    pub parent_tgid: u32,
    pub start_boottime: u64,
    pub parent_start_boottime: u64,
    pub cgroup_id: u64,
    pub uid: u32,
    pub gid: u32,
    /// A new thread in the parent's process rather than a new process.
    pub thread: bool,
    pub comm: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    pub pid: u32,
    pub tgid: u32,
    pub start_boottime: u64,
    pub status: ExitStatus,
    /// The last thread exited: the process is gone.
    pub process_exit: bool,
    pub comm: Vec<u8>,
}

/// A cgroup v2 directory made (and held in the kernel until the daemon decides on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    pub ktime_ns: u64,
    pub id: u64,
    /// Relative to the cgroup2 mount, as the kernel names it (`/kubepods/.../<id>`).
    pub path: Vec<u8>,
}

/// A file syscall with its outcome. Paths are raw bytes as the kernel had them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEvent {
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    pub pid: u32,
    pub tgid: u32,
    pub start_boottime: u64,
    /// A `sensor_common::syscall` constant.
    pub syscall: u16,
    pub ret: i64,
    pub flags: u32,
    pub mode: u32,
    /// chown's owner and group; `u32::MAX` when left unchanged.
    pub uid: u32,
    pub gid: u32,
    /// truncate's length, openat2's resolve flags.
    pub arg: u64,
    /// Inode of the file acted on, when known.
    pub ino: u64,
    pub dfd: i32,
    pub dfd2: i32,
    /// The fd argument, or the fd an open returned.
    pub fd: i32,
    /// The path argument as passed, and the second one (rename/link/symlink).
    pub path: Vec<u8>,
    pub path2: Vec<u8>,
    /// The absolute directories relative paths are relative to (empty when absolute).
    pub base: Vec<u8>,
    pub base2: Vec<u8>,
    /// The absolute path of the file the kernel acted on (opened file, fd's file).
    pub resolved: Vec<u8>,
    /// `sensor_common::file_flags`.
    pub str_flags: u16,
    pub comm: Vec<u8>,
}

impl FileEvent {
    pub fn path_truncated(&self) -> bool {
        self.str_flags & (file_flags::PATH_TRUNCATED | file_flags::BASE_TRUNCATED) != 0
    }
}

/// A network syscall, or the outcome of a non-blocking connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEvent {
    pub ktime_ns: u64,
    /// The agent attribution the kernel had for the process.
    pub attribution: TrackedProcess,
    pub pid: u32,
    pub tgid: u32,
    pub start_boottime: u64,
    pub syscall: u16,
    pub ret: i64,
    pub sock_id: u64,
    pub bytes: u64,
    pub fd: i32,
    pub arg: u32,
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub new_state: u16,
    pub old_state: u16,
    pub sk_err: i32,
    /// The sockaddr the process passed or received, raw.
    pub sockaddr: Vec<u8>,
    /// The datagram, for DNS.
    pub payload: Vec<u8>,
    pub comm: Vec<u8>,
}

/// How a task ended, decoded from `task_struct::exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(u8),
    Signaled { signal: u8, core_dumped: bool },
}

impl ExitStatus {
    pub fn from_raw(code: u32) -> Self {
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
    #[error("record of {len} bytes is shorter than its header")]
    ShortHeader { len: usize },
    #[error("record kind {0} is unknown")]
    UnknownKind(u16),
    #[error("record version {found} differs from the daemon's {expected}")]
    Version { found: u16, expected: u16 },
    #[error("record says {claimed} bytes but {len} arrived")]
    SizeMismatch { claimed: u32, len: usize },
    #[error("{what} record of {len} bytes is too short for its fixed part or trailing data")]
    Truncated { what: &'static str, len: usize },
}

impl DecodeError {
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
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_exec(bytes: &[u8]) -> Result<ExecEvent, DecodeError> {
    let r: ExecRecord = read_record(bytes, "exec")?;
    let tail = &bytes[size_of::<ExecRecord>()..];
    let lens = [r.args_len, r.filename_len, r.exe_len, r.env_len].map(|n| n as usize);
    let [args, filename, exe, env] = pieces(tail, lens, "exec", bytes.len())?;
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
pub fn split_args(block: &[u8]) -> Vec<Vec<u8>> {
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
            env_len: 0,
            flags,
            comm,
        };
        let mut out = vec![0u8; size_of::<ExecRecord>()];
        // SAFETY: the buffer is exactly the record's size.
        unsafe {
            out.as_mut_ptr()
                .cast::<ExecRecord>()
                .write_unaligned(record)
        };
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
        let args_len_at = size_of::<ExecRecord>() - 16 - 5 * 4;
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
            ExitStatus::from_raw(0x80 | 11),
            ExitStatus::Signaled {
                signal: 11,
                core_dumped: true
            }
        );
    }
}
