//! The file outputs, synchronous core: one appended file, or a trail directory of rotated
//! files. Writes whole records only, syncs by the configured policy, and when the disk is
//! full holds records (bounded) and tries again, so that what it could not keep is counted
//! rather than lost in silence. Runs on a blocking thread (see `Sink`).
use crate::record::trail::{LastRecord, Retention, Rotation};
use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use super::{
    OpenError,
    backlog::{Backlog, OutputLoss},
    file::{self, AppendFile, Partial, Room},
    resume,
    retention::{self, Limits, OldFile},
    trail::TrailDir,
};
use crate::{
    config::{Fsync, Output, OutputTarget},
    enrich::clock::WallClock,
};

/// How long a clean stop waits for a full disk before giving up on the held records.
const STOP_PATIENCE: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(100);

enum Layout {
    Single,
    Directory(TrailDir),
}

struct Blocked {
    error: &'static str,
    since: Instant,
}

pub struct Durable {
    layout: Layout,
    file: AppendFile,
    /// The file a rotation record names, once the record is sealed; opened before the
    /// record is written when the disk lets us, so a name in the trail is a file on disk.
    next: Option<(String, Option<AppendFile>)>,
    backlog: Backlog,
    /// Set while writes fail for lack of space.
    blocked: Option<Blocked>,
    limit: usize,
    /// Records are being refused: admit again only once half the hold is free, so a disk
    /// that frees a little at a time does not get a gap record per record.
    refusing: bool,
    fsync: Fsync,
    /// When the oldest write not yet synced happened.
    unsynced_since: Option<Instant>,
    max_file_bytes: u64,
    max_file_age: Duration,
    previous: Option<LastRecord>,
    refused_total: u64,
    /// A smaller file system than the real one (tests).
    room: Option<Room>,
    /// How much of the trail's past to keep (directories only).
    retention: Limits,
    /// Retention is to be weighed: at start and after each rotation.
    retention_due: bool,
    /// The files a `trail_retention` record names, removed once it is written.
    retiring: Vec<std::path::PathBuf>,
}

impl Durable {
    /// Opens the output (with privileges, before they are dropped) and finds where the
    /// trail on disk ends, for the new run to link to.
    pub fn open(output: &Output) -> Result<Self, OpenError> {
        let (layout, file, previous) = match &output.target {
            OutputTarget::Stdout => unreachable!("stdout is not a file output"),
            OutputTarget::File(path) => open_single(path)?,
            OutputTarget::Directory(path) => {
                let mut dir = TrailDir::open(path)?;
                let err = |source| OpenError::Io {
                    path: path.clone(),
                    source,
                };
                let files: Vec<_> = dir
                    .files()
                    .map_err(err)?
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect();
                let previous = resume::last_record(&files).map_err(err)?;
                // Every run starts a file of its own: an earlier run's files are never
                // written again, torn tail and all.
                let name = dir.reserve_name(WallClock::now());
                let file = dir
                    .create(&name, output.fsync != Fsync::Never)
                    .map_err(err)?;
                (Layout::Directory(dir), file, previous)
            }
        };
        Ok(Self {
            layout,
            file,
            next: None,
            backlog: Backlog::default(),
            blocked: None,
            refusing: false,
            limit: usize::try_from(output.buffer_bytes).unwrap_or(usize::MAX),
            fsync: output.fsync,
            unsynced_since: None,
            max_file_bytes: output.max_file_bytes,
            max_file_age: Duration::from_millis(output.max_file_age_ms),
            previous,
            refused_total: 0,
            room: None,
            retention: Limits {
                max_bytes: output.retention_bytes,
                max_age: Duration::from_millis(output.retention_age_ms),
            },
            retention_due: true,
            retiring: Vec::new(),
        })
    }

    /// Writes from now on take `room`, and fail once it is used up (see [`Room`]).
    pub fn set_room(&mut self, room: Room) {
        self.file.set_room(Some(room.clone()));
        self.room = Some(room);
    }

    /// The last record of the trail as this run found it.
    pub fn previous(&self) -> Option<&LastRecord> {
        self.previous.as_ref()
    }

    /// Whether a record may join the chain now, with `pending` bytes not yet handed over.
    pub fn admits(&self, pending: usize) -> bool {
        let room = if self.refusing {
            self.limit / 2
        } else {
            self.limit
        };
        self.blocked.is_none() || self.backlog.len() + pending < room
    }

