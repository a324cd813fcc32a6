//! A sink's disk-backed queue: sealed records appended by the pipeline, read and acknowledged
//! by the sink's delivery thread, kept across restarts.
//!
//! On disk (a directory per sink, 0700): `segment-<offset>.jsonl` files holding whole records,
//! each named by the offset of its first byte in the sink's stream, and `acked`, the offset up
//! to which the other side acknowledged. Delivery resumes from `acked` after a restart; a
//! segment wholly before it is deleted. Files are not synced: the queue survives the sensor's
//! crash (the page cache does), not the host's.
//!
//! Records are appended before the output gets them, and published to the reader only once
//! the output has them: the sink never gets a record the trail lacks. Records appended and
//! never published (a crash in between) are cut off at the next open, which is told where the
//! trail ends.
//!
//! Bounded by `queue_bytes` of unacknowledged records: what does not fit is not queued, and is
//! counted by sequence for the `gap` record. Once records were dropped, none is queued again
//! until the queue is half empty and the `gap` record was taken, so the gap is one hole.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Records a sink could not queue, reported by one `gap` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLoss {
    /// The sink's name.
    pub sink: String,
    /// How many records.
    pub lost: u64,
    /// The chain sequence of the first.
    pub first_sequence: u64,
    /// ... and of the last.
    pub last_sequence: u64,
    /// Why: `queue_full`, `queue_write_failed` (the queue's disk refused), or `rejected`
    /// (the sink's other side refused them as sent).
    pub error: &'static str,
    /// The run the sequences are of, when an earlier run counted the loss.
    pub instance_id: Option<String>,
}

impl From<SinkLoss> for crate::record::Gap {
    /// The `gap` block of the records a sink's queue could not take.
    fn from(loss: SinkLoss) -> Self {
        Self {
            source: "sink",
            lost: loss.lost,
            by_kind: std::collections::BTreeMap::new(),
            error: Some(loss.error),
            start: None,
            end: None,
            sink: Some(crate::record::SinkGap {
                name: loss.sink,
                instance_id: loss.instance_id,
                first_sequence: loss.first_sequence,
                last_sequence: loss.last_sequence,
            }),
        }
    }
}

const ACKED: &str = "acked";
/// The loss counted and not yet in the trail: `<error> <lost> <first> <last> [<instance_id>]`.
const LOST: &str = "lost";

/// What the writer and the reader share.
struct Shared {
    state: Mutex<State>,
    /// Signalled on new records and on stop.
    wake: Condvar,
}

struct State {
    /// Offset just past the last queued record.
    end: u64,
    /// Offset up to which records are acknowledged.
    acked: u64,
    /// Start offsets of the segment files, oldest first; the last is being appended to.
    segments: VecDeque<u64>,
    /// Records not queued since the last `gap` was taken.
    loss: Option<SinkLoss>,
    /// Batches the other side rejected, and a loss an earlier run left unrecorded, not yet
    /// taken for a `gap` record.
    rejected: Vec<SinkLoss>,
    /// A loss was taken for a `gap` record since the `lost` file was last written.
    lost_taken: bool,
    /// ... and the restored losses (among `rejected`) were.
    rejected_taken: bool,
    /// Set when the sensor stops: the reader drains what it can, then ends.
    stopping: bool,
    /// When records were queued: the end offset of each published batch not yet acknowledged,
    /// oldest first, for the sink's lag. Bounded by [`QUEUED_AT_LIMIT`].
    queued_at: VecDeque<(u64, Instant)>,
}

/// Batches whose queueing time is kept; past it, a new batch joins the newest kept one (whose
/// time is older), so the lag can only read high, never low.
const QUEUED_AT_LIMIT: usize = 4096;

