//! Everything the pipeline tests build: the forge of kernel records, the pipeline with its
//! context, sink and (kernel-free) identity maps, the replay, and the trail read back. The one
//! place to adapt when the daemon's entry points move.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use agent_sensor::{
    audit::verify::{self, Report},
    config::{Fsync, Output, OutputTarget},
    enrich::container::{Catalog, RuntimeSources},
    evidence::sealer::Checkpoints,
    identity::{
        manifest,
        selectors::{SelectorSync, Tracked},
    },
    pipeline::{
        Pipeline, Stats,
        inbox::{LossReport, Message, RawBatch},
    },
    sink::Sink,
    source::replay,
};
pub use agent_sensor::{
    sink::Room,
    source::forge::{Exec, Forge, Proc},
};
pub use sensor_common::{TrackedProcess, exec_flags, method, tracked_flags};
use serde_json::Value;
use tokio::sync::mpsc;

/// Forged process ids start above the kernel's largest `pid_max` (4194304): what the pipeline
/// reads from `/proc` about them (children, start times) is never a real process's.
pub const FIRST_PID: u32 = 5_000_000;

/// A forge whose records are an hour ahead of now (CLOCK_BOOTTIME): the pipeline's own
/// timers compare record times with the clock (repeat windows close 100 ms ticks after they
/// end), so records from the future are closed by later records and at stop only, the same on
/// a slow machine as on a fast one.
pub fn forge() -> Forge {
    Forge::new(agent_sensor::enrich::clock::boottime_ns() + 3_600_000_000_000).first_pid(FIRST_PID)
}

/// A declared agent for [`manifest`]: its id and its selectors as YAML flow mappings
/// (`"{cgroup: /agents/a/**}"`).
pub fn agent(id: &str, selectors: &[&str]) -> String {
    let mut yaml = format!("  - id: {id}\n    name: Agent {id}\n    selectors:\n");
    for s in selectors {
        yaml.push_str("      - ");
        yaml.push_str(s);
        yaml.push('\n');
    }
    yaml
}

/// An identity manifest of `agents` (kernel agent number n is the n-th).
pub fn manifest(agents: &[String]) -> String {
    format!("agents:\n{}", agents.concat())
}

/// A record's attribution as the kernel stamps it: agent `agent` by `method`.
pub fn attributed(agent: u32, method: u8) -> TrackedProcess {
    TrackedProcess {
        agent,
        method,
        ..Default::default()
    }
}

/// How the pipeline is set up, beyond its agents.
#[derive(Default)]
pub struct Config {
    /// `all_processes`: unattributed processes are reported too.
    pub all_processes: bool,
    /// The environment marker's variable name.
    pub marker: Option<&'static str>,
    /// `repeat_window_ms` (0: no folding).
    pub repeat_window_ms: u32,
    /// Decide held cgroups and pending execs as a live run does: the selector decisions and
    /// the tracked-process map, held in memory instead of the kernel's maps. Without it, the
    /// pipeline runs as a plain replay does (no kernel: nothing to decide).
    pub decisions: bool,
    /// What the tracked-process map already holds (a registration, say), with `decisions`.
    pub tracked: Vec<(u32, TrackedProcess)>,
    /// Sign a checkpoint every this many records (and at stop).
    pub checkpoint_every: Option<u32>,
    /// `output.buffer_bytes`: what the output holds in memory while its disk is full.
    pub buffer_bytes: Option<u64>,
    /// The free space of the output's file system (see [`Room`]).
    pub room: Option<Room>,
}

/// What goes down the pipeline, in order.
pub enum Step {
    /// Kernel records, as the ring buffer hands them over.
    Records(RawBatch),
    /// The kernel's loss counters rose by these, by record kind.
    Lost(Vec<(&'static str, u64)>),
    /// Once the pipeline has handled every step before this one: frees this many bytes on
    /// the output's file system.
    Free(Room, u64),
}

/// Batches as steps.
pub fn records(batches: Vec<RawBatch>) -> Vec<Step> {
    batches.into_iter().map(Step::Records).collect()
}

/// The key checkpoints are signed with.
pub fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A run's trail, read back; its directory goes with it.
pub struct Outcome {
    dir: PathBuf,
    pub path: PathBuf,
    /// Every line, as written.
    pub lines: Vec<String>,
    /// Every record, parsed.
    pub records: Vec<Value>,
    /// The pipeline's counters at stop.
    pub stats: Stats,
    /// The tracked-process map after the run (with `decisions`).
    pub tracked: HashMap<u32, TrackedProcess>,
    /// Checkpoints were signed (with [`signing_key`]).
    signed: bool,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Outcome {
    /// The records of kernel events and the pipeline's own, without the start and stop records.
    pub fn events(&self) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| !matches!(action(r), "sensor_start" | "sensor_stop"))
            .collect()
    }

    /// `event.action` of every record, in order.
    pub fn actions(&self) -> Vec<&str> {
        self.records.iter().map(action).collect()
    }

    /// The records whose `event.action` is `name`.
    pub fn with_action(&self, name: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| action(r) == name).collect()
    }

    /// The stop record (the last but for the checkpoint that signs it).
    pub fn stop(&self) -> &Value {
        let stops = self.with_action("sensor_stop");
        assert_eq!(stops.len(), 1, "one stop record");
        stops[0]
    }

