//! The VM's initramfs: busybox-static (Debian's), the kernel's virtio/9p modules and an init
//! script. Init mounts the host's `/` read-only over virtio-9p and makes it the VM's root, so
//! the scenario runs the host's own binaries at their host paths; writes go to tmpfs (`/tmp`,
//! `/run`) and to a second, writable 9p share for results (`/run/matrix` in the VM). It then
//! runs the share's `run.sh` and powers off.
//!
//! The archive is written here (cpio "newc", uncompressed: the kernel unpacks it faster than it
//! would decompress it under TCG), so the host needs no cpio tool.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{apt::Apt, kernels::Prepared};
use crate::{cpio::Cpio, run};

/// PID 1 of every VM. Each step says what failed; the host reads the console when no
/// `exit-status` appears in the results. The host's root becomes the VM's real root
/// (`switch_root`, not a chroot), so the scenario sees what a host sees: one mount namespace
/// whose root is every process's root, PID 1 included.
const INIT: &str = r#"#!/bin/busybox sh
# agent-sensor kernel matrix: PID 1 of a test VM (written by `cargo xtask matrix`).
B=/bin/busybox
R=/newroot
fail() { echo "matrix-init: $*"; $B poweroff -f; }
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules/order); do
    $B insmod /modules/$m.ko || fail "insmod $m failed"
done
# cache=loose: the host's root does not change under a VM that lives a minute, and 9p
# lookups without it dominate the scenario's time.
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot $R \
    || fail "mounting the host's / over 9p failed"
$B mount -t tmpfs tmpfs $R/tmp || fail "tmpfs on /tmp"
$B mount -t tmpfs tmpfs $R/run || fail "tmpfs on /run"
$B mkdir -p $R/run/matrix
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results $R/run/matrix \
    || fail "mounting the results share failed"
$B mount --move /proc $R/proc
$B mount --move /sys $R/sys
$B mount --move /dev $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm
$B mount -t devpts devpts $R/dev/pts
$B mount -t tmpfs tmpfs $R/dev/shm
$B mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "cgroup2"
$B mount -t tracefs tracefs $R/sys/kernel/tracing || fail "tracefs"
$B mount -t bpf bpf $R/sys/fs/bpf || fail "bpffs"
$B mount -t securityfs securityfs $R/sys/kernel/security
$B ip link set lo up || fail "bringing up lo"
$B hostname matrix-vm
# After switch_root the initramfs is gone: stage 2 runs from the VM's tmpfs.
$B cp $B $R/run/busybox
$B cat > $R/run/stage2 <<'EOF'
B=/run/busybox
echo "matrix-init: running the scenario at $($B cut -d' ' -f1 /proc/uptime) s"
/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh /run/matrix/run.sh
echo $? > /run/matrix/exit-status
$B dmesg > /run/matrix/dmesg.txt
$B sync
$B umount /run/matrix
$B poweroff -f
EOF
exec $B switch_root $R /run/busybox sh /run/stage2
"#;

/// busybox-static from Debian (bookworm), unpacked once into the cache.
pub fn busybox(apt: &Apt, cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join("busybox");
    let bin = dir.join("bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    apt.update()?;
    let download = cache.join("busybox-download");
    let deb = apt.download("busybox-static/bookworm", &download)?;
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    fs::remove_dir_all(&download)?;
    anyhow::ensure!(bin.is_file(), "busybox-static has no bin/busybox");
    Ok(bin)
}

/// Writes the initramfs for `kernel` to `out`.
pub fn write(kernel: &Prepared, busybox: &Path, out: &Path) -> anyhow::Result<()> {
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init's standard streams before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file(
        "bin/busybox",
        0o755,
        &fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?,
    );
    for name in &kernel.modules {
        let path = kernel.module_file(name);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        cpio.file(&format!("modules/{name}.ko"), 0o644, &bytes);
    }
    cpio.file(
        "modules/order",
        0o644,
        format!("{}\n", kernel.modules.join("\n")).as_bytes(),
    );
    fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The archive unpacks with an independent cpio (busybox's, from busybox-static, which the
    /// test set-up installs) to exactly what was put in.
    #[test]
    fn the_archive_unpacks_to_what_was_written() {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("out")).unwrap();
        let mut cpio = Cpio::default();
        cpio.dir("bin");
        cpio.file("bin/tool", 0o755, b"#!/bin/sh\necho hi\n");
        cpio.file("odd-length", 0o644, b"12345");
        cpio.file("empty", 0o600, b"");
        fs::write(dir.join("a.cpio"), cpio.finish()).unwrap();
        let status = Command::new("busybox")
            .args(["cpio", "-i", "-d", "-F"])
            .arg(dir.join("a.cpio"))
            .current_dir(dir.join("out"))
            .status()
            .expect("busybox (Debian package busybox-static)");
        assert!(status.success());
        let out = dir.join("out");
        assert_eq!(
            fs::read(out.join("bin/tool")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(fs::read(out.join("odd-length")).unwrap(), b"12345");
        assert_eq!(fs::read(out.join("empty")).unwrap(), b"");
        let mode = fs::metadata(out.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let _ = fs::remove_dir_all(&dir);
    }
}
