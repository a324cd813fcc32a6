//! `cargo xtask bench`: the overhead benchmark. Runs the repo's workload under each
//! configuration (nothing attached, agent-sensor with the workload an agent and not, auditd,
//! bpftrace), interleaved over several repetitions with the order rotated, then the userspace
//! pipeline replay, the daemon's memory, and `verify` and `report` side by side over a 1 GiB
//! trail, and writes the report to `target/bench/`.
//!
//! Everything it changes on the host (cgroups, audit rules and settings, running observers) is
//! undone when it ends, also on error or Ctrl-C.
mod audit;
mod count;
mod kernel;
mod memory;
mod observers;
mod pipeline;
mod report;
mod system;
mod workload;

use std::{
    fs,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{Context as _, bail};

use observers::{Attached, AuditSettings, Config, Tools};
use report::{Results, Run};
use workload::{Mode, Workload};

/// A run during which other processes used more CPU than this (cores' worth) is repeated, up
/// to `ATTEMPTS` times: on two cores, other work is measured as overhead.
const DISTURBED_CORES: f64 = 0.3;
const ATTEMPTS: usize = 3;

/// The comparison tools, installed by the bench (not by the test set-up).
const PACKAGES: &[&str] = &["auditd", "bpftrace"];

#[derive(clap::Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "command-line flags, each a switch of its own"
)]
pub struct BenchArgs {
    /// Interleaved repetitions of every configuration [default: 5, 1 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Only these modes (comma-separated: open, exec, connect, mixed, tls, pipe).
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    /// Only these configurations (comma-separated: unattached, sensor-agent, sensor-enforce,
    /// sensor-agent-no-capture, sensor-not-agent, auditd, bpftrace); `unattached`, the
    /// baseline, is always run.
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Only the overhead: the workload runs and the in-kernel cost, no pipeline,
    /// classification, memory or audit measurements.
    #[arg(long)]
    overhead_only: bool,
    /// A tenth of the operations and one repetition unless --reps says otherwise: for trying
    /// the bench out, not for quoting.
    #[arg(long)]
    quick: bool,
    /// Copy the results into docs/benchmark.md.
    #[arg(long)]
    update_docs: bool,
    /// Only `verify` and `report` over the 1 GiB trail, printed (nothing loaded in the kernel).
    #[arg(long)]
    audit_only: bool,
    /// Measure nothing: write the report again from an earlier run's results.json.
    #[arg(long, value_name = "RESULTS_JSON")]
    report_from: Option<std::path::PathBuf>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(super) fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.report_from {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let results: Results =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        return write_report(root, dir, &results, args.update_docs);
    }
    if args.audit_only {
        crate::run(Command::new(crate::cargo()).args([
            "build",
            "--release",
            "-p",
            "agent-sensor",
        ]))?;
        let sensor = crate::sensor_binary(root);
        let dir = sensor.parent().expect("target/release").join("../bench");
        fs::create_dir_all(&dir)?;
        let measured = audit::measure(&sensor, &dir, args.quick)?;
        println!("{}", report::audit_markdown(&measured, "###"));
        return Ok(());
    }
    let started = Instant::now();
    crate::setup::all(root)?;
    crate::require_root("the bench loads kernel programs and runs auditd")?;
    // Without them the bench still measures the sensor, and the report says what is missing.
    if let Err(e) = crate::setup::debian_packages(PACKAGES) {
        eprintln!("xtask bench: cannot install {}: {e:#}", PACKAGES.join(", "));
    }
    crate::run(Command::new(crate::cargo()).args([
        "build",
        "--release",
        "-p",
        "agent-sensor",
        "-p",
        "sensor-workload",
    ]))?;
    if !args.overhead_only {
        pipeline::build()?;
    }
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 5 });
    let modes = if args.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        args.modes
            .iter()
            .map(|m| Mode::parse(m))
            .collect::<anyhow::Result<_>>()?
    };
    let mut configs = if args.configs.is_empty() {
        Config::ALL.to_vec()
    } else {
        args.configs
            .iter()
            .map(|c| Config::parse(c))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if !configs.contains(&Config::Unattached) {
        configs.insert(0, Config::Unattached);
    }
    // Ctrl-C ends the current run (the children get it too) and the bench cleans up.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };

    let target_dir = crate::sensor_binary(root)
        .parent()
        .and_then(Path::parent)
        .expect("target/release/agent-sensor")
        .to_owned();
    let dir = target_dir.join("bench");
    fs::create_dir_all(&dir)?;
    let cgroups = system::Cgroups::create()?;
    let mut bench = Bench {
        tools: prepare(
            &dir,
            root,
            &cgroups,
            &target_dir.join("release/sensor-workload"),
        )?,
        workload: Workload {
            binary: target_dir.join("release/sensor-workload"),
            target: dir.join("open-target"),
            tls_server: tls_server(&dir, &cgroups)?,
        },
        cgroups,
        quiet: system::Quiet::new(),
    };
    fs::write(
        &bench.workload.target,
        b"the file the open workload opens\n",
    )?;

    let load_start = system::load_average();
    let mut runs = Vec::new();
    let total = reps
        * modes
            .iter()
            .map(|m| m.configs().iter().filter(|c| configs.contains(c)).count())
            .sum::<usize>();
    for rep in 0..reps {
        for (i, &mode) in modes.iter().enumerate() {
            // Rotate the order each time, so no configuration always follows another.
            let mut order: Vec<Config> = mode
                .configs()
                .iter()
                .copied()
                .filter(|c| configs.contains(c))
                .collect();
            let n = order.len();
            if n == 0 {
                continue;
            }
            order.rotate_left((rep + i) % n);
            for config in order {
                check_interrupt()?;
                if let Some(why) = bench.unavailable(config) {
                    eprintln!("xtask bench: skipping {}: {why}", config.label());
                    continue;
                }
                let ops = if args.quick {
                    mode.ops() / 10
                } else {
                    mode.ops()
                };
                let run = bench
                    .run_measured(rep, mode, ops, config)
                    .with_context(|| {
                        format!(
                            "repetition {}, {} / {}",
                            rep + 1,
                            mode.name(),
                            config.label()
                        )
                    })?;
                progress(runs.len() + 1, total, &run, &runs);
                runs.push(run);
            }
        }
    }

    check_interrupt()?;
    let kernel_cost = kernel::measure(
        &bench.tools,
        &bench.workload,
        &bench.cgroups,
        &modes,
        &configs,
        args.quick,
    )
    .map_err(|e| format!("{e:#}"));
    if let Err(e) = &kernel_cost {
        eprintln!("xtask bench: in-kernel cost measurement failed: {e}");
    }
    let skipped = || "not measured (--overhead-only)".to_owned();
    let (memory, pipeline, classify, audit) = if args.overhead_only {
        (
            Err(skipped()),
            Err(skipped()),
            Err(skipped()),
            Err(skipped()),
        )
    } else {
        check_interrupt()?;
        let memory = memory::measure(&bench.tools, &bench.workload).map_err(|e| format!("{e:#}"));
        if let Err(e) = &memory {
            eprintln!("xtask bench: memory measurement failed: {e}");
        }
        check_interrupt()?;
        let (pipeline, classify) = match pipeline::measure(&dir, args.quick) {
            Ok(m) => (
                Ok(m.pipeline),
                m.classify
                    .ok_or_else(|| "the pipeline benchmark printed no classification".to_owned()),
            ),
            Err(e) => (Err(format!("{e:#}")), Err(format!("{e:#}"))),
        };

        check_interrupt()?;
        let audit =
            audit::measure(&bench.tools.sensor, &dir, args.quick).map_err(|e| format!("{e:#}"));
        if let Err(e) = &audit {
            eprintln!("xtask bench: the audit measurement failed: {e}");
        }
        (memory, pipeline, classify, audit)
    };

    let results = Results {
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: commit(root),
        modified: modified(root),
        reps,
        quick: args.quick,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        machine: system::Machine::describe(),
        bpftrace: bench.tools.bpftrace.clone(),
        auditd: bench
            .tools
            .audit
            .clone()
            .map(|_| observers::auditd_version()),
        load_start,
        load_end: system::load_average(),
        runs,
        kernel_cost,
        memory,
        pipeline,
        classify,
        audit,
    };
    fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    write_report(root, &dir, &results, args.update_docs)
}

