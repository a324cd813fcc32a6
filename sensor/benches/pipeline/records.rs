//! Synthesised kernel records, byte for byte in the `sensor-common` layouts the programs write,
//! shaped like what the overhead benchmark's workload makes the kernel report: one process
//! opening a file over and over, fork+exec of `/bin/true` (whose loader opens two files), TCP
//! connect+accept on loopback, and a mixed agent session.
use sensor_common::{
    ExecRecord, ExitRecord, FileRecord, ForkRecord, NetRecord, RECORD_VERSION, RecordHeader,
    TrackedProcess, exit_flags, kind, method, syscall, tracked_flags,
};

use agent_sensor::source::ring::RawBatch;

/// The kernel source's batch bound: under load every batch is full.
const BATCH_RECORDS: usize = 4096;
/// A cgroup id for the agent's processes.
const CGROUP_ID: u64 = 4242;
const AT_FDCWD: i32 = -100;

#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// openat+close of one file by one process: one `open` record per operation.
    Open,
    /// fork, exec of /bin/true, its loader's two opens, exit: five records per operation.
    Exec,
    /// connect and accept on loopback: two records per operation.
    Connect,
    /// An agent session: fork+exec of a tool with arguments, its loader's opens, ten data
    /// files, two HTTPS connects, exit.
    Mixed,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Open, Shape::Exec, Shape::Connect, Shape::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Open => "open",
            Shape::Exec => "exec",
            Shape::Connect => "connect",
            Shape::Mixed => "mixed",
        }
    }
}

/// At least `events` records of `shape`, in batches; the number of records made.
pub fn batches(shape: Shape, events: usize) -> (Vec<RawBatch>, usize) {
    let mut s = Synth::new(agent_sensor::enrich::clock::boottime_ns());
    let root = s.spawn_root();
    while s.records < events {
        match shape {
            Shape::Open => s.open(root, b"/work/main/target/bench/open-target"),
            Shape::Exec => {
                let child = s.fork(root);
                s.exec(child, b"/bin/true", b"/usr/bin/true", &[b"true"]);
                s.loader_opens(child);
                s.exit(child);
            }
            Shape::Connect => {
                s.net(root, syscall::CONNECT, [10, 0, 0, 1], 443);
                s.net(root, syscall::ACCEPT4, [127, 0, 0, 1], 8080);
            }
            Shape::Mixed => {
                let child = s.fork(root);
                let input = format!("/srv/agent/data/input-{}.json", s.records);
                s.exec(
                    child,
                    b"/usr/bin/python3",
                    b"/usr/bin/python3.11",
                    &[
                        b"python3",
                        b"-m",
                        b"agent.tools.summarise",
                        input.as_bytes(),
                    ],
                );
                s.loader_opens(child);
                for i in 0..10 {
                    let path = format!("/srv/agent/data/chunk-{i:02}.parquet");
                    s.open(child, path.as_bytes());
                }
                s.net(child, syscall::CONNECT, [10, 0, 0, 7], 443);
                s.net(child, syscall::CONNECT, [10, 0, 0, 8], 443);
                s.exit(child);
            }
        }
    }
    s.finish()
}

/// One synthesised process.
#[derive(Clone, Copy)]
struct Proc {
    tgid: u32,
    start: u64,
    parent: u32,
    parent_start: u64,
    attribution: TrackedProcess,
}

struct Synth {
    ktime: u64,
    next_pid: u32,
    records: usize,
    sockets: u64,
    batches: Vec<RawBatch>,
    current: RawBatch,
    scratch: Vec<u8>,
}

impl Synth {
    fn new(ktime: u64) -> Self {
        Self {
            ktime,
            next_pid: 10_000,
            records: 0,
            sockets: 0,
            batches: Vec::new(),
            current: RawBatch::default(),
            scratch: Vec::with_capacity(1024),
        }
    }

    fn finish(mut self) -> (Vec<RawBatch>, usize) {
        if !self.current.is_empty() {
            self.batches.push(std::mem::take(&mut self.current));
        }
        (self.batches, self.records)
    }

    /// The next event's time: a microsecond apart.
    fn tick(&mut self) -> u64 {
        self.ktime += 1_000;
        self.ktime
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
        self.current.push(&self.scratch);
        self.records += 1;
        if self.current.len() == BATCH_RECORDS {
            self.batches.push(std::mem::take(&mut self.current));
        }
    }

    /// The agent's long-lived process (its own exec record first, as the kernel would send).
    fn spawn_root(&mut self) -> Proc {
        let root = Proc {
            tgid: self.next_pid,
            start: self.ktime,
            parent: 1,
            parent_start: 0,
            attribution: TrackedProcess {
                agent: 1,
                method: method::CGROUP,
                ..Default::default()
            },
        };
        self.next_pid += 1;
        self.exec(
            root,
            b"/opt/agent/bin/agent",
            b"/opt/agent/bin/agent",
            &[b"agent", b"--serve"],
        );
        root
    }

    fn fork(&mut self, parent: Proc) -> Proc {
        let child = Proc {
            tgid: self.next_pid,
            start: self.ktime + 1_000,
            parent: parent.tgid,
            parent_start: parent.start,
            attribution: TrackedProcess {
                flags: tracked_flags::INHERITED,
                ..parent.attribution
            },
        };
        self.next_pid = if self.next_pid >= 4_000_000 {
            10_001
        } else {
            self.next_pid + 1
        };
        let header = self.header(kind::FORK, parent.attribution);
        let record = ForkRecord {
            header,
            start_boottime: child.start,
            parent_start_boottime: parent.start,
            cgroup_id: CGROUP_ID,
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

    fn exec(&mut self, p: Proc, filename: &[u8], exe: &[u8], args: &[&[u8]]) {
        let mut argv = Vec::new();
        for a in args {
            argv.extend_from_slice(a);
            argv.push(0);
        }
        let header = self.header(kind::EXEC, p.attribution);
        let name = exe.rsplit(|b| *b == b'/').next().unwrap_or(exe);
        let record = ExecRecord {
            header,
            start_boottime: p.start,
            parent_start_boottime: p.parent_start,
            cgroup_id: CGROUP_ID,
            pid: p.tgid,
            tgid: p.tgid,
            ppid: p.parent,
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            loginuid: 1000,
            sessionid: 3,
            pid_ns: 4026531836,
            mnt_ns: 4026531832,
            args_count: args.len() as u32,
            args_size: argv.len() as u32,
            args_len: argv.len() as u32,
            filename_len: filename.len() as u32,
            exe_len: exe.len() as u32,
            comm: comm(name),
            ..Default::default()
        };
        self.push(record, |r| &mut r.header, &[&argv, filename, exe]);
    }

    /// What the dynamic loader opens before `main`.
    fn loader_opens(&mut self, p: Proc) {
        self.open(p, b"/etc/ld.so.cache");
        self.open(p, b"/lib/x86_64-linux-gnu/libc.so.6");
    }

    fn open(&mut self, p: Proc, path: &[u8]) {
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

    fn net(&mut self, p: Proc, call: u16, remote: [u8; 4], port: u16) {
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

    fn exit(&mut self, p: Proc) {
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
}

fn comm(name: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    let n = name.len().min(15);
    c[..n].copy_from_slice(&name[..n]);
    c
}
