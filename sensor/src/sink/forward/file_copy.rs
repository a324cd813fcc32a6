//! The file sink (`type = "file"`): the records appended, as JSON Lines, to a file a pipeline
//! tails (Vector's or Fluent Bit's file source, a log shipper). A batch counts as delivered
//! once it is on disk (`fdatasync`).
//!
//! The file is the one pipeline the sensor can read back, so it gets each record exactly
//! once: when it is (re)opened, a torn last line (a write cut by a crash or a full disk) is cut
//! off, and the first batch delivered after that skips the records the file already ends
//! with (a batch written but not acknowledged before a `kill -9` is sent again from the
//! queue). A file moved away (logrotate's `create`, the default) is noticed before the next
//! batch, and a new one is created at the path.
use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::PathBuf,
};

use super::Transport;

/// The longest last line looked for when a file is reopened; a longer one is not compared
/// (the batch is then written whole: at least once).
const LONGEST_LINE: u64 = 16 << 20;

/// An appending writer to one path.
pub struct FileCopy {
    path: PathBuf,
    open: Option<Open>,
}

struct Open {
    file: File,
    /// The file's device and inode: another at the path means it was moved away.
    id: (u64, u64),
    /// The file's last whole line when it was opened, until the next batch was compared with it.
    ends_with: Option<Vec<u8>>,
}

impl FileCopy {
    /// Opens (or creates) the file now, so a path the sensor cannot write to stops the start.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        let open = Some(Open::at(&path)?);
        Ok(Self { path, open })
    }

    /// The open file, reopened when the path now names another file or none.
    fn current(&mut self) -> io::Result<&mut Open> {
        let moved = match (&self.open, std::fs::metadata(&self.path)) {
            (Some(open), Ok(meta)) => open.id != (meta.dev(), meta.ino()),
            (Some(_), Err(e)) if e.kind() == io::ErrorKind::NotFound => true,
            (Some(_), Err(e)) => return Err(e),
            (None, _) => true,
        };
        if moved {
            self.open = Some(Open::at(&self.path)?);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }
}

impl Open {
    fn at(path: &std::path::Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let whole = whole_length(&mut file, meta.len())?;
        if whole < meta.len() {
            file.set_len(whole)?;
            file.sync_data()?;
        }
        let ends_with = last_line(&mut file, whole)?;
        Ok(Self {
            file,
            id: (meta.dev(), meta.ino()),
            ends_with,
        })
    }
}

/// The file's length up to and including its last newline (0 when it has none).
fn whole_length(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).expect("at most 64 KiB")];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The last line of a file whose first `whole` bytes end with a newline, without it; `None`
/// for an empty file or a line longer than [`LONGEST_LINE`].
fn last_line(file: &mut File, whole: u64) -> io::Result<Option<Vec<u8>>> {
    if whole == 0 {
        return Ok(None);
    }
    let body_end = whole - 1;
    let start = whole_length(file, body_end)?;
    if body_end - start > LONGEST_LINE {
        return Ok(None);
    }
    let mut line = vec![0u8; usize::try_from(body_end - start).expect("bounded above")];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Some(line))
}

/// What of `records` is still to write to a file that ends with `ends_with`: the records
/// after that line when the batch holds it, else all of them.
fn unwritten<'a>(records: &'a [u8], ends_with: &[u8]) -> &'a [u8] {
    let mut at = 0;
    for line in records.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line.strip_suffix(b"\n") == Some(ends_with) {
            return &records[at..];
        }
    }
    records
}

impl Transport for FileCopy {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        let open = self.current()?;
        let records = match open.ends_with.take() {
            Some(last) => unwritten(records, &last),
            None => records,
        };
        open.file.write_all(records)?;
        open.file.sync_data()
    }

    fn disconnect(&mut self) {
        // Reopened before the next batch: a write cut short leaves a torn line to cut.
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agent-sensor-file-copy-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("copy.jsonl")
    }

    #[test]
    fn a_reopened_file_loses_its_torn_line_and_gets_each_record_once() {
        let path = scratch("torn");
        let mut sink = FileCopy::open(path.clone()).unwrap();
        sink.deliver(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        // A crash cut the next batch's write: a torn line, and no acknowledgement.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"n\":3}\n{\"n\"")
            .unwrap();
        let mut sink = FileCopy::open(path.clone()).unwrap();
        // The queue sends the unacknowledged batch again.
        sink.deliver(b"{\"n\":3}\n{\"n\":4}\n").unwrap();
        sink.deliver(b"{\"n\":5}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n"
        );
    }

    #[test]
    fn a_batch_the_file_does_not_end_with_is_written_whole() {
        let path = scratch("whole");
        std::fs::write(&path, b"{\"n\":1}\n").unwrap();
        let mut sink = FileCopy::open(path.clone()).unwrap();
        sink.deliver(b"{\"n\":2}\n{\"n\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
        // A file with no newline at all is one torn line.
        std::fs::write(&path, b"{\"n\"").unwrap();
        let mut sink = FileCopy::open(path.clone()).unwrap();
        sink.deliver(b"{\"n\":1}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");
    }

    #[test]
    fn a_file_moved_away_is_replaced_by_a_new_one() {
        let path = scratch("rotated");
        let mut sink = FileCopy::open(path.clone()).unwrap();
        sink.deliver(b"{\"n\":1}\n").unwrap();
        let rotated = path.with_extension("jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.deliver(b"{\"n\":2}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"n\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n");
    }

    #[test]
    fn a_directory_or_a_symlink_is_refused() {
        let path = scratch("refused");
        std::fs::create_dir(&path).unwrap();
        assert!(FileCopy::open(path.clone()).is_err());
        std::fs::remove_dir(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        assert!(FileCopy::open(path).is_err());
    }
}
