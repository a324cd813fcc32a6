//! Attaches the TLS capture programs (`sensor-ebpf/src/tls.rs`: the calls that move plaintext,
//! and the one that ends a connection object) to the TLS libraries opted-in agents use
//! (OpenSSL's `SSL_*` and GnuTLS's `gnutls_record_*`, see [`TlsLibrary`]): the system's
//! OpenSSL 3 (`libssl.so.3`) and GnuTLS (`libgnutls.so.30`) at start, and every `libssl.so*`
//! and `libgnutls.so*` an opted-in agent's process maps (read from its own `/proc/<pid>/maps`, opened through its
//! `/proc/<pid>/root`, so a container's copy is found too), once per library file (device and
//! inode), never per process: a uprobe fires in every process that maps the file, and the
//! programs drop all but opted-in agents' calls after two map lookups. It also keeps the
//! kernel's map of opted-in agents (`TLS_AGENTS`) in step with the manifest.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{UProbe, uprobe::UProbeScope},
};
use sensor_common::{TlsCapture, TrackedProcess};

use crate::kernel::{
    loader::LoadError,
    programs::{GNUTLS, OPENSSL, TLS_FLUSH_PROBES, TLS_FREE_PROBE, TLS_RETURN_PROBE, TlsLibrary},
    uprobe_opener::{self, UprobeOpener},
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

/// Where distributions keep GnuTLS's library.
const SYSTEM_GNUTLS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/usr/lib/aarch64-linux-gnu/libgnutls.so.30",
    "/usr/lib64/libgnutls.so.30",
    "/usr/lib/libgnutls.so.30",
    "/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/lib/aarch64-linux-gnu/libgnutls.so.30",
];

/// Where Node.js is installed (nodesource, Debian, `make install`): builds with OpenSSL
/// compiled in export its functions and are probed like a library.
const SYSTEM_NODE: &[&str] = &["/usr/bin/node", "/usr/local/bin/node"];

/// A library file: device and inode.
type FileKey = (u64, u64);

/// What is attached where, and the kernel's map of opted-in agents.
pub(crate) struct TlsAttacher {
    agents_map: BpfHashMap<MapData, u32, TlsCapture>,
    /// Library files the programs are attached to, or that attaching failed for (not retried).
    done: HashSet<FileKey>,
    /// Why attaching failed, for the files it failed for.
    failed: HashMap<FileKey, String>,
    /// Processes already said to be not captured through a file (tgid, file).
    reported: HashSet<(u32, FileKey)>,
    /// Agent numbers with capture on.
    agents: HashSet<u32>,
    /// Library paths attached to, for the log.
    pub(crate) libraries: Vec<String>,
    /// What each executable (device and inode) is, once read.
    executables: HashMap<FileKey, Executable>,
    /// Processes already judged (tgid, and the executable they were judged by).
    judged: HashMap<u32, FileKey>,
    /// Opens uprobes for the daemon after its capability drop, where the kernel wants
    /// `CAP_SYS_ADMIN` for them (see [`uprobe_opener`]).
    opener: Option<UprobeOpener>,
    /// The uprobe events the opener opened, the programs attached to them while they stay open.
    events: Vec<OwnedFd>,
}

/// What an executable means for TLS capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Executable {
    /// It exports OpenSSL's functions itself (a Node.js build with OpenSSL inside): probed
    /// like a library.
    ExportsOpenSsl,
    /// Dynamically linked: a TLS library it loads (now or later) shows in its mappings.
    Dynamic,
    /// Its TLS stack cannot be probed, and why.
    NotCapturable(&'static str),
}

