//! The kernels of the matrix and getting each ready to boot: which Debian package it is, the
//! uncompressed `vmlinux` taken out of its `vmlinuz`, and the modules the VM's init needs
//! (virtio PCI and 9p), decompressed and in load order. Nothing is installed on the host: the
//! package is downloaded with a private apt configuration and unpacked with `dpkg -x` into the
//! cache, and only what the VM needs is kept.
//!
//! To add a kernel: add an entry to [`KERNELS`] (its series, and the command line it needs)
//! and, if no suite in [`SUITES`] has it, the Debian suite that does.
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::apt::Apt;
use crate::run;

pub struct Kernel {
    /// Short name: the results directory and what the report calls it.
    pub name: &'static str,
    /// The newest Debian `linux-image-amd64` whose version starts with this is used.
    series: &'static str,
    /// Added to the VM's kernel command line.
    pub cmdline: &'static str,
}

pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        series: "5.10.",
        // Debian's 5.10 builds BPF LSM but leaves it out of the default LSM order.
        cmdline: "lsm=lockdown,capability,yama,apparmor,bpf",
    },
    Kernel {
        name: "6.1",
        series: "6.1.",
        cmdline: "",
    },
    Kernel {
        name: "6.12",
        series: "6.12.",
        cmdline: "",
    },
];

/// The suites the kernel packages (and busybox-static) come from.
pub const SUITES: &[&str] = &[
    "bullseye",
    "bookworm",
    "bookworm-security",
    "bookworm-backports",
    "trixie",
];

/// What the VM's init loads before it can mount the host's root: the virtio PCI transport and
/// 9p over virtio (dependencies are added from each module's `depends=`).
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

/// A kernel ready to boot, as set-up left it in `<cache>/kernels/<name>/`.
#[derive(Serialize, Deserialize)]
pub struct Prepared {
    /// The Debian package and version it came from.
    pub package: String,
    pub version: String,
    /// `uname -r` of the kernel.
    pub release: String,
    /// Module names in load order; each is `modules/<name>.ko` next to this file.
    pub modules: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Prepared {
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }

    pub fn module_file(&self, name: &str) -> PathBuf {
        self.dir.join("modules").join(format!("{name}.ko"))
    }
}

/// Returns the kernel ready to boot, downloading and unpacking it the first time.
pub fn prepare(kernel: &Kernel, apt: &Apt, cache: &Path) -> anyhow::Result<Prepared> {
    let dir = cache.join("kernels").join(kernel.name);
    let stamp = dir.join("kernel.json");
    if let Ok(text) = fs::read_to_string(&stamp)
        && let Ok(mut prepared) = serde_json::from_str::<Prepared>(&text)
    {
        prepared.dir.clone_from(&dir);
        if prepared.vmlinux().is_file() {
            return Ok(prepared);
        }
    }
    apt.update()?;
    let _ = fs::remove_dir_all(&dir);
    let download = dir.join("download");
    let fetch = || -> anyhow::Result<(String, String, PathBuf)> {
        let (package, version) = resolve(kernel, apt)?;
        eprintln!(
            "xtask: matrix: fetching {package} {version} for the {} VM",
            kernel.name
        );
        let deb = apt.download(&format!("{package}={version}"), &download)?;
        Ok((package, version, deb))
    };
    // Lists cached by an earlier run may name a package the mirror has since replaced.
    let (package, version, deb) = match fetch() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("xtask: matrix: {e:#}; refreshing the package lists");
            apt.refresh()?;
            fetch()?
        }
    };
    let extract = dir.join("extract");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&extract))
        .with_context(|| format!("unpacking {}", deb.display()))?;

    let boot = extract.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("{package} has no boot/ directory"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    let release = vmlinuz.file_name().unwrap().to_str().unwrap()["vmlinuz-".len()..].to_owned();
    extract_vmlinux(&vmlinuz, &dir.join("vmlinux"))?;
    fs::copy(boot.join(format!("config-{release}")), dir.join("config"))
        .with_context(|| format!("{package} has no boot/config-{release}"))?;

    // Debian moved modules from /lib to /usr/lib (trixie on).
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| extract.join(m).join(&release))
        .find(|p| p.is_dir())
        .with_context(|| format!("{package} has no lib/modules/{release}"))?;
    let modules = module_closure(&modules_root, MODULES)?;
    let out = dir.join("modules");
    fs::create_dir_all(&out)?;
    for (name, path) in &modules {
        fs::write(out.join(format!("{name}.ko")), decompress(path)?)
            .with_context(|| format!("writing module {name}"))?;
    }
    let prepared = Prepared {
        package,
        version,
        release,
        modules: modules.into_iter().map(|(name, _)| name).collect(),
        dir: dir.clone(),
    };
    fs::write(&stamp, serde_json::to_string_pretty(&prepared)?)?;
    // The unpacked tree and the .deb are hundreds of megabytes; the VM needs none of the rest.
    fs::remove_dir_all(&extract)?;
    fs::remove_dir_all(&download)?;
    Ok(prepared)
}

