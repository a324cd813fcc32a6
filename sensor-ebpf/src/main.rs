//! agent-sensor's kernel programs. One module per probe family; `maps` holds every map,
//! `globals` the settings the loader fills in, `kernel` the only code that reads kernel
//! structs, and `output` the only code that writes to the ring buffer.
#![no_std]
#![no_main]

mod bounds;
mod cgroup;
mod enforce;
mod exec_policy;
mod file;
mod filter;
mod globals;
mod kernel;
mod lsm_policy;
mod maps;
mod net;
mod output;
mod path;
mod pipe;
mod probes;
mod process;
mod syscalls;
mod tls;

// Only for the BPF target: a host build (clippy over the whole workspace) links std, which
// has its own.
#[cfg(all(not(test), target_arch = "bpf"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this, so it is never run.
    loop {}
}

/// GPL-compatible, or the kernel refuses GPL-only helpers (probe_read_kernel, ringbuf).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
