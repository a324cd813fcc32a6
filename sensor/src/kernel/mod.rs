//! The kernel side of the daemon. It checks privileges, reads the running kernel's BTF, probes
//! which program variants this kernel accepts, loads and attaches the programs, and keeps their
//! budgets in check.
//!
//! - [`loader`]: prepares the kernel object, loads and attaches the programs, hands out the maps
//!   (with [`features`]' probe programs, the only code that touches `aya::Ebpf`).
//! - [`programs`]: the compiled object, which program attaches where, the followed syscalls.
//! - [`offsets`]: the kernel struct members the programs read, located in BTF, and the reads
//!   that copy them.
//! - [`tracefs`]: the tracefs mount, the syscall tracepoints this kernel has, their record layout.
//! - [`refusal`]: a verifier refusal turned into one line saying why and what to do.
//! - [`features`]: what this kernel offers (`agent-sensor probe`) and the program variants it
//!   accepts.
//! - [`btf`]: a reader for the kernel's BTF.
//! - [`privileges`]: whether the programs can be loaded; dropping capabilities afterwards.
//! - [`program_budget`]: each program's stack and size, read from the compiled object.
//! - [`egress`]: the egress enforcement programs attached at the cgroup root, and their policy
//!   trie kept in step with the agents' enforced egress rules and exceptions.
//! - [`fail_closed`]: fail-closed egress: the enforcing links and the maps they read pinned in
//!   bpffs, released by the next start or by the operator.
//! - [`tls_attach`]: the TLS capture programs attached to the TLS libraries opted-in agents
//!   map, and the kernel's map of those agents.
//! - [`uprobe_opener`]: the forked process that opens uprobes for `tls_attach` after the
//!   capability drop, on kernels that want `CAP_SYS_ADMIN` for them.
pub mod btf;
pub mod egress;
pub mod enforcement;
pub mod exec_kill;
pub mod fail_closed;
pub mod features;
pub mod loader;
pub mod offsets;
pub mod pipe_capture;
pub mod privileges;
pub mod program_budget;
pub mod programs;
pub mod refusal;
pub mod tls_attach;
pub mod tracefs;
pub mod uprobe_opener;
