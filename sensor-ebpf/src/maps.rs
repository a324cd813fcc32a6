//! Every map the programs share with userspace.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{CgroupAgent, SCRATCH_SIZE, TrackedProcess, kind};

/// Records to userspace. The loader sizes it from the config (power of two, page multiple).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that did not fit in `EVENTS`, per CPU, indexed by record kind.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

/// Per-CPU buffer a variable-length record is assembled in before it is copied out.
#[map]
pub static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

/// Processes (by tgid) observed when `all_processes` is off, inherited by children at fork.
#[map]
pub static TRACKED: HashMap<u32, TrackedProcess> = HashMap::with_max_entries(65536, 0);

/// Per-CPU scratch a path is walked in, and kernel objects copied to (see `path`).
#[map]
pub static PATHBUF: PerCpuArray<crate::path::PathScratch> = PerCpuArray::with_max_entries(1, 0);

/// Followed syscalls (`syscall` constants) by this architecture's syscall number: one exit
/// program serves many syscalls and learns which from its record's `__syscall_nr`. The loader
/// sizes and fills it.
#[map]
pub static SYSCALL_IDS: Array<u16> = Array::with_max_entries(1, 0);

/// Arguments of the syscalls observed threads are in (by pid_tgid), on kernels whose exit
/// programs cannot read them from the saved registers. LRU: a thread killed inside a call
/// never reaches its exit program.
#[map]
pub static SAVED_CALLS: LruHashMap<u64, sensor_common::SavedCall> =
    LruHashMap::with_max_entries(16384, 0);

/// The kernel's copy of each observed thread's connect, bind or send address, from the LSM hook
/// to the syscall's exit (see `net`). LRU: a call the hook saw may never reach a followed exit.
#[map]
pub static KERNEL_SOCKADDRS: LruHashMap<u64, sensor_common::KernelSockaddr> =
    LruHashMap::with_max_entries(8192, 0);

/// Non-blocking connects waiting for their outcome, by `struct sock` address. LRU: a socket
/// whose state never changes again must not hold its slot forever.
#[map]
pub static CONNECTS: LruHashMap<u64, sensor_common::ConnectOwner> =
    LruHashMap::with_max_entries(8192, 0);

/// Agents by cgroup v2 id: filled by the daemon from cgroup and container selectors as
/// cgroups appear.
#[map]
pub static CGROUP_AGENTS: HashMap<u64, CgroupAgent> = HashMap::with_max_entries(16384, 0);

/// Cgroups made since start that the daemon has not decided on yet (id -> when made); the
/// daemon removes each once decided. LRU: a flood of new cgroups cannot fill it for good.
#[map]
pub static HELD_CGROUPS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Until when (CLOCK_BOOTTIME ns) `HELD_CGROUPS` may hold anything: a cheap test that spares
/// untracked processes the lookup when no cgroup was made recently.
#[map]
pub static HOLDING_UNTIL: Array<u64> = Array::with_max_entries(1, 0);

/// Agents by executable (inode and device): filled by the daemon from executable selectors.
#[map]
pub static EXE_AGENTS: HashMap<sensor_common::ExeKey, u32> = HashMap::with_max_entries(16384, 0);

/// Agents by uid.
#[map]
pub static UID_AGENTS: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// Per-CPU slot a BTF-typed pointer passes through to become a plain number (see
/// `kernel::untyped`).
#[map]
pub static POINTER_SLOT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Capture settings of the agents whose manifest entry turns TLS capture on, by agent number
/// (see `tls`).
#[map]
pub static TLS_AGENTS: HashMap<u32, sensor_common::TlsCapture> = HashMap::with_max_entries(1024, 0);

/// TLS calls of opted-in agents in progress, by pid_tgid. LRU: a thread killed inside a call
/// never returns.
#[map]
pub static TLS_CALLS: LruHashMap<u64, sensor_common::TlsCall> =
    LruHashMap::with_max_entries(8192, 0);

/// Threads of opted-in agents inside a flush of sends the library held back (GnuTLS's
/// `gnutls_record_uncork`), by pid_tgid: the session being flushed. The write probes copy
/// nothing of that session there, since each send into the cork was copied when it was made.
/// LRU: a thread killed inside a flush never returns.
#[map]
pub static TLS_FLUSHING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8192, 0);

/// Capture settings of the agents whose manifest entry turns stdio (pipe) capture on, by agent
/// number (see `pipe`).
#[map]
pub static PIPE_AGENTS: HashMap<u32, sensor_common::TlsCapture> =
    HashMap::with_max_entries(1024, 0);

/// Pipe reads and writes of opted-in agents in progress, by pid_tgid. LRU: a thread killed
/// inside a call never returns.
#[map]
pub static PIPE_CALLS: LruHashMap<u64, sensor_common::PipeCall> =
    LruHashMap::with_max_entries(8192, 0);

/// `splice`, `tee` and `sendfile` calls of opted-in agents moving bytes into or out of a pipe,
/// in progress, by pid_tgid. LRU, as `PIPE_CALLS`.
#[map]
pub static PIPE_MOVES: LruHashMap<u64, sensor_common::PipeMove> =
    LruHashMap::with_max_entries(8192, 0);

/// Each captured pipe's stream position per direction (bytes seen so far). LRU: a pipe that
/// is gone must not hold its slot.
#[map]
pub static PIPE_OFFSETS: LruHashMap<sensor_common::PipeKey, u64> =
    LruHashMap::with_max_entries(8192, 0);

/// Enforced egress rules: per agent, the allowed address ranges (and their ports), and a
/// catch-all entry that allows nothing (see `enforce`). Filled by the daemon from the manifest;
/// an agent under an operator's exception has no entries.
#[map]
pub static EGRESS_POLICY: LpmTrie<sensor_common::EgressKey, sensor_common::EgressAllow> =
    LpmTrie::with_max_entries(16384, 0);

/// `executables` rules in `kill` mode: per agent, the allowed paths and directory prefixes,
/// and a catch-all entry that allows nothing. Filled by the daemon from the manifest; an
/// agent under an operator's exception has no entries.
#[map]
pub static EXEC_POLICY: LpmTrie<sensor_common::ExecKey, sensor_common::ExecAllow> =
    LpmTrie::with_max_entries(16384, 0);

/// Per-CPU room for one `EXEC_POLICY` key (260 bytes: too large for the stack).
#[map]
pub static EXEC_KEY: PerCpuArray<aya_ebpf::maps::lpm_trie::Key<sensor_common::ExecKey>> =
    PerCpuArray::with_max_entries(1, 0);

/// `files` rules in `enforce` mode, opens for reading: per agent, the allowed paths and
/// directory prefixes (as `EXEC_POLICY`), and a catch-all entry that allows nothing. Read by
/// the BPF LSM `file_open` check; an agent without an enforced files rule has no entries.
#[map]
pub static FILE_READ_POLICY: LpmTrie<sensor_common::ExecKey, sensor_common::ExecAllow> =
    LpmTrie::with_max_entries(16384, 0);

/// `files` rules in `enforce` mode, opens for writing (or reading and writing).
#[map]
pub static FILE_WRITE_POLICY: LpmTrie<sensor_common::ExecKey, sensor_common::ExecAllow> =
    LpmTrie::with_max_entries(16384, 0);
