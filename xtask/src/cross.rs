//! `cargo xtask cross`: builds the daemon (`agent-sensor`) and `sensor-common` for arm64 and runs
//! their unit tests under QEMU's user-mode emulator, then runs the daemon on Debian's arm64
//! kernels in VMs ([`vm`]), so an arm64 node gets a binary that was compiled, unit-tested and
//! seen working. The kernel programs embedded in it are built for the arm64 kernel ABI
//! (aya-build passes the userspace target's arch as `bpf_target_arch`).
//!
//! QEMU user mode translates the test binary's instructions and passes its system calls to the
//! host's x86_64 kernel. The unit tests load no kernel programs (the privileged integration
//! tests do, natively); the one that resolves the native `struct pt_regs` from the running
//! kernel's BTF sees the host's layout there, and says so when it skips. The tests build in the
//! dev profile (the release profile's optimisation costs minutes more on two cores), so the few
//! with a time budget get it stretched (`AGENT_SENSOR_TEST_SLOWDOWN`).
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

/// The Rust target of arm64 Linux nodes.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's `libc6-arm64-cross` keeps arm64 glibc: the linker links against it and QEMU
/// finds the dynamic loader and libraries under it (`-L`).
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Tells the loader's tests where an arm64 kernel's BTF is ([`arm64_kernel_btf`]).
pub const ARM64_BTF_ENV: &str = "AGENT_SENSOR_ARM64_BTF";

/// Cross-builds and runs the unit tests under qemu-user, then the daemon in an arm64 VM
/// ([`vm`]); `args` go to the test binaries (a name filter, ...), and a name filter leaves out
/// the VM unless it matches `arm64_vm`.
pub fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let unit = cargo("test")
        .args(["--no-fail-fast"])
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
            format!("CARGO_TARGET_{}_RUNNER", env_target()),
            format!("qemu-aarch64-static -L {SYSROOT}"),
        )
        .env(ARM64_BTF_ENV, arm64_kernel_btf()?)
        // A debug build, emulated: the tests' time budgets (hostile paths) are stretched.
        .env("AGENT_SENSOR_TEST_SLOWDOWN", "20")
        .status();
    eprintln!(
        "xtask: arm64 build and unit tests under qemu-user took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let unit = match unit {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(anyhow::anyhow!("the arm64 unit tests failed ({status})")),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start cargo")),
    };
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.iter().all(|f| "arm64_vm".contains(f.as_str())) {
        eprintln!("xtask: the name filter leaves out the arm64 VM (arm64_vm)");
        return unit;
    }
    let vm = crate::run(cargo("build").args(["-p", "agent-sensor"])).and_then(|()| {
        vm::boot(
            &crate::target_dir(root)
                .join(TARGET)
                .join("debug/agent-sensor"),
        )
    });
    match (unit, vm) {
        (Ok(()), vm) => vm,
        (Err(u), Ok(())) => Err(u),
        (Err(u), Err(v)) => Err(u.context(format!("and {v:#}"))),
    }
}

/// `cargo <command> --target aarch64-unknown-linux-gnu`, linked by Debian's cross gcc, its
/// test output on standard output.
fn cargo(command: &str) -> Command {
    let mut cmd = Command::new(crate::cargo());
    cmd.args([command, "--target", TARGET]).env(
        format!("CARGO_TARGET_{}_LINKER", env_target()),
        "aarch64-linux-gnu-gcc",
    );
    cmd
}

fn env_target() -> String {
    TARGET.to_uppercase().replace('-', "_")
}

/// The BTF of Debian's arm64 6.12 kernel ([`vm::kernel`]): with it the tests check the loader's
/// arm64 `struct pt_regs` offsets against a real arm64 kernel.
pub fn arm64_kernel_btf() -> anyhow::Result<PathBuf> {
    Ok(vm::kernel(vm::BTF_SUITE)?.btf())
}

/// The kernel's `.BTF` section inside an image: a little-endian BTF header (magic 0xeb9f,
/// version 1, flags 0, 24-byte header) whose type section starts at 0 and whose strings
/// follow the types directly, as the kernel's build lays them out.
fn find_btf(image: &[u8]) -> Option<&[u8]> {
    const HEADER: [u8; 8] = [0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let mut from = 0;
    while let Some(found) = image[from..].windows(8).position(|w| w == HEADER) {
        let at = from + found;
        from = at + 1;
        let (Some(type_off), Some(type_len), Some(str_off), Some(str_len)) = (
            u32_at(at + 8),
            u32_at(at + 12),
            u32_at(at + 16),
            u32_at(at + 20),
        ) else {
            continue;
        };
        let end = at + 24 + str_off + str_len;
        if type_off == 0 && str_off == type_len && type_len > 0 && end <= image.len() {
            return Some(&image[at..end]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_btf_blob_after_a_false_match() {
        let mut header = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        let mut image = b"junk".to_vec();
        // A false match: its strings do not follow its types.
        image.extend(&header);
        image.extend([0, 0, 0, 0, 4, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0]);
        let start = image.len();
        header.extend([0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]);
        image.extend(&header);
        image.extend([1, 2, 3, 4, 0, 0]);
        image.extend(b"tail");
        assert_eq!(find_btf(&image), Some(&image[start..start + 24 + 6]));
        assert_eq!(find_btf(b"no btf here"), None);
    }
}
