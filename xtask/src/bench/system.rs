//! The host side of the bench: the cgroups it makes (and removes), what procfs says about a
//! process (CPU time, resident memory), waiting for an observer to settle, stopping processes,
//! and a description of the machine for the report.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The bench's cgroup v2 directory (under the cgroup2 mount): `agent` is declared an agent in
/// the sensor's manifest, `other` is not.
pub const CGROUP_DIR: &str = "agent-sensor-bench";

pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    fs::read_to_string("/proc/self/mounts")?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .context("no cgroup2 mount: the bench places the workload in a cgroup v2 directory")
}

/// The bench's cgroups, removed on drop.
pub struct Cgroups {
    pub parent: PathBuf,
    pub agent: PathBuf,
    pub other: PathBuf,
}

impl Cgroups {
    pub fn create() -> anyhow::Result<Self> {
        let parent = cgroup2_root()?.join(CGROUP_DIR);
        remove_cgroups(&parent);
        let me = Self {
            agent: parent.join("agent"),
            other: parent.join("other"),
            parent,
        };
        for dir in [&me.parent, &me.agent, &me.other] {
            fs::create_dir(dir).with_context(|| format!("making the cgroup {}", dir.display()))?;
        }
        Ok(me)
    }

    /// The agent cgroup's path as the sensor's manifest names it (relative to the mount).
    pub fn agent_selector() -> String {
        format!("/{CGROUP_DIR}/agent")
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        remove_cgroups(&self.parent);
    }
}

/// Removes a leftover bench cgroup tree, killing what still runs in it (only the bench's own
/// workloads run there). Reaped processes can take a moment to leave, so it retries briefly.
fn remove_cgroups(parent: &Path) {
    if !parent.exists() {
        return;
    }
    for dir in ["agent", "other"].map(|d| parent.join(d)) {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill has no memory preconditions; these are the bench's workloads.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = fs::remove_dir(parent.join("agent"));
        let _ = fs::remove_dir(parent.join("other"));
        if fs::remove_dir(parent).is_ok() || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if parent.exists() {
        eprintln!("xtask bench: could not remove {}", parent.display());
    }
}

/// User plus system CPU time of a process, all its threads, from `/proc/PID/stat`.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a stat line")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks * 1_000_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Resident memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[allow(
    clippy::struct_field_names,
    reason = "the names are results.json's keys, and say the unit there"
)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
    /// Of the file-backed pages: BPF maps mapped into the process (the ring buffer, whose data
    /// pages are mapped twice). Kernel memory, the same however busy the host.
    pub bpf_maps_kib: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        shmem_kib: field("RssShmem:"),
        bpf_maps_kib: bpf_maps_kib(pid)?,
    })
}

/// Resident KiB of the `anon_inode:bpf-map` mappings in `/proc/PID/smaps`.
fn bpf_maps_kib(pid: u32) -> anyhow::Result<u64> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        // A mapping's header line: "start-end perms offset dev inode [name]".
        if line
            .split_whitespace()
            .next()
            .is_some_and(|r| r.contains('-') && !r.ends_with(':'))
        {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map && let Some(kib) = line.strip_prefix("Rss:") {
            total += kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Polls `ready` every 50 ms until it says true, or fails after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready()? {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until `probe` (a file size, a CPU time) stops changing for `quiet`: an observer has
/// written out what it had.
pub fn settle(
    what: &str,
    quiet: Duration,
    timeout: Duration,
    mut probe: impl FnMut() -> u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = probe();
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = probe();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} was still busy after {timeout:?}");
        }
    }
}

pub fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Sends `signal` and waits up to `timeout` for the exit; kills it if it does not.
pub fn stop(child: &mut Child, signal: i32, timeout: Duration) -> anyhow::Result<ExitStatus> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pid {} did not stop within {timeout:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of running processes whose command name is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Other observers running (not started by the bench): their programs are attached too, so
/// they would slow every configuration, the unattached one included.
pub fn foreign_observers() -> Vec<String> {
    ["agent-sensor", "auditd", "bpftrace"]
        .iter()
        .flat_map(|name| {
            pids_named(name)
                .into_iter()
                .map(move |p| format!("{name} (pid {p})"))
        })
        .collect()
}

/// Busy CPU time of the whole host (`/proc/stat`: everything but idle and iowait), in ticks.
fn busy_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    fields.iter().take(8).sum::<u64>() - fields.get(3).unwrap_or(&0) - fields.get(4).unwrap_or(&0)
}

/// How many cores' worth of CPU the host kept busy over `window`.
pub fn busy_cores(window: Duration) -> f64 {
    let before = busy_ticks();
    thread::sleep(window);
    (busy_ticks() - before) as f64 / clock_ticks() as f64 / window.as_secs_f64()
}