    /// Counts a record the output has no room for.
    pub fn refuse(&mut self, action: &'static str, timestamp: &str) {
        let error = self.blocked.as_ref().map_or("ENOSPC", |b| b.error);
        self.backlog.refuse(action, timestamp, error);
        self.refusing = true;
        self.refused_total += 1;
    }

    /// The records refused since the last report, once records are admitted again (or
    /// `now`, at stop).
    pub fn take_loss(&mut self, now: bool) -> Option<OutputLoss> {
        if now || self.admits(0) {
            self.refusing = false;
            self.backlog.take_refused()
        } else {
            None
        }
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }

    /// Sealed bytes held in memory while the disk cannot take them.
    pub fn held_bytes(&self) -> usize {
        self.backlog.len()
    }

    /// Writes `records` (whole lines) after anything held, or holds them if the disk is
    /// full. Fails only on errors other than a full disk (the run ends: the sensor cannot
    /// keep its trail).
    pub fn write(&mut self, records: &[u8]) -> io::Result<()> {
        if self.backlog.is_empty() && self.blocked.is_none() {
            match self.file.append(records) {
                Ok(()) => self.note_written(records.len()),
                Err(Partial { written, error }) => {
                    self.note_written(written);
                    self.backlog.hold(&records[written..]);
                    self.blocked_by(error)?;
                }
            }
        } else {
            self.backlog.hold(records);
            self.drain()?;
        }
        self.sync_if_due()
    }

    fn note_written(&mut self, n: usize) {
        if n > 0 && self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
    }

    fn blocked_by(&mut self, error: io::Error) -> io::Result<()> {
        if !file::is_out_of_space(&error) {
            return Err(error);
        }
        if self.blocked.is_none() {
            tracing::error!(file = %self.file.path().display(), "the output is full ({error}): holding records in memory until it has room");
            self.blocked = Some(Blocked {
                error: file::error_name(&error),
                since: Instant::now(),
            });
        }
        Ok(())
    }

    /// Writes what is held, as far as the disk allows, rotating where a rotation record
    /// says so.
    fn drain(&mut self) -> io::Result<()> {
        loop {
            let pending = self.backlog.for_current_file();
            let n = pending.len();
            match self.file.append(pending) {
                Ok(()) => {
                    self.note_written(n);
                    self.backlog.written(n);
                }
                Err(Partial { written, error }) => {
                    self.note_written(written);
                    self.backlog.written(written);
                    return self.blocked_by(error);
                }
            }
            if !self.backlog.switch_due() {
                break;
            }
            if !self.switch_file()? {
                return Ok(());
            }
        }
        if let Some(b) = self.blocked.take() {
            tracing::info!(
                after = ?b.since.elapsed(),
                "the output has room again: held records written"
            );
        }
        Ok(())
    }

    /// Moves on to the next file of a rotation; false if the disk has no room for it yet.
    fn switch_file(&mut self) -> io::Result<bool> {
        let Layout::Directory(dir) = &self.layout else {
            unreachable!("only a directory rotates")
        };
        let (name, opened) = self.next.take().expect("a rotation names its next file");
        let next = match opened {
            Some(f) => f,
            None => match dir.create(&name, self.fsync != Fsync::Never) {
                Ok(f) => f,
                Err(e) => {
                    self.next = Some((name, None));
                    self.blocked_by(e)?;
                    return Ok(false);
                }
            },
        };
        let mut next = next;
        next.set_room(self.room.clone());
        let done = std::mem::replace(&mut self.file, next);
        // The closed file is final, rotation record included: make it durable now.
        if self.fsync != Fsync::Never {
            done.sync_data()?;
        }
        self.unsynced_since = None;
        self.backlog.switched();
        self.retention_due = true;
        Ok(true)
    }

    /// Old files retention removes now, if any (weighed at start and after each rotation,
    /// while the output writes): the caller seals the record and passes it to `retire`. A
    /// file it cannot read is logged and kept: retention never ends the run.
    pub fn retention_due(&mut self) -> Option<Retention> {
        if !self.retention_due
            || self.retention.is_off()
            || self.blocked.is_some()
            || !self.backlog.is_empty()
            || self.next.is_some()
        {
            return None;
        }
        self.retention_due = false;
        self.retiring.clear();
        match self.weigh_retention() {
            Ok(retention) => retention,
            Err(e) => {
                tracing::warn!("trail retention skipped until the next rotation: {e}");
                self.retiring.clear();
                None
            }
        }
    }

