//! What a bench run found, summarised against its targets as Markdown (the results file and
//! the section of docs/benchmark.md between its markers) and kept whole as JSON.
use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    ATTEMPTS, DISTURBED_CORES,
    audit::AuditResult,
    kernel::{self, KernelCost},
    memory::{CHURN, LIVE, MemoryResult},
    observers::{Availability, Config},
    pipeline::{ClassifyResult, PipelineResult},
    system::Machine,
    workload::{Events, Mode},
};

/// One workload run under one configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub rep: usize,
    pub mode: Mode,
    pub config: Config,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub expected: Events,
    pub delivered: Option<Events>,
    pub records: Option<u64>,
    pub lost_reported: Option<u64>,
    pub consumer_cpu_ns: Option<u64>,
    /// Observers the bench did not start that were running at the time.
    pub foreign_observers: Vec<String>,
    /// Cores the host kept busy just before the run, with nothing of the bench's running.
    pub background_cores: f64,
    /// Cores' worth of CPU other processes used while the workload ran.
    pub foreign_cores: f64,
    /// Attempts it took (a run disturbed by other work is repeated).
    pub attempts: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    /// Tracked files differed from the commit.
    pub modified: bool,
    pub reps: usize,
    pub quick: bool,
    pub minutes: f64,
    pub machine: Machine,
    pub bpftrace: Availability<String>,
    pub auditd: Availability<String>,
    pub load_start: f64,
    pub load_end: f64,
    pub runs: Vec<Run>,
    /// Absent in results written before it was measured.
    #[serde(default = "not_measured")]
    pub kernel_cost: Availability<Vec<KernelCost>>,
    pub memory: Availability<MemoryResult>,
    pub pipeline: Availability<Vec<PipelineResult>>,
    /// Absent in results written before it was measured.
    #[serde(default = "not_measured")]
    pub classify: Availability<ClassifyResult>,
    /// Absent in results written before it was measured.
    #[serde(default = "not_measured")]
    pub audit: Availability<AuditResult>,
}

fn not_measured<T>() -> Availability<T> {
    Err("not measured by this version of the bench".to_owned())
}

/// Targets from the benchmark issue.
const OBSERVED_TARGETS: [(Mode, f64); 3] = [
    (Mode::Open, 0.85),
    (Mode::Exec, 0.95),
    (Mode::Connect, 0.90),
];
const UNOBSERVED_TARGET: f64 = 0.95;
const PIPELINE_TARGET: f64 = 500_000.0;
/// Issue 13: every shape with the whole Linux Sigma corpus and the example rules loaded.
const RULES_PIPELINE_TARGET: f64 = 200_000.0;
const MEMORY_TARGET_MIB: f64 = 64.0;
/// "Flat": resident memory grows by no more than this from the first churn step to the last.
const FLAT_TOLERANCE_MIB: f64 = 1.0;

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// One (mode, configuration) over every repetition.
struct Summary {
    ops_per_sec: Option<f64>,
    ratios: Vec<f64>,
    extra_ns_per_event: Option<f64>,
    cpu_ns_per_event: Option<f64>,
    expected: u64,
    delivered: Option<u64>,
    lost_reported: Option<u64>,
    records_per_op: Option<f64>,
}

impl Summary {
    fn ratio(&self) -> Option<f64> {
        median(self.ratios.clone())
    }

    fn lost(&self) -> Option<u64> {
        self.delivered.map(|d| self.expected.saturating_sub(d))
    }
}

