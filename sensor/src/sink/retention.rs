//! Trail retention: which old files of a trail directory go (last written longer ago than
//! `output.retention_age_ms`, then the oldest while the trail is over
//! `output.retention_bytes`), and what each held (its first and last sealed records), for the
//! `trail_retention` record that is written, and synced, before they are removed. The file
//! being written is never one of them. Sinks keep their own queue files (`queue_dir`), so
//! no trail file is one a sink still needs.
use std::{
    io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::{
    evidence::chain,
    record::trail::{RecordRef, RemovedFile},
};

/// The configured limits; zero turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The trail's files together, the one being written included.
    pub max_bytes: u64,
    /// Since a file was last written.
    pub max_age: Duration,
}

impl Limits {
    /// Neither limit is set: nothing is ever removed.
    pub fn is_off(&self) -> bool {
        self.max_bytes == 0 && self.max_age.is_zero()
    }
}

/// An old file of the trail, as retention weighs it.
pub struct OldFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// The old files (oldest first, the file being written not among them, its size
/// `current_bytes`) that retention removes at `now`, each with why; oldest first, always a
/// prefix of `files`, so the trail that stays is one unbroken stretch.
pub fn choose(
    files: &[OldFile],
    current_bytes: u64,
    limits: Limits,
    now: SystemTime,
) -> Vec<&'static str> {
    let mut total: u64 = current_bytes + files.iter().map(|f| f.bytes).sum::<u64>();
    let mut reasons = Vec::new();
    for f in files {
        let too_old = !limits.max_age.is_zero()
            && now.duration_since(f.modified).unwrap_or_default() > limits.max_age;
        let too_big = limits.max_bytes != 0 && total > limits.max_bytes;
        let reason = match (too_old, too_big) {
            (true, _) => "age",
            (false, true) => "size",
            (false, false) => break,
        };
        reasons.push(reason);
        total -= f.bytes;
    }
    reasons
}

/// What `path` held: its size and its first and last sealed records (none when it holds no
/// readable one). Reads its first line and its tail only.
pub fn describe(path: &Path, reason: &'static str) -> io::Result<RemovedFile> {
    let mut file = std::fs::File::open(path)?;
    let bytes = file.metadata()?.len();
    let mut first_line = Vec::new();
    BufReader::new(&mut file).read_until(b'\n', &mut first_line)?;
    let first = sealed_ref(first_line.strip_suffix(b"\n").unwrap_or(&first_line));
    let last = last_sealed(&mut file, bytes)?;
    Ok(RemovedFile {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        reason,
        bytes,
        first,
        last,
    })
}

fn sealed_ref(line: &[u8]) -> Option<RecordRef> {
    let sealed = chain::check_line(line).ok()?;
    Some(RecordRef {
        instance_id: sealed.instance_id,
        sequence: sealed.sequence,
        hash: sealed.hash,
    })
}

/// The last whole line of the file that is a sealed record, reading back from the end in
/// growing windows (a torn tail after it is skipped).
fn last_sealed(file: &mut std::fs::File, len: u64) -> io::Result<Option<RecordRef>> {
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.take(len - start).read_to_end(&mut tail)?;
        // Whole lines only: the first may be cut by the window's start.
        let mut lines: Vec<&[u8]> = tail.split(|&b| b == b'\n').collect();
        if start > 0 {
            lines.remove(0);
        }
        if let Some(found) = lines.iter().rev().find_map(|l| sealed_ref(l)) {
            return Ok(Some(found));
        }
        if start == 0 {
            return Ok(None);
        }
        window *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(bytes: u64, age_s: u64, now: SystemTime) -> OldFile {
        OldFile {
            path: PathBuf::new(),
            bytes,
            modified: now - Duration::from_secs(age_s),
        }
    }

    #[test]
    fn removes_the_oldest_while_over_the_size_or_older_than_the_age() {
        let now = SystemTime::now();
        let files = [old(100, 50, now), old(100, 40, now), old(100, 30, now)];
        let by_size = Limits {
            max_bytes: 250,
            max_age: Duration::ZERO,
        };
        // 100 * 3 + 60 being written: two must go to get under 250.
        assert_eq!(choose(&files, 60, by_size, now), ["size", "size"]);
        assert!(choose(&files, 0, by_size, now).len() == 1);
        let by_age = Limits {
            max_bytes: 0,
            max_age: Duration::from_secs(35),
        };
        assert_eq!(choose(&files, 60, by_age, now), ["age", "age"]);
        assert!(choose(&files, 60, Limits::default(), now).is_empty());
        // A prefix only: a young file stops the count even if an older-looking one follows.
        let odd = [old(100, 10, now), old(100, 50, now)];
        assert!(choose(&odd, 0, by_age, now).is_empty());
    }

    #[test]
    fn describes_a_files_first_and_last_sealed_records() {
        let dir = std::env::temp_dir().join(format!("retention-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trail-0000000001-x.jsonl");
        let mut c = chain::Chain::new("run-1");
        let mut out = Vec::new();
        for i in 0..3000 {
            let start = out.len();
            out.extend_from_slice(
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).as_bytes(),
            );
            c.seal(&mut out, start);
        }
        // A torn write after the last record.
        out.extend_from_slice(b"{\"n\":");
        std::fs::write(&path, &out).unwrap();
        let d = describe(&path, "size").unwrap();
        assert_eq!(d.file, "trail-0000000001-x.jsonl");
        assert_eq!(d.bytes, out.len() as u64);
        assert_eq!(d.first.as_ref().unwrap().sequence, 0);
        let last = d.last.unwrap();
        assert_eq!((last.instance_id.as_str(), last.sequence), ("run-1", 2999));
        assert_eq!(Some((2999, last.hash.as_str())), c.last());
        std::fs::write(&path, b"not a record\n").unwrap();
        let d = describe(&path, "age").unwrap();
        assert!(d.first.is_none() && d.last.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
