//! The configurations a workload run is measured under, and the observers they start: nothing,
//! agent-sensor (the workload an agent, or not), auditd, bpftrace. An observer is started and
//! known to be watching before the workload starts; after it, the observer is left to write out
//! what it has, its CPU time is read, it is stopped, and its output is counted. Dropping a
//! running observer stops it and undoes what it changed (audit rules, audit settings).
use std::{
    collections::{BTreeMap, HashSet},
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::{
    count::{self, Delivered, Expect},
    system::{self, file_size, settle, wait_until},
    workload::{AUDIT_LOGIN_UID, Mode, Report, Workload},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    Unattached,
    /// In the `tls` mode, with the agent's TLS capture on.
    SensorAgent,
    /// The workload an agent whose policy the kernel enforces, allowing all it does: an egress
    /// rule in `enforce` mode (loopback allowed) and an executables rule in `kill` mode (its
    /// programs allowed; this machine kind has no BPF LSM for `enforce`).
    SensorEnforce,
    /// `tls` mode only: the workload an agent whose TLS capture is off (no TLS probes at all).
    SensorAgentNoCapture,
    /// In the `tls` mode, another agent has TLS capture on: the probes are attached to the
    /// library the workload maps, and fire for it, but copy nothing.
    SensorNotAgent,
    Auditd,
    Bpftrace,
}

impl Config {
    pub const ALL: [Config; 7] = [
        Config::Unattached,
        Config::SensorAgent,
        Config::SensorEnforce,
        Config::SensorAgentNoCapture,
        Config::SensorNotAgent,
        Config::Auditd,
        Config::Bpftrace,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Config::Unattached => "nothing attached",
            Config::SensorAgent => "agent-sensor, workload is an agent",
            Config::SensorEnforce => "agent-sensor, agent with enforced policy (all allowed)",
            Config::SensorAgentNoCapture => "agent-sensor, workload is an agent, capture off",
            Config::SensorNotAgent => "agent-sensor, workload not an agent",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace",
        }
    }

    /// The workload runs in the agent cgroup everywhere except where it must not be one.
    pub fn workload_is_agent(self) -> bool {
        self != Config::SensorNotAgent
    }

    /// The name `--configs` takes.
    pub fn name(self) -> &'static str {
        match self {
            Config::Unattached => "unattached",
            Config::SensorAgent => "sensor-agent",
            Config::SensorEnforce => "sensor-enforce",
            Config::SensorAgentNoCapture => "sensor-agent-no-capture",
            Config::SensorNotAgent => "sensor-not-agent",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace",
        }
    }

    pub fn parse(name: &str) -> anyhow::Result<Config> {
        Config::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .with_context(|| {
                let names: Vec<&str> = Config::ALL.iter().map(|c| c.name()).collect();
                format!("unknown configuration {name:?}: {}", names.join(", "))
            })
    }
}

/// Why a comparison tool cannot run here, when it cannot.
pub type Availability<T> = Result<T, String>;

/// What the observers need, prepared once by the bench.
pub struct Tools {
    /// Where logs and outputs go (`target/bench`).
    pub dir: PathBuf,
    pub sensor: PathBuf,
    pub sensor_config: PathBuf,
    pub manifest: PathBuf,
    /// The same agent with an enforced policy that allows everything the workload does.
    pub enforce_manifest: PathBuf,
    /// The same agent with TLS capture on (the `tls` mode's manifest).
    pub tls_manifest: PathBuf,
    /// The agent with stdio (pipe) capture on (the `pipe` mode).
    pub stdio_manifest: PathBuf,
    pub agent_cgroup: PathBuf,
    pub audit: Availability<AuditSettings>,
    pub bpftrace: Availability<String>,
}

/// What an observer delivered about a run, and what it cost it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observation {
    pub delivered: Option<Delivered>,
    /// Losses the observer itself reported (sensor gap records, audit's lost counter,
    /// bpftrace's "Lost N events").
    pub lost_reported: Option<u64>,
    /// CPU time of the observer's own processes while the workload ran and it caught up.
    pub consumer_cpu_ns: Option<u64>,
}

