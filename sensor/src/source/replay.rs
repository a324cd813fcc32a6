//! Replays raw kernel records through the userspace pipeline without a kernel: the entry point
//! of the pipeline benchmark (`benches/pipeline.rs`), usable by any test that has records.
//!
//! Records go in exactly as the ring buffer hands them over (the `sensor-common` layouts, in
//! [`RawBatch`]es), down the same channel into the same [`Pipeline::run`] loop as a live run:
//! decode, attribution, enrichment, the evidence chain and the sink. Nothing is loaded and no
//! kernel map exists, so features that write to the kernel (the environment marker) are off.
use std::{io, sync::Arc};

use tokio::sync::mpsc;

use crate::{
    builder::identity::agent_infos,
    enrich::entity::EntityIds,
    enrich::fspath::Classifier,
    enrich::host,
    identity::manifest::AgentDecl,
    identity::registry::{Registry, Tasks},
    pipeline::inbox::{Message, RawBatch},
    pipeline::{Context, Pipeline, Stats},
    record::host::HostInfo,
};

/// A pipeline context for `agents` (kernel agent number `n` is `agents[n - 1]`), with this
/// host's identity, a fresh instance id and the built-in file classes.
pub fn context(agents: Vec<AgentDecl>) -> io::Result<Context> {
    let host = Arc::new(HostInfo::discover()?);
    let registry = Registry::new(agents);
    Ok(Context {
        entity_ids: EntityIds::new(&host.boot_id),
        host,
        instance_id: host::new_instance_id()?.into(),
        classifier: Classifier::new(&[]).map_err(io::Error::other)?,
        agents: agent_infos(&registry),
        tasks: Tasks::default(),
        cgroups: Arc::default(),
        // No kernel: no held cgroups to decide.
        selectors: None,
        all_processes: false,
        marker: None,
        registry: Arc::new(std::sync::RwLock::new(Arc::new(registry))),
        tracked: None,
    })
}

/// Feeds `batches` to `pipeline` in order, as the kernel source would, then stops it; returns
/// its counters once the stop record is written and the sink synced.
pub async fn replay(pipeline: Pipeline, batches: Vec<RawBatch>) -> io::Result<Stats> {
    // The same bound as a live run, so back-pressure between feeder and pipeline is the same.
    let (tx, rx) = mpsc::channel(64);
    let feeder = tokio::spawn(async move {
        for batch in batches {
            if tx.send(Message::Records(batch)).await.is_err() {
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
    feeder.await.map_err(io::Error::other)?;
    Ok(stats)
}
