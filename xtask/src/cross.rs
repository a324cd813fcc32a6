//! `cargo xtask cross`: builds the daemon (`agent-sensor`) and `sensor-common` for arm64 and runs
//! their unit tests under QEMU's user-mode emulator, so an arm64 node gets a binary that was
//! compiled and unit-tested. The kernel programs embedded in it are built for the arm64 kernel
//! ABI (aya-build passes the userspace target's arch as `bpf_target_arch`).
//!
//! QEMU user mode translates the test binary's instructions and passes its system calls to the
//! host's x86_64 kernel. The unit tests load no kernel programs (the privileged integration
//! tests do, natively); the one that resolves the native `struct pt_regs` from the running
//! kernel's BTF sees the host's layout there, and says so when it skips. The tests build in the
//! dev profile (the release profile's optimisation costs minutes more on two cores), so the few
//! with a time budget get it stretched (`AGENT_SENSOR_TEST_SLOWDOWN`).
use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    run, run_with_stdout,
    setup::{cache_dir, output},
};

/// The Rust target of arm64 Linux nodes.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's `libc6-arm64-cross` keeps arm64 glibc: the linker links against it and QEMU
/// finds the dynamic loader and libraries under it (`-L`).
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Tells the loader's tests where an arm64 kernel's BTF is ([`arm64_kernel_btf`]).
pub const ARM64_BTF_ENV: &str = "AGENT_SENSOR_ARM64_BTF";
/// Debian's arm64 kernel, whose BTF the loader's arm64 register choices are checked against.
const ARM64_KERNEL_SUITE: &str = "bookworm";

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
            )
            .env(ARM64_BTF_ENV, arm64_kernel_btf()?)
            // A debug build, emulated: the tests' time budgets (hostile paths) are stretched.
            .env("AGENT_SENSOR_TEST_SLOWDOWN", "20"),
    )?;
    eprintln!(
        "xtask: arm64 build and unit tests under qemu-user took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The BTF of Debian's current arm64 kernel (`linux-image-arm64` of bookworm), cut out of the
/// package's kernel image and cached (about 30 s once: apt's lists for arm64 in a private
/// configuration, so the host's sources stay as they are, and a 60 MB package). With it the
/// tests check the loader's arm64 `struct pt_regs` offsets against a real arm64 kernel.
pub fn arm64_kernel_btf() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("arm64-kernel");
    let btf = dir.join("vmlinux.btf");
    if btf.is_file() {
        return Ok(btf);
    }
    eprintln!("xtask: fetching Debian's arm64 kernel for its BTF (once)");
    for sub in ["lists/partial", "cache/archives/partial", "download"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let sources = dir.join("sources.list");
    fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian {ARM64_KERNEL_SUITE} main\n"
        ),
    )?;
    let apt = |tool: &str| {
        let mut cmd = Command::new(tool);
        for (key, value) in [
            ("Dir::Etc::SourceList", sources.as_os_str()),
            ("Dir::Etc::SourceParts", "/dev/null".as_ref()),
            ("Dir::State::Lists", dir.join("lists").as_os_str()),
            ("Dir::Cache", dir.join("cache").as_os_str()),
            ("APT::Architecture", "arm64".as_ref()),
            ("APT::Architectures::", "arm64".as_ref()),
        ] {
            let mut option = std::ffi::OsString::from(format!("{key}="));
            option.push(value);
            cmd.arg("-o").arg(option);
        }
        cmd.current_dir(dir.join("download"));
        cmd
    };
    let what_to_do = || {
        format!(
            "fetching Debian's arm64 kernel failed; check that deb.debian.org is reachable, or \
             put an arm64 kernel's BTF at {}",
            btf.display()
        )
    };
    run(apt("apt-get").args(["-q", "update"])).with_context(what_to_do)?;
    // The metapackage names the current versioned kernel package.
    let depends = output(apt("apt-cache").args(["depends", "linux-image-arm64"]))?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .with_context(|| {
            format!("no dependency in `apt-cache depends linux-image-arm64`: {depends}")
        })?
        .to_owned();
    run(apt("apt-get").args(["-q", "download", &package])).with_context(what_to_do)?;
    let deb = fs::read_dir(dir.join("download"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let image = kernel_image(&deb)?;
    let blob =
        find_btf(&image).with_context(|| format!("no BTF in {}'s kernel image", deb.display()))?;
    fs::write(&btf, blob)?;
    fs::write(dir.join("kernel"), format!("{package}\n"))?;
    fs::remove_dir_all(dir.join("download"))?;
    Ok(btf)
}

/// The kernel image (`./boot/vmlinuz-*`, an uncompressed `Image` on arm64) out of a kernel
/// package, without unpacking its modules.
fn kernel_image(deb: &Path) -> anyhow::Result<Vec<u8>> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start dpkg-deb")?;
    let mut tar = Command::new("tar")
        .args(["-xO", "--wildcards", "./boot/vmlinuz-*"])
        .stdin(dpkg.stdout.take().expect("piped"))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let mut image = Vec::new();
    tar.stdout.take().expect("piped").read_to_end(&mut image)?;
    if !(tar.wait()?.success() && dpkg.wait()?.success()) || image.is_empty() {
        bail!("extracting ./boot/vmlinuz-* from {} failed", deb.display());
    }
    Ok(image)
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
