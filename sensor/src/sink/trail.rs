//! A trail directory: the rotation set of one sensor's records. Files are named
//! `trail-<counter>-<UTC start>.jsonl`; the zero-padded counter comes first and only grows
//! (a new run continues after the highest one on disk), so name order is chain order even
//! when the wall clock steps back. The directory is the owner's alone (0700) and locked
//! (`flock`) while a sensor writes to it, so two sensors cannot interleave one trail.
use std::{
    fs::File,
    io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use super::{OpenError, file::AppendFile};

pub const DIR_MODE: u32 = 0o700;
const PREFIX: &str = "trail-";
const SUFFIX: &str = ".jsonl";
/// Ten digits: a file a second for three centuries.
const COUNTER_WIDTH: usize = 10;

pub struct TrailDir {
    path: PathBuf,
    /// Held open for the lock and to sync new names to disk.
    handle: File,
    /// The highest counter used so far.
    counter: u64,
}

impl TrailDir {
    /// Opens (creating it 0700 if needed) and locks the directory.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let err = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(err)?;
        }
        let meta = std::fs::metadata(path).map_err(err)?;
        if !meta.is_dir() {
            return Err(OpenError::NotADirectory(path.to_owned()));
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(OpenError::NotOwned(path.to_owned(), meta.uid()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o7777), "the output directory was open to others: made it 0700");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(err)?;
        }
        let handle = File::open(path).map_err(err)?;
        if !super::file::lock(&handle).map_err(err)? {
            return Err(OpenError::Busy(path.to_owned()));
        }
        let mut this = Self {
            path: path.to_owned(),
            handle,
            counter: 0,
        };
        this.counter = this.files().map_err(err)?.last().map_or(0, |(n, _)| *n);
        Ok(this)
    }

    /// The trail's files, oldest first.
    pub fn files(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.path)?
            .filter_map(Result::ok)
            .filter_map(|e| Some((counter_of(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Takes the next file name, stamped with `now` (UTC, for people; order is the counter's).
    pub fn reserve_name(&mut self, now: crate::record::time::UnixNanos) -> String {
        self.counter += 1;
        file_name(self.counter, now)
    }

    /// Makes removals and new names in the directory durable.
    pub fn sync(&self) -> io::Result<()> {
        self.handle.sync_all()
    }

    /// Creates a file reserved with `reserve_name`; with `durable`, makes its name survive a
    /// power loss before anything refers to it.
    pub fn create(&self, name: &str, durable: bool) -> io::Result<AppendFile> {
        let file = AppendFile::create_new(&self.path.join(name))?;
        if durable {
            self.handle.sync_all()?;
        }
        Ok(file)
    }
}

/// The name of the trail's file number `counter`, made at `now` (UTC, to the second): names
/// sort in chain order.
pub fn file_name(counter: u64, now: crate::record::time::UnixNanos) -> String {
    // 2026-12-01T11:33:00.123456789Z -> 20261201T113300Z
    let stamp: String = crate::record::time::rfc3339(now)[..19]
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{PREFIX}{counter:0COUNTER_WIDTH$}-{stamp}Z{SUFFIX}")
}

/// The counter of a trail file's name; `None` for any other file.
pub fn counter_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let digits = rest.split('-').next()?;
    if digits.len() < COUNTER_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_counter_whatever_the_clock_says() {
        let later = file_name(9, 2_000_000_000 * 1_000_000_000);
        let earlier_clock = file_name(10, 1_000_000_000 * 1_000_000_000);
        assert_eq!(later, "trail-0000000009-20330518T033320Z.jsonl");
        assert!(later < earlier_clock);
        assert_eq!(counter_of(&earlier_clock), Some(10));
        assert_eq!(counter_of("trail.jsonl"), None);
        assert_eq!(counter_of("trail-12-x.jsonl"), None);
        assert_eq!(counter_of("other-0000000001-x.jsonl"), None);
    }

    #[test]
    fn the_directory_is_owner_only_locked_and_continues_the_count() {
        let dir = std::env::temp_dir().join(format!("trail-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("a/b");
        let mut trail = TrailDir::open(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(matches!(TrailDir::open(&path), Err(OpenError::Busy(_))));
        let name = trail.reserve_name(0);
        trail.create(&name, true).unwrap();
        let name = trail.reserve_name(0);
        trail.create(&name, false).unwrap();
        drop(trail);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut again = TrailDir::open(&path).unwrap();
        assert_eq!(again.files().unwrap().len(), 2);
        assert_eq!(counter_of(&again.reserve_name(0)), Some(3));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(path.join("x"), "").unwrap();
        assert!(matches!(
            TrailDir::open(&path.join("x")),
            Err(OpenError::NotADirectory(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