/// A started observer.
pub enum Attached {
    Nothing,
    Sensor(SensorRun),
    Auditd(AuditRun),
    Bpftrace(BpftraceRun),
}

impl Attached {
    /// Starts `config`'s observer for a run of `mode`.
    pub fn start(
        config: Config,
        mode: Mode,
        tools: &Tools,
        workload: &Workload,
    ) -> anyhow::Result<Self> {
        Ok(match config {
            Config::Unattached => Attached::Nothing,
            Config::SensorAgent | Config::SensorNotAgent if mode.https() => {
                Attached::Sensor(SensorRun::start_with(tools, "sensor", &tools.tls_manifest)?)
            }
            Config::SensorAgent | Config::SensorNotAgent if mode == Mode::Pipe => Attached::Sensor(
                SensorRun::start_with(tools, "sensor", &tools.stdio_manifest)?,
            ),
            Config::SensorAgent | Config::SensorNotAgent | Config::SensorAgentNoCapture => {
                Attached::Sensor(SensorRun::start(tools, "sensor")?)
            }
            Config::SensorEnforce => Attached::Sensor(SensorRun::start_with(
                tools,
                "sensor-enforce",
                &tools.enforce_manifest,
            )?),
            Config::Auditd => Attached::Auditd(AuditRun::start(tools)?),
            Config::Bpftrace => Attached::Bpftrace(BpftraceRun::start(tools, workload)?),
        })
    }

    /// The observer's main process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Attached::Nothing => None,
            Attached::Sensor(s) => Some(s.child.id()),
            Attached::Auditd(a) => Some(a.auditd.id()),
            Attached::Bpftrace(b) => Some(b.child.id()),
        }
    }

    /// CPU time so far of the observer's own processes (not kernel threads such as kauditd).
    pub fn own_cpu_ns(&self) -> u64 {
        self.pid().map_or(0, |pid| system::cpu_ns(pid).unwrap_or(0))
    }

    /// Waits for the observer to catch up, stops it and counts what it delivered.
    pub fn finish(self, report: &Report, target: &Path) -> anyhow::Result<Observation> {
        let target = target.to_str().context("a UTF-8 target path")?;
        let expect = Expect { report, target };
        match self {
            Attached::Nothing => Ok(Observation::default()),
            Attached::Sensor(s) => s.finish(&expect),
            Attached::Auditd(a) => a.finish(&expect),
            Attached::Bpftrace(b) => b.finish(&expect),
        }
    }
}

/// agent-sensor, writing to its durable file sink.
pub struct SensorRun {
    child: Child,
    pub output: PathBuf,
    cpu_start: u64,
}

impl SensorRun {
    /// Starts the sensor with the bench manifest and waits until it observes (its start record
    /// is written after every program is attached) and has finished starting up.
    pub fn start(tools: &Tools, name: &str) -> anyhow::Result<Self> {
        Self::start_with(tools, name, &tools.manifest)
    }

    /// [`SensorRun::start`] with another identity manifest.
    pub fn start_with(tools: &Tools, name: &str, manifest: &Path) -> anyhow::Result<Self> {
        let output = tools.dir.join(format!("{name}.jsonl"));
        let _ = fs::remove_file(&output);
        let log = fs::File::create(tools.dir.join(format!("{name}.log")))?;
        let child = Command::new(&tools.sensor)
            .arg("run")
            .arg("--config")
            .arg(&tools.sensor_config)
            .arg("--identities")
            .arg(manifest)
            .arg("--output")
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", tools.sensor.display()))?;
        let mut run = Self {
            child,
            output,
            cpu_start: 0,
        };
        let log_path = tools.dir.join(format!("{name}.log"));
        wait_until("the sensor's start record", Duration::from_mins(1), || {
            if let Some(status) = run.child.try_wait()? {
                bail!(
                    "agent-sensor exited with {status} while starting:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            Ok(fs::read_to_string(&run.output).is_ok_and(|o| o.contains("\"sensor_start\"")))
        })?;
        // Let the start-up work (snapshot, selector scan) finish before anything is measured.
        thread::sleep(Duration::from_secs(1));
        run.cpu_start = system::cpu_ns(run.pid())?;
        Ok(run)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the sensor has written out everything it received.
    pub fn catch_up(&self) -> anyhow::Result<()> {
        settle(
            "agent-sensor",
            Duration::from_millis(400),
            Duration::from_mins(5),
            || file_size(&self.output),
        )
    }

