//! Userspace pipeline throughput: runs the sensor crate's `pipeline` benchmark (a replay of
//! synthesised kernel records through decode, attribution, enrichment, the chain and the file
//! sink, with a counting allocator) and reads its JSON lines.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Events replayed per workload shape: a few seconds each at the current rate.
const EVENTS: u64 = 300_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineResult {
    pub shape: String,
    pub events: u64,
    pub events_per_core_second: f64,
    pub allocations_per_event: f64,
    pub allocated_bytes_per_event: f64,
    pub output_bytes_per_event: f64,
    pub decode_events_per_core_second: f64,
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

pub fn measure(out_dir: &Path, quick: bool) -> anyhow::Result<Vec<PipelineResult>> {
    let events = if quick { EVENTS / 10 } else { EVENTS };
    let output = out_dir.join("pipeline-replay.jsonl");
    let out = Command::new(crate::cargo())
        .args(bench_args())
        .arg("--")
        .arg("--events")
        .arg(events.to_string())
        .arg("--output")
        .arg(&output)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the pipeline benchmark")?;
    if !out.status.success() {
        bail!("the pipeline benchmark failed with {}", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("a pipeline result: {l}")))
        .collect()
}