/// CPU time the host spent on tasks (user, nice, system; not interrupts, which the kernel does
/// not charge to a task), and the part of it kernel threads spent: from the difference of two,
/// and what the bench's own processes used in between, what other work used.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    task_ticks: u64,
    kernel_thread_ns: u64,
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

impl CpuSnapshot {
    pub fn take() -> Self {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let task_ticks = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(3)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        Self {
            at: Instant::now(),
            task_ticks,
            kernel_thread_ns: kernel_thread_cpu_ns(),
        }
    }

    /// Cores' worth of CPU that neither kernel threads nor `ours_ns` (the bench's processes)
    /// account for since `earlier`: other people's work. Kernel threads are left out because
    /// some of them work for the run (writeback of an observer's output, kauditd).
    pub fn foreign_cores_since(&self, earlier: &CpuSnapshot, ours_ns: u64) -> f64 {
        let task_ns = (self.task_ticks - earlier.task_ticks) * 1_000_000_000 / clock_ticks();
        let kernel_ns = self
            .kernel_thread_ns
            .saturating_sub(earlier.kernel_thread_ns);
        let foreign_ns = task_ns.saturating_sub(kernel_ns).saturating_sub(ours_ns);
        foreign_ns as f64 / 1e9 / (self.at - earlier.at).as_secs_f64()
    }
}

/// CPU time of every kernel thread (they live long, so two scans compare).
fn kernel_thread_cpu_ns() -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // flags is field 9 of the line, 7 after the name; utime and stime 12 and 13.
            let flags: u64 = fields.get(6)?.parse().ok()?;
            (flags & PF_KTHREAD != 0).then(|| {
                let ticks: u64 =
                    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
                ticks * 1_000_000_000 / clock_ticks()
            })
        })
        .sum()
}

/// What else the host was doing just before a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Background {
    /// Observers the bench did not start (their programs slow every configuration).
    pub observers: Vec<String>,
    /// Cores busy in the half second before the run, with nothing of the bench's running.
    pub busy_cores: f64,
}

/// Background CPU below this is a quiet host (a few percent of two cores).
pub const QUIET_CORES: f64 = 0.25;

/// Waits before each run for other observers to end and the host's CPU to be quiet: on a
/// shared machine, other work would be measured as overhead. An observer still there after
/// two minutes is tolerated from then on (a long-lived one would stall every run); waiting for
/// quiet CPU gives up after 30 s per run, and after ten minutes in all. What a run was measured
/// alongside is recorded with it.
pub struct Quiet {
    tolerated: Vec<String>,
    budget: Duration,
}

const OBSERVER_PATIENCE: Duration = Duration::from_mins(2);
const CPU_PATIENCE: Duration = Duration::from_secs(30);

impl Quiet {
    pub fn new() -> Self {
        Self {
            tolerated: Vec::new(),
            budget: Duration::from_mins(10),
        }
    }

    pub fn wait(&mut self) -> Background {
        let started = Instant::now();
        let mut told = false;
        loop {
            let observers = foreign_observers();
            let waiting: Vec<&str> = observers
                .iter()
                .filter(|o| !self.tolerated.contains(o))
                .map(String::as_str)
                .collect();
            let waited = started.elapsed();
            if !waiting.is_empty() && waited < OBSERVER_PATIENCE {
                if !told {
                    eprintln!(
                        "xtask bench: waiting for other observers to end: {}",
                        waiting.join(", ")
                    );
                    told = true;
                }
                thread::sleep(Duration::from_millis(500));
                continue;
            }
            if !waiting.is_empty() {
                eprintln!(
                    "xtask bench: still running after {OBSERVER_PATIENCE:?}, measuring alongside: {}",
                    observers.join(", ")
                );
                self.tolerated.clone_from(&observers);
            }
            let busy_cores = busy_cores(Duration::from_millis(500));
            let patience = CPU_PATIENCE.min(self.budget);
            if busy_cores <= QUIET_CORES || waited >= patience {
                self.budget = self.budget.saturating_sub(started.elapsed());
                return Background {
                    observers,
                    busy_cores,
                };
            }
            if !told {
                eprintln!(
                    "xtask bench: waiting for the host to be quiet ({busy_cores:.2} cores busy)"
                );
                told = true;
            }
        }
    }
}

/// The one-minute load average.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What the report says about where it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub virtualisation: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown")
            .to_owned();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let mem_kib: f64 = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        // Firecracker and other hypervisors say so in DMI or the cpu flags.
        let virtualisation = if cpuinfo.contains(" hypervisor") {
            fs::read_to_string("/sys/class/dmi/id/sys_vendor").map_or_else(
                |_| "virtual machine".to_owned(),
                |v| format!("virtual machine ({})", v.trim()),
            )
        } else {
            "bare metal".to_owned()
        };
        Self {
            cpu,
            cores,
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel,
            virtualisation,
        }
    }
}