    /// SIGINT, as an operator stops it; it drains, writes its stop record and exits 0.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let status = system::stop(&mut self.child, libc::SIGINT, Duration::from_mins(1))?;
        if !status.success() {
            bail!("agent-sensor exited with {status}");
        }
        Ok(())
    }

    fn finish(mut self, expect: &Expect) -> anyhow::Result<Observation> {
        self.catch_up()?;
        let cpu = system::cpu_ns(self.pid())? - self.cpu_start;
        self.stop()?;
        let (delivered, lost) = count::sensor_output(&self.output, expect)?;
        // Outputs of the big runs are gigabytes; the counts are what is kept.
        let _ = fs::remove_file(&self.output);
        Ok(Observation {
            delivered: Some(delivered),
            lost_reported: Some(lost),
            consumer_cpu_ns: Some(cpu),
        })
    }
}

impl Drop for SensorRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = system::stop(&mut self.child, libc::SIGINT, Duration::from_secs(30));
        }
    }
}

/// The audit key the bench's rules carry.
pub const AUDIT_KEY: &str = "agent-sensor-bench";

/// The kernel's audit settings before the bench, restored after every auditd run.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    enabled: String,
    failure: String,
    backlog_limit: String,
    backlog_wait_time: String,
}

fn audit_status() -> anyhow::Result<BTreeMap<String, String>> {
    let out = Command::new("auditctl")
        .arg("-s")
        .output()
        .context("running auditctl -s")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("auditctl").args(args).output()?;
    if !out.status.success() {
        bail!(
            "auditctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl AuditSettings {
    /// Whether the bench can run its own auditd here, and the settings to restore if so.
    pub fn probe() -> Availability<Self> {
        let on_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        };
        if !on_path("auditd") || !on_path("auditctl") {
            return Err("auditd is not installed (apt-get install auditd)".to_owned());
        }
        let status =
            audit_status().map_err(|e| format!("the Linux audit framework is unavailable: {e}"))?;
        let get = |k: &str| status.get(k).cloned().unwrap_or_default();
        if get("pid") != "0" {
            return Err(format!(
                "an audit daemon (pid {}) already owns the audit socket; stop it to compare",
                get("pid")
            ));
        }
        if get("enabled") == "2" {
            return Err("the audit configuration is locked (enabled 2) until reboot".to_owned());
        }
        Ok(Self {
            enabled: get("enabled"),
            failure: get("failure"),
            backlog_limit: get("backlog_limit"),
            backlog_wait_time: get("backlog_wait_time"),
        })
    }

    /// No bench rules, and the settings as they were.
    pub fn restore(&self) {
        let _ = auditctl(&["-D", "-k", AUDIT_KEY]);
        let _ = auditctl(&["-e", &self.enabled]);
        let _ = auditctl(&["-f", &self.failure]);
        let _ = auditctl(&["-b", &self.backlog_limit]);
        let _ = auditctl(&["--backlog_wait_time", &self.backlog_wait_time]);
    }
}

/// auditd with the bench's rules: the syscalls the workload's operations are made of, for the
/// workload's audit login uid, with Debian's default buffer settings. Writes its own log, kept
/// whole (no rotation) so every record can be counted.
pub struct AuditRun {
    auditd: Child,
    settings: AuditSettings,
    log: PathBuf,
    kauditd: Option<u32>,
    cpu_start: u64,
    lost_start: u64,
}

impl AuditRun {
    fn start(tools: &Tools) -> anyhow::Result<Self> {
        let settings = tools.audit.clone().map_err(anyhow::Error::msg)?;
        let dir = tools.dir.join("auditd");
        let plugins = dir.join("plugins");
        fs::create_dir_all(&plugins)?;
        let log = dir.join("audit.log");
        let _ = fs::remove_file(&log);
        let conf = dir.join("auditd.conf");
        fs::write(&conf, auditd_conf(&log, &plugins))?;
        // auditd refuses a configuration others can write.
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o600))?;
        let auditd = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("auditd.stderr"))?)
            .spawn()
            .context("starting auditd")?;
        let mut run = Self {
            auditd,
            settings,
            log,
            kauditd: system::pids_named("kauditd").first().copied(),
            cpu_start: 0,
            lost_start: 0,
        };
        let pid = run.auditd.id().to_string();
        wait_until("auditd to register", Duration::from_secs(15), || {
            if let Some(status) = run.auditd.try_wait()? {
                bail!("auditd exited with {status}; see {}", dir.display());
            }
            Ok(audit_status()?.get("pid") == Some(&pid))
        })?;
        // Debian's shipped defaults (/etc/audit/rules.d/audit.rules).
        auditctl(&["-b", "8192"])?;
        auditctl(&["--backlog_wait_time", "60000"])?;
        auditctl(&["-f", "1"])?;
        let auid = format!("auid={AUDIT_LOGIN_UID}");
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "openat",
            "-S",
            "execve",
            "-S",
            "connect",
            "-S",
            "accept",
            "-S",
            "accept4",
            "-F",
            &auid,
            "-k",
            AUDIT_KEY,
        ])?;
        run.lost_start = Self::lost()?;
        run.cpu_start = run.cpu()?;
        Ok(run)
    }

    /// The kernel's count of audit records lost (`auditctl -s`).
    fn lost() -> anyhow::Result<u64> {
        Ok(audit_status()?
            .get("lost")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0))
    }

    /// auditd's CPU time and the kernel's kauditd thread's (which formats every record).
    fn cpu(&self) -> anyhow::Result<u64> {
        let kauditd = self.kauditd.map_or(Ok(0), system::cpu_ns)?;
        Ok(system::cpu_ns(self.auditd.id())? + kauditd)
    }

    fn finish(mut self, expect: &Expect) -> anyhow::Result<Observation> {
        settle(
            "auditd",
            Duration::from_millis(500),
            Duration::from_mins(5),
            || file_size(&self.log),
        )?;
        let cpu = self.cpu()? - self.cpu_start;
        let lost = Self::lost()? - self.lost_start;
        auditctl(&["-D", "-k", AUDIT_KEY])?;
        let status = system::stop(&mut self.auditd, libc::SIGTERM, Duration::from_secs(30))?;
        if !status.success() {
            bail!("auditd exited with {status}");
        }
        let delivered = count::audit_log(&self.log, AUDIT_KEY, expect)?;
        let _ = fs::remove_file(&self.log);
        Ok(Observation {
            delivered: Some(delivered),
            lost_reported: Some(lost),
            consumer_cpu_ns: Some(cpu),
        })
    }
}