/// A process of an opted-in agent whose TLS traffic the sensor cannot see, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCaptured {
    /// The process.
    pub tgid: u32,
    /// Its attribution.
    pub attribution: TrackedProcess,
    /// Why its TLS stack cannot be probed.
    pub reason: String,
    /// Its executable's path, as the process sees it.
    pub executable: String,
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
            failed: HashMap::new(),
            reported: HashSet::new(),
            agents: HashSet::new(),
            libraries: Vec::new(),
            executables: HashMap::new(),
            judged: HashMap::new(),
            opener: UprobeOpener::spawn(),
            events: Vec::new(),
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

    /// Attaches, while the daemon still has every capability it started with, to the system's
    /// OpenSSL 3 and GnuTLS, and to a Node.js with OpenSSL inside, wherever they are installed. (Some
    /// kernels open uprobes only for `CAP_SYS_ADMIN`, which the daemon drops after loading:
    /// libraries found later go through the uprobe opener, where there is one.)
    pub(crate) fn attach_system(&mut self, ebpf: &mut Ebpf) {
        for (paths, library) in [(SYSTEM_LIBSSL, &OPENSSL), (SYSTEM_GNUTLS, &GNUTLS)] {
            for path in paths {
                if let Some((file, key)) = open_keyed(Path::new(path)) {
                    self.attach(ebpf, &file, Path::new(path), key, library);
                }
            }
        }
        for path in SYSTEM_NODE {
            if let Some((file, key)) = open_keyed(Path::new(path)) {
                let kind = *self
                    .executables
                    .entry(key)
                    .or_insert_with(|| classify(&file));
                if kind == Executable::ExportsOpenSsl {
                    self.attach(ebpf, &file, Path::new(path), key, &OPENSSL);
                }
            }
        }
    }

    /// Attaches to the TLS libraries the opted-in agents' processes map that are not yet.
    /// `tracked`: the tracked-process map's entries (tgid, attribution). Returns the opted-in
    /// agents' processes newly found to use a TLS stack that cannot be probed, or a library or
    /// executable the probes could not be attached to.
    pub(crate) fn scan(
        &mut self,
        ebpf: &mut Ebpf,
        tracked: &[(u32, TrackedProcess)],
    ) -> Vec<NotCaptured> {
        let mut not_captured = Vec::new();
        let mut seen = HashSet::new();
        for &(tgid, who) in tracked {
            if !self.agents.contains(&who.agent) {
                continue;
            }
            seen.insert(tgid);
            let exe = self.judge(ebpf, tgid);
            let executable = exe
                .as_ref()
                .map(|(path, _)| path.clone())
                .unwrap_or_default();
            let say = |reason: String| NotCaptured {
                tgid,
                attribution: who,
                reason,
                executable: executable.clone(),
            };
            if let Some((_, Err(reason))) = &exe {
                not_captured.push(say((*reason).to_owned()));
            }
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{tgid}/maps")) else {
                continue;
            };
            let probed = exe.and_then(|(path, kind)| kind.ok().map(|key| (path, key)));
            for (path, library) in tls_libraries(&maps) {
                // Keyed as `attach_system` keys it (stat, not the maps' device numbers, which
                // differ from stat's on overlay file systems), so no file is attached twice.
                let through_root = format!("/proc/{tgid}/root{path}");
                if let Some((file, key)) = open_keyed(Path::new(&through_root)) {
                    self.attach(ebpf, &file, Path::new(&through_root), key, library);
                    if let Some(found) = self.unprobed(tgid, key, &path) {
                        not_captured.push(say(found));
                    }
                }
            }
            if let Some((path, key)) = probed
                && let Some(found) = self.unprobed(tgid, key, &path)
            {
                not_captured.push(say(found));
            }
        }
        self.judged.retain(|tgid, _| seen.contains(tgid));
        self.reported.retain(|(tgid, _)| seen.contains(tgid));
        not_captured
    }

    /// Why process `tgid`'s TLS through file `key` (at `path`) is not seen: the probes could
    /// not be attached to it. Once per process and file.
    fn unprobed(&mut self, tgid: u32, key: FileKey, path: &str) -> Option<String> {
        let why = self.failed.get(&key)?;
        self.reported
            .insert((tgid, key))
            .then(|| format!("the probes could not be attached to {path}: {why}"))
    }

    /// Looks at a process's executable once (again after it execs another): one that exports
    /// OpenSSL's functions is probed (`Ok` with its file, whose attachment may still have
    /// failed); one whose TLS stack cannot be probed is `Err` with why; a dynamically linked
    /// one gives nothing here (its libraries are in its mappings). With the executable's path.
    fn judge(
        &mut self,
        ebpf: &mut Ebpf,
        tgid: u32,
    ) -> Option<(String, Result<FileKey, &'static str>)> {
        let exe = format!("/proc/{tgid}/exe");
        let (file, key) = open_keyed(Path::new(&exe))?;
        if self.judged.insert(tgid, key) == Some(key) {
            return None;
        }
        let kind = *self
            .executables
            .entry(key)
            .or_insert_with(|| classify(&file));
        let path = std::fs::read_link(&exe)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match kind {
            Executable::ExportsOpenSsl => {
                self.attach(ebpf, &file, Path::new(&path), key, &OPENSSL);
                Some((path, Ok(key)))
            }
            Executable::Dynamic => None,
            Executable::NotCapturable(reason) => Some((path, Err(reason))),
        }
    }

    /// Attaches to `file` (opened from `path`, which the log names), a copy of `library`, once.
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        file: &File,
        path: &Path,
        key: FileKey,
        library: &TlsLibrary,
    ) {
        if !self.done.insert(key) {
            return;
        }
        // Through the open file, not the path: a `/proc/<pid>/...` path dies with its process,
        // which may exit while the symbols are read.
        let open = format!("/proc/self/fd/{}", file.as_raw_fd());
        let attached = match (attach_file(ebpf, Path::new(&open), library), &self.opener) {
            // Refused after the capability drop: through the opener.
            (Err(e), Some(opener)) if e.contains("os error 13") => {
                attach_through(ebpf, opener, file, &mut self.events, library)
            }
            (result, _) => result,
        };
        match attached {
            Ok(()) => {
                tracing::info!(library = %path.display(), stack = library.name, "TLS capture attached");
                self.libraries.push(path.display().to_string());
            }
            Err(e) => {
                tracing::warn!(
                    library = %path.display(),
                    stack = library.name,
                    "cannot attach TLS capture: {e}"
                );
                self.failed.insert(key, e);
            }
        }
    }
}

