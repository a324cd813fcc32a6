//! Idempotent set-up: each step checks whether its result is already there and does nothing
//! if so, so a second run takes seconds. A step that cannot complete says what to run by hand.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// bpf-linker release that matches aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the test suite uses.
/// (bpftool cross-checks the BTF reader; util-linux has setpriv and unshare, iproute2 `ip`.)
const TEST_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "util-linux",
    // Real containers: a private containerd, podman (with conmon) and runc, running a
    // busybox rootfs the tests build.
    "containerd",
    "runc",
    "podman",
    "conmon",
    "busybox-static",
    // An independent validator for the record schema.
    "python3-jsonschema",
    // The OCSF validator's virtual environment (`python_packages`).
    "python3-venv",
];

/// PyPI packages the OCSF test validates with, pinned, in a virtual environment under the
/// cache: the OCSF schema itself (1.0 to 1.8, as exported by schema.ocsf.io) turned into JSON
/// Schema, and a validator for it.
pub const PYTHON_PACKAGES: &[(&str, &str)] =
    &[("ocsf-json-schema", "1.2.0"), ("jsonschema", "4.26.0")];

pub fn all(root: &Path) -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    if is_root() {
        tracefs()?;
        debian_packages(TEST_PACKAGES)?;
        python_packages(PYTHON_PACKAGES)?;
    } else {
        eprintln!("xtask: not root: skipping tracefs and Debian packages (the sensor needs root)");
    }
    let _ = root;
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Where set-up keeps what it builds (outside the repo, shared by clones).
pub fn cache_dir() -> PathBuf {
    env::var_os("AGENT_SENSOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        })
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .map(PathBuf::from)
        .context(
            "the nightly toolchain is missing; it builds the kernel programs. \
             Install it with `rustup toolchain install nightly`",
        )
}

fn rust_src() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    if sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
    {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context(
            "installing rust-src failed; run `rustup component add rust-src --toolchain nightly`",
        )
}

pub fn bpf_linker_bin() -> PathBuf {
    cache_dir().join("bpf-linker/bin")
}

/// bpf-linker must link against the same LLVM as the nightly rustc that emits the bitcode;
/// Debian has no LLVM 22, so it is built against the nightly's own libLLVM.
fn bpf_linker() -> anyhow::Result<()> {
    let bin = bpf_linker_bin().join("bpf-linker");
    if bin.is_file()
        && output(Command::new(&bin).arg("--version")).is_ok_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    let lib = nightly_sysroot()?.join("lib");
    let llvm = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") || n.starts_with("libLLVM-"))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}; is the nightly toolchain complete?",
                lib.display()
            )
        })?;
    let prefix = cache_dir().join("rust-llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for link in [
        prefix_lib.join("libLLVM.so"),
        prefix_lib.join(llvm.file_name().expect("a file")),
    ] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (a few minutes, once)",
        llvm.display()
    );
    run(Command::new("cargo")
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22", "--root"])
        .arg(cache_dir().join("bpf-linker"))
        .env("LLVM_PREFIX", &prefix))
    .context("building bpf-linker failed; see the cargo output above")
}

fn tracefs() -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("tracefs"))
    {
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
        .context("mounting tracefs failed; run `mount -t tracefs nodev /sys/kernel/tracing`")
}

pub fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    // apt's progress goes to standard error: standard output is for the sensor's records.
    let apt = |args: &[&str]| {
        crate::matrix::stderr_only(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-q"])?;
    apt(&[
        &["install", "-y", "-q", "--no-install-recommends"][..],
        &missing,
    ]
    .concat())
    .with_context(|| {
        format!(
            "installing packages failed; run `apt-get install {}`",
            missing.join(" ")
        )
    })
}

/// The virtual environment the OCSF test runs its validator in.
pub fn python_venv() -> PathBuf {
    cache_dir().join("ocsf-venv")
}

/// Installs `packages` (name, exact version) into [`python_venv`], making it first; does
/// nothing when each is already there at its version (checked without starting pip).
pub fn python_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let venv = python_venv();
    let python = venv.join("bin/python3");
    let site = |name: &str, version: &str| {
        // pip records an installed distribution as `<name_with_underscores>-<version>.dist-info`.
        let dist = format!("{}-{version}.dist-info", name.replace('-', "_"));
        fs::read_dir(venv.join("lib"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|py| py.path().join("site-packages").join(&dist).is_dir())
    };
    let missing: Vec<String> = packages
        .iter()
        .filter(|(name, version)| !(python.is_file() && site(name, version)))
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !python.is_file() {
        eprintln!("xtask: making the Python environment {}", venv.display());
        run(Command::new("/usr/bin/python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv))
        .with_context(|| {
            format!(
                "making {} failed; install python3-venv and run `python3 -m venv {}`",
                venv.display(),
                venv.display()
            )
        })?;
    }
    eprintln!("xtask: installing Python packages: {}", missing.join(" "));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&missing))
    .with_context(|| {
        format!(
            "installing Python packages failed; run `{} -m pip install {}`",
            python.display(),
            missing.join(" ")
        )
    })
}
