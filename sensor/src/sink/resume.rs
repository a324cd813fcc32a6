//! Where a trail on disk ends: the last whole, sealed record (and how many bytes of a torn
//! record follow it), so a new run's `sensor_start` can link to it. Reads backwards from the
//! end, so the cost does not grow with the trail.
use crate::record::trail::LastRecord;
use std::{
    fs::File,
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use crate::evidence::chain;

/// How far back from a file's end to look for a whole record. Records are at most tens of
/// KiB; anything longer than this at the end of a file is not a tail a crash leaves.
const MAX_TAIL: u64 = 16 << 20;

/// The last sealed record of the newest file (of `files`, oldest first) that has one.
pub fn last_record(files: &[PathBuf]) -> io::Result<Option<LastRecord>> {
    let mut torn_later = 0;
    for path in files.iter().rev() {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if let Some((sealed, end)) = last_sealed(&file, len)? {
            return Ok(Some(LastRecord {
                instance_id: sealed.instance_id,
                sequence: sealed.sequence,
                hash: sealed.hash,
                file: name(path),
                torn_bytes: len - end + torn_later,
            }));
        }
        torn_later += len;
    }
    Ok(None)
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last line of `file` that is a sealed, unchanged record, and the offset after it.
fn last_sealed(file: &File, len: u64) -> io::Result<Option<(chain::Sealed, u64)>> {
    let mut window = (64 << 10).min(len);
    loop {
        let start = len - window;
        let mut buf = vec![0u8; window as usize];
        file.read_exact_at(&mut buf, start)?;
        // Lines that end inside the window; the first is whole only if the window starts
        // the file or right after a newline.
        let mut end = buf.len();
        while let Some(nl) = buf[..end].iter().rposition(|&b| b == b'\n') {
            let line_start = buf[..nl].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
            let Some(line_start) = line_start.or((start == 0).then_some(0)) else {
                break;
            };
            if let Ok(sealed) = chain::check_line(&buf[line_start..nl])
                && !sealed.changed
            {
                return Ok(Some((sealed, start + nl as u64 + 1)));
            }
            end = line_start;
        }
        if window == len || window >= MAX_TAIL {
            return Ok(None);
        }
        window = (window * 4).min(len).min(MAX_TAIL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::chain::Chain;

    fn sealed_lines(n: usize, pad: usize) -> Vec<u8> {
        let mut chain = Chain::new("run-a");
        let mut out = Vec::new();
        for i in 0..n {
            let start = out.len();
            out.extend_from_slice(
                format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(pad)).as_bytes(),
            );
            chain.seal(&mut out, start);
        }
        out
    }

    #[test]
    fn finds_the_last_whole_record_past_a_torn_tail_and_empty_files() {
        let dir = std::env::temp_dir().join(format!("resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Long records, so the backward search has to widen its window.
        let mut bytes = sealed_lines(5, 100_000);
        bytes.extend_from_slice(b"{\"i\":5,\"pad\":\"xx");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, b"").unwrap();
        let last = last_record(&[a.clone(), b.clone()]).unwrap().unwrap();
        assert_eq!((last.sequence, last.file.as_str()), (4, "a"));
        assert_eq!(last.torn_bytes, 16);
        // A torn fragment alone in the newest file counts as torn too.
        std::fs::write(&b, b"{\"i\"").unwrap();
        let last = last_record(&[a.clone(), b.clone()]).unwrap().unwrap();
        assert_eq!((last.sequence, last.torn_bytes), (4, 20));
        std::fs::write(&a, b"not a record\n").unwrap();
        assert_eq!(last_record(&[a, b]).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