impl Drop for AuditRun {
    fn drop(&mut self) {
        let _ = auditctl(&["-D", "-k", AUDIT_KEY]);
        if matches!(self.auditd.try_wait(), Ok(None)) {
            let _ = system::stop(&mut self.auditd, libc::SIGTERM, Duration::from_secs(30));
        }
        // auditd leaves auditing enabled when it exits.
        self.settings.restore();
    }
}

fn auditd_conf(log: &Path, plugins: &Path) -> String {
    format!(
        "# Written by cargo xtask bench: Debian's defaults, but its own log, never rotated
# and never suspended for space, so every record of a run stays countable.
local_events = yes
write_logs = yes
log_file = {}
log_format = ENRICHED
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 0
max_log_file_action = IGNORE
num_logs = 0
priority_boost = 4
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
plugin_dir = {}
q_depth = 2000
overflow_action = SYSLOG
end_of_event_timeout = 2
",
        log.display(),
        plugins.display()
    )
}

/// One line per event, for processes of the bench's agent cgroup only (bpftrace filters in
/// the kernel too), on the same syscall tracepoints. `openat` comes last: probes attach in
/// order, so once an open is printed every probe is attached.
const BPFTRACE_SCRIPT: &str = r#"tracepoint:syscalls:sys_enter_execve /cgroup == cgroupid("CGROUP")/ { printf("exec %d %s\n", pid, str(args->filename)); }
tracepoint:syscalls:sys_enter_connect /cgroup == cgroupid("CGROUP")/ { printf("connect %d\n", pid); }
tracepoint:syscalls:sys_enter_accept, tracepoint:syscalls:sys_enter_accept4 /cgroup == cgroupid("CGROUP")/ { printf("accept %d\n", pid); }
tracepoint:syscalls:sys_enter_openat /cgroup == cgroupid("CGROUP")/ { printf("open %d %s\n", pid, str(args->filename)); }
"#;

