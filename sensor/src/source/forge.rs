//! Kernel records forged byte for byte in the `sensor-common` layouts the programs write, in
//! [`RawBatch`]es as the ring buffer hands them over: the input of a [`replay`](super::replay)
//! without a kernel. The pipeline benchmark and the pipeline tests (`sensor/tests/pipeline`)
//! make their workloads with it.
//!
//! A [`Forge`] keeps the clock (CLOCK_BOOTTIME nanoseconds, a microsecond between records),
//! hands out process ids and cuts batches; each method appends one record as the kernel would
//! write it for that event. A [`Proc`] is what the kernel knows of a process: its ids, start
//! time, cgroup and the attribution its records carry in their header.
use sensor_common::{
    CgroupRecord, ExecRecord, ExitRecord, FileRecord, ForkRecord, NetRecord, RECORD_VERSION,
    RecordHeader, TrackedProcess, exec_flags, exit_flags, kind, syscall, tracked_flags,
};

use crate::pipeline::inbox::RawBatch;

/// The kernel source's batch bound: under load every batch is full.
pub const BATCH_RECORDS: usize = 4096;
/// The cgroup id of forged processes unless a test chooses one.
pub const CGROUP_ID: u64 = 4242;
/// The first process id a forge hands out.
pub const FIRST_PID: u32 = 10_000;
const AT_FDCWD: i32 = -100;

/// One forged process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    /// Its process id.
    pub tgid: u32,
    /// ns since boot (`start_boottime`).
    pub start: u64,
    /// Its parent's process id.
    pub parent: u32,
    /// Its parent's start time, ns since boot.
    pub parent_start: u64,
    /// The cgroup its records name ([`CGROUP_ID`] unless a test chooses one).
    pub cgroup_id: u64,
    /// What the kernel's tracked-process map holds for it: its records' header attribution.
    pub attribution: TrackedProcess,
}

impl Proc {
    /// The same process, its records carrying `attribution`.
    #[must_use]
    pub fn with(self, attribution: TrackedProcess) -> Self {
        Self {
            attribution,
            ..self
        }
    }
}

/// What an exec record says beyond the process: see [`Forge::exec_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Exec<'a> {
    /// The file name as passed to exec.
    pub filename: &'a [u8],
    /// The absolute path of the file the kernel runs.
    pub exe: &'a [u8],
    /// The working directory's absolute path (empty: none walked).
    pub cwd: &'a [u8],
    /// argv, one slice per argument (without NULs).
    pub args: &'a [&'a [u8]],
    /// [`exec_flags`]: `UNMATCHED` for an exec no kernel selector matched.
    pub flags: u32,
    /// The start of the environment (NUL-separated); sets `ENV_INCLUDED` when not empty.
    pub env: &'a [u8],
}

/// Appends forged kernel records to batches.
pub struct Forge {
    ktime: u64,
    next_pid: u32,
    first_pid: u32,
    records: usize,
    sockets: u64,
    batch_records: usize,
    batches: Vec<RawBatch>,
    current: RawBatch,
    scratch: Vec<u8>,
}

impl Forge {
    /// A forge whose first record happens a microsecond after `ktime` (ns since boot).
    pub fn new(ktime: u64) -> Self {
        Self {
            ktime,
            next_pid: FIRST_PID,
            first_pid: FIRST_PID,
            records: 0,
            sockets: 0,
            batch_records: BATCH_RECORDS,
            batches: Vec::new(),
            current: RawBatch::default(),
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Hands out process ids from `pid` on (above `pid_max`'s limit, 4194304, no process of
    /// the machine has them: nothing read from `/proc` about them can be a real process's).
    #[must_use]
    pub fn first_pid(mut self, pid: u32) -> Self {
        self.next_pid = pid;
        self.first_pid = pid;
        self
    }

    /// The next process made gets `pid` (the kernel hands out a pid again once its process has
    /// exited).
    pub fn reuse_pid(&mut self, pid: u32) {
        self.next_pid = pid;
    }

    /// The time of the last record (or the start), ns since boot.
    pub fn ktime(&self) -> u64 {
        self.ktime
    }

    /// Moves the clock on by `ns` (records are otherwise a microsecond apart).
    pub fn advance(&mut self, ns: u64) {
        self.ktime += ns;
    }

    /// Records forged so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Ends the current batch: the records after it go down the pipeline in the next one.
    pub fn cut(&mut self) {
        if !self.current.is_empty() {
            self.batches.push(std::mem::take(&mut self.current));
        }
    }

    /// The batches made (the last one cut), and the number of records in them.
    pub fn finish(mut self) -> (Vec<RawBatch>, usize) {
        self.cut();
        (self.batches, self.records)
    }

    /// The batches made so far (the current one cut), leaving the forge empty but for its
    /// clock and process ids.
    pub fn take_batches(&mut self) -> Vec<RawBatch> {
        self.cut();
        std::mem::take(&mut self.batches)
    }

    /// The next event's time: a microsecond apart.
    fn tick(&mut self) -> u64 {
        self.ktime += 1_000;
        self.ktime
    }

    fn pid(&mut self) -> u32 {
        let pid = self.next_pid;
        // Wraps as a kernel's pid counter does, well short of `u32::MAX`.
        self.next_pid = if self.next_pid >= self.first_pid + 3_990_000 {
            self.first_pid + 1
        } else {
            self.next_pid + 1
        };
        pid
    }

    fn header(&mut self, kind: u16, attribution: TrackedProcess) -> RecordHeader {
        RecordHeader {
            kind,
            version: RECORD_VERSION,
            size: 0,
            ktime_ns: self.tick(),
            attribution,
        }
    }

    /// Appends `record` (its header's size set) followed by `tail`.
    fn push<T: Copy>(
        &mut self,
        mut record: T,
        header: impl Fn(&mut T) -> &mut RecordHeader,
        tail: &[&[u8]],
    ) {
        let size = size_of::<T>() + tail.iter().map(|t| t.len()).sum::<usize>();
        header(&mut record).size = size as u32;
        self.scratch.clear();
        // SAFETY: the sensor-common records are #[repr(C)] plain integers whose padding is
        // explicit fields (their sizes are asserted), so every byte is initialised.
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const record).cast::<u8>(), size_of::<T>()) };
        self.scratch.extend_from_slice(bytes);
        for t in tail {
            self.scratch.extend_from_slice(t);
        }
        let scratch = std::mem::take(&mut self.scratch);
        self.raw(&scratch);
        self.scratch = scratch;
    }