impl State {
    /// The batches up to `acked` left the queue.
    fn forget_queued_at(&mut self) {
        while self
            .queued_at
            .front()
            .is_some_and(|&(end, _)| end <= self.acked)
        {
            self.queued_at.pop_front();
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("segment-{start:020}.jsonl"))
}

/// Opens (or creates) the queue in `dir`: the writer for the pipeline, the reader for the
/// delivery thread, and a view for health reports. `trail_end` is the output's last record
/// (run and sequence), when the output is a trail: records of that run after it were queued
/// and never written to the trail (a crash between the two), and are cut off.
pub fn open(
    dir: &Path,
    sink: &str,
    bound: u64,
    trail_end: Option<(&str, u64)>,
    sync: bool,
) -> io::Result<(QueueWriter, QueueReader, QueueView)> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut segments: Vec<u64> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(start) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push(start);
        }
    }
    segments.sort_unstable();
    let acked = match fs::read_to_string(dir.join(ACKED)) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not an offset", dir.join(ACKED).display()),
            )
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => segments.first().copied().unwrap_or(0),
        Err(e) => return Err(e),
    };
    let (file, start, len) = if let Some(&newest) = segments.last() {
        let mut start = newest;
        loop {
            let path = segment_path(dir, start);
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            // A crash in the middle of an append leaves part of a record: cut it off (the
            // record is in the output; the delivery goes on with whole records only).
            let mut len = whole_records_len(&file)?;
            if let Some(end) = trail_end {
                len = not_beyond(&file, len, end)?.max(acked.saturating_sub(start).min(len));
            }
            file.set_len(len)?;
            // Appends the output never got can span a segment's roll: when none of the
            // newest segment stays, the one before may end with more of them.
            if len == 0 && trail_end.is_some() && segments.len() > 1 && acked < start {
                fs::remove_file(&path)?;
                segments.pop();
                start = *segments.last().expect("more than one");
                continue;
            }
            break (file, start, len);
        }
    } else {
        let start = acked;
        segments.push(start);
        (create_segment(dir, start)?, start, 0)
    };
    let end = start + len;
    let restored = restore_losses(dir, sink, trail_end, sync)?;
    // Within what is on disk, whatever the cursor file says.
    let acked = acked.clamp(segments[0], end);
    // What an earlier run left queued has waited at least since now.
    let queued_at = (end > acked)
        .then(|| (end, Instant::now()))
        .into_iter()
        .collect();
    let state = State {
        end,
        acked,
        segments: segments.into(),
        loss: None,
        rejected: restored.clone(),
        lost_taken: false,
        rejected_taken: false,
        stopping: false,
        queued_at,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        wake: Condvar::new(),
    });
    let mut reader = QueueReader {
        dir: dir.to_owned(),
        shared: shared.clone(),
        sync,
        sent: acked,
        file: None,
    };
    reader.forget_acked_segments();
    let writer = QueueWriter {
        dir: dir.to_owned(),
        sink: sink.to_owned(),
        shared: shared.clone(),
        bound,
        segment_bytes: (bound / 4).clamp(64 * 1024, 16 << 20),
        file,
        segment_len: len,
        unpublished: 0,
        next_sequence: 0,
        sync,
        lost_written: restored.iter().map(loss_line).collect(),
        restored,
    };
    Ok((writer, reader, QueueView { shared, bound }))
}

/// The losses a run counted and ended without recording (the `lost` file, a line each), as
/// losses of their run: the trail's last record's (`trail_end`, the run that wrote a line
/// unless the line already names one), and only those the trail has (records are queued, and
/// counted, before the output writes them). The file is rewritten naming the run, so a crash
/// before this run records them keeps them right.
fn restore_losses(
    dir: &Path,
    sink: &str,
    trail_end: Option<(&str, u64)>,
    sync: bool,
) -> io::Result<Vec<SinkLoss>> {
    let path = dir.join(LOST);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut losses = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|n| n.parse::<u64>().ok());
        let error = match fields.first() {
            Some(&"queue_full") => Some("queue_full"),
            Some(&"queue_write_failed") => Some("queue_write_failed"),
            _ => None,
        };
        let (Some(error), Some(lost), Some(first), Some(last)) =
            (error, number(1), number(2), number(3))
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} line {}: not a loss: {line:?}", path.display(), n + 1),
            ));
        };
        let instance_id = fields
            .get(4)
            .map(|s| (*s).to_owned())
            .or(trail_end.map(|(run, _)| run.to_owned()));
        let mut loss = SinkLoss {
            sink: sink.to_owned(),
            lost,
            first_sequence: first,
            last_sequence: last,
            error,
            instance_id,
        };
        if let Some((run, end)) = trail_end
            && loss.instance_id.as_deref() == Some(run)
        {
            if loss.first_sequence > end {
                continue;
            }
            if loss.last_sequence > end {
                loss.lost -= loss.last_sequence - end;
                loss.last_sequence = end;
            }
        }
        losses.push(loss);
    }
    let text: String = losses.iter().map(loss_line).collect();
    write_small(dir, LOST, &text, sync)?;
    Ok(losses)
}