/// Attaches `library`'s entry probes, the return probe on each of their functions, the probe
/// on its `ends` functions and the flush probes on its `flushes`, to one library file. The
/// functions `library` requires must be there; the others (OpenSSL's `_ex` forms, >= 1.1.1;
/// GnuTLS's newer calls) where they are.
fn attach_file(ebpf: &mut Ebpf, path: &Path, library: &TlsLibrary) -> Result<(), String> {
    for &(symbol, required) in library.ends {
        let free = program(ebpf, TLS_FREE_PROBE)?;
        if let Err(e) = free.attach(symbol, path, UProbeScope::AllProcesses)
            && required
        {
            return Err(format!("{symbol}: {}", with_causes(&e)));
        }
    }
    // Before the sends, so no flush is seen without its mark; the return first, so no mark
    // is left without its end.
    for &symbol in library.flushes {
        let (flush, flush_return) = TLS_FLUSH_PROBES;
        if program(ebpf, flush_return)?
            .attach(symbol, path, UProbeScope::AllProcesses)
            .is_ok()
        {
            program(ebpf, flush)?
                .attach(symbol, path, UProbeScope::AllProcesses)
                .map_err(|e| format!("{symbol}: {}", with_causes(&e)))?;
        }
    }
    for &(entry, symbol, required) in library.calls {
        for name in [entry, TLS_RETURN_PROBE] {
            if let Err(e) = program(ebpf, name)?.attach(symbol, path, UProbeScope::AllProcesses) {
                if required {
                    return Err(format!("{symbol}: {}", with_causes(&e)));
                }
                break;
            }
        }
    }
    Ok(())
}

/// The uprobe program `name` of the loaded object.
fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, String> {
    ebpf.program_mut(name)
        .ok_or_else(|| format!("no program {name}"))?
        .try_into()
        .map_err(|e| format!("{name}: {e}"))
}