    fn weigh_retention(&mut self) -> io::Result<Option<Retention>> {
        let Layout::Directory(dir) = &self.layout else {
            return Ok(None);
        };
        let current = self.file.path().to_owned();
        let mut old = Vec::new();
        for (_, path) in dir.files()? {
            if path == current {
                continue;
            }
            let meta = std::fs::metadata(&path)?;
            old.push(OldFile {
                path,
                bytes: meta.len(),
                modified: meta.modified()?,
            });
        }
        let reasons = retention::choose(
            &old,
            self.file.len(),
            self.retention,
            std::time::SystemTime::now(),
        );
        if reasons.is_empty() {
            return Ok(None);
        }
        let mut removed = Vec::with_capacity(reasons.len());
        for (f, reason) in old.iter().zip(reasons) {
            removed.push(retention::describe(&f.path, reason)?);
            self.retiring.push(f.path.clone());
        }
        Ok(Some(Retention {
            removed,
            max_bytes: self.retention.max_bytes,
            max_age_ms: u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    /// Writes the `trail_retention` record and makes it durable, then removes the files it
    /// names: a removal is never without its record. A record the disk could not take yet
    /// leaves the files in place (retention is weighed again at the next rotation).
    pub fn retire(&mut self, record: &[u8]) -> io::Result<()> {
        self.write(record)?;
        let files = std::mem::take(&mut self.retiring);
        if self.blocked.is_some() || !self.backlog.is_empty() {
            tracing::warn!(
                files = files.len(),
                "the output is full: old trail files are kept until the next rotation"
            );
            return Ok(());
        }
        self.file.sync_data()?;
        self.unsynced_since = None;
        for path in &files {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(file = %path.display(), "trail retention could not remove a file: {e}");
                }
                _ => {}
            }
        }
        if let Layout::Directory(dir) = &self.layout {
            dir.sync()?;
        }
        tracing::info!(files = files.len(), "trail retention removed old files");
        Ok(())
    }

    /// A rotation is due (size or age); reserves the next file's name for its record.
    pub fn rotation_due(&mut self) -> Option<Rotation> {
        let Layout::Directory(dir) = &mut self.layout else {
            return None;
        };
        if self.blocked.is_some() || !self.backlog.is_empty() || self.file.is_empty() {
            return None;
        }
        let reason = if self.file.len() >= self.max_file_bytes {
            "size"
        } else if self.file.age() >= self.max_file_age {
            "age"
        } else {
            return None;
        };
        let next_file = dir.reserve_name(WallClock::now());
        self.next = Some((next_file.clone(), None));
        Some(Rotation {
            reason,
            file: self.file.name(),
            next_file,
        })
    }

    /// Writes the rotation record as the current file's last, then continues in the next.
    pub fn rotate(&mut self, record: &[u8]) -> io::Result<()> {
        let Layout::Directory(dir) = &self.layout else {
            unreachable!("only a directory rotates")
        };
        if let Some((name, opened @ None)) = self.next.as_mut() {
            match dir.create(name, self.fsync != Fsync::Never) {
                Ok(f) => *opened = Some(f),
                // Created when the disk has room again (`switch_file`).
                Err(e) if file::is_out_of_space(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.backlog.hold_last_for_file(record);
        self.drain()?;
        self.sync_if_due()
    }

    fn sync_if_due(&mut self) -> io::Result<()> {
        let Some(since) = self.unsynced_since else {
            return Ok(());
        };
        let due = match self.fsync {
            Fsync::EveryRecord => true,
            Fsync::Interval(ms) => since.elapsed() >= Duration::from_millis(u64::from(ms)),
            Fsync::Never => false,
        };
        if due {
            self.file.sync_data()?;
            self.unsynced_since = None;
        }
        Ok(())
    }

    /// Whether time alone has made work due: a retry, a sync, an age rotation.
    pub fn maintenance_due(&self) -> bool {
        let sync_due = match (self.fsync, self.unsynced_since) {
            (Fsync::Interval(ms), Some(since)) => {
                since.elapsed() >= Duration::from_millis(u64::from(ms))
            }
            _ => false,
        };
        let age_due = matches!(self.layout, Layout::Directory(_))
            && !self.file.is_empty()
            && self.file.age() >= self.max_file_age;
        self.blocked.is_some() || sync_due || age_due
    }

    /// How often `maintenance_due` needs asking.
    pub fn tick(&self) -> Duration {
        match self.fsync {
            Fsync::Interval(ms) => RETRY.min(Duration::from_millis(u64::from(ms))),
            _ => RETRY,
        }
    }

    /// At a clean stop: writes what is held (waiting a little for a full disk) and syncs.
    pub fn finish(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STOP_PATIENCE;
        while !self.backlog.is_empty() {
            self.drain()?;
            if self.backlog.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the output is still full: {} bytes of records (the stop record among them) could not be written to {}",
                    self.backlog.len(),
                    self.file.path().display()
                )));
            }
            std::thread::sleep(RETRY);
        }
        self.file.sync_data()
    }
}

fn open_single(path: &Path) -> Result<(Layout, AppendFile, Option<LastRecord>), OpenError> {
    let err = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        return Err(OpenError::IsADirectory(path.to_owned()));
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(super::trail::DIR_MODE)
            .create(dir)
            .map_err(err)?;
    }
    let previous = if path.exists() {
        resume::last_record(&[path.to_owned()]).map_err(err)?
    } else {
        None
    };
    let file = AppendFile::open_existing(path).map_err(err)?;
    if !file.lock().map_err(err)? {
        return Err(OpenError::Busy(path.to_owned()));
    }
    Ok((Layout::Single, file, previous))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn output(target: OutputTarget) -> Output {
        Output {
            target,
            max_file_bytes: 4096,
            buffer_bytes: 65_536,
            ..Output::default()
        }
    }