fn loss_line(loss: &SinkLoss) -> String {
    let mut line = format!(
        "{} {} {} {}",
        loss.error, loss.lost, loss.first_sequence, loss.last_sequence
    );
    if let Some(run) = &loss.instance_id {
        line.push(' ');
        line.push_str(run);
    }
    line.push('\n');
    line
}

/// Replaces `dir/name` with `text` (a temporary file renamed over it); with `sync`, on disk
/// before it returns.
fn write_small(dir: &Path, name: &str, text: &str, sync: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn create_segment(dir: &Path, start: u64) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(segment_path(dir, start))
}

/// How many records (lines) `bytes` holds.
fn lines_in(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| n + u64::from(b == b'\n'))
}

/// The length of the first `len` bytes of `file` without the records of run `end.0` after
/// sequence `end.1` at its end.
fn not_beyond(file: &File, len: u64, end: (&str, u64)) -> io::Result<u64> {
    let mut bytes = vec![0u8; usize::try_from(len).expect("a segment fits in memory")];
    file.read_exact_at(&mut bytes, 0)?;
    let mut keep = bytes.len();
    while keep > 0 {
        let start = bytes[..keep - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        match crate::evidence::chain::check_line(&bytes[start..keep - 1]) {
            Ok(r) if r.instance_id == end.0 && r.sequence > end.1 => keep = start,
            _ => break,
        }
    }
    Ok(keep as u64)
}

/// The length of `file` up to and including its last newline.
fn whole_records_len(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let n = usize::try_from(pos.min(buf.len() as u64)).expect("fits the buffer");
        pos -= n as u64;
        file.read_exact_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
    }
    Ok(0)
}

/// The pipeline's end: appends sealed records.
pub struct QueueWriter {
    dir: PathBuf,
    sink: String,
    shared: Arc<Shared>,
    bound: u64,
    segment_bytes: u64,
    file: File,
    segment_len: u64,
    /// Bytes appended and not yet published to the reader.
    unpublished: u64,
    /// The chain sequence of the next record handed over (a run's chain starts at 0).
    next_sequence: u64,
    /// `queue_sync = "always"`: each append is on disk before the output gets the records.
    sync: bool,
    /// What the `lost` file holds (empty: no file).
    lost_written: String,
    /// Losses an earlier run left unrecorded, until the output has their `gap` records.
    restored: Vec<SinkLoss>,
}

