//! `cargo xtask cross`: builds the daemon (`agent-sensor`) and `sensor-common` for arm64 and runs
//! their unit tests under QEMU's user-mode emulator, so an arm64 node gets a binary that was
//! compiled and unit-tested. The kernel programs embedded in it are built for the arm64 kernel
//! ABI (aya-build passes the userspace target's arch as `bpf_target_arch`).
//!
//! QEMU user mode translates the test binary's instructions and passes its system calls to the
//! host's x86_64 kernel. The unit tests load no kernel programs (the privileged integration
//! tests do, natively); the one that resolves the native `struct pt_regs` from the running
//! kernel's BTF sees the host's layout there, and says so when it skips.
use std::{process::Command, time::Instant};

use crate::run_with_stdout;

/// The Rust target of arm64 Linux nodes.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's `libc6-arm64-cross` keeps arm64 glibc: the linker links against it and QEMU
/// finds the dynamic loader and libraries under it (`-L`).
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Cross-builds and runs the unit tests; `args` go to the test binaries (a name filter, ...).
pub fn test(args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let env_target = TARGET.to_uppercase().replace('-', "_");
    run_with_stdout(
        Command::new(crate::cargo())
            .args(["test", "--no-fail-fast", "--target", TARGET])
            // The daemon and the records it shares with the kernel programs; doc tests are not
            // run for a foreign target.
            .args([
                "-p",
                "agent-sensor",
                "-p",
                "sensor-common",
                "--lib",
                "--bins",
            ])
            .arg("--")
            .args(args)
            .env(
                format!("CARGO_TARGET_{env_target}_LINKER"),
                "aarch64-linux-gnu-gcc",
            )
            .env(
                format!("CARGO_TARGET_{env_target}_RUNNER"),
                format!("qemu-aarch64-static -L {SYSROOT}"),
            ),
    )?;
    eprintln!(
        "xtask: arm64 build and unit tests under qemu-user took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
