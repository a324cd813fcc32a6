//! The kernel side of the daemon: the only code that touches `aya::Ebpf`. It checks
//! privileges, reads the running kernel's BTF, probes which program variants this kernel
//! accepts, loads and attaches the programs, and keeps their budgets in check.
pub mod btf;
pub mod features;
pub mod loader;
pub mod privileges;
pub mod program_budget;