impl QueueWriter {
    /// Queues the whole records in `records` that fit; the rest are counted as lost.
    pub fn append(&mut self, records: &[u8]) {
        let count = lines_in(records);
        let first_sequence = self.next_sequence;
        self.next_sequence += count;
        let take = {
            let state = lock(&self.shared);
            let room = self
                .bound
                .saturating_sub(state.end + self.unpublished - state.acked);
            if state.loss.is_some() {
                0
            } else if records.len() as u64 <= room {
                records.len()
            } else {
                let room = usize::try_from(room).unwrap_or(usize::MAX);
                records[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
            }
        };
        let (taken, error) = match self.write(&records[..take]) {
            Ok(()) => (take, "queue_full"),
            Err(e) => {
                tracing::warn!(sink = %self.sink, error = %e, "the sink's queue cannot be written: its records are dropped for this sink and counted");
                (0, "queue_write_failed")
            }
        };
        self.unpublished += taken as u64;
        let mut state = lock(&self.shared);
        let kept = lines_in(&records[..taken]);
        if kept < count {
            let loss = state.loss.get_or_insert_with(|| SinkLoss {
                sink: self.sink.clone(),
                lost: 0,
                first_sequence: first_sequence + kept,
                last_sequence: 0,
                error,
                instance_id: None,
            });
            loss.lost += count - kept;
            loss.last_sequence = first_sequence + count - 1;
            let loss = loss.clone();
            drop(state);
            self.keep_lost(Some(&loss));
        }
    }

    /// Keeps the `lost` file equal to the losses counted and not yet in the trail (restored
    /// ones, and `current`), so a `kill -9` before their `gap` records does not lose them.
    fn keep_lost(&mut self, current: Option<&SinkLoss>) {
        let text: String = self.restored.iter().chain(current).map(loss_line).collect();
        if text == self.lost_written {
            return;
        }
        let result = if text.is_empty() {
            match fs::remove_file(self.dir.join(LOST)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            write_small(&self.dir, LOST, &text, self.sync)
        };
        match result {
            Ok(()) => self.lost_written = text,
            Err(e) => {
                tracing::warn!(sink = %self.sink, error = %e, "the sink's loss count cannot be kept on disk: a crash before its gap record would lose it");
            }
        }
    }

    /// The output has the records appended so far: the reader may hand them out.
    pub fn publish(&mut self) {
        // A loss taken since is in the output now (its `gap` record was sealed before the
        // records just written): the file keeps only what is still unrecorded.
        let taken = {
            let mut state = lock(&self.shared);
            if std::mem::take(&mut state.rejected_taken) {
                self.restored.clear();
            }
            std::mem::take(&mut state.lost_taken).then(|| state.loss.clone())
        };
        if let Some(still) = taken {
            self.keep_lost(still.as_ref());
        }
        if self.unpublished == 0 {
            return;
        }
        {
            let mut state = lock(&self.shared);
            state.end += std::mem::take(&mut self.unpublished);
            let end = state.end;
            if state.queued_at.len() < QUEUED_AT_LIMIT {
                state.queued_at.push_back((end, Instant::now()));
            } else if let Some(newest) = state.queued_at.back_mut() {
                newest.0 = end;
            }
        }
        self.shared.wake.notify_all();
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.segment_len >= self.segment_bytes {
            let start = lock(&self.shared).end + self.unpublished;
            self.file = create_segment(&self.dir, start)?;
            if self.sync {
                File::open(&self.dir)?.sync_all()?;
            }
            self.segment_len = 0;
            lock(&self.shared).segments.push_back(start);
        }
        if let Err(e) = self.file.write_all(bytes).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        }) {
            // No part of a record may stay: the reader would deliver it.
            self.file.set_len(self.segment_len)?;
            return Err(e);
        }
        self.segment_len += bytes.len() as u64;
        Ok(())
    }

    /// The records the queue could not take, once it has room again (half empty), or `now`:
    /// the caller seals a `gap` record for them, which the queue then takes.
    pub fn take_loss(&mut self, now: bool) -> Option<SinkLoss> {
        let mut state = lock(&self.shared);
        let half = state.end - state.acked <= self.bound / 2;
        if state.loss.is_some() && (now || half) {
            state.lost_taken = true;
            state.loss.take()
        } else {
            None
        }
    }

    /// The batches the sink's other side rejected since last asked.
    pub fn take_rejected(&mut self) -> Vec<SinkLoss> {
        let mut state = lock(&self.shared);
        let taken = std::mem::take(&mut state.rejected);
        // The restored losses are among them: they leave the file once the output has their
        // gap records.
        if !taken.is_empty() {
            state.rejected_taken = true;
            state.lost_taken = true;
        }
        taken
    }

    /// Tells the reader to deliver what it can by `deadline` and end.
    pub fn stop(&self) {
        lock(&self.shared).stopping = true;
        self.shared.wake.notify_all();
    }
}

/// What the delivery thread's next step is.
pub enum Next {
    /// Records to send (whole lines, in `batch`), and their count; acknowledge with
    /// [`QueueReader::ack`].
    Batch(u64),
    /// Nothing new yet.
    Idle,
    /// The sensor is stopping and everything queued was delivered.
    Done,
}

/// The delivery thread's end: reads records from the last acknowledged one and acknowledges
/// them.
pub struct QueueReader {
    dir: PathBuf,
    shared: Arc<Shared>,
    /// `queue_sync = "always"`: the acknowledged offset is on disk before records leave.
    sync: bool,
    /// Offset just past the records handed out and not yet acknowledged.
    sent: u64,
    /// The segment open for reading, by start offset.
    file: Option<(u64, File)>,
}

/// Most bytes handed out in one batch (a batch ends at a record anyway).
const BATCH_BYTES: u64 = 4 << 20;