/// The Markdown report into `dir/results.md` and standard output, and into docs/benchmark.md if
/// asked.
fn write_report(
    root: &Path,
    dir: &Path,
    results: &Results,
    update_docs: bool,
) -> anyhow::Result<()> {
    let md = format!(
        "# agent-sensor benchmark results\n\n{}",
        results.markdown(2)
    );
    fs::write(dir.join("results.md"), &md)?;
    println!("{md}");
    eprintln!("xtask bench: wrote {}", dir.join("results.md").display());
    if update_docs {
        let docs = root.join("docs/benchmark.md");
        report::update_docs(&docs, &results.markdown(3))?;
        eprintln!("xtask bench: updated {}", docs.display());
    }
    Ok(())
}

/// Where distributions keep OpenSSL 3's library (the `tls` mode's client loads it by name).
const SYSTEM_LIBSSL: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

/// The `tls` mode's server: a throwaway certificate, and a copy of the system's libssl (another
/// file, so the sensor's probes on the system's never fire in the server).
fn tls_server(dir: &Path, cgroups: &system::Cgroups) -> anyhow::Result<workload::TlsServer> {
    let (cert, key) = (dir.join("tls-server.pem"), dir.join("tls-server.key"));
    crate::run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key.to_string_lossy(),
        "-out",
        &cert.to_string_lossy(),
    ]))
    .context("making the tls mode's certificate (openssl)")?;
    let system = SYSTEM_LIBSSL
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("no libssl.so.3 (OpenSSL 3) in the usual places: the tls mode needs it")?;
    let libssl = dir.join("tls-server-lib/libssl.so.3");
    fs::create_dir_all(libssl.parent().expect("a parent"))?;
    // A new file (a new inode), even where an earlier bench left one.
    let _ = fs::remove_file(&libssl);
    fs::copy(system, &libssl).with_context(|| format!("copying {}", system.display()))?;
    Ok(workload::TlsServer {
        cgroup: cgroups.other.clone(),
        cert,
        key,
        libssl,
    })
}