impl Results {
    fn baseline(&self, rep: usize, mode: Mode) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.rep == rep && r.mode == mode && r.config == Config::Unattached)
    }

    fn summary(&self, mode: Mode, config: Config) -> Option<Summary> {
        let runs: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.mode == mode && r.config == config)
            .collect();
        if runs.is_empty() {
            return None;
        }
        let mut ratios = Vec::new();
        let mut extra = Vec::new();
        for r in &runs {
            if let Some(base) = self.baseline(r.rep, mode) {
                ratios.push(r.ops_per_sec / base.ops_per_sec);
                let per_op = 1e9 / r.ops_per_sec - 1e9 / base.ops_per_sec;
                let events_per_op = r.expected.total() as f64 / r.ops as f64;
                extra.push(per_op / events_per_op);
            }
        }
        let sum = |f: &dyn Fn(&Run) -> Option<u64>| -> Option<u64> {
            runs.iter().map(|r| f(r)).sum::<Option<u64>>()
        };
        Some(Summary {
            ops_per_sec: median(runs.iter().map(|r| r.ops_per_sec).collect()),
            ratios,
            extra_ns_per_event: (config != Config::Unattached)
                .then(|| median(extra))
                .flatten(),
            cpu_ns_per_event: median(
                runs.iter()
                    .filter_map(|r| Some(r.consumer_cpu_ns? as f64 / r.expected.total() as f64))
                    .collect(),
            ),
            expected: runs.iter().map(|r| r.expected.total()).sum(),
            delivered: sum(&|r| r.delivered.map(|d| d.total())),
            lost_reported: sum(&|r| r.lost_reported),
            records_per_op: median(
                runs.iter()
                    .filter_map(|r| Some(r.records? as f64 / r.ops as f64))
                    .collect(),
            ),
        })
    }

    fn modes(&self) -> Vec<Mode> {
        Mode::ALL
            .into_iter()
            .filter(|m| self.runs.iter().any(|r| r.mode == *m))
            .collect()
    }

    /// The report, with its sections at heading `level` (2: `##`).
    pub fn markdown(&self, level: usize) -> String {
        let h = "#".repeat(level);
        let mut md = String::new();
        let _ = writeln!(
            md,
            "`cargo xtask bench` on {}, commit `{}`{}, {} interleaved repetition{}, {:.0} minutes{}.\n",
            self.date,
            self.commit,
            if self.modified {
                " with uncommitted changes"
            } else {
                ""
            },
            self.reps,
            if self.reps == 1 { "" } else { "s" },
            self.minutes,
            if self.quick {
                " (**--quick**: a tenth of the operations, for trying the bench out, not for quoting)"
            } else {
                ""
            }
        );
        let m = &self.machine;
        let _ = writeln!(
            md,
            "- Machine: {}, {} cores, {:.1} GiB, {}; Linux {}.",
            m.cpu, m.cores, m.memory_gib, m.virtualisation, m.kernel
        );
        let _ = writeln!(
            md,
            "- Compared with: {}; {}.",
            match &self.auditd {
                Ok(v) => format!("auditd {v}"),
                Err(why) => format!("**auditd not measured: {why}**"),
            },
            match &self.bpftrace {
                Ok(v) => v.clone(),
                Err(why) => format!("**bpftrace not measured: {why}**"),
            }
        );
        let foreign = self
            .runs
            .iter()
            .filter(|r| !r.foreign_observers.is_empty())
            .count();
        let foreign_cpu: Vec<f64> = self.runs.iter().map(|r| r.foreign_cores).collect();
        let repeated = self.runs.iter().filter(|r| r.attempts > 1).count();
        let disturbed = self
            .runs
            .iter()
            .filter(|r| r.foreign_cores > DISTURBED_CORES)
            .count();
        let _ = writeln!(
            md,
            "- Conditions: one-minute load average {:.2} at the start, {:.2} at the end; CPU \
             used by other processes while the workload ran: median {:.2} cores, at most {:.2}; \
             {repeated} of {} runs repeated because other work used more than \
             {DISTURBED_CORES} cores{}; {}.\n",
            self.load_start,
            self.load_end,
            median(foreign_cpu.clone()).unwrap_or(f64::NAN),
            foreign_cpu.iter().copied().fold(0.0, f64::max),
            self.runs.len(),
            if disturbed == 0 {
                String::new()
            } else {
                format!(", **{disturbed} still disturbed after {ATTEMPTS} attempts**")
            },
            if foreign == 0 {
                "no other observer (agent-sensor, auditd, bpftrace) was running during any run"
                    .to_owned()
            } else {
                format!(
                    "**another observer was running during {foreign} of {} runs** (see results.json)",
                    self.runs.len()
                )
            }
        );
        self.overhead_section(&mut md, &h);
        self.targets_section(&mut md, &h);
        self.kernel_section(&mut md, &h);
        self.pipeline_section(&mut md, &h);
        self.classify_section(&mut md, &h);
        self.memory_section(&mut md, &h);
        self.audit_section(&mut md, &h);
        self.repetitions_section(&mut md, &h);
        md
    }

    fn overhead_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} Overhead\n");
        let _ = writeln!(
            md,
            "Workload operations per second (median); ratio to the unattached run of the same \
             repetition, median [min–max]; extra time per event; CPU time of the observer's own \
             processes per event (agent-sensor: the daemon; auditd: auditd and the kernel's \
             kauditd thread; bpftrace: bpftrace); events delivered of those expected, over all \
             repetitions; records the observer wrote per operation. An event is one of the \
             workload's measured operations: an open, an exec, a connect or its accept, an HTTPS request and its response (`tls`), an MCP tool call and its response through pipes (`pipe`).\n"
        );
        let _ = writeln!(
            md,
            "| mode | configuration | ops/s | ratio | extra ns/event | observer CPU ns/event | delivered / expected | records/op |"
        );
        let _ = writeln!(md, "|---|---|---:|---|---:|---:|---|---:|");
        for mode in self.modes() {
            for config in Config::ALL {
                let Some(s) = self.summary(mode, config) else {
                    continue;
                };
                let ratio = match (config, s.ratio(), Self::spread(&s.ratios)) {
                    (Config::Unattached, _, _) => "baseline".to_owned(),
                    (_, Some(r), Some((lo, hi))) => format!("{r:.3} [{lo:.3}–{hi:.3}]"),
                    _ => "—".to_owned(),
                };
                let delivered = match (config, s.delivered) {
                    (Config::Unattached, _) | (_, None) => "—".to_owned(),
                    (Config::SensorNotAgent, Some(d)) => {
                        format!("{} (not an agent: none expected)", thousands(d as f64))
                    }
                    (Config::SensorAgentNoCapture, Some(d)) => {
                        format!("{} (capture off: none expected)", thousands(d as f64))
                    }
                    (_, Some(d)) => {
                        let lost = s.lost().unwrap_or(0);
                        let mut cell =
                            format!("{} / {}", thousands(d as f64), thousands(s.expected as f64));
                        if lost > 0 {
                            let _ = write!(
                                cell,
                                " (**{:.1}% lost**",
                                100.0 * lost as f64 / s.expected as f64
                            );
                            if let Some(r) = s.lost_reported.filter(|r| *r > 0) {
                                let _ = write!(cell, ", {} reported", thousands(r as f64));
                            }
                            cell.push(')');
                        }
                        cell
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    mode.name(),
                    config.label(),
                    s.ops_per_sec.map_or("—".to_owned(), thousands),
                    ratio,
                    s.extra_ns_per_event
                        .map_or("—".to_owned(), |v| format!("{v:.0}")),
                    s.cpu_ns_per_event
                        .map_or("—".to_owned(), |v| format!("{v:.0}")),
                    delivered,
                    s.records_per_op
                        .map_or("—".to_owned(), |v| format!("{v:.2}")),
                );
            }
        }
        let skipped: Vec<String> = [
            (Config::Auditd, &self.auditd),
            (Config::Bpftrace, &self.bpftrace),
        ]
        .iter()
        .filter_map(|(c, a)| a.as_ref().err().map(|why| format!("{}: {why}", c.label())))
        .collect();
        if !skipped.is_empty() {
            let _ = writeln!(md, "\nNot measured: {}.", skipped.join("; "));
        }
        md.push('\n');
    }

    fn spread(v: &[f64]) -> Option<(f64, f64)> {
        let lo = v.iter().copied().reduce(f64::min)?;
        let hi = v.iter().copied().reduce(f64::max)?;
        Some((lo, hi))
    }

    fn targets_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} Targets\n");
        let _ = writeln!(md, "| target | measured | verdict |");
        let _ = writeln!(md, "|---|---|---|");
        for (mode, target) in OBSERVED_TARGETS {
            let Some(s) = self.summary(mode, Config::SensorAgent) else {
                continue;
            };
            let Some(ratio) = s.ratio() else { continue };
            let lost = s.lost().unwrap_or(0);
            let measured = format!(
                "{ratio:.3}, {} of {} events lost",
                thousands(lost as f64),
                thousands(s.expected as f64)
            );
            let verdict = match (ratio >= target, lost == 0) {
                (true, true) => "met".to_owned(),
                (r, l) => {
                    let mut why = Vec::new();
                    if !r {
                        why.push(format!("{:.3} below the ratio", target - ratio));
                    }
                    if !l {
                        why.push(format!(
                            "{:.1}% of events lost",
                            100.0 * lost as f64 / s.expected as f64
                        ));
                    }
                    format!("**missed**: {}", why.join(", "))
                }
            };
            let _ = writeln!(
                md,
                "| agent observed, `{}` ≥ {target:.2} with zero loss | {measured} | {verdict} |",
                mode.name()
            );
        }
        // The not-an-agent target is for processes that map no TLS library (they pay
        // nothing for the TLS probes); the `tls` mode's client maps it, and every process
        // pays the pipe capture's syscall tracepoints (`pipe`): their cost is shown in the
        // overhead table.
        for mode in self.modes().into_iter().filter(|&m| !m.captures()) {
            let Some(ratio) = self
                .summary(mode, Config::SensorNotAgent)
                .and_then(|s| s.ratio())
            else {
                continue;
            };
            let verdict = if ratio >= UNOBSERVED_TARGET {
                "met".to_owned()
            } else {
                format!("**missed** by {:.3}", UNOBSERVED_TARGET - ratio)
            };
            let _ = writeln!(
                md,
                "| not an agent, `{}` ≥ {UNOBSERVED_TARGET:.2} | {ratio:.3} | {verdict} |",
                mode.name()
            );
        }
        if let Ok(p) = &self.pipeline
            && let Some(worst) = p.iter().min_by(|a, b| {
                a.events_per_core_second
                    .total_cmp(&b.events_per_core_second)
            })
        {
            let rate = worst.events_per_core_second;
            let verdict = if rate >= PIPELINE_TARGET {
                "met".to_owned()
            } else {
                format!("**missed**: {:.1}x short", PIPELINE_TARGET / rate)
            };
            let _ = writeln!(
                md,
                "| pipeline ≥ 500,000 events/s/core with the chain and file sink, every shape | slowest (`{}`): {} | {verdict} |",
                worst.shape,
                thousands(rate)
            );
        }
        if let Ok(p) = &self.pipeline
            && let Some(worst) = p.iter().min_by(|a, b| {
                a.with_rules_events_per_core_second
                    .total_cmp(&b.with_rules_events_per_core_second)
            })
        {
            let rate = worst.with_rules_events_per_core_second;
            let verdict = if rate >= RULES_PIPELINE_TARGET {
                "met".to_owned()
            } else {
                format!("**missed**: {:.1}x short", RULES_PIPELINE_TARGET / rate)
            };
            let _ = writeln!(
                md,
                "| pipeline ≥ 200,000 events/s/core with all {} rules loaded, every shape | slowest (`{}`): {}{} | {verdict} |",
                worst.rules_loaded,
                worst.shape,
                thousands(rate),
                match worst.rounds {
                    0 | 1 => String::new(),
                    n => format!(", the median of {n} rounds"),
                }
            );
        }
        if let Ok(m) = &self.memory {
            if let Some(live) = m.with_live() {
                let mib = live.rss_kib as f64 / 1024.0;
                let verdict = if mib < MEMORY_TARGET_MIB {
                    "met".to_owned()
                } else {
                    format!("**missed** by {:.1} MiB", mib - MEMORY_TARGET_MIB)
                };
                let _ = writeln!(
                    md,
                    "| resident memory < 64 MiB with {} tracked | {mib:.1} MiB | {verdict} |",
                    thousands(LIVE as f64)
                );
            }
            if let Some((first, last)) = m.churn_ends() {
                let growth = (last.rss_kib as f64 - first.rss_kib as f64) / 1024.0;
                let verdict = if growth <= FLAT_TOLERANCE_MIB {
                    "met".to_owned()
                } else {
                    format!("**missed**: grew {growth:.1} MiB")
                };
                let _ = writeln!(
                    md,
                    "| memory flat after {} processes came and went (≤ {FLAT_TOLERANCE_MIB} MiB growth from the first quarter to the end) | {:+.1} MiB | {verdict} |",
                    thousands(CHURN as f64),
                    growth
                );
            }
        }
        md.push('\n');
    }

    fn kernel_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(
            md,
            "{h} In-kernel cost
"
        );
        let costs = match &self.kernel_cost {
            Ok(c) => c,
            Err(why) => {
                let _ = writeln!(
                    md,
                    "Not measured: {why}.
"
                );
                return;
            }
        };
        let _ = writeln!(
            md,
            "Run time of the observer's own BPF programs per workload operation, as the kernel \
             measures it (`kernel.bpf_stats_enabled`), in one extra run per mode after the \
             repetitions. It does not include the tracepoints' own dispatch, nor, for \
             bpftrace, its perf buffer's wakeups and userspace; it is not blurred by the \
             VM's drifting CPU speed.\n"
        );
        let _ = writeln!(
            md,
            "| mode | configuration | program runs/op | ns/op | ns/program run |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|");
        for mode in self.modes() {
            for config in kernel::CONFIGS {
                let Some(c) = costs.iter().find(|c| c.mode == mode && c.config == config) else {
                    continue;
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.2} | {:.0} | {:.0} |",
                    mode.name(),
                    config.label(),
                    c.runs_per_op(),
                    c.ns_per_op(),
                    c.run_ns as f64 / c.runs.max(1) as f64,
                );
            }
        }
        md.push('\n');
    }

    fn pipeline_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} Userspace pipeline\n");
        let results = match &self.pipeline {
            Ok(r) => r,
            Err(why) => {
                let _ = writeln!(md, "**Not measured**: {why}\n");
                return;
            }
        };
        let _ = writeln!(
            md,
            "Synthesised kernel records (the programs' own byte layouts, shaped like the workload's \
             modes) replayed through decode, attribution, enrichment, the evidence chain and the \
             file sink on the daemon's single-threaded runtime; CPU time of the whole process \
             (the file sink writes on a helper thread). The same replay with a `[[sinks]]` socket \
             sink too (its disk queue and delivery thread, to a Unix socket reader in the same \
             process: the sink path's whole cost). Then the same replay with every rule loaded \
             (the Linux Sigma corpus of ../shared/sigma and examples/rules), the rules stage \
             timed on its own inside the loop. The replays without and with rules alternate for \
             {} rounds (the VM's speed drifts over seconds; a slow phase then falls on one round \
             of each, not on a whole pass): their figures are the medians over the rounds, \
             [smallest–largest] after them.\n",
            results.first().map_or(1, |r| r.rounds.max(1))
        );
        let _ = writeln!(
            md,
            "| shape | events/s/core | allocations/event | bytes allocated/event | output bytes/event | decode alone, events/s/core | with a socket sink, events/s/core | with a socket sink, allocations/event | with rules, events/s/core | rules stage alone, events/s | alerts |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in results {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {:.1} | {} | {} | {} |",
                r.shape,
                with_range(r.events_per_core_second, r.events_per_core_second_range),
                r.allocations_per_event,
                r.allocated_bytes_per_event,
                r.output_bytes_per_event,
                thousands(r.decode_events_per_core_second),
                thousands(r.with_sink_events_per_core_second),
                r.with_sink_allocations_per_event,
                with_range(
                    r.with_rules_events_per_core_second,
                    r.with_rules_events_per_core_second_range
                ),
                with_range(
                    r.rules_stage_events_per_second,
                    r.rules_stage_events_per_second_range
                ),
                r.alerts,
            );
        }
        md.push('\n');
    }

    fn audit_section(&self, md: &mut String, h: &str) {
        match &self.audit {
            Ok(a) => md.push_str(&audit_markdown(a, h)),
            Err(why) => {
                let _ = writeln!(
                    md,
                    "{h} Verify and report at scale\n\n**Not measured**: {why}\n"
                );
            }
        }
    }
    fn classify_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} File classification\n");
        let c = match &self.classify {
            Ok(c) => c,
            Err(why) => {
                let _ = writeln!(md, "**Not measured**: {why}\n");
                return;
            }
        };
        let _ = writeln!(
            md,
            "`file.class` of one path with the {} built-in rules ({} patterns): the daemon's \
             classifier (its index picks the few patterns a path could match), the same rules \
             compiled by the `globset` crate (all patterns in one set, the first rule among its \
             matches; or a set per rule, tried in order), and every pattern tried in order \
             without the index. CPU nanoseconds per path, the best of nine rounds.\n",
            c.rules, c.patterns
        );
        let _ = writeln!(
            md,
            "| path | class | index ns | globset ns | globset / index | a set per rule ns | every pattern ns |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
        for p in &c.paths {
            let _ = writeln!(
                md,
                "| `{}` | {} | {:.1} | {:.0} | {:.1}× | {:.0} | {:.0} |",
                p.path,
                p.class.as_deref().unwrap_or("none"),
                p.index_ns,
                p.globset_ns,
                p.globset_ns / p.index_ns,
                p.globset_per_rule_ns,
                p.every_pattern_ns,
            );
        }
        let _ = writeln!(
            md,
            "| mean | | {:.1} | {:.0} | {:.1}× | {:.0} | {:.0} |\n",
            c.mean_index_ns,
            c.mean_globset_ns,
            c.mean_globset_ns / c.mean_index_ns,
            c.mean_globset_per_rule_ns,
            c.mean_every_pattern_ns,
        );
        let _ = writeln!(
            md,
            "Compiling the rules: index {:.0} µs, globset {:.0} µs ({:.1}×).\n",
            c.index_build_us,
            c.globset_build_us,
            c.globset_build_us / c.index_build_us,
        );
    }

    fn memory_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} Memory\n");
        let m = match &self.memory {
            Ok(m) => m,
            Err(why) => {
                let _ = writeln!(md, "**Not measured**: {why}\n");
                return;
            }
        };
        let _ = writeln!(
            md,
            "Resident memory of the daemon (`/proc/PID/status`) observing an agent whose \
             processes all stay tracked. The sensor wrote {} fork records for the {} held \
             processes, and {} forks and {} exits for the {} that came and went.\n",
            thousands(m.live_forks_seen as f64),
            thousands(LIVE as f64),
            thousands(m.churn_forks_seen as f64),
            thousands(m.churn_exits_seen as f64),
            thousands(CHURN as f64),
        );
        let _ = writeln!(
            md,
            "| point | VmRSS MiB | anonymous (heap) MiB | file-backed MiB | of which BPF maps (ring buffer) MiB |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
        for p in &m.points {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                p.label,
                mib(p.memory.rss_kib),
                mib(p.memory.anon_kib),
                mib(p.memory.file_kib),
                mib(p.memory.bpf_maps_kib)
            );
        }
        let _ = writeln!(
            md,
            "\nThe ring buffer's data pages are mapped twice (so a record that wraps reads as one), \
             so a 16 MiB ring shows as 32 MiB of resident, file-backed pages: kernel memory, \
             counted in VmRSS, the same however many processes run."
        );
        md.push('\n');
    }

    fn repetitions_section(&self, md: &mut String, h: &str) {
        let _ = writeln!(md, "{h} Ratio in each repetition\n");
        let reps: Vec<usize> = {
            let mut r: Vec<usize> = self.runs.iter().map(|r| r.rep).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        let _ = write!(md, "| mode | configuration |");
        for rep in &reps {
            let _ = write!(md, " {} |", rep + 1);
        }
        let _ = writeln!(md, "\n|---|---|{}", "---:|".repeat(reps.len()));
        for mode in self.modes() {
            for config in Config::ALL.into_iter().skip(1) {
                if !self
                    .runs
                    .iter()
                    .any(|r| r.mode == mode && r.config == config)
                {
                    continue;
                }
                let _ = write!(md, "| {} | {} |", mode.name(), config.label());
                for &rep in &reps {
                    let cell = self
                        .runs
                        .iter()
                        .find(|r| r.rep == rep && r.mode == mode && r.config == config)
                        .zip(self.baseline(rep, mode))
                        .map_or("—".to_owned(), |(r, b)| {
                            format!("{:.3}", r.ops_per_sec / b.ops_per_sec)
                        });
                    let _ = write!(md, " {cell} |");
                }
                md.push('\n');
            }
        }
        md.push('\n');
    }
}

