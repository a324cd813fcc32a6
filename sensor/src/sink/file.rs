//! One append-only file of records: it only ever grows by whole records. A write the disk
//! could only take part of is cut back to the last whole record, so a full disk never leaves
//! a broken line in the middle of a trail.
use std::{
    fs::File,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

/// Records reveal what processes did: they are the owner's alone.
pub const FILE_MODE: u32 = 0o600;

pub struct AppendFile {
    file: File,
    path: PathBuf,
    /// Bytes in the file, all of them whole records (after `open_existing`'s repair).
    len: u64,
    opened: Instant,
    /// A file system smaller than the real one (tests).
    room: Option<Room>,
}

/// The free space of a file system smaller than the one the output is on, shared by the files
/// that use it: what a test without privileges uses where it cannot mount a small one. Writes
/// beyond it fail with `ENOSPC` as on a full disk, and a partly written record cut off again
/// gives its bytes back.
#[derive(Clone, Debug, Default)]
pub struct Room(Arc<AtomicU64>);

impl Room {
    /// A file system with `bytes` free.
    pub fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// Frees `bytes` more, as deleting a file would.
    pub fn free(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Bytes still free.
    pub fn left(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Takes up to `wanted` bytes; how many it got.
    fn take(&self, wanted: usize) -> usize {
        let wanted = wanted as u64;
        let before = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(wanted))
            })
            .unwrap_or_default();
        before.min(wanted) as usize
    }
}

/// A write that stopped early; the file holds `written` more bytes, ending on a record
/// boundary.
#[derive(Debug)]
pub struct Partial {
    pub written: usize,
    pub error: io::Error,
}

/// The disk or the quota is full: worth holding records and trying again.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// The errno name of a space error, for the gap record.
pub fn error_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        _ => "EIO",
    }
}

impl AppendFile {
    /// Creates `path`, which must not exist (a rotation never reuses a name).
    pub fn create_new(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            len: 0,
            opened: Instant::now(),
            room: None,
        })
    }

    /// Opens `path` to append to, creating it if needed. A file that ends inside a record (a
    /// crash mid-write) gets a newline first, so that the torn record stays a line of its
    /// own and the next record starts clean.
    pub fn open_existing(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)?;
        let meta = file.metadata()?;
        // Only a regular file is the trail's own: a device (`/dev/null`) or a pipe named as
        // the output belongs to the system and keeps its mode.
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the output file was readable by others: made it 0600");
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        }
        let mut this = Self {
            file,
            path: path.to_owned(),
            len: meta.len(),
            opened: Instant::now(),
            room: None,
        };
        if this.len > 0 && last_byte(&this.file, this.len)? != b'\n' {
            this.file.write_all(b"\n")?;
            this.len += 1;
        }
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name within its directory.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// Writes to this file from now on take `room` (see [`Room`]).
    pub fn set_room(&mut self, room: Option<Room>) {
        self.room = room;
    }

    /// Appends `records` (whole lines). On an error, whatever part of a record got in is cut
    /// off again; `Partial::written` says how many bytes of `records` are now in the file.
    pub fn append(&mut self, records: &[u8]) -> Result<(), Partial> {
        let mut done = 0;
        while done < records.len() {
            let mut chunk = &records[done..];
            if let Some(room) = &self.room {
                chunk = &chunk[..room.take(chunk.len())];
                if chunk.is_empty() {
                    let full = io::Error::from_raw_os_error(libc::ENOSPC);
                    return Err(self.cut_back(records, done, full));
                }
            }
            let written = self.file.write(chunk);
            if let Some(room) = &self.room {
                room.free((chunk.len() - written.as_ref().map_or(0, |n| *n)) as u64);
            }
            match written {
                Ok(0) => {
                    return Err(self.cut_back(records, done, io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut_back(records, done, e)),
            }
        }
        self.len += records.len() as u64;
        Ok(())
    }

    fn cut_back(&mut self, records: &[u8], done: usize, error: io::Error) -> Partial {
        let whole = records[..done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if whole < done {
            if let Some(room) = &self.room {
                room.free((done - whole) as u64);
            }
            // Shrinking needs no space, so this works on a full disk too.
            if let Err(e) = self.file.set_len(self.len + whole as u64) {
                return Partial {
                    written: whole,
                    error: io::Error::other(format!(
                        "{error}, and cutting the partly written record off {} failed: {e}",
                        self.path.display()
                    )),
                };
            }
        }
        self.len += whole as u64;
        Partial {
            written: whole,
            error,
        }
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Takes the file's exclusive lock, so a second sensor cannot interleave its records.
    pub fn lock(&self) -> io::Result<bool> {
        lock(&self.file)
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: false when another process holds the lock. Released when the
/// process dies, so a crash never leaves a trail locked.
pub fn lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn last_byte(file: &File, len: u64) -> io::Result<u8> {
    use std::os::unix::fs::FileExt as _;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, len - 1)?;
    Ok(b[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sink-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_torn_tail_is_closed_before_appending() {
        let dir = scratch("torn");
        let path = dir.join("t.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let mut f = AppendFile::open_existing(&path).unwrap();
        f.append(b"{\"c\":3}\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n"
        );
        assert_eq!(f.len(), std::fs::metadata(&path).unwrap().len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_files_are_owner_only_and_never_reused() {
        let dir = scratch("mode");
        let path = dir.join("t.jsonl");
        let f = AppendFile::create_new(&path).unwrap();
        assert_eq!(
            std::fs::metadata(f.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(AppendFile::create_new(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AppendFile::open_existing(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_system_with_little_room_takes_whole_records_until_freed() {
        let dir = scratch("room");
        let path = dir.join("out.jsonl");
        let mut f = AppendFile::create_new(&path).unwrap();
        let room = Room::new(10);
        f.set_room(Some(room.clone()));
        f.append(b"{\"a\":1}\n").unwrap();
        // 2 bytes left: the next record gets in part way and is cut off again.
        let e = f.append(b"{\"b\":2}\n{\"c\":3}\n").unwrap_err();
        assert_eq!(error_name(&e.error), "ENOSPC");
        assert_eq!((e.written, f.len(), room.left()), (0, 8, 2));
        room.free(100);
        f.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(room.left(), 94);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_leaves_only_whole_records() {
        // /dev/full fails every write with ENOSPC; a partial write is cut back by length.
        let mut f = AppendFile {
            file: std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
            path: PathBuf::from("/dev/full"),
            len: 0,
            opened: Instant::now(),
            room: None,
        };
        let e = f.append(b"{}\n{}\n").unwrap_err();
        assert!(is_out_of_space(&e.error), "{:?}", e.error);
        assert_eq!((e.written, f.len()), (0, 0));
        assert_eq!(error_name(&e.error), "ENOSPC");
    }
}