    fn records(n: usize) -> Vec<u8> {
        let mut chain = crate::evidence::chain::Chain::new("run");
        let mut out = Vec::new();
        for i in 0..n {
            let start = out.len();
            out.extend_from_slice(
                format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(500)).as_bytes(),
            );
            chain.seal(&mut out, start);
        }
        out
    }

    #[test]
    fn a_directory_rotates_with_the_record_last_in_the_old_file() {
        let dir = scratch("rotate");
        let mut sink = Durable::open(&output(OutputTarget::Directory(dir.clone()))).unwrap();
        assert!(sink.previous().is_none());
        assert!(
            sink.rotation_due().is_none(),
            "an empty file is not rotated"
        );
        sink.write(&records(10)).unwrap();
        let rotation = sink.rotation_due().expect("over 4096 bytes");
        assert_eq!(rotation.reason, "size");
        sink.rotate(b"{\"rotation\":1}\n").unwrap();
        sink.write(b"{\"after\":1}\n").unwrap();
        sink.finish().unwrap();
        let old = std::fs::read_to_string(dir.join(&rotation.file)).unwrap();
        assert!(old.ends_with("{\"rotation\":1}\n"), "{old}");
        assert_eq!(
            std::fs::read_to_string(dir.join(&rotation.next_file)).unwrap(),
            "{\"after\":1}\n"
        );
        drop(sink);
        // The next run starts a file of its own and links to the last record.
        let again = Durable::open(&output(OutputTarget::Directory(dir.clone()))).unwrap();
        let last = again.previous().unwrap();
        assert_eq!(
            (last.sequence, last.file.as_str()),
            (9, rotation.file.as_str())
        );
        assert_eq!(
            last.torn_bytes,
            "{\"rotation\":1}\n{\"after\":1}\n".len() as u64,
            "unsealed lines after it"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_single_file_links_to_its_own_last_record_and_is_locked() {
        let dir = scratch("single");
        let path = dir.join("sub/trail.jsonl");
        let mut sink = Durable::open(&output(OutputTarget::File(path.clone()))).unwrap();
        sink.write(&records(3)).unwrap();
        assert!(sink.rotation_due().is_none(), "a single file never rotates");
        assert!(matches!(
            Durable::open(&output(OutputTarget::File(path.clone()))),
            Err(OpenError::Busy(_))
        ));
        drop(sink);
        let again = Durable::open(&output(OutputTarget::File(path.clone()))).unwrap();
        assert_eq!(again.previous().map(|p| p.sequence), Some(2));
        assert!(matches!(
            Durable::open(&output(OutputTarget::File(dir.clone()))),
            Err(OpenError::IsADirectory(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
