//! The arm64 daemon on an arm64 kernel, in a VM (QEMU's TCG emulates the CPU; about a minute).
//!
//! Debian's arm64 kernels (bookworm's 6.1, trixie's 6.12) boot a busybox initramfs that mounts the host's `/` read-only over
//! virtio-9p at `/host` and runs the cross-built daemon from there, with the arm64 glibc of the
//! host's `/usr/aarch64-linux-gnu`: `probe` (every program must load), then `run` over a short
//! workload. The host checks the records, chosen to exercise each register the exit programs
//! read on arm64: paths relative to the working directory (the directory fd is argument 0,
//! which only `orig_x0` still holds at exit), rename's second path (x3), chmod's mode (x2), a
//! refused connect's address (x1) and its error (the return value, x0).
//!
//! Everything is fetched once into the cache with private apt configurations, leaving the host's
//! sources and packages as they are: the kernel package, busybox-static (arm64), and
//! qemu-system-arm from bookworm-backports (unpacked, not installed: it must match the host's
//! QEMU 10 packages, whose shared libraries it runs with; [`boot`] installs those as the kernel
//! matrix does, since the cross tests run first).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    cpio::Cpio,
    run,
    setup::{cache_dir, output},
};

/// The Debian suites whose current arm64 kernel the VM boots, one after the other: bookworm's
/// 6.1 and trixie's 6.12.
const KERNEL_SUITES: &[&str] = &["bookworm", "trixie"];
/// The kernel whose BTF the loader's unit tests read.
pub const BTF_SUITE: &str = "trixie";
/// Where QEMU 10 comes from, as for the kernel matrix.
const QEMU_SUITE: &str = "bookworm-backports";
/// The modules that mount a 9p share over virtio-mmio, in load order; those a kernel has
/// built in (fscache on 6.12) are absent from its package and skipped.
const MODULES: &[&str] = &[
    "virtio_mmio",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
];
/// Boot, probe (the verifier is several times slower under TCG) and the workload.
const DEADLINE: Duration = Duration::from_mins(5);

/// A prepared arm64 kernel: `Image`, its `vmlinux.btf`, and `modules/<name>.ko`.
pub struct Kernel {
    dir: PathBuf,
}

impl Kernel {
    pub fn btf(&self) -> PathBuf {
        self.dir.join("vmlinux.btf")
    }

    fn image(&self) -> PathBuf {
        self.dir.join("Image")
    }
}