    /// `agent-sensor verify` of the trail; of a signed run, its checkpoints checked with
    /// [`signing_key`] too (and required).
    pub fn verify(&self) -> Report {
        let key = self.signed.then(|| signing_key().verifying_key());
        verify::verify(std::slice::from_ref(&self.path), key.as_ref()).expect("the trail reads")
    }

    /// A copy of the trail with its lines edited by `edit`, in a file of its own.
    pub fn tampered(&self, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
        let mut lines = self.lines.clone();
        edit(&mut lines);
        let path = self.dir.join(name);
        let text: String = lines.iter().flat_map(|l| [l.as_str(), "\n"]).collect();
        std::fs::write(&path, text).expect("write the tampered copy");
        path
    }
}

/// Verifies trail files of a signed run, checkpoints checked with [`signing_key`].
pub fn verify_files(paths: &[PathBuf]) -> Report {
    verify::verify(paths, Some(&signing_key().verifying_key())).expect("the trail reads")
}

pub fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or_default()
}

/// `identity.agent.id`, `identity.attribution.method` and `.trust` of a record (`None` when it
/// has no identity).
pub fn identity(r: &Value) -> Option<(&str, &str, &str)> {
    let i = r.get("identity")?;
    Some((
        i["agent"]["id"].as_str()?,
        i["attribution"]["method"].as_str()?,
        i["attribution"]["trust"].as_str()?,
    ))
}

/// A fresh directory for one run's files.
fn scratch() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "agent-sensor-pipeline-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Runs `steps` through the real pipeline (decode, attribution, enrichment, the evidence chain,
/// the file sink) for the agents `manifest_yaml` declares, on the daemon's single-threaded
/// runtime, and reads the trail back. The run starts with its start record and ends with its
/// stop record, as a live one does.
pub fn run(manifest_yaml: &str, config: Config, steps: Vec<Step>) -> Outcome {
    let dir = scratch();
    let path = dir.join("trail.jsonl");
    let agents = manifest::parse(Path::new("test.yaml"), manifest_yaml).expect("the manifest");
    let mut ctx = replay::context(agents).expect("a pipeline context");
    ctx.all_processes = config.all_processes;
    ctx.marker = config.marker.map(|name| format!("{name}=").into_bytes());
    let map = Arc::new(Mutex::new(
        config.tracked.iter().copied().collect::<HashMap<_, _>>(),
    ));
    if config.decisions {
        let tracked: Tracked = map.clone();
        // No container runtime: lookups find nothing, at once.
        let nowhere = dir.join("no-runtime");
        let catalog = Catalog::new(RuntimeSources {
            containerd_socket: nowhere.join("containerd.sock"),
            storage_root: nowhere.join("storage"),
            docker_root: nowhere.join("docker"),
        });
        let selectors = SelectorSync::without_kernel(
            ctx.registry.clone(),
            tracked.clone(),
            ctx.cgroups.clone(),
            catalog,
        );
        ctx.selectors = Some(Arc::new(tokio::sync::Mutex::new(selectors)));
        ctx.tracked = Some(tracked);
    }
    let all_processes = ctx.all_processes;
    let signed = config.checkpoint_every.is_some();
    let output = Output {
        target: OutputTarget::File(path.clone()),
        fsync: Fsync::Never,
        buffer_bytes: config
            .buffer_bytes
            .unwrap_or(Output::default().buffer_bytes),
        ..Output::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let stats = runtime
        .block_on(async {
            let mut sink = Sink::open(&output).map_err(std::io::Error::other)?;
            if let Some(room) = config.room {
                sink.limit_room(room);
            }
            let mut pipeline = Pipeline::new(ctx, sink, config.repeat_window_ms);
            if let Some(every) = config.checkpoint_every {
                pipeline.sign_with(Checkpoints::new(signing_key(), every, u32::MAX));
            }
            pipeline.start(&[], all_processes).await?;
            if steps.iter().all(|s| matches!(s, Step::Records(_))) {
                let batches = steps
                    .into_iter()
                    .filter_map(|s| match s {
                        Step::Records(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                replay::replay(pipeline, batches).await
            } else {
                feed(pipeline, steps).await
            }
        })
        .expect("the replay");
    let text = std::fs::read_to_string(&path).expect("the trail");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let records = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let tracked = map.lock().expect("no poisoned lock").clone();
    Outcome {
        dir,
        path,
        lines,
        records,
        stats,
        tracked,
        signed,
    }
}

/// A replay with steps between batches: the pipeline's inbox holds one message at a time, so
/// once two more have been taken, everything before them has been handled.
async fn feed(pipeline: Pipeline, steps: Vec<Step>) -> std::io::Result<Stats> {
    let (tx, rx) = mpsc::channel(1);
    let feeder = tokio::spawn(async move {
        for step in steps {
            let message = match step {
                Step::Records(batch) => Message::Records(batch),
                Step::Lost(by_kind) => Message::Lost(LossReport { by_kind }),
                Step::Free(room, bytes) => {
                    for _ in 0..2 {
                        let empty = Message::Records(RawBatch::default());
                        if tx.send(empty).await.is_err() {
                            return;
                        }
                    }
                    room.free(bytes);
                    continue;
                }
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
        let _ = tx
            .send(Message::Stopped {
                reason: "replay ended".to_owned(),
            })
            .await;
    });
    let stats = pipeline.run(rx).await?;
    feeder.await.map_err(std::io::Error::other)?;
    Ok(stats)
}