/// Attaches the same probes as [`attach_file`] through `opener`: the symbols' file offsets
/// read here, each event opened by the opener and kept in `events`.
fn attach_through(
    ebpf: &mut Ebpf,
    opener: &UprobeOpener,
    file: &File,
    events: &mut Vec<OwnedFd>,
    library: &TlsLibrary,
) -> Result<(), String> {
    let elf = object::ReadCache::new(file);
    for &(symbol, required) in library.ends {
        let Some(offset) = symbol_offset(&elf, symbol) else {
            if !required {
                continue;
            }
            return Err(format!("{symbol}: not in the file's symbols"));
        };
        through(
            ebpf,
            opener,
            file,
            events,
            (TLS_FREE_PROBE, symbol),
            offset,
            false,
        )?;
    }
    for &symbol in library.flushes {
        let Some(offset) = symbol_offset(&elf, symbol) else {
            continue;
        };
        let (flush, flush_return) = TLS_FLUSH_PROBES;
        for (name, ret) in [(flush_return, true), (flush, false)] {
            through(ebpf, opener, file, events, (name, symbol), offset, ret)?;
        }
    }
    for &(entry, symbol, required) in library.calls {
        let Some(offset) = symbol_offset(&elf, symbol) else {
            if !required {
                continue;
            }
            return Err(format!("{symbol}: not in the file's symbols"));
        };
        for (name, ret) in [(entry, false), (TLS_RETURN_PROBE, true)] {
            through(ebpf, opener, file, events, (name, symbol), offset, ret)?;
        }
    }
    Ok(())
}

/// Program `name` attached through `opener` at `offset` of `file` (the function `symbol`
/// starts there), on its return with `ret`; the event kept in `events`.
fn through(
    ebpf: &mut Ebpf,
    opener: &UprobeOpener,
    file: &File,
    events: &mut Vec<OwnedFd>,
    (name, symbol): (&str, &str),
    offset: u64,
    ret: bool,
) -> Result<(), String> {
    let program = program(ebpf, name)?
        .fd()
        .map_err(|e| format!("{name}: {e}"))?;
    let event = opener
        .open(file.as_fd(), offset, ret)
        .map_err(|e| format!("{symbol}: the uprobe opener: {e}"))?;
    uprobe_opener::attach(&event, program.as_fd())
        .map_err(|e| format!("{symbol}: attaching {name}: {e}"))?;
    events.push(event);
    Ok(())
}

/// The file offset of the function `symbol` in an ELF file (its address translated through
/// the section that holds it), as the kernel's uprobe wants it.
fn symbol_offset<'data, R: object::ReadRef<'data>>(elf: R, symbol: &str) -> Option<u64> {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let file = object::File::parse(elf).ok()?;
    let sym = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(symbol) && s.is_definition())?;
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (offset, _) = section.file_range()?;
    Some(sym.address() - section.address() + offset)
}

/// An error with its causes; a refusal to open the uprobe's perf event says which capability
/// the kernel wanted.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if text.contains("perf_event_open") && text.contains("os error 13") {
        text.push_str(
            " (this kernel opens uprobe perf events only for CAP_SYS_ADMIN, which the daemon \
             did not have for a uprobe opener: only the TLS libraries found at start are \
             probed)",
        );
    }
    text
}

/// A file opened for reading, with its device and inode (following symbolic links).
fn open_keyed(path: &Path) -> Option<(File, FileKey)> {
    use std::os::unix::fs::MetadataExt as _;
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    Some((file, (meta.dev(), meta.ino())))
}

/// What an executable is for TLS capture, from its ELF sections and symbols. Read through a
/// cache of the parts looked at, never whole: a Node.js binary is ~100 MB.
fn classify(file: &File) -> Executable {
    classify_elf(&object::ReadCache::new(file))
}

fn classify_elf<'data, R: object::ReadRef<'data>>(bytes: R) -> Executable {
    use object::{Object as _, ObjectSymbol as _};
    let Ok(file) = object::File::parse(bytes) else {
        return Executable::Dynamic;
    };
    let exports = |name: &str| {
        file.dynamic_symbols()
            .any(|s| s.name() == Ok(name) && s.is_definition())
    };
    if exports("SSL_write") && exports("SSL_read") {
        return Executable::ExportsOpenSsl;
    }
    let has_section = |name: &str| file.section_by_name(name).is_some();
    if has_section(".go.buildinfo") || has_section(".gopclntab") || has_section(".note.go.buildid")
    {
        return Executable::NotCapturable(
            "Go program: its crypto/tls is compiled in, with no OpenSSL functions to probe",
        );
    }
    if has_section(".interp") {
        return Executable::Dynamic;
    }
    let names = || file.symbols().filter_map(|s| s.name().ok());
    if names().any(|n| n.contains("rustls")) {
        return Executable::NotCapturable(
            "statically linked program with rustls compiled in: no OpenSSL functions to probe",
        );
    }
    if file.symbols().next().is_none() {
        return Executable::NotCapturable(
            "statically linked, stripped program: its TLS stack, if any, has no symbols to probe",
        );
    }
    Executable::NotCapturable(
        "statically linked program without OpenSSL's exported functions (BoringSSL or another TLS stack compiled in, if any)",
    )
}