/// 1234567.8 -> "1,234,568".
/// The audit measurement as a Markdown section at heading level `h`.
pub fn audit_markdown(a: &AuditResult, h: &str) -> String {
    let mut out = format!("{h} Verify and report at scale\n\n");
    let md = &mut out;
    let mib = a.trail_bytes as f64 / 1_048_576.0;
    let _ = writeln!(
        md,
        "`agent-sensor verify` and `agent-sensor report --format json` over the same trail \
         directory: {mib:.0} MiB in {} rotated files, {} sealed records of three agents \
         (execs, file opens with classes, connects with DNS names, gaps, annotations); \
         each the best of two interleaved runs, wall-clock, with its peak resident memory. \
         The report verifies the trail in the same pass.\n",
        a.files,
        thousands(a.records as f64)
    );
    let _ = writeln!(md, "| command | seconds | MiB/s | peak memory |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for (name, seconds, peak) in [
        ("verify", a.verify_seconds, a.verify_peak_kib),
        ("report", a.report_seconds, a.report_peak_kib),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {seconds:.2} | {:.0} | {:.1} MiB |",
            mib / seconds,
            peak as f64 / 1024.0
        );
    }
    let _ = writeln!(
        md,
        "\nThe report takes {:.2}× the verifier's time.\n",
        a.report_seconds / a.verify_seconds
    );
    out
}