impl QueueReader {
    /// Fills `batch` with up to `max_records` whole records after the last acknowledged ones
    /// (waiting up to `wait` for some).
    pub fn next(
        &mut self,
        max_records: u32,
        batch: &mut Vec<u8>,
        wait: Duration,
    ) -> io::Result<Next> {
        batch.clear();
        let (start, stop) = {
            let mut state = lock(&self.shared);
            let deadline = Instant::now() + wait;
            while state.end == self.sent && !state.stopping {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Next::Idle);
                }
                state = self
                    .shared
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            if state.end == self.sent {
                return Ok(Next::Done);
            }
            let i = state.segments.partition_point(|&s| s <= self.sent) - 1;
            let start = state.segments[i];
            let stop = state.segments.get(i + 1).copied().unwrap_or(state.end);
            (start, stop.min(state.end).min(self.sent + BATCH_BYTES))
        };
        if self.file.as_ref().is_none_or(|(s, _)| *s != start) {
            self.file = Some((start, File::open(segment_path(&self.dir, start))?));
        }
        let (_, file) = self.file.as_ref().expect("opened above");
        let len = usize::try_from(stop - self.sent).expect("a batch fits in memory");
        batch.resize(len, 0);
        file.read_exact_at(batch, self.sent - start)?;
        // Whole records, at most `max_records` of them.
        let mut records = 0u64;
        let mut cut = 0;
        for (i, _) in batch.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            records += 1;
            cut = i + 1;
            if records == u64::from(max_records) {
                break;
            }
        }
        batch.truncate(cut);
        if records == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a record longer than {BATCH_BYTES} bytes",
                    segment_path(&self.dir, start).display()
                ),
            ));
        }
        self.sent += cut as u64;
        Ok(Next::Batch(records))
    }

    /// The records handed out were delivered: they leave the queue.
    pub fn ack(&mut self) -> io::Result<()> {
        write_small(&self.dir, ACKED, &format!("{}\n", self.sent), self.sync)?;
        {
            let mut state = lock(&self.shared);
            state.acked = self.sent;
            state.forget_queued_at();
        }
        self.forget_acked_segments();
        Ok(())
    }

    /// The other side refused the records handed out: they leave the queue, and `loss` is
    /// kept for the pipeline's next `gap` record.
    pub fn reject(&mut self, loss: SinkLoss) -> io::Result<()> {
        self.ack()?;
        lock(&self.shared).rejected.push(loss);
        Ok(())
    }

    /// The records handed out were not delivered: they are handed out again.
    pub fn rewind(&mut self) {
        self.sent = lock(&self.shared).acked;
    }

    /// Waits `pause` (or less, if the sensor stops meanwhile); says whether it is stopping.
    pub fn pause(&self, pause: Duration) -> bool {
        let state = lock(&self.shared);
        let (state, _) = self
            .shared
            .wake
            .wait_timeout_while(state, pause, |s| !s.stopping)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.stopping
    }

    /// Whether the sensor is stopping.
    pub fn stopping(&self) -> bool {
        lock(&self.shared).stopping
    }

    /// Deletes the segments wholly acknowledged (never the one being appended to).
    fn forget_acked_segments(&mut self) {
        let mut gone = Vec::new();
        {
            let mut state = lock(&self.shared);
            while state.segments.len() > 1 && state.segments[1] <= state.acked {
                gone.extend(state.segments.pop_front());
            }
        }
        for start in gone {
            if self.file.as_ref().is_some_and(|(s, _)| *s == start) {
                self.file = None;
            }
            if let Err(e) = fs::remove_file(segment_path(&self.dir, start)) {
                tracing::warn!(error = %e, segment = start, "cannot delete a delivered queue segment");
            }
        }
    }
}

/// Reads how full a queue is, for health reports.
#[derive(Clone)]
pub struct QueueView {
    shared: Arc<Shared>,
    bound: u64,
}

impl QueueView {
    /// Bytes queued and not acknowledged, and the bound.
    pub fn fill(&self) -> (u64, u64) {
        let state = lock(&self.shared);
        (state.end - state.acked, self.bound)
    }

    /// How long the oldest record not yet acknowledged has been queued; zero when the queue
    /// is empty.
    pub fn lag(&self) -> Duration {
        let state = lock(&self.shared);
        state
            .queued_at
            .front()
            .filter(|_| state.end > state.acked)
            .map_or(Duration::ZERO, |(_, at)| at.elapsed())
    }

