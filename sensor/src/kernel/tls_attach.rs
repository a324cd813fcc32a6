//! Attaches the TLS capture programs (`sensor-ebpf/src/tls.rs`) to the TLS libraries opted-in
//! agents use: the system's OpenSSL 3 (`libssl.so.3`) at start, and every `libssl.so*` an
//! opted-in agent's process maps (read from its own `/proc/<pid>/maps`, opened through its
//! `/proc/<pid>/root`, so a container's copy is found too), once per library file (device and
//! inode), never per process: a uprobe fires in every process that maps the file, and the
//! programs drop all but opted-in agents' calls after two map lookups. It also keeps the
//! kernel's map of opted-in agents (`TLS_AGENTS`) in step with the manifest.

use std::{collections::HashSet, path::Path};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{UProbe, uprobe::UProbeScope},
};
use sensor_common::{TlsCapture, TrackedProcess};

use crate::kernel::{
    loader::LoadError,
    programs::{TLS_ENTRY_PROBES, TLS_RETURN_PROBE},
};

/// Where distributions keep OpenSSL 3's library.
const SYSTEM_LIBSSL: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/aarch64-linux-gnu/libssl.so.3",
];

/// A library file: device and inode.
type FileKey = (u64, u64);

/// What is attached where, and the kernel's map of opted-in agents.
pub(crate) struct TlsAttacher {
    agents_map: BpfHashMap<MapData, u32, TlsCapture>,
    /// Library files the programs are attached to, or that attaching failed for (not retried).
    done: HashSet<FileKey>,
    /// Agent numbers with capture on.
    agents: HashSet<u32>,
    /// Library paths attached to, for the log.
    pub(crate) libraries: Vec<String>,
}

impl TlsAttacher {
    /// Takes the agents map out of the loaded object (the programs were loaded by `load`).
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        let name = "TLS_AGENTS";
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let agents_map =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        Ok(Self {
            agents_map,
            done: HashSet::new(),
            agents: HashSet::new(),
            libraries: Vec::new(),
        })
    }

    /// Puts the opted-in agents (agent number, settings), and only those, in the kernel's map.
    pub(crate) fn sync_agents(&mut self, wanted: &[(u32, TlsCapture)]) {
        let mut now = HashSet::new();
        for &(n, value) in wanted {
            if let Err(e) = self.agents_map.insert(n, value, 0) {
                tracing::warn!(agent = n, "cannot turn TLS capture on: {e}");
                continue;
            }
            now.insert(n);
        }
        for gone in self.agents.difference(&now) {
            let _ = self.agents_map.remove(gone);
        }
        self.agents = now;
    }

    /// Whether any agent has capture on.
    pub(crate) fn has_agents(&self) -> bool {
        !self.agents.is_empty()
    }

    /// Attaches to the system's OpenSSL 3, wherever this distribution keeps it.
    pub(crate) fn attach_system(&mut self, ebpf: &mut Ebpf) {
        for path in SYSTEM_LIBSSL {
            if let Ok(meta) = std::fs::metadata(path) {
                use std::os::unix::fs::MetadataExt as _;
                self.attach(ebpf, Path::new(path), (meta.dev(), meta.ino()));
            }
        }
    }

    /// Attaches to the TLS libraries the opted-in agents' processes map that are not yet.
    /// `tracked`: the tracked-process map's entries (tgid, attribution).
    pub(crate) fn scan(&mut self, ebpf: &mut Ebpf, tracked: &[(u32, TrackedProcess)]) {
        for &(tgid, who) in tracked {
            if !self.agents.contains(&who.agent) {
                continue;
            }
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{tgid}/maps")) else {
                continue;
            };
            for path in tls_libraries(&maps) {
                // Keyed as `attach_system` keys it (stat, not the maps' device numbers, which
                // differ from stat's on overlay file systems), so no file is attached twice.
                let through_root = format!("/proc/{tgid}/root{path}");
                if let Ok(meta) = std::fs::metadata(&through_root) {
                    use std::os::unix::fs::MetadataExt as _;
                    self.attach(ebpf, Path::new(&through_root), (meta.dev(), meta.ino()));
                }
            }
        }
    }

    fn attach(&mut self, ebpf: &mut Ebpf, path: &Path, key: FileKey) {
        if !self.done.insert(key) {
            return;
        }
        match attach_file(ebpf, path) {
            Ok(()) => {
                tracing::info!(library = %path.display(), "TLS capture attached");
                self.libraries.push(path.display().to_string());
            }
            Err(e) => tracing::warn!(library = %path.display(), "cannot attach TLS capture: {e}"),
        }
    }
}

/// Attaches the four entry probes and the return probe to one library file. `SSL_write` and
/// `SSL_read` must be there; the `_ex` forms (OpenSSL >= 1.1.1) where they are.
fn attach_file(ebpf: &mut Ebpf, path: &Path) -> Result<(), String> {
    for &(program, symbol) in TLS_ENTRY_PROBES {
        let required = !symbol.ends_with("_ex");
        for name in [program, TLS_RETURN_PROBE] {
            let probe: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("no program {name}"))?
                .try_into()
                .map_err(|e| format!("{name}: {e}"))?;
            if let Err(e) = probe.attach(symbol, path, UProbeScope::AllProcesses) {
                if required {
                    return Err(format!("{symbol}: {e}"));
                }
                break;
            }
        }
    }
    Ok(())
}

/// The TLS libraries a `/proc/<pid>/maps` text names, each once.
fn tls_libraries(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path (the path may hold spaces)
        let path: Vec<&str> = line.split_ascii_whitespace().skip(5).collect();
        let path = path.join(" ");
        let name = path.rsplit('/').next().unwrap_or("");
        if path.starts_with('/')
            && !path.ends_with(" (deleted)")
            && name.starts_with("libssl.so")
            && !out.contains(&path)
        {
            out.push(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_tls_library_once() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r-xp 00001000 fe:01 99 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000005000-7f0000006000 r-xp 00001000 00:2a 77 /opt/venv/lib/libssl.so.1.1 (deleted)
7f0000007000-7f0000008000 r-xp 00001000 00:2a 78 /opt/my app/libssl.so.3
7f0000009000-7f000000a000 rw-p 00000000 00:00 0 [heap]
";
        assert_eq!(
            tls_libraries(maps),
            [
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/my app/libssl.so.3"
            ]
        );
    }
}
