//! The daemon's resident memory as processes come and go: with 10,000 live processes tracked
//! (all of an agent, so each is in the kernel's tracked map and the daemon's process table),
//! and after 100,000 more have started and exited.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    count,
    observers::{SensorRun, Tools},
    system::{self, Memory},
    workload::Workload,
};

pub const LIVE: u64 = 10_000;
pub const CHURN: u64 = 100_000;
/// RSS is sampled after each of these many churned processes.
const CHURN_STEP: u64 = 25_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    pub label: String,
    pub memory: Memory,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryResult {
    pub points: Vec<Point>,
    /// Fork and exit records the sensor wrote for the held and the churned processes.
    pub live_forks_seen: u64,
    pub churn_forks_seen: u64,
    pub churn_exits_seen: u64,
}

impl MemoryResult {
    pub fn with_live(&self) -> Option<&Memory> {
        self.points.get(1).map(|p| &p.memory)
    }

    /// Resident memory after the first churn step and after the last: the growth between them
    /// is what "flat" is judged by (the first step warms the ring buffer's pages and the
    /// allocator's pools).
    pub fn churn_ends(&self) -> Option<(&Memory, &Memory)> {
        let n = self.points.len();
        (n >= 5).then(|| (&self.points[n - 4].memory, &self.points[n - 1].memory))
    }
}

pub fn measure(tools: &Tools, workload: &Workload) -> anyhow::Result<MemoryResult> {
    let mut sensor = SensorRun::start(tools, "memory")?;
    let pid = sensor.pid();
    let mut points = Vec::new();
    let mut sample = |label: String, sensor: &SensorRun| -> anyhow::Result<()> {
        sensor.catch_up()?;
        let memory = system::memory(pid)?;
        eprintln!(
            "xtask bench: memory: {label}: {:.1} MiB resident",
            memory.rss_kib as f64 / 1024.0
        );
        points.push(Point { label, memory });
        Ok(())
    };
    sample("started, nothing tracked".to_owned(), &sensor)?;
    let held = workload.hold(LIVE, &tools.agent_cgroup)?;
    let holder = held.pid();
    sample(format!("{LIVE} live processes tracked"), &sensor)?;
    held.release()?;
    // Give the exits a moment to reach the pipeline before sampling.
    std::thread::sleep(Duration::from_millis(200));
    sample(format!("after the {LIVE} exited"), &sensor)?;
    let mut churners = Vec::new();
    for step in 1..=CHURN / CHURN_STEP {
        churners.push(workload.churn(CHURN_STEP, &tools.agent_cgroup)?.pid);
        sample(
            format!("after {} more came and went", step * CHURN_STEP),
            &sensor,
        )?;
    }
    sensor.stop()?;
    let parents: Vec<u32> = std::iter::once(holder)
        .chain(churners.iter().copied())
        .collect();
    let seen = count::children_seen(&sensor.output, &parents)?;
    let live_forks_seen = seen[&holder].0;
    let churn_forks_seen = churners.iter().map(|c| seen[c].0).sum();
    let churn_exits_seen = churners.iter().map(|c| seen[c].1).sum();
    let _ = std::fs::remove_file(&sensor.output);
    Ok(MemoryResult {
        points,
        live_forks_seen,
        churn_forks_seen,
        churn_exits_seen,
    })
}