    /// Appends `bytes` as one record, whatever they are (a malformed record, for decode errors).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.current.push(bytes);
        self.records += 1;
        if self.current.len() == self.batch_records {
            self.batches.push(std::mem::take(&mut self.current));
        }
    }

    /// A process that is already running (no record): the next process id, started now, a
    /// child of `parent` (pid 1 when none), in cgroup [`CGROUP_ID`].
    pub fn process(&mut self, parent: Option<Proc>, attribution: TrackedProcess) -> Proc {
        Proc {
            tgid: self.pid(),
            start: self.ktime,
            parent: parent.map_or(1, |p| p.tgid),
            parent_start: parent.map_or(0, |p| p.start),
            cgroup_id: CGROUP_ID,
            attribution,
        }
    }

    /// A fork of `parent`: the child inherits its attribution (flagged `INHERITED`), as the
    /// kernel copies it at fork. The record carries the parent's attribution.
    pub fn fork(&mut self, parent: Proc) -> Proc {
        let child = Proc {
            tgid: self.pid(),
            start: self.ktime + 1_000,
            parent: parent.tgid,
            parent_start: parent.start,
            cgroup_id: parent.cgroup_id,
            attribution: TrackedProcess {
                flags: parent.attribution.flags | tracked_flags::INHERITED,
                ..parent.attribution
            },
        };
        let header = self.header(kind::FORK, parent.attribution);
        let record = ForkRecord {
            header,
            start_boottime: child.start,
            parent_start_boottime: parent.start,
            cgroup_id: parent.cgroup_id,
            child_pid: child.tgid,
            child_tgid: child.tgid,
            parent_pid: parent.tgid,
            parent_tgid: parent.tgid,
            comm: comm(b"agent"),
            ..Default::default()
        };
        self.push(record, |r| &mut r.header, &[]);
        child
    }

    /// A successful exec by `p` of `filename` (the kernel runs `exe`) with `args`.
    pub fn exec(&mut self, p: Proc, filename: &[u8], exe: &[u8], args: &[&[u8]]) {
        self.exec_with(
            p,
            Exec {
                filename,
                exe,
                args,
                ..Exec::default()
            },
        );
    }

    /// A successful exec, with flags and environment.
    pub fn exec_with(&mut self, p: Proc, e: Exec<'_>) {
        let mut argv = Vec::new();
        for a in e.args {
            argv.extend_from_slice(a);
            argv.push(0);
        }
        let mut flags = e.flags;
        if !e.env.is_empty() {
            flags |= exec_flags::ENV_INCLUDED;
        }
        let header = self.header(kind::EXEC, p.attribution);
        let name = e.exe.rsplit(|b| *b == b'/').next().unwrap_or(e.exe);
        let record = ExecRecord {
            header,
            start_boottime: p.start,
            parent_start_boottime: p.parent_start,
            cgroup_id: p.cgroup_id,
            pid: p.tgid,
            tgid: p.tgid,
            ppid: p.parent,
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            loginuid: 1000,
            sessionid: 3,
            pid_ns: 4_026_531_836,
            mnt_ns: 4_026_531_832,
            args_count: e.args.len() as u32,
            args_size: argv.len() as u32,
            args_len: argv.len() as u32,
            filename_len: e.filename.len() as u32,
            exe_len: e.exe.len() as u32,
            cwd_len: e.cwd.len() as u32,
            env_len: e.env.len() as u32,
            flags,
            _pad: 0,
            comm: comm(name),
        };
        self.push(
            record,
            |r| &mut r.header,
            &[&argv, e.filename, e.exe, e.cwd, e.env],
        );
    }

    /// What the dynamic loader opens before `main`.
    pub fn loader_opens(&mut self, p: Proc) {
        self.open(p, b"/etc/ld.so.cache");
        self.open(p, b"/lib/x86_64-linux-gnu/libc.so.6");
    }

    /// A successful `openat(AT_FDCWD, path, O_RDONLY|O_CLOEXEC)` of an absolute path.
    pub fn open(&mut self, p: Proc, path: &[u8]) {
        let header = self.header(kind::FILE, p.attribution);
        let record = FileRecord {
            header,
            start_boottime: p.start,
            ret: 3,
            ino: 1_234_567,
            pid: p.tgid,
            tgid: p.tgid,
            flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
            uid: 1000,
            gid: 1000,
            dfd: AT_FDCWD,
            dfd2: AT_FDCWD,
            fd: 3,
            syscall: syscall::OPENAT,
            path_len: path.len() as u16,
            resolved_len: path.len() as u16,
            comm: comm(b"agent"),
            ..Default::default()
        };
        self.push(record, |r| &mut r.header, &[path, path]);
    }

    /// An exec of `program` the kernel refused (BPF LSM's `bprm_check_security`), as
    /// `lsm_policy.rs` reports it: a file record of the program (`EXEC_DENIED`, `-EPERM`), the
    /// path as its resolved path; the process goes on running its old program.
    pub fn exec_denied(&mut self, p: Proc, program: &[u8]) {
        let header = self.header(kind::FILE, p.attribution);
        let record = FileRecord {
            header,
            start_boottime: p.start,
            ret: -i64::from(libc::EPERM),
            pid: p.tgid,
            tgid: p.tgid,
            uid: u32::MAX,
            gid: u32::MAX,
            dfd: AT_FDCWD,
            dfd2: AT_FDCWD,
            fd: -1,
            syscall: syscall::EXEC_DENIED,
            resolved_len: program.len() as u16,
            comm: comm(b"agent"),
            ..Default::default()
        };
        self.push(record, |r| &mut r.header, &[program]);
    }

    /// A TCP `connect` (or accept) over IPv4 with `remote`.
    pub fn net(&mut self, p: Proc, call: u16, remote: [u8; 4], port: u16) {
        let header = self.header(kind::NET, p.attribution);
        self.sockets += 1;
        let mut sockaddr = [0u8; 16];
        sockaddr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        sockaddr[2..4].copy_from_slice(&port.to_be_bytes());
        sockaddr[4..8].copy_from_slice(&remote);
        let mut remote_addr = [0u8; 16];
        remote_addr[..4].copy_from_slice(&remote);
        let mut local_addr = [0u8; 16];
        local_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let record = NetRecord {
            header,
            start_boottime: p.start,
            ret: if call == syscall::CONNECT { 0 } else { 5 },
            sock_id: 0xffff_8880_0000_0000 | self.sockets << 6,
            pid: p.tgid,
            tgid: p.tgid,
            fd: 4,
            syscall: call,
            family: libc::AF_INET as u16,
            sock_type: libc::SOCK_STREAM as u16,
            protocol: libc::IPPROTO_TCP as u16,
            local_port: 40_000,
            remote_port: port,
            local_addr,
            remote_addr,
            addr_len: sockaddr.len() as u16,
            comm: comm(b"agent"),
            ..Default::default()
        };
        self.push(record, |r| &mut r.header, &[&sockaddr]);
    }

    /// The process's exit (its last thread's), with status 0.
    pub fn exit(&mut self, p: Proc) {
        let header = self.header(kind::EXIT, p.attribution);
        let record = ExitRecord {
            header,
            start_boottime: p.start,
            pid: p.tgid,
            tgid: p.tgid,
            exit_code: 0,
            flags: exit_flags::GROUP_DEAD,
            comm: comm(b"agent"),
        };
        self.push(record, |r| &mut r.header, &[]);
    }

    /// A cgroup v2 directory made (`cgroup_mkdir`) at `path` (relative to the cgroup2 mount).
    pub fn cgroup(&mut self, id: u64, path: &[u8]) {
        let header = self.header(kind::CGROUP, TrackedProcess::default());
        let record = CgroupRecord {
            header,
            id,
            path_len: path.len() as u32,
            _pad: 0,
        };
        self.push(record, |r| &mut r.header, &[path]);
    }
}

/// A `comm` as the kernel keeps it: at most 15 bytes and a NUL.
pub fn comm(name: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    let n = name.len().min(15);
    c[..n].copy_from_slice(&name[..n]);
    c
}