/// Debian's current arm64 kernel of `suite`, prepared once (about 40 s: apt's arm64 lists, a
/// 60-90 MB package of which the image and a few modules are kept).
pub fn kernel(suite: &str) -> anyhow::Result<Kernel> {
    let dir = cache_dir().join(format!("arm64-kernel-{suite}"));
    let kernel = Kernel { dir: dir.clone() };
    if dir.join("ready").is_file() {
        return Ok(kernel);
    }
    eprintln!("xtask: fetching Debian's arm64 kernel ({suite}) for the arm64 VM (once)");
    let apt = Apt::new(&dir.join("apt"), suite, "arm64")?;
    // The metapackage names the current versioned kernel package.
    let depends = output(
        apt.command("apt-cache")
            .args(["depends", "linux-image-arm64"]),
    )?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .with_context(|| {
            format!("no dependency in `apt-cache depends linux-image-arm64`: {depends}")
        })?
        .to_owned();
    let deb = apt.download(&package)?;
    let unpacked = dir.join("unpacked");
    let _ = fs::remove_dir_all(&unpacked);
    fs::create_dir_all(&unpacked)?;
    // Only the image and the module directories the VM needs (tar names each pattern it was
    // given; these exist in every Debian arm64 kernel package).
    let tar = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*' \
         '*/kernel/fs/*' '*/kernel/net/9p/*' '*/kernel/drivers/virtio/*'",
        deb.display(),
        unpacked.display()
    );
    run(Command::new("sh").args(["-c", &tar]))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    let image = files(&unpacked.join("boot"))?
        .into_iter()
        .find(|p| file_name(p).starts_with("vmlinuz-"))
        .context("the kernel package has no boot/vmlinuz-*")?;
    let bytes = fs::read(&image)?;
    // Debian's arm64 vmlinuz is the uncompressed `Image` ("ARM\x64" magic at 56).
    ensure!(
        bytes.get(56..60) == Some(b"ARM\x64"),
        "{} is not an uncompressed arm64 Image",
        image.display()
    );
    let btf = super::find_btf(&bytes).with_context(|| format!("no BTF in {}", image.display()))?;
    fs::write(kernel.btf(), btf)?;
    fs::write(kernel.image(), &bytes)?;
    let modules = dir.join("modules");
    let _ = fs::remove_dir_all(&modules);
    fs::create_dir_all(&modules)?;
    let all = walk(&unpacked)?;
    for name in MODULES {
        let Some(found) = all.iter().find(|p| {
            let n = file_name(p);
            n == format!("{name}.ko") || n == format!("{name}.ko.xz")
        }) else {
            continue;
        };
        let ko = if found.extension().is_some_and(|e| e == "xz") {
            let out = Command::new("xz").arg("-dc").arg(found).output()?;
            ensure!(out.status.success(), "xz -dc {} failed", found.display());
            out.stdout
        } else {
            fs::read(found)?
        };
        fs::write(modules.join(format!("{name}.ko")), ko)?;
    }
    fs::remove_dir_all(&unpacked)?;
    fs::remove_file(&deb)?;
    fs::write(dir.join("ready"), format!("{package}\n"))?;
    Ok(kernel)
}

/// Boots each arm64 kernel with the daemon at `binary` (a host path) and checks what it reports.
pub fn boot(binary: &Path) -> anyhow::Result<()> {
    crate::matrix::install_qemu()?;
    let failed: Vec<String> = KERNEL_SUITES
        .iter()
        .filter_map(|suite| boot_one(suite, binary).err().map(|e| format!("{e:#}")))
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

fn boot_one(suite: &str, binary: &Path) -> anyhow::Result<()> {
    let kernel = kernel(suite)?;
    let qemu = qemu()?;
    let work = cache_dir().join("arm64-vm");
    let busybox = busybox(&work)?;
    let results = work.join(format!("results-{suite}"));
    let _ = fs::remove_dir_all(&results);
    fs::create_dir_all(&results)?;
    fs::write(results.join("binary"), format!("{}\n", binary.display()))?;
    let initramfs = work.join("initramfs.cpio");
    write_initramfs(&kernel, &busybox, &initramfs)?;

    eprintln!("xtask: booting Debian's arm64 kernel ({suite}) under QEMU (TCG) with the daemon");
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args([
            "-machine",
            "virt",
            "-cpu",
            "max,pauth-impdef=on",
            "-smp",
            "1",
            "-m",
            "1536",
        ])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", results.join("console.log").display()))
        .arg("-kernel")
        .arg(kernel.image())
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", "console=ttyAMA0 panic=-1 quiet"])
        .args([
            "-fsdev",
            "local,id=host,path=/,security_model=none,readonly=on",
            "-device",
            "virtio-9p-device,fsdev=host,mount_tag=host",
        ])
        .arg("-fsdev")
        .arg(format!(
            "local,id=out,path={},security_model=none",
            results.display()
        ))
        .args(["-device", "virtio-9p-device,fsdev=out,mount_tag=out"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "xtask: the arm64 VM ran {:.0} s; its results are in {}",
        start.elapsed().as_secs_f64(),
        results.display()
    );
    if status.is_none() {
        bail!(
            "the arm64 VM did not finish within {} s; its console: {}",
            DEADLINE.as_secs(),
            results.join("console.log").display()
        );
    }
    check(&results)
}

/// What the VM must have produced: every program loads, and the workload's records.
fn check(results: &Path) -> anyhow::Result<()> {
    let read = |name: &str| fs::read_to_string(results.join(name)).unwrap_or_default();
    let probe = read("probe.txt");
    let console = || results.join("console.log").display().to_string();
    ensure!(
        !probe.is_empty(),
        "the arm64 VM did not run the probe; see {}",
        console()
    );
    let refused: Vec<&str> = probe.lines().filter(|l| l.contains("REFUSED")).collect();
    ensure!(
        refused.is_empty() && read("probe-status").trim() == "0",
        "on arm64 ({}), the probe says:\n{probe}",
        read("uname").trim()
    );
    let records: Vec<serde_json::Value> = read("records.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |what: &str, matches: &dyn Fn(&serde_json::Value) -> bool| {
        if records.iter().any(matches) {
            Ok(())
        } else {
            Err(what.to_owned())
        }
    };
    let s = |r: &serde_json::Value, pointer: &str| {
        r.pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let action = |r: &serde_json::Value, a: &str| s(r, "/event/action") == a;
    let dir = "/tmp/arm64-vm";
    let missing: Vec<String> = [
        find("an exec with its argv", &|r| {
            action(r, "exec")
                && r.pointer("/process/args")
                    == Some(&serde_json::json!(["/bin/busybox", "true", "arm64-vm"]))
        }),
        find("an open of a relative path, resolved", &|r| {
            action(r, "open") && s(r, "/file/path") == format!("{dir}/file")
        }),
        find("a rename with both paths", &|r| {
            action(r, "rename")
                && s(r, "/file/path") == format!("{dir}/file")
                && s(r, "/file/destination_path") == format!("{dir}/moved")
        }),
        find("a chmod with its mode", &|r| {
            action(r, "chmod")
                && s(r, "/file/path") == format!("{dir}/moved")
                && s(r, "/file/mode") == "0640"
        }),
        find("an unlink", &|r| {
            action(r, "unlink") && s(r, "/file/path") == format!("{dir}/moved")
        }),
        find("a refused connect with its address", &|r| {
            action(r, "connect")
                && s(r, "/destination/ip") == "127.0.0.1"
                && r.pointer("/destination/port") == Some(&serde_json::json!(4321))
                && s(r, "/error/code") == "ECONNREFUSED"
        }),
        find("sensor_stop", &|r| action(r, "sensor_stop")),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    ensure!(
        missing.is_empty() && read("sensor-status").trim() == "0",
        "on arm64 ({}), the sensor's records lack: {}; sensor exit status {:?}; see {} and {}",
        read("uname").trim(),
        missing.join(", "),
        read("sensor-status").trim(),
        results.join("records.jsonl").display(),
        results.join("run.err").display()
    );
    // The connect's address comes from the BPF LSM hook where the kernel runs it (6.12 here).
    let lsm = if read("run.err").contains("lsm:socket_connect") {
        ", connect seen by the BPF LSM hook"
    } else {
        ""
    };
    eprintln!(
        "xtask: arm64 VM ({}): every program loads; {} records, the workload's as expected{lsm}",
        read("uname").trim(),
        records.len()
    );
    Ok(())
}

/// PID 1 of the VM. Results go to the writable share (`/out`); the host reads them after
/// power-off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "arm64-vm: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 host /host \
    || echo "arm64-vm: mounting the host's / failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out \
    || { echo "arm64-vm: mounting the results share failed"; poweroff -f; }
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The probe reads the active LSMs here: BPF LSM is on by default on Debian's 6.1 and 6.12.
mount -t securityfs securityfs /sys/kernel/security
ip link set lo up
uname -rm > /out/uname
# The daemon is the host's arm64 build; its loader and libraries are the host's arm64 glibc.
export LD_LIBRARY_PATH=/host/usr/aarch64-linux-gnu/lib
S=/host$(cat /out/binary)
$S probe > /out/probe.txt 2>&1
echo $? > /out/probe-status
$S run --all-processes --output /out/records.jsonl 2> /out/run.err &
pid=$!
i=0
while [ $i -lt 120 ] && kill -0 $pid 2>/dev/null \
    && ! grep -q sensor_start /out/records.jsonl 2>/dev/null; do
    sleep 1; i=$((i + 1))
done
mkdir /tmp/arm64-vm
cd /tmp/arm64-vm
/bin/busybox true arm64-vm
echo hi > file
mv file moved
chmod 640 moved
rm moved
nc 127.0.0.1 4321 < /dev/null
cd /
sleep 1
kill -INT $pid
wait $pid
echo $? > /out/sensor-status
sync
poweroff -f
"#;

/// The initramfs: busybox, the 9p modules, the init script, and the arm64 dynamic loader's
/// path pointing into the host's share.
fn write_initramfs(kernel: &Kernel, busybox: &Path, out: &Path) -> anyhow::Result<()> {
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "host", "out", "tmp", "run", "lib", "modules",
    ] {
        cpio.dir(dir);
    }
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("bin/busybox", 0o755, &fs::read(busybox)?);
    cpio.symlink(
        "lib/ld-linux-aarch64.so.1",
        "/host/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
    );
    let mut order = String::new();
    for name in MODULES {
        let path = kernel.dir.join("modules").join(format!("{name}.ko"));
        if let Ok(bytes) = fs::read(&path) {
            cpio.file(&format!("modules/{name}.ko"), 0o644, &bytes);
            order.push_str(name);
            order.push('\n');
        }
    }
    cpio.file("modules/order", 0o644, order.as_bytes());
    fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

/// QEMU's arm64 system emulator, unpacked from qemu-system-arm of [`QEMU_SUITE`].
fn qemu() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("arm64-vm/qemu");
    let bin = dir.join("usr/bin/qemu-system-aarch64");
    if bin.is_file() {
        return Ok(bin);
    }
    let apt = Apt::new(&cache_dir().join("arm64-vm/apt-amd64"), QEMU_SUITE, "amd64")?;
    let deb = apt.download(&format!("qemu-system-arm/{QEMU_SUITE}"))?;
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    fs::remove_file(&deb)?;
    ensure!(
        bin.is_file(),
        "qemu-system-arm has no usr/bin/qemu-system-aarch64"
    );
    Ok(bin)
}

/// busybox-static for arm64, unpacked once.
fn busybox(work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("busybox");
    let bin = dir.join("bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    let apt = Apt::new(&work.join("apt-arm64"), "bookworm", "arm64")?;
    let deb = apt.download("busybox-static")?;
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    fs::remove_file(&deb)?;
    ensure!(bin.is_file(), "busybox-static has no bin/busybox");
    Ok(bin)
}

/// A private apt configuration for one suite and architecture, its lists fetched on creation.
struct Apt {
    dir: PathBuf,
    suite: String,
    arch: String,
}

impl Apt {
    fn new(dir: &Path, suite: &str, arch: &str) -> anyhow::Result<Apt> {
        for sub in ["lists/partial", "cache/archives/partial", "download"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let apt = Apt {
            dir: dir.to_owned(),
            suite: suite.to_owned(),
            arch: arch.to_owned(),
        };
        fs::write(
            dir.join("sources.list"),
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {suite} main\n"
            ),
        )?;
        run(apt.command("apt-get").args(["-q", "update"])).with_context(|| {
            format!("fetching Debian's {suite} lists ({arch}) failed; is deb.debian.org reachable?")
        })?;
        Ok(apt)
    }

    fn command(&self, tool: &str) -> Command {
        let d = self.dir.display();
        let mut cmd = Command::new(tool);
        cmd.arg(format!("-oDir::Etc::SourceList={d}/sources.list"))
            .arg("-oDir::Etc::SourceParts=/dev/null")
            .arg(format!("-oDir::State::Lists={d}/lists"))
            .arg(format!("-oDir::Cache={d}/cache"))
            .arg(format!("-oAPT::Architecture={}", self.arch))
            .arg(format!("-oAPT::Architectures::={}", self.arch))
            .current_dir(self.dir.join("download"));
        cmd
    }

    /// Downloads `package` and returns its `.deb`.
    fn download(&self, package: &str) -> anyhow::Result<PathBuf> {
        let download = self.dir.join("download");
        for old in files(&download)? {
            fs::remove_file(old)?;
        }
        run(self.command("apt-get").args(["-q", "download", package])).with_context(|| {
            format!(
                "downloading {package} ({}, {}) failed; is deb.debian.org reachable?",
                self.suite, self.arch
            )
        })?;
        files(&download)?
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {package} left no .deb"))
    }
}

fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in files(dir)? {
        if path.is_dir() {
            found.extend(walk(&path)?);
        } else {
            found.push(path);
        }
    }
    Ok(found)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