/// bpftrace printing one line per event to a file.
pub struct BpftraceRun {
    child: Child,
    output: PathBuf,
    stderr: PathBuf,
    /// The workloads run to check the probes are attached.
    probe_pids: HashSet<u32>,
    cpu_start: u64,
}

impl BpftraceRun {
    fn start(tools: &Tools, workload: &Workload) -> anyhow::Result<Self> {
        if let Err(why) = &tools.bpftrace {
            bail!("{why}");
        }
        let cgroup = tools.agent_cgroup.to_str().context("a UTF-8 cgroup path")?;
        let script = tools.dir.join("bench.bt");
        fs::write(&script, BPFTRACE_SCRIPT.replace("CGROUP", cgroup))?;
        let output = tools.dir.join("bpftrace.out");
        let stderr = tools.dir.join("bpftrace.stderr");
        let _ = fs::remove_file(&output);
        let child = Command::new("bpftrace")
            .arg("-o")
            .arg(&output)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr)?)
            .spawn()
            .context("starting bpftrace")?;
        let mut run = Self {
            child,
            output,
            stderr,
            probe_pids: HashSet::new(),
            cpu_start: 0,
        };
        // bpftrace compiles, then attaches; an open by a probe workload shows when it is done.
        wait_until("bpftrace to attach", Duration::from_mins(2), || {
            if let Some(status) = run.child.try_wait()? {
                bail!(
                    "bpftrace exited with {status}:\n{}",
                    fs::read_to_string(&run.stderr).unwrap_or_default()
                );
            }
            let probe = workload.run(Mode::Open, 1, &tools.agent_cgroup)?;
            run.probe_pids.insert(probe.pid);
            thread::sleep(Duration::from_millis(100));
            let needle = format!("open {} ", probe.pid);
            Ok(fs::read_to_string(&run.output).is_ok_and(|o| o.contains(&needle)))
        })?;
        run.cpu_start = system::cpu_ns(run.child.id())?;
        Ok(run)
    }

    fn finish(mut self, expect: &Expect) -> anyhow::Result<Observation> {
        // Its output is buffered: wait for its CPU time to stop growing instead.
        let pid = self.child.id();
        settle(
            "bpftrace",
            Duration::from_millis(400),
            Duration::from_mins(5),
            || system::cpu_ns(pid).unwrap_or(0),
        )?;
        let cpu = system::cpu_ns(pid)? - self.cpu_start;
        let status = system::stop(&mut self.child, libc::SIGINT, Duration::from_secs(30))?;
        if !status.success() {
            bail!("bpftrace exited with {status}");
        }
        let delivered = count::bpftrace_output(&self.output, expect, &self.probe_pids)?;
        let lost = fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("Lost ")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        let _ = fs::remove_file(&self.output);
        Ok(Observation {
            delivered: Some(delivered),
            lost_reported: Some(lost),
            consumer_cpu_ns: Some(cpu),
        })
    }
}

impl Drop for BpftraceRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = system::stop(&mut self.child, libc::SIGINT, Duration::from_secs(30));
        }
    }
}

/// bpftrace's version, or why it cannot be used.
pub fn bpftrace_version() -> Availability<String> {
    let out = Command::new("bpftrace")
        .arg("--version")
        .output()
        .map_err(|e| format!("bpftrace cannot be started: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bpftrace --version failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// auditd's version (for the report).
pub fn auditd_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "auditd"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).into_owned(),
        )
}
