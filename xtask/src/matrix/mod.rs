//! `cargo xtask matrix` (also the last step of `cargo xtask test`): the sensor's core scenario
//! on every kernel of the matrix: Debian's 5.10, 6.1 and 6.12 in QEMU VMs, in parallel, and the
//! host's own kernel directly. Each run leaves its evidence in `target/matrix/<kernel>/`; the
//! report (also `target/matrix/report.txt`) says per kernel what passed, what did not and why.
//!
//! Set-up is idempotent and cached under `~/.cache/agent-sensor/matrix`: QEMU on the host, and
//! per kernel only what the VM needs (see `kernels`). `AGENT_SENSOR_MATRIX_KERNELS=5.10,host`
//! runs a subset; `AGENT_SENSOR_BIN` puts another sensor binary through it.
mod apt;
mod initramfs;
mod kernels;
mod qemu;
mod scenario;

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::setup;

/// Host tools the set-up uses: decompressors for kernels and modules, Debian's keys.
const HOST_PACKAGES: &[&str] = &["xz-utils", "zstd", "debian-archive-keyring"];
/// A VM's whole life: boot (3-4 s), probe, the sensor's load under TCG (the verifier runs 4-6x
/// slower, three VMs share two cores), the scenario, the stop.
const VM_DEADLINE: Duration = Duration::from_mins(8);

/// One row of the matrix.
struct Row {
    name: String,
    /// Wall-clock seconds of the whole VM (or host run).
    wall: f64,
    /// Why the VM itself failed, if it did (before the scenario's own checks).
    vm_error: Option<String>,
    outcome: scenario::Outcome,
}

/// Installs the host's QEMU (qemu-system-x86 from bookworm-backports) unless one is on PATH:
/// the matrix's VMs run on it, and the arm64 VMs' unpacked qemu-system-arm needs its shared
/// libraries.
pub fn install_qemu() -> anyhow::Result<()> {
    let cache = setup::cache_dir().join("matrix");
    qemu::install(&apt::Apt::new(cache.join("apt-qemu"), qemu::SUITES)?)
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let cache = setup::cache_dir().join("matrix");
    setup::debian_packages(HOST_PACKAGES)?;
    install_qemu()?;
    let apt = apt::Apt::new(cache.join("apt-kernels"), kernels::SUITES)?;
    let (selected, with_host) = selection()?;
    let prepared = selected
        .iter()
        .map(|k| kernels::prepare(k, &apt, &cache).map(|p| (*k, p)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let busybox = initramfs::busybox(&apt, &cache)?;
    crate::run(Command::new(crate::cargo()).args([
        "build",
        "--release",
        "-p",
        "sensor-tests",
        "--bins",
    ]))?;

    let target = crate::target_dir(root);
    let results = target.join("matrix");
    let _ = fs::remove_dir_all(&results);
    fs::create_dir_all(&results).with_context(|| format!("making {}", results.display()))?;
    let release = target.join("release");
    let scenario_cmd = [
        release.join("kernel-matrix-scenario"),
        // Another build of the sensor can be put through the matrix as it is.
        env::var_os("AGENT_SENSOR_BIN").map_or_else(|| crate::sensor_binary(root), PathBuf::from),
        release.join("sensor-test-helper"),
    ];
    let mut names: Vec<&str> = selected.iter().map(|k| k.name).collect();
    if with_host {
        names.insert(0, "the host's kernel");
    }
    eprintln!(
        "xtask: matrix: setup took {:.1} s; running the scenario on {}",
        started.elapsed().as_secs_f64(),
        names.join(", ")
    );

    let mut rows = Vec::new();
    // The host first, alone: with --all-processes its sensor would also see the VMs' QEMU
    // processes serving 9p, a flood unrelated to the scenario.
    if with_host {
        rows.push(run_on_host(&results.join("host"), &scenario_cmd)?);
    }
    let vm_rows = thread::scope(|s| {
        let handles: Vec<_> = prepared
            .iter()
            .map(|(kernel, prepared)| {
                let results = &results;
                let (busybox, scenario_cmd) = (&busybox, &scenario_cmd);
                s.spawn(move || run_vm(kernel, prepared, busybox, results, scenario_cmd))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("VM thread"))
            .collect::<anyhow::Result<Vec<Row>>>()
    })?;
    rows.extend(vm_rows);

    let report = report(&rows, started.elapsed().as_secs_f64());
    // The report is what the command is for, like a test binary's: standard output.
    println!("{report}");
    fs::write(results.join("report.txt"), &report)?;
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.vm_error.is_some() || !r.outcome.passed())
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the kernel matrix failed on {} (details above and in {})",
            failed.join(", "),
            results.display()
        );
    }
    Ok(())
}

/// The kernels to run (all unless `AGENT_SENSOR_MATRIX_KERNELS` names some), and whether the
/// host's kernel is one of them.
fn selection() -> anyhow::Result<(Vec<&'static kernels::Kernel>, bool)> {
    let Ok(list) = env::var("AGENT_SENSOR_MATRIX_KERNELS") else {
        return Ok((kernels::KERNELS.iter().collect(), true));
    };
    let mut selected = Vec::new();
    let mut host = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "host" {
            host = true;
        } else if let Some(k) = kernels::KERNELS.iter().find(|k| k.name == name) {
            selected.push(k);
        } else {
            let known: Vec<&str> = kernels::KERNELS.iter().map(|k| k.name).collect();
            bail!(
                "AGENT_SENSOR_MATRIX_KERNELS names {name}; the matrix has {} and host",
                known.join(", ")
            );
        }
    }
    Ok((selected, host))
}