/// `median [smallest–largest]`, or the one figure of a result measured in one round.
fn with_range(median: f64, range: Option<[f64; 2]>) -> String {
    match range {
        Some([low, high]) => format!(
            "{} [{}–{}]",
            thousands(median),
            thousands(low),
            thousands(high)
        ),
        None => thousands(median),
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{v:.0}");
    let (sign, digits) = s.strip_prefix('-').map_or(("", &s[..]), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Markers around the generated section of docs/benchmark.md.
const DOCS_BEGIN: &str =
    "<!-- bench-results:begin (written by `cargo xtask bench --update-docs`) -->";
const DOCS_END: &str = "<!-- bench-results:end -->";

/// Replaces the generated section of `docs` with `section`.
pub fn update_docs(docs: &Path, section: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(docs).with_context(|| format!("reading {}", docs.display()))?;
    let (head, rest) = text
        .split_once(DOCS_BEGIN)
        .with_context(|| format!("{} has no {DOCS_BEGIN} marker", docs.display()))?;
    let (_, tail) = rest
        .split_once(DOCS_END)
        .with_context(|| format!("{} has no {DOCS_END} marker", docs.display()))?;
    std::fs::write(
        docs,
        format!("{head}{DOCS_BEGIN}\n\n{section}{DOCS_END}{tail}"),
    )
    .with_context(|| format!("writing {}", docs.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_thousands() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
