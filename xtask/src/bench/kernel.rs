//! What the BPF observers cost inside the kernel, per operation: the run time of their own
//! programs, which the kernel measures itself when `kernel.bpf_stats_enabled` is set. Unlike
//! the throughput ratio it is not blurred by this VM's drifting CPU speed, and it says where
//! an observer's cost lies (its probes, or delivering the events). Measured in one extra run
//! per mode and configuration after the repetitions: the statistics' two clock reads per
//! program run would otherwise add to the overhead being measured.
use std::{fs, path::Path};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    observers::{Attached, Config, Tools},
    system::Cgroups,
    workload::{Mode, Workload},
};

/// The BPF configurations; the others have no programs to measure.
pub const CONFIGS: [Config; 5] = [
    Config::SensorAgent,
    Config::SensorEnforce,
    Config::SensorAgentNoCapture,
    Config::SensorNotAgent,
    Config::Bpftrace,
];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelCost {
    pub mode: Mode,
    pub config: Config,
    pub ops: u64,
    /// Program runs, all programs together.
    pub runs: u64,
    /// Their run time, nanoseconds.
    pub run_ns: u64,
}

impl KernelCost {
    pub fn ns_per_op(&self) -> f64 {
        self.run_ns as f64 / self.ops as f64
    }

    pub fn runs_per_op(&self) -> f64 {
        self.runs as f64 / self.ops as f64
    }
}

/// Runs each mode once under each BPF configuration of `configs` with the kernel's statistics
/// on.
pub fn measure(
    tools: &Tools,
    workload: &Workload,
    cgroups: &Cgroups,
    modes: &[Mode],
    configs: &[Config],
    quick: bool,
) -> anyhow::Result<Vec<KernelCost>> {
    let _stats = StatsEnabled::new()?;
    let mut costs = Vec::new();
    for &mode in modes {
        for config in CONFIGS.into_iter().filter(|c| configs.contains(c)) {
            super::check_interrupt()?;
            if !mode.configs().contains(&config)
                || config == Config::Bpftrace && tools.bpftrace.is_err()
            {
                continue;
            }
            let ops = if quick {
                mode.ops() / 10
            } else {
                mode.ops() / 2
            };
            let attached = Attached::start(config, mode, tools, workload)?;
            let pid = attached.pid().context("a BPF observer has a process")?;
            let before = program_stats(pid)?;
            let cgroup = if config.workload_is_agent() {
                &cgroups.agent
            } else {
                &cgroups.other
            };
            let report = workload.run(mode, ops, cgroup)?;
            let after = program_stats(pid)?;
            attached.finish(&report, &workload.target)?;
            let cost = KernelCost {
                mode,
                config,
                ops: report.ops,
                runs: after.0.saturating_sub(before.0),
                run_ns: after.1.saturating_sub(before.1),
            };
            eprintln!(
                "xtask bench: in-kernel cost, {} / {}: {:.0} ns per operation",
                mode.name(),
                config.label(),
                cost.ns_per_op()
            );
            costs.push(cost);
        }
    }
    Ok(costs)
}

/// Program runs and run time, summed over the BPF programs process `pid` holds open.
fn program_stats(pid: u32) -> anyhow::Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut total = (0, 0);
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // A descriptor closed meanwhile is simply gone.
        let Ok(info) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some((runs, ns)) = prog_fdinfo(&info) {
            total.0 += runs;
            total.1 += ns;
        }
    }
    Ok(total)
}

/// `run_cnt` and `run_time_ns` of a BPF program's fdinfo; `None` for any other descriptor.
fn prog_fdinfo(info: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    info.lines()
        .any(|l| l.starts_with("prog_type:"))
        .then_some(())?;
    Some((field("run_cnt:")?, field("run_time_ns:")?))
}

/// `kernel.bpf_stats_enabled` on for as long as it lives, then as it was.
struct StatsEnabled {
    before: String,
}

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsEnabled {
    fn new() -> anyhow::Result<Self> {
        let before = fs::read_to_string(STATS).with_context(|| format!("reading {STATS}"))?;
        fs::write(STATS, "1").with_context(|| format!("writing {STATS}"))?;
        Ok(Self { before })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = fs::write(Path::new(STATS), self.before.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_programs_statistics_and_ignores_other_descriptors() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2067\nprog_type:\t5\n\
                    prog_jited:\t1\nprog_tag:\t0123456789abcdef\nmemlock:\t4096\nprog_id:\t42\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\n";
        assert_eq!(prog_fdinfo(prog), Some((789, 123_456)));
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nkey_size:\t0\nmax_entries:\t4096\n";
        assert_eq!(prog_fdinfo(map), None);
        assert_eq!(prog_fdinfo("pos:\t0\nflags:\t0100002\n"), None);
    }
}