/// The TLS libraries a `/proc/<pid>/maps` text names, each once, with which library each is.
fn tls_libraries(maps: &str) -> Vec<(String, &'static TlsLibrary)> {
    let mut out: Vec<(String, &'static TlsLibrary)> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path (the path may hold spaces)
        let path: Vec<&str> = line.split_ascii_whitespace().skip(5).collect();
        let path = path.join(" ");
        let name = path.rsplit('/').next().unwrap_or("");
        // `libgnutls.so*`, not GnuTLS's other libraries (`libgnutls-dane.so`, `libgnutlsxx.so`,
        // `libgnutls-openssl.so`, whose OpenSSL-named functions call GnuTLS's, probed here).
        let library = if name.starts_with("libssl.so") {
            &OPENSSL
        } else if name.starts_with("libgnutls.so") {
            &GNUTLS
        } else {
            continue;
        };
        if path.starts_with('/')
            && !path.ends_with(" (deleted)")
            && !out.iter().any(|(p, _)| *p == path)
        {
            out.push((path, library));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_path(path: &str) -> Executable {
        classify(
            &File::open(path)
                .unwrap_or_else(|e| panic!("{path}: {e} (installed by `cargo xtask setup`)")),
        )
    }

    #[test]
    fn executables_are_told_apart() {
        // This test binary: a dynamically linked Rust program.
        assert_eq!(classify_path("/proc/self/exe"), Executable::Dynamic);
        assert_eq!(classify_elf(&b"#!/bin/sh\n"[..]), Executable::Dynamic);
        // Debian's busybox-static: static and stripped.
        assert!(matches!(
            classify_path("/bin/busybox"),
            Executable::NotCapturable(r) if r.starts_with("statically linked, stripped")
        ));
        // Debian's nats-server: a Go program (dynamically linked, but its TLS is Go's own).
        assert!(matches!(
            classify_path("/usr/sbin/nats-server"),
            Executable::NotCapturable(r) if r.starts_with("Go program")
        ));
        // Node.js with OpenSSL compiled in, exporting its functions.
        assert_eq!(classify_path("/usr/bin/node"), Executable::ExportsOpenSsl);
    }

    #[test]
    fn finds_each_tls_library_once() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r-xp 00001000 fe:01 99 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000005000-7f0000006000 r-xp 00001000 00:2a 77 /opt/venv/lib/libssl.so.1.1 (deleted)
7f0000007000-7f0000008000 r-xp 00001000 00:2a 78 /opt/my app/libssl.so.3
7f0000009000-7f000000a000 rw-p 00000000 00:00 0 [heap]
7f000000b000-7f000000c000 r-xp 00001000 fe:01 55 /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
7f000000c000-7f000000d000 r--p 00002000 fe:01 55 /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
7f000000d000-7f000000e000 r-xp 00001000 fe:01 56 /usr/lib/x86_64-linux-gnu/libgnutls-dane.so.0.4.1
7f000000e000-7f000000f000 r-xp 00001000 fe:01 57 /usr/lib/x86_64-linux-gnu/libgnutls-openssl.so.27
7f000000f000-7f0000010000 r-xp 00001000 fe:01 58 /usr/lib/x86_64-linux-gnu/libgnutlsxx.so.30
";
        let found: Vec<(String, &str)> = tls_libraries(maps)
            .into_iter()
            .map(|(path, library)| (path, library.name))
            .collect();
        assert_eq!(
            found,
            [
                ("/usr/lib/x86_64-linux-gnu/libssl.so.3".into(), "OpenSSL"),
                ("/opt/my app/libssl.so.3".into(), "OpenSSL"),
                (
                    "/usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3".into(),
                    "GnuTLS"
                ),
            ]
        );
    }
}
