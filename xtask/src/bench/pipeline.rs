//! Userspace pipeline throughput: runs the sensor crate's `pipeline` benchmark (a replay of
//! synthesised kernel records through decode, attribution, enrichment, the chain and the file
//! sink, with a counting allocator) and reads its JSON lines; the same run measures file
//! classification, the classifier index side by side with `globset` on the same rules.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Events replayed per workload shape: a few seconds each at the current rate.
const EVENTS: u64 = 300_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineResult {
    pub shape: String,
    pub events: u64,
    /// Rounds of the replays without and with rules (alternating); the rates of those two are
    /// the medians over the rounds, with their smallest and largest (`_range`). Results of
    /// before the rounds were one round, without ranges.
    #[serde(default)]
    pub rounds: u32,
    pub events_per_core_second: f64,
    #[serde(default)]
    pub events_per_core_second_range: Option<[f64; 2]>,
    pub allocations_per_event: f64,
    pub allocated_bytes_per_event: f64,
    pub output_bytes_per_event: f64,
    pub decode_events_per_core_second: f64,
    /// Rules loaded for the replay with rules (the Linux Sigma corpus and the examples).
    pub rules_loaded: usize,
    /// The same replay with a `[[sinks]]` socket sink delivering every record (its queue and
    /// delivery thread included); absent from results of before it was measured.
    #[serde(default)]
    pub with_sink_events_per_core_second: f64,
    #[serde(default)]
    pub with_sink_allocations_per_event: f64,
    /// The same replay with every rule loaded.
    pub with_rules_events_per_core_second: f64,
    #[serde(default)]
    pub with_rules_events_per_core_second_range: Option<[f64; 2]>,
    /// The rules stage alone, timed inside that replay.
    pub rules_stage_events_per_second: f64,
    #[serde(default)]
    pub rules_stage_events_per_second_range: Option<[f64; 2]>,
    /// Alerts the rules raised on the synthesised records.
    pub alerts: u64,
}

/// File classification on the built-in rules: the daemon's classifier index, `globset` (all
/// patterns in one set, and a set per rule tried in order) and every pattern tried in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifyResult {
    pub rules: usize,
    pub patterns: usize,
    pub paths: Vec<ClassifyPath>,
    pub mean_index_ns: f64,
    pub mean_globset_ns: f64,
    pub mean_globset_per_rule_ns: f64,
    pub mean_every_pattern_ns: f64,
    pub index_build_us: f64,
    pub globset_build_us: f64,
}

/// CPU nanoseconds to classify one path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifyPath {
    pub path: String,
    pub class: Option<String>,
    pub index_ns: f64,
    pub globset_ns: f64,
    pub globset_per_rule_ns: f64,
    pub every_pattern_ns: f64,
}

/// What one run of the benchmark binary reports.
pub struct Measured {
    pub pipeline: Vec<PipelineResult>,
    pub classify: Option<ClassifyResult>,
}

pub fn build() -> anyhow::Result<()> {
    crate::run(
        Command::new(crate::cargo())
            .args(bench_args())
            .arg("--no-run"),
    )
}

fn bench_args() -> [&'static str; 5] {
    ["bench", "-p", "agent-sensor", "--bench", "pipeline"]
}

pub fn measure(out_dir: &Path, quick: bool) -> anyhow::Result<Measured> {
    let events = if quick { EVENTS / 10 } else { EVENTS };
    let output = out_dir.join("pipeline-replay.jsonl");
    let out = Command::new(crate::cargo())
        .args(bench_args())
        .arg("--")
        .arg("--events")
        .arg(events.to_string())
        .arg("--output")
        .arg(&output)
        .args(quick.then_some("--quick"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the pipeline benchmark")?;
    if !out.status.success() {
        bail!("the pipeline benchmark failed with {}", out.status);
    }
    let mut measured = Measured {
        pipeline: Vec::new(),
        classify: None,
    };
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
    {
        let context = || format!("a pipeline benchmark result: {line}");
        let mut value: serde_json::Value = serde_json::from_str(line).with_context(context)?;
        match value.get_mut("classify").map(serde_json::Value::take) {
            Some(classify) => {
                measured.classify = Some(serde_json::from_value(classify).with_context(context)?);
            }
            None => measured
                .pipeline
                .push(serde_json::from_value(value).with_context(context)?),
        }
    }
    Ok(measured)
}