fn run_on_host(dir: &Path, cmd: &[PathBuf; 3]) -> anyhow::Result<Row> {
    fs::create_dir_all(dir)?;
    let t = Instant::now();
    // The scenario's own output is progress for the console, not records: standard error.
    let status = crate::run(Command::new(&cmd[0]).arg(dir).args(&cmd[1..]));
    let vm_error = status
        .err()
        .map(|e| format!("the scenario failed on the host: {e}"));
    let mut outcome = scenario::check(dir);
    // The host's uptime is not a boot time.
    outcome.timings.retain(|(what, _)| *what != "boot");
    Ok(Row {
        name: "host".to_owned(),
        wall: t.elapsed().as_secs_f64(),
        vm_error,
        outcome,
    })
}

fn run_vm(
    kernel: &kernels::Kernel,
    prepared: &kernels::Prepared,
    busybox: &Path,
    results: &Path,
    cmd: &[PathBuf; 3],
) -> anyhow::Result<Row> {
    let dir = results.join(kernel.name);
    fs::create_dir_all(&dir)?;
    // The VM sees this directory as /run/matrix and the host's / as its own root, so the
    // scenario runs the host's binaries at their host paths; but the VM's /tmp and /run are
    // its own tmpfs, so a binary there (a checkout under /tmp) is copied into this directory.
    let mut in_vm = Vec::new();
    for path in cmd {
        if [Path::new("/tmp"), Path::new("/run")]
            .iter()
            .any(|t| path.starts_with(t))
        {
            let name = path.file_name().context("a binary has a file name")?;
            fs::create_dir_all(dir.join("bin"))?;
            fs::copy(path, dir.join("bin").join(name))
                .with_context(|| format!("copying {} for the VM", path.display()))?;
            in_vm.push(Path::new("/run/matrix/bin").join(name));
        } else {
            in_vm.push(path.clone());
        }
    }
    fs::write(
        dir.join("run.sh"),
        format!(
            "#!/bin/sh\nexec {} /run/matrix {} {}\n",
            in_vm[0].display(),
            in_vm[1].display(),
            in_vm[2].display()
        ),
    )?;
    let initramfs = results.join(format!("{}-initramfs.cpio", kernel.name));
    initramfs::write(prepared, busybox, &initramfs)?;
    let (ended, wall) = qemu::boot(prepared, kernel.cmdline, &initramfs, &dir, VM_DEADLINE)?;
    let console = || qemu::console_tail(&dir, 15);
    let vm_error = match ended {
        qemu::Ended::TimedOut => Some(format!(
            "killed after {} s without powering off; console:\n{}",
            VM_DEADLINE.as_secs(),
            console()
        )),
        qemu::Ended::PoweredOff { status } if !status.success() => Some(format!(
            "QEMU exited with {status}: {}",
            scenario::last_line(&dir.join("qemu.log"))
        )),
        qemu::Ended::PoweredOff { .. } => match fs::read_to_string(dir.join("exit-status")) {
            Err(_) => Some(format!(
                "the VM powered off before the scenario ended; console:\n{}",
                console()
            )),
            Ok(code) if code.trim() != "0" => Some(format!(
                "the scenario exited {}; console:\n{}",
                code.trim(),
                console()
            )),
            Ok(_) => None,
        },
    };
    Ok(Row {
        name: kernel.name.to_owned(),
        wall: wall.as_secs_f64(),
        vm_error,
        outcome: scenario::check(&dir),
    })
}

fn report(rows: &[Row], total: f64) -> String {
    let mut out = format!("kernel matrix ({total:.0} s in all)\n");
    for row in rows {
        let o = &row.outcome;
        let verdict = if row.vm_error.is_none() && o.passed() {
            "PASS"
        } else {
            "FAIL"
        };
        let timings: Vec<String> = o
            .timings
            .iter()
            .map(|(what, s)| format!("{what} {s:.1} s"))
            .collect();
        let _ = writeln!(
            out,
            "\n{verdict} {} ({}): {:.1} s wall ({})",
            row.name,
            o.release,
            row.wall,
            timings.join(", ")
        );
        let _ = writeln!(out, "  active LSMs: {}", o.lsm);
        let _ = writeln!(out, "  offers: {}", o.offers.join(", "));
        if !o.lacks.is_empty() {
            let _ = writeln!(out, "  lacks: {}", o.lacks.join("; "));
        }
        if !o.programs.is_empty() {
            out += "  programs, as the probe verified them:\n";
            for p in &o.programs {
                let _ = writeln!(out, "    {p}");
            }
        }
        if let Some(e) = &row.vm_error {
            let _ = writeln!(out, "  FAIL vm: {}", e.replace('\n', "\n       "));
        }
        for c in &o.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {:<16} {}", c.name, c.detail);
        }
    }
    // A closing line in the form test runners use: every check of every kernel (a VM that
    // failed before its checks counts as one failure).
    let passed: usize = rows
        .iter()
        .map(|r| r.outcome.checks.iter().filter(|c| c.passed).count())
        .sum();
    let failed: usize = rows
        .iter()
        .map(|r| {
            r.outcome.checks.iter().filter(|c| !c.passed).count()
                + usize::from(r.vm_error.is_some())
        })
        .sum();
    let _ = write!(out, "\nmatrix: {passed} passed, {failed} failed");
    out
}
