//! Project automation: `cargo xtask setup | build | run | test | cross | matrix | bench`.
//!
//! `setup` installs everything the build and the tests need, idempotently: the kernel programs'
//! pinned nightly (`sensor-ebpf/rust-toolchain.toml`) with `rust-src`, bpf-linker built against
//! that nightly's own libLLVM, a mounted tracefs, the Debian packages the tests use, the Python
//! environment the OCSF test validates with (`~/.cache/agent-sensor/ocsf-venv`), and the arm64
//! cross tools. Every other command runs the part it needs first. Set-up's own output goes to
//! standard error: standard output is the sensor's records (`cargo xtask run | jq`).
mod bench;
mod cpio;
mod cross;
mod matrix;
mod setup;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "agent-sensor's build, run and test automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and tests need (idempotent).
    Setup,
    /// Set up and build the sensor (release).
    Build,
    /// Set up, build and run the sensor; arguments after `--` replace the default
    /// `run --all-processes --output -`.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test: rustfmt and clippy (no warning), the arm64 build's
    /// unit tests under qemu-user (as `cross`), unit, pipeline and privileged integration
    /// tests, then the kernel matrix (unless a name filter leaves it out: `-- kernel_matrix`
    /// selects it).
    Test {
        /// Extra arguments for the test binaries (a name filter, --nocapture, ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Cross-build the daemon for arm64 (aarch64-unknown-linux-gnu), run its unit tests under
    /// qemu-user, and run it on Debian's arm64 kernel in a VM.
    Cross {
        /// Extra arguments for the test binaries.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the core scenario on every kernel of the matrix (Debian's 5.10,
    /// 6.1 and 6.12 in QEMU VMs, and the host's kernel); writes target/matrix/.
    Matrix,
    /// Set up, build, and measure overhead side by side with auditd and bpftrace, pipeline
    /// throughput and memory (about a quarter of an hour); writes target/bench/results.md.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = repo_root();
    env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match cli.command {
        Task::Setup => setup::all(&root),
        Task::Build => {
            setup::build_tools(&root)?;
            build_sensor()
        }
        Task::Run { args } => {
            setup::build_tools(&root)?;
            build_sensor()?;
            let args = if args.is_empty() {
                ["run", "--all-processes", "--output", "-"]
                    .map(String::from)
                    .to_vec()
            } else {
                args
            };
            eprintln!(
                "xtask: starting agent-sensor {} (Ctrl-C stops it)",
                args.join(" ")
            );
            let status = Command::new(sensor_binary(&root)).args(&args).status()?;
            if !status.success() {
                bail!("agent-sensor exited with {status}");
            }
            Ok(())
        }
        Task::Test { args } => {
            setup::all(&root)?;
            require_root("the integration tests load kernel programs")?;
            // Every part runs even when an earlier one failed: which pass says much about why.
            let lints = lints();
            let cross = cross::test(&root, &args);
            build_sensor()?;
            let tests = run_with_stdout(
                Command::new(cargo())
                    .args([
                        "test",
                        "--release",
                        // Every test binary runs even when an earlier one failed.
                        "--no-fail-fast",
                        "--workspace",
                        "--exclude",
                        "sensor-ebpf",
                        "--",
                    ])
                    // Integration tests share the kernel's tracepoints and the CPU: one at a time.
                    .arg("--test-threads=1")
                    .args(&args)
                    .env("AGENT_SENSOR_BIN", sensor_binary(&root))
                    .env(cross::ARM64_BTF_ENV, cross::arm64_kernel_btf()?),
            );
            // The matrix runs even when a test failed: which kernels pass says much about why.
            let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
            let matrix = if filters.iter().all(|f| "kernel_matrix".contains(f.as_str())) {
                matrix::run(&root)
            } else {
                eprintln!("xtask: the name filter leaves out the kernel matrix (kernel_matrix)");
                Ok(())
            };
            [lints, cross, tests, matrix]
                .into_iter()
                .filter_map(Result::err)
                .reduce(|first, next| first.context(format!("and {next:#}")))
                .map_or(Ok(()), Err)
        }
        Task::Cross { args } => {
            setup::build_tools(&root)?;
            setup::cross_tools()?;
            cross::test(&root, &args)
        }
        Task::Matrix => {
            setup::all(&root)?;
            require_root("the matrix boots VMs and loads kernel programs on the host")?;
            build_sensor()?;
            matrix::run(&root)
        }
        Task::Bench(args) => bench::run(&root, &args),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_owned()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The habits the code keeps: rustfmt's layout and no clippy warning, in every crate the host
/// builds (the kernel programs' crate is formatted too; clippy cannot build it for the host).
fn lints() -> anyhow::Result<()> {
    let have = |tool: &str| {
        Command::new(cargo())
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("clippy") || !have("fmt") {
        eprintln!("xtask: installing clippy and rustfmt for the default toolchain");
        run(Command::new("rustup").args(["component", "add", "clippy", "rustfmt"]))
            .context("installing clippy and rustfmt failed")?;
    }
    run_with_stdout(Command::new(cargo()).args(["fmt", "--all", "--check"]))
        .context("the code is not formatted: run `cargo fmt --all`")?;
    run_with_stdout(Command::new(cargo()).args([
        "clippy",
        "--workspace",
        "--exclude",
        "sensor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found something: see its messages above")
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn sensor_binary(root: &Path) -> PathBuf {
    target_dir(root).join("release/agent-sensor")
}

fn build_sensor() -> anyhow::Result<()> {
    run(Command::new(cargo()).args(["build", "--release", "-p", "agent-sensor"]))
}

fn require_root(why: &str) -> anyhow::Result<()> {
    if !setup::is_root() {
        bail!("{why}: run as root (e.g. `sudo -E cargo xtask test`)");
    }
    Ok(())
}

/// Runs a set-up or build step, failing with the command line if it fails. Its standard
/// output goes to standard error: `cargo xtask run`'s standard output carries the sensor's
/// records and nothing else, so `cargo xtask run | jq` works.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    run_with_stdout(cmd.stdout(Stdio::from(std::io::stderr())))
}

/// Runs a command whose standard output is the user's (the test binaries' report), failing with
/// the command line if it fails.
pub fn run_with_stdout(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