/// Writes the sensor's manifest and configuration, and finds out which comparison tools can run.
fn prepare(
    dir: &Path,
    root: &Path,
    cgroups: &system::Cgroups,
    workload: &Path,
) -> anyhow::Result<Tools> {
    let manifest = dir.join("agents.yaml");
    let agent = format!(
        "agents:
  - id: bench-workload
    name: Benchmark workload
    purpose: The workload cargo xtask bench measures
    owners: {{ business: sre@example.com, technical: sre@example.com }}
    team: platform
    data_sensitivity: internal
    selectors:
      - cgroup: {}
",
        system::Cgroups::agent_selector()
    );
    fs::write(
        &manifest,
        format!("# Written by cargo xtask bench: the workload's cgroup is an agent.\n{agent}"),
    )?;
    // The same agent, its policy enforced in the kernel and allowing all the workload does:
    // its loopback connects (egress, cgroup programs), its programs and its opens (executables
    // and files in kill mode, the exec and open exit programs' checks: this machine kind
    // refuses BPF LSM for enforce mode). `/**` allows every file, yet each open is walked and
    // looked up, as an allowed open of a narrower rule is.
    let enforce_manifest = dir.join("agents-enforce.yaml");
    let workload =
        fs::canonicalize(workload).with_context(|| format!("resolving {}", workload.display()))?;
    let true_path = fs::canonicalize("/bin/true").context("resolving /bin/true")?;
    fs::write(
        &enforce_manifest,
        format!(
            "# Written by cargo xtask bench: the workload's cgroup is an agent whose policy the \
             kernel enforces, allowing all it does.\n{agent}    policy:
      egress:
        mode: enforce
        allow: [{{cidr: 127.0.0.0/8}}]
      executables:
        mode: kill
        allow: [{:?}, {:?}]
      files:
        mode: kill
        read: {{paths: [\"/**\"]}}
        write: {{paths: [\"/**\"]}}
",
            workload.display().to_string(),
            true_path.display().to_string()
        ),
    )?;
    let tls_manifest = dir.join("agents-tls.yaml");
    fs::write(
        &tls_manifest,
        format!(
            "# Written by cargo xtask bench: the workload's cgroup is an agent, its TLS \
             plaintext captured (the tls mode).\n{agent}    capture: {{ tls: true, content: full }}\n"
        ),
    )?;
    let stdio_manifest = dir.join("agents-stdio.yaml");
    fs::write(
        &stdio_manifest,
        format!(
            "# Written by cargo xtask bench: the workload's cgroup is an agent, its pipe traffic              captured (the pipe mode).
{agent}    capture: {{ stdio: true, content: full }}
"
        ),
    )?;
    let sensor_config = dir.join("sensor.toml");
    // Its own registration socket, so the bench never touches a sensor that runs anyway.
    fs::write(
        &sensor_config,
        format!(
            "# Written by cargo xtask bench: defaults, except the registration socket.\n\
             [identities]\nregistration_socket = \"{}\"\n",
            dir.join("register.sock").display()
        ),
    )?;
    let audit = AuditSettings::probe();
    if let Ok(settings) = &audit {
        // Rules an interrupted earlier bench may have left.
        settings.restore();
    }
    Ok(Tools {
        dir: dir.to_owned(),
        sensor: crate::sensor_binary(root),
        sensor_config,
        manifest,
        enforce_manifest,
        tls_manifest,
        stdio_manifest,
        agent_cgroup: cgroups.agent.clone(),
        audit,
        bpftrace: observers::bpftrace_version(),
    })
}

/// What every run needs.
struct Bench {
    tools: Tools,
    workload: Workload,
    cgroups: system::Cgroups,
    quiet: system::Quiet,
}

impl Bench {
    fn unavailable(&self, config: Config) -> Option<String> {
        match config {
            Config::Auditd => self.tools.audit.as_ref().err().cloned(),
            Config::Bpftrace => self.tools.bpftrace.as_ref().err().cloned(),
            _ => None,
        }
    }

    /// A run not disturbed by other work, if three attempts give one; otherwise the last.
    fn run_measured(
        &mut self,
        rep: usize,
        mode: Mode,
        ops: u64,
        config: Config,
    ) -> anyhow::Result<Run> {
        let mut attempts = 1;
        loop {
            let run = self.run_one(rep, mode, ops, config)?;
            if run.foreign_cores <= DISTURBED_CORES || attempts == ATTEMPTS {
                return Ok(Run { attempts, ..run });
            }
            eprintln!(
                "xtask bench: other work used {:.2} cores during {} / {}: repeating it",
                run.foreign_cores,
                mode.name(),
                config.label()
            );
            attempts += 1;
            check_interrupt()?;
        }
    }

    /// One workload run under `config`, with its observer started before and stopped after.
    fn run_one(&mut self, rep: usize, mode: Mode, ops: u64, config: Config) -> anyhow::Result<Run> {
        // Earlier runs' writes must not be flushed during this one.
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let background = self.quiet.wait();
        let mut foreign_observers = background.observers;
        let attached = Attached::start(config, mode, &self.tools, &self.workload)?;
        let cgroup = if config.workload_is_agent() {
            &self.cgroups.agent
        } else {
            &self.cgroups.other
        };
        let observer_before = attached.own_cpu_ns();
        let before = system::CpuSnapshot::take();
        let report = self.workload.run(mode, ops, cgroup)?;
        let after = system::CpuSnapshot::take();
        let ours = (report.cpu_seconds * 1e9) as u64 + (attached.own_cpu_ns() - observer_before);
        let foreign_cores = after.foreign_cores_since(&before, ours);
        let observation = attached.finish(&report, &self.workload.target)?;
        // One that started meanwhile counts too (ours are gone by now).
        for o in system::foreign_observers() {
            if !foreign_observers.contains(&o) {
                foreign_observers.push(o);
            }
        }
        Ok(Run {
            rep,
            mode,
            config,
            ops: report.ops,
            ops_per_sec: report.ops_per_sec,
            expected: report.expected(),
            delivered: observation.delivered.map(|d| d.events),
            records: observation.delivered.map(|d| d.records),
            lost_reported: observation.lost_reported,
            consumer_cpu_ns: observation.consumer_cpu_ns,
            foreign_observers,
            background_cores: background.busy_cores,
            foreign_cores,
            attempts: 1,
        })
    }
}

fn progress(n: usize, total: usize, run: &Run, earlier: &[Run]) {
    let base = earlier
        .iter()
        .find(|r| r.rep == run.rep && r.mode == run.mode && r.config == Config::Unattached);
    let ratio = base.map_or(String::new(), |b| {
        format!(" ({:.3} of unattached)", run.ops_per_sec / b.ops_per_sec)
    });
    let delivered = run.delivered.map_or(String::new(), |d| {
        format!(", delivered {}/{}", d.total(), run.expected.total())
    });
    eprintln!(
        "xtask bench: [{n}/{total}] rep {} {} / {}: {:.0} ops/s{ratio}{delivered}",
        run.rep + 1,
        run.mode.name(),
        run.config.label(),
        run.ops_per_sec,
    );
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The commit measured.
fn commit(root: &Path) -> String {
    command_output(
        "git",
        &[
            "-C",
            &root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
}

/// Whether tracked files differed from the commit.
fn modified(root: &Path) -> bool {
    let root = root.to_string_lossy();
    let args = ["-C", &root, "status", "--porcelain", "--untracked-files=no"];
    Command::new("git")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}