    /// Records currently being dropped for this sink (queue full), not yet in a `gap`.
    pub fn dropping(&self) -> u64 {
        lock(&self.shared).loss.as_ref().map_or(0, |l| l.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: u64, n: u64, pad: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in from..from + n {
            out.extend_from_slice(
                format!("{{\"n\":\"{i:08}\",\"pad\":\"{}\"}}\n", "x".repeat(pad)).as_bytes(),
            );
        }
        out
    }

    fn put(w: &mut QueueWriter, records: &[u8]) {
        w.append(records);
        w.publish();
    }

    fn drain(reader: &mut QueueReader, max: u32) -> Vec<u8> {
        let mut all = Vec::new();
        let mut batch = Vec::new();
        while let Next::Batch(_) = reader.next(max, &mut batch, Duration::ZERO).unwrap() {
            all.extend_from_slice(&batch);
            reader.ack().unwrap();
        }
        all
    }

    #[test]
    fn delivers_in_order_and_resumes_after_reopening() {
        let dir = tempdir();
        let (mut w, mut r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        put(&mut w, &lines(0, 10, 10));
        let mut batch = Vec::new();
        assert!(matches!(
            r.next(4, &mut batch, Duration::ZERO).unwrap(),
            Next::Batch(4)
        ));
        assert_eq!(batch, lines(0, 4, 10));
        r.ack().unwrap();
        // Handed out, not acknowledged: after a restart they come again.
        assert!(matches!(
            r.next(4, &mut batch, Duration::ZERO).unwrap(),
            Next::Batch(4)
        ));
        drop((w, r));
        let (mut w, mut r, view) = open(&dir, "s", 1 << 20, None, false).unwrap();
        assert_eq!(view.fill().0, lines(4, 6, 10).len() as u64);
        put(&mut w, &lines(10, 2, 10));
        assert_eq!(drain(&mut r, 100), lines(4, 8, 10));
        assert_eq!(view.fill().0, 0);
    }

    #[test]
    fn the_lag_is_the_age_of_the_oldest_record_not_acknowledged() {
        let dir = tempdir();
        let (mut w, mut r, view) = open(&dir, "s", 1 << 20, None, false).unwrap();
        assert_eq!(view.lag(), Duration::ZERO);
        put(&mut w, &lines(0, 2, 10));
        std::thread::sleep(Duration::from_millis(60));
        put(&mut w, &lines(2, 2, 10));
        assert!(view.lag() >= Duration::from_millis(60), "{:?}", view.lag());
        // The first batch acknowledged: the second's age, younger.
        let mut batch = Vec::new();
        assert!(matches!(
            r.next(2, &mut batch, Duration::ZERO).unwrap(),
            Next::Batch(2)
        ));
        r.ack().unwrap();
        assert!(view.lag() < Duration::from_millis(60), "{:?}", view.lag());
        drain(&mut r, 100);
        assert_eq!(view.lag(), Duration::ZERO);
        // A backlog an earlier run left has waited at least since the queue was opened.
        put(&mut w, &lines(4, 2, 10));
        drop((w, r, view));
        let (_w, _r, view) = open(&dir, "s", 1 << 20, None, false).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(view.lag() >= Duration::from_millis(20), "{:?}", view.lag());
    }

    #[test]
    fn the_times_kept_are_bounded_and_the_lag_never_reads_low() {
        let dir = tempdir();
        let (mut w, mut r, view) = open(&dir, "s", 1 << 24, None, false).unwrap();
        let n = QUEUED_AT_LIMIT as u64 + 10;
        for i in 0..n {
            put(&mut w, &lines(i, 1, 10));
        }
        assert_eq!(lock(&view.shared).queued_at.len(), QUEUED_AT_LIMIT);
        std::thread::sleep(Duration::from_millis(30));
        // All but the last record acknowledged: it was queued before the pause.
        let mut left = n - 1;
        let mut batch = Vec::new();
        while left > 0 {
            let want = u32::try_from(left.min(1000)).unwrap();
            let Next::Batch(got) = r.next(want, &mut batch, Duration::ZERO).unwrap() else {
                panic!("records left");
            };
            r.ack().unwrap();
            left -= got;
        }
        assert_eq!(view.fill().0, lines(n - 1, 1, 10).len() as u64);
        assert!(view.lag() >= Duration::from_millis(30), "{:?}", view.lag());
    }

    #[test]
    fn rewinds_what_was_not_delivered() {
        let dir = tempdir();
        let (mut w, mut r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        put(&mut w, &lines(0, 3, 1));
        let mut batch = Vec::new();
        r.next(2, &mut batch, Duration::ZERO).unwrap();
        r.rewind();
        assert_eq!(drain(&mut r, 2), lines(0, 3, 1));
    }

    #[test]
    fn rolls_segments_and_deletes_the_delivered_ones() {
        let dir = tempdir();
        let (mut w, mut r, _) = open(&dir, "s", 256 * 1024, None, false).unwrap();
        for i in 0..100 {
            put(&mut w, &lines(i * 10, 10, 100));
        }
        let segments = || {
            fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("segment-")
                })
                .count()
        };
        assert!(segments() > 1, "{}", segments());
        assert_eq!(drain(&mut r, 7), lines(0, 1000, 100)[..].to_vec());
        assert_eq!(segments(), 1);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_loss_not_yet_recorded_survives_a_kill_and_names_its_run() {
        let dir = tempdir();
        let bound = 65_536;
        let (mut w, _r, _) = open(&dir, "s", bound, None, false).unwrap();
        let fit = bound / lines(0, 1, 100).len() as u64;
        put(&mut w, &lines(0, fit + 5, 100));
        // A kill -9: nothing took the loss for a gap record.
        drop(w);
        let (mut w, _r, view) = open(&dir, "s", bound, Some(("run-1", fit + 4)), true).unwrap();
        assert_eq!(view.dropping(), 0, "this run has dropped nothing");
        assert_eq!(
            w.take_rejected(),
            vec![SinkLoss {
                sink: "s".into(),
                lost: 5,
                first_sequence: fit,
                last_sequence: fit + 4,
                error: "queue_full",
                instance_id: Some("run-1".into()),
            }]
        );
        // On disk until the output has the gap record (the next publish) ...
        assert!(dir.join(LOST).exists());
        // ... a kill before that keeps it, still naming its run.
        drop(w);
        let (mut w, _r, _) = open(&dir, "s", bound, Some(("run-2", 0)), true).unwrap();
        let again = w.take_rejected();
        assert_eq!(again[0].instance_id.as_deref(), Some("run-1"));
        w.publish();
        assert!(!dir.join(LOST).exists());
        drop(w);
        let (mut w, _r, _) = open(&dir, "s", bound, Some(("run-3", 0)), false).unwrap();
        assert!(w.take_rejected().is_empty());
        // Counted but never written to the trail (a crash between queue and output): only
        // what the trail has is reported.
        fs::write(dir.join(LOST), "queue_full 5 10 14\n").unwrap();
        let (mut w, _r, _) = open(&dir, "s", bound, Some(("run-4", 12)), false).unwrap();
        let clamped = w.take_rejected();
        assert_eq!(
            (
                clamped[0].lost,
                clamped[0].first_sequence,
                clamped[0].last_sequence
            ),
            (3, 10, 12)
        );
        fs::write(dir.join(LOST), "queue_full 5 10 14\n").unwrap();
        let (mut w, _r, _) = open(&dir, "s", bound, Some(("run-4", 9)), false).unwrap();
        assert!(
            w.take_rejected().is_empty(),
            "none of them reached the trail"
        );
        // A torn or altered file is an error naming it, not a silent zero.
        fs::write(dir.join(LOST), "queue_full x 1 2\n").unwrap();
        let e = open(&dir, "s", bound, None, false).err().unwrap();
        assert!(e.to_string().contains("lost line 1: not a loss"), "{e}");
    }

    #[test]
    fn counts_what_does_not_fit_and_reports_it_once_half_empty() {
        let dir = tempdir();
        let bound = 65_536;
        let (mut w, mut r, view) = open(&dir, "s", bound, None, false).unwrap();
        let record = lines(0, 1, 100).len() as u64;
        let fit = bound / record;
        put(&mut w, &lines(0, fit + 5, 100));
        put(&mut w, &lines(fit + 5, 3, 100));
        assert_eq!(view.dropping(), 8);
        assert_eq!(w.take_loss(false), None, "the queue is still full");
        let mut batch = Vec::new();
        r.next(
            u32::try_from(fit / 2 + 1).unwrap(),
            &mut batch,
            Duration::ZERO,
        )
        .unwrap();
        r.ack().unwrap();
        assert_eq!(
            w.take_loss(false),
            Some(SinkLoss {
                sink: "s".into(),
                lost: 8,
                first_sequence: fit,
                last_sequence: fit + 7,
                error: "queue_full",
                instance_id: None,
            })
        );
        put(&mut w, &lines(fit + 8, 1, 100));
        let rest = drain(&mut r, 1000);
        assert!(
            rest.ends_with(&lines(fit + 8, 1, 100)),
            "queued again after the report"
        );
        assert_eq!(w.take_loss(true), None);
    }

    #[test]
    fn cuts_a_torn_record_when_reopening() {
        let dir = tempdir();
        let (mut w, r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        put(&mut w, &lines(0, 2, 1));
        drop((w, r));
        let seg = segment_path(&dir, 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"torn").unwrap();
        let (_, mut r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        assert_eq!(drain(&mut r, 10), lines(0, 2, 1));
    }

    #[test]
    fn stopping_ends_the_reader_once_drained() {
        let dir = tempdir();
        let (mut w, mut r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        put(&mut w, &lines(0, 1, 1));
        w.stop();
        let mut batch = Vec::new();
        assert!(matches!(
            r.next(10, &mut batch, Duration::from_secs(5)).unwrap(),
            Next::Batch(1)
        ));
        r.ack().unwrap();
        assert!(matches!(
            r.next(10, &mut batch, Duration::from_secs(5)).unwrap(),
            Next::Done
        ));
        assert!(r.pause(Duration::from_secs(5)));
    }

    fn sealed(chain: &mut crate::evidence::chain::Chain, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            let start = out.len();
            out.extend_from_slice(br#"{"event":{"action":"open"}}"#);
            chain.seal(&mut out, start);
        }
        out
    }

    #[test]
    fn cuts_records_the_trail_never_got_and_keeps_the_rest() {
        let dir = tempdir();
        let mut older = crate::evidence::chain::Chain::new("run-1");
        let mut run = crate::evidence::chain::Chain::new("run-2");
        let (mut w, r, _) = open(&dir, "s", 1 << 20, None, false).unwrap();
        put(&mut w, &sealed(&mut older, 3));
        let written = sealed(&mut run, 4);
        put(&mut w, &written);
        // Appended, then the sensor died before the output had them.
        w.append(&sealed(&mut run, 2));
        drop((w, r));
        // The trail ends at run-2's sequence 3.
        let (_, mut r, _) = open(&dir, "s", 1 << 20, Some(("run-2", 3)), false).unwrap();
        let all = drain(&mut r, 100);
        assert!(all.ends_with(&written), "the records the trail has stay");
        assert_eq!(lines_in(&all), 7);
        // Never below what was delivered, nor into another run.
        let (mut w, mut r, _) = open(&dir, "s", 1 << 20, Some(("run-2", 0)), false).unwrap();
        put(&mut w, &sealed(&mut run, 1));
        assert_eq!(lines_in(&drain(&mut r, 100)), 1);
    }

    #[test]
    fn cuts_records_the_trail_never_got_across_a_segments_roll() {
        let dir = tempdir();
        let mut run = crate::evidence::chain::Chain::new("run-1");
        // 256 KiB: segments of 64 KiB.
        let (mut w, r, _) = open(&dir, "s", 256 << 10, None, false).unwrap();
        let written = sealed(&mut run, 3);
        put(&mut w, &written);
        // Two appends the output never got, the second after the segment rolled.
        let big = sealed(&mut run, 600);
        assert!(big.len() > 64 << 10);
        w.append(&big);
        w.append(&sealed(&mut run, 2));
        drop((w, r));
        let segments = || fs::read_dir(&dir).unwrap().count();
        let before = segments();
        let (mut w, mut r, _) = open(&dir, "s", 256 << 10, Some(("run-1", 2)), false).unwrap();
        assert_eq!(segments(), before - 1, "the newest segment is gone");
        assert_eq!(drain(&mut r, 1000), written);
        // The queue goes on from there.
        let next = sealed(&mut run, 1);
        put(&mut w, &next);
        assert_eq!(drain(&mut r, 1000), next);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agent-sensor-queue-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        dir.join("q")
    }
}
