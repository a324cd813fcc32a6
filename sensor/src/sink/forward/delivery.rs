//! A sink's delivery thread: reads its queue from the last acknowledged record, hands batches
//! to the transport, and only on the transport's acknowledgement lets them leave the queue.
//! A failure rewinds to the first unacknowledged record and retries with a doubling pause
//! (100 ms up to `retry_max_ms`), so records arrive in order, at least once.
//!
//! A thread of its own with blocking I/O: nothing it waits on (a slow reader, a connect
//! timeout, the queue's disk) can hold up the kernel reader or the pipeline.
use std::time::{Duration, Instant};

use super::{
    Rejected, Transport,
    health::Tracker,
    keys::RecordKeys,
    queue::{Next, QueueReader, SinkLoss},
};

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The settings a delivery loop runs with.
pub(super) struct Settings {
    /// The sink's name, for the `gap` record of a rejected batch.
    pub name: String,
    pub batch_records: u32,
    pub retry_max: Duration,
    /// How long, once the sensor stops, delivery may go on draining the queue.
    pub drain: Duration,
}

pub(super) fn run(
    mut queue: QueueReader,
    mut transport: Box<dyn Transport>,
    tracker: &Tracker,
    settings: &Settings,
) {
    let mut batch = Vec::new();
    let mut retry = FIRST_RETRY;
    let mut drain_until: Option<Instant> = None;
    loop {
        if queue.stopping() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + settings.drain);
            if Instant::now() >= until {
                break;
            }
        }
        let records = match queue.next(
            settings.batch_records,
            &mut batch,
            Duration::from_millis(200),
        ) {
            Ok(Next::Batch(records)) => records,
            Ok(Next::Idle) => continue,
            Ok(Next::Done) => break,
            Err(e) => {
                // The queue's own files: nothing a retry of the transport would fix soon.
                tracker.failed(&e);
                queue.rewind();
                if queue.pause(retry) {
                    break;
                }
                retry = (retry * 2).min(settings.retry_max);
                continue;
            }
        };
        let result = transport.deliver(&batch).and_then(|()| queue.ack());
        match result {
            Ok(()) => {
                tracker.delivered(records);
                retry = FIRST_RETRY;
            }
            Err(e) if rejection(&e).is_some() => {
                tracker.failed(&e);
                let lost = rejection(&e).and_then(|r| r.lost).unwrap_or(records);
                let loss = rejected(&settings.name, &batch, lost.min(records));
                if let Err(e) = queue.reject(loss) {
                    tracker.failed(&e);
                    queue.rewind();
                }
            }
            Err(e) => {
                transport.disconnect();
                tracker.failed(&e);
                queue.rewind();
                // At stop, one failed attempt ends the drain: the rest waits in the queue
                // for the next run. The other side may say how long to wait.
                let pause = transport
                    .retry_after()
                    .map_or(retry, |asked| asked.min(settings.retry_max));
                if queue.stopping() || queue.pause(pause) {
                    break;
                }
                retry = (retry * 2).min(settings.retry_max);
            }
        }
    }
    transport.disconnect();
}

fn rejection(e: &std::io::Error) -> Option<&Rejected> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Rejected>())
}

/// The loss of a rejected batch: its records' sequences, from its first and last lines.
fn rejected(sink: &str, batch: &[u8], lost: u64) -> SinkLoss {
    let mut lines = batch.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let first = lines.next().map(RecordKeys::of).and_then(|k| k.sequence);
    let last = lines
        .next_back()
        .map(RecordKeys::of)
        .and_then(|k| k.sequence);
    SinkLoss {
        sink: sink.to_owned(),
        lost,
        first_sequence: first.unwrap_or(0),
        last_sequence: last.or(first).unwrap_or(0),
        error: "rejected",
        instance_id: None,
    }
}
