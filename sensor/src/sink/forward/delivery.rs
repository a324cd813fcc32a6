//! A sink's delivery thread: reads its queue from the last acknowledged record, hands batches
//! to the transport, and only on the transport's acknowledgement lets them leave the queue.
//! A failure rewinds to the first unacknowledged record and retries with a doubling pause
//! (100 ms up to `retry_max_ms`), so records arrive in order, at least once.
//!
//! A thread of its own with blocking I/O: nothing it waits on (a slow reader, a connect
//! timeout, the queue's disk) can hold up the kernel reader or the pipeline.
use std::time::{Duration, Instant};

use super::{
    Transport,
    health::Tracker,
    queue::{Next, QueueReader},
};

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The settings a delivery loop runs with.
pub(super) struct Settings {
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
            Err(e) => {
                transport.disconnect();
                tracker.failed(&e);
                queue.rewind();
                // At stop, one failed attempt ends the drain: the rest waits in the queue
                // for the next run.
                if queue.stopping() || queue.pause(retry) {
                    break;
                }
                retry = (retry * 2).min(settings.retry_max);
            }
        }
    }
    transport.disconnect();
}