/// The newest package of the kernel's series: Debian's `linux-image-amd64` of each suite
/// depends on the suite's current ABI (`linux-image-6.1.0-57-amd64`); its `-unsigned` twin has
/// the same kernel without the Secure Boot signature.
fn resolve(kernel: &Kernel, apt: &Apt) -> anyhow::Result<(String, String)> {
    let show = apt.cache_query(&["show", "linux-image-amd64"])?;
    let mut best: Option<(String, String)> = None;
    for stanza in show.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let (Some(version), Some(depends)) = (field("Version:"), field("Depends:")) else {
            continue;
        };
        if !version.starts_with(kernel.series) {
            continue;
        }
        let image = depends
            .split([' ', ',', '('])
            .next()
            .unwrap_or_default()
            .to_owned();
        if best
            .as_ref()
            .is_none_or(|(v, _)| newer(&version, v).unwrap_or(false))
        {
            best = Some((version, image));
        }
    }
    let Some((meta_version, image)) = best else {
        bail!(
            "no linux-image-amd64 {}* in the suites {:?}; add the Debian suite that has it to \
             matrix::kernels::SUITES",
            kernel.series,
            SUITES
        );
    };
    for package in [format!("{image}-unsigned"), image.clone()] {
        let show = apt.cache_query(&["show", "--no-all-versions", &package]);
        if let Ok(show) = show
            && let Some(version) = show
                .lines()
                .find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_owned()))
        {
            return Ok((package, version));
        }
    }
    bail!("linux-image-amd64 {meta_version} depends on {image}, which apt cannot find")
}

fn newer(a: &str, b: &str) -> anyhow::Result<bool> {
    Ok(Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .context("cannot start dpkg --compare-versions")?
        .success())
}

/// Writes the ELF kernel inside a bzImage. QEMU boots it directly through its PVH entry
/// point, skipping the in-guest decompression that costs seconds under TCG. The x86 boot
/// header says where the compressed payload is (`payload_offset`, `payload_length`); the
/// payload ends with the uncompressed size, which checks the result.
fn extract_vmlinux(vmlinuz: &Path, vmlinux: &Path) -> anyhow::Result<()> {
    let image = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?))
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("{} is not an x86 bzImage", vmlinuz.display());
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let protected = (setup_sects + 1) * 512;
    let (offset, length) = (
        u32_at(0x248).unwrap() as usize,
        u32_at(0x24c).unwrap() as usize,
    );
    let payload = image
        .get(protected + offset..protected + offset + length)
        .with_context(|| format!("{}: the payload lies outside the file", vmlinuz.display()))?;
    let (stream, size) = payload.split_at(length - 4);
    let size = u32::from_le_bytes(size.try_into().unwrap()) as usize;
    let tool: &[&str] = match stream {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => &["xz", "-dc"],
        [0x28, 0xb5, 0x2f, 0xfd, ..] => &["zstd", "-dc"],
        [0x1f, 0x8b, ..] => &["gzip", "-dc"],
        _ => bail!(
            "{}: the kernel is compressed with a method the matrix does not know (magic {:02x?}); \
             add its decompressor to matrix::kernels::extract_vmlinux",
            vmlinuz.display(),
            &stream[..stream.len().min(6)]
        ),
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} (cargo xtask setup installs it)", tool[0]))?;
    let mut stdin = child.stdin.take().unwrap();
    let stream = stream.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&stream));
    let out = child.wait_with_output()?;
    feeder.join().expect("feeder thread")?;
    if !out.status.success() || out.stdout.len() != size || !out.stdout.starts_with(b"\x7fELF") {
        bail!(
            "{} -dc of {}'s payload gave {} bytes ({}), expected an ELF of {size}",
            tool[0],
            vmlinuz.display(),
            out.stdout.len(),
            out.status
        );
    }
    fs::write(vmlinux, out.stdout).with_context(|| format!("writing {}", vmlinux.display()))
}

/// The modules `wanted` and everything they depend on, dependencies first; built-in ones
/// (listed in `modules.builtin`) are left out. `modules.dep` is made by depmod at install
/// time, not shipped, so dependencies come from each module's own `depends=` entry.
fn module_closure(root: &Path, wanted: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = HashMap::new();
    let mut stack = vec![root.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && let Some((stem, _)) = name.split_once(".ko")
            {
                files.insert(stem.replace('-', "_"), path.clone());
            }
        }
    }
    let builtin: HashSet<String> = fs::read_to_string(root.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(|n| n.replace('-', "_"))
        .collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(name, &files, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// Appends module `name` to `order` after its dependencies, unless it is built in or `seen`.
fn visit(
    name: &str,
    files: &HashMap<String, PathBuf>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    order: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    if !seen.insert(name.to_owned()) || builtin.contains(name) {
        return Ok(());
    }
    let path = files
        .get(name)
        .with_context(|| format!("module {name} is neither a file nor built in"))?;
    for dep in depends(&decompress(path)?) {
        visit(&dep, files, builtin, seen, order)?;
    }
    order.push((name.to_owned(), path.clone()));
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` (NUL-separated `key=value` strings).
fn depends(module: &[u8]) -> Vec<String> {
    module
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// A module file's bytes, decompressed (busybox's insmod wants a plain ELF).
fn decompress(path: &Path) -> anyhow::Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(path).with_context(|| format!("reading {}", path.display())),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot start {tool} (cargo xtask setup installs it)"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed with {}", path.display(), out.status);
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_from_the_modinfo_entry() {
        let module = b"\x7fELF...\0license=GPL\0depends=9pnet,netfs,virtio-ring\0vermagic=6.1\0";
        assert_eq!(depends(module), ["9pnet", "netfs", "virtio_ring"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }
}
