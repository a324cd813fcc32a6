//! The kernel source: drains the ring buffer when the kernel wakes it (a fill threshold) or on
//! a short timer (records submitted without a wakeup), copies records into batches for the
//! pipeline, and turns the kernel's per-CPU loss counters into loss reports.
use std::time::Duration;

use crate::pipeline::inbox::{LossReport, Message, RawBatch};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use sensor_common::kind;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};

/// The name a kind's losses are reported under.
fn kind_name(k: u16) -> &'static str {
    match k {
        kind::EXEC => "exec",
        kind::FORK => "fork",
        kind::EXIT => "exit",
        kind::FILE => "file",
        kind::NET => "net",
        kind::INFLIGHT => "inflight",
        kind::TRACKING => "tracking",
        kind::CGROUP => "cgroup",
        kind::TLS => "tls",
        kind::PIPE => "pipe",
        _ => "other",
    }
}

const BATCH_RECORDS: usize = 4096;
const BATCH_BYTES: usize = 1 << 20;
const LOSS_CHECK: Duration = Duration::from_secs(1);

/// The live source: the kernel's ring buffer of records and its per-CPU loss counters.
pub struct KernelSource {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    seen_lost: [u64; kind::COUNT as usize],
    poll_interval: Duration,
}

impl KernelSource {
    /// Reads `ring`, waking at least every `poll_interval`; `lost` is the kernel's per-CPU
    /// count of records it could not reserve, by kind.
    pub fn new(
        ring: RingBuf<MapData>,
        lost: PerCpuArray<MapData, u64>,
        poll_interval: Duration,
    ) -> std::io::Result<Self> {
        // A failure converts to its cause, the `io::Error` (dropping the ring buffer it gives
        // back).
        // SAFETY: the ring buffer owns its fd and moves into the AsyncFd, so the fd stays open
        // for as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }?;
        Ok(Self {
            ring,
            lost,
            seen_lost: [0; kind::COUNT as usize],
            poll_interval,
        })
    }

    /// Runs until `stop` turns true, then drains what the kernel already delivered.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Message>,
        mut stop: watch::Receiver<Option<String>>,
    ) {
        let mut tick = tokio::time::interval(self.poll_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_loss_check = Instant::now() + LOSS_CHECK;
        let reason = loop {
            tokio::select! {
                guard = self.ring.readable_mut() => match guard {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(e) => break format!("ring buffer poll failed: {e}"),
                },
                _ = tick.tick() => {}
                changed = stop.changed() => {
                    let reason = stop.borrow().clone();
                    if changed.is_err() || reason.is_some() {
                        break reason.unwrap_or_else(|| "shutdown".to_owned());
                    }
                }
            }
            if !self.drain(&tx).await {
                return;
            }
            if Instant::now() >= next_loss_check {
                next_loss_check = Instant::now() + LOSS_CHECK;
                if !self.report_losses(&tx).await {
                    return;
                }
            }
        };
        // Final drain: everything the kernel delivered before we stopped reading.
        if self.drain(&tx).await && self.report_losses(&tx).await {
            let _ = tx.send(Message::Stopped { reason }).await;
        }
    }

    /// Copies out every waiting record; false when the pipeline is gone.
    async fn drain(&mut self, tx: &mpsc::Sender<Message>) -> bool {
        loop {
            let mut batch = RawBatch::default();
            {
                let ring = self.ring.get_mut();
                while batch.len() < BATCH_RECORDS && batch.bytes.len() < BATCH_BYTES {
                    match ring.next() {
                        Some(item) => batch.push(&item),
                        None => break,
                    }
                }
            }
            if batch.is_empty() {
                return true;
            }
            let full = batch.len() >= BATCH_RECORDS || batch.bytes.len() >= BATCH_BYTES;
            if tx.send(Message::Records(batch)).await.is_err() {
                return false;
            }
            if !full {
                return true;
            }
        }
    }

    /// Sends the growth of the kernel's loss counters since the last report, if any.
    async fn report_losses(&mut self, tx: &mpsc::Sender<Message>) -> bool {
        let mut report = LossReport::default();
        for k in 0..kind::COUNT {
            let total: u64 = match self.lost.get(&k, 0) {
                Ok(per_cpu) => per_cpu.iter().sum(),
                Err(e) => {
                    tracing::warn!("cannot read the loss counter of kind {k}: {e}");
                    continue;
                }
            };
            let seen = &mut self.seen_lost[k as usize];
            if total > *seen {
                report.by_kind.push((kind_name(k as u16), total - *seen));
                *seen = total;
            }
        }
        if report.by_kind.is_empty() {
            return true;
        }
        tracing::warn!(
            lost = report.total(),
            "the kernel ring buffer was full: events lost"
        );
        tx.send(Message::Lost(report)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_record_boundaries() {
        let mut batch = RawBatch::default();
        batch.push(b"one");
        batch.push(b"");
        batch.push(b"three");
        let records: Vec<&[u8]> = batch.records().collect();
        assert_eq!(records, vec![&b"one"[..], b"", b"three"]);
    }
}
