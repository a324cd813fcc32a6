//! QEMU: installing it on the host (from bookworm-backports, the suite the host's
//! `qemu-utils` already comes from) and booting one VM with a deadline.
//!
//! The VMs use TCG, not KVM: this machine kind's `/dev/kvm` is a paravirtual nested hypervisor
//! on which stock kernels crawl or crash. TCG is slower (the verifier runs 4-6x slower), so
//! the callers' deadlines allow for it.
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{apt::Apt, kernels::Prepared};

pub const QEMU: &str = "qemu-system-x86_64";

/// Suites for installing QEMU: bookworm itself (for dependencies) and its backports.
/// No newer suite, or apt would upgrade the host's libraries from it.
pub const SUITES: &[&str] = &[
    "bookworm",
    "bookworm-updates",
    "bookworm-security",
    "bookworm-backports",
];

/// Installs `qemu-system-x86` from bookworm-backports unless a QEMU is already on PATH.
pub fn install(apt: &Apt) -> anyhow::Result<()> {
    if Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Ok(());
    }
    eprintln!("xtask: matrix: installing qemu-system-x86 from bookworm-backports");
    apt.update()?;
    apt.apt_get(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
        "qemu-system-x86",
    ])
    .context(
        "installing QEMU failed; the matrix needs qemu-system-x86_64 (Debian package \
         qemu-system-x86, from bookworm-backports on this host)",
    )?;
    // The downloaded .debs (about 100 MB) are not needed once installed.
    apt.apt_get(&["clean"])
}

/// How a VM ended.
pub enum Ended {
    /// Powered off by its init.
    PoweredOff { status: std::process::ExitStatus },
    /// Killed at the deadline.
    TimedOut,
}

/// Boots `kernel` with `initramfs`, the host's `/` and `results` shared over 9p; QEMU's own
/// messages go to `results/qemu.log`, the serial console to `results/console.log`.
pub fn boot(
    kernel: &Prepared,
    cmdline: &str,
    initramfs: &Path,
    results: &Path,
    deadline: Duration,
) -> anyhow::Result<(Ended, Duration)> {
    let log = fs::File::create(results.join("qemu.log"))?;
    let append = format!("console=ttyS0 panic=-1 quiet random.trust_cpu=on {cmdline}");
    let mut child = Command::new(QEMU)
        .args(["-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1"])
        // The sensor's maps (a 16 MiB ring buffer, process tables) and tmpfs need room.
        .args(["-m", "1536"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", results.join("console.log").display()))
        .arg("-kernel")
        .arg(kernel.vmlinux())
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", &append])
        // multidevs=remap: the host's / spans several filesystems; remapping keeps inode
        // numbers unique inside the VM.
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=results,security_model=none,multidevs=remap",
            results.display()
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((Ended::PoweredOff { status }, start.elapsed()));
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((Ended::TimedOut, start.elapsed()));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines of a VM's console, for a report that must say why a VM gave nothing.
pub fn console_tail(results: &Path, n: usize) -> String {
    let text = fs::read(results.join("console.log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
