//! Configuration: a TOML file parsed into plain data, validated with file, line and reason for
//! every mistake, before anything is loaded (so `check-config` and tests need no kernel).
use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::enrich::fspath::{ClassRule, Classifier};
use toml::Spanned;

pub mod environment;
pub mod sinks;

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Observe every process on the host, not only tracked ones.
    pub all_processes: bool,
    /// Bound on argv bytes captured per exec; longer argv is cut and flagged.
    pub args_max_bytes: u32,
    /// Ring buffer size in bytes: a power of two, at least 64 KiB.
    pub ring_buffer_bytes: u32,
    /// Wake the daemon when this many bytes wait in the ring buffer.
    pub wakeup_bytes: u32,
    /// How often the daemon collects records that did not trigger a wakeup (bounds latency).
    pub poll_interval_ms: u32,
    /// Capacity of the kernel's tracked-process map (agents' and `--pid` processes at once).
    pub tracked_processes: u32,
    /// Use BPF LSM hooks where the kernel has them (connect addresses as the kernel copied
    /// them); off: the tracepoint path everywhere.
    pub lsm_hooks: bool,
    /// Where records go, and how durably.
    pub output: Output,
    /// Operator rules for `file.class`, checked after the built-in ones.
    pub file_classes: Vec<ClassRule>,
    /// Fold exact repeats of a file operation within this window into one counted record
    /// (0: off).
    pub repeat_window_ms: u32,
    /// The identity manifest: a YAML file or a directory of them.
    pub identities: Option<PathBuf>,
    /// The name of the opt-in environment variable that names a process's agent (weak: the
    /// process can forge it); `None` turns the check off.
    pub environment_marker: Option<String>,
    /// The Ed25519 key that signs checkpoints (`agent-sensor keygen`); none: no checkpoints.
    pub signing_key: Option<PathBuf>,
    /// A checkpoint after this many records, or this many milliseconds, whichever comes first.
    pub checkpoint_records: u32,
    /// ... and the milliseconds (a quiet run still gets its records signed).
    pub checkpoint_interval_ms: u32,
    /// The registration socket, and who besides root may use it.
    pub registration_socket: PathBuf,
    /// Uids besides root that may use the registration socket.
    pub registration_uids: Vec<u32>,
    /// Gids whose members may use it.
    pub registration_gids: Vec<u32>,
    /// Where container runtimes keep what they record of containers (`[containers]`).
    pub runtimes: crate::enrich::container::RuntimeSources,
    /// Pipelines records are delivered to besides the output (`[[sinks]]`).
    pub sinks: Vec<sinks::SinkConfig>,
    /// Detection rule files and directories (`[rules] files`), relative to the config file.
    pub rules: Vec<PathBuf>,
    /// Start with the rules that load when some are unsupported (each is logged), instead of
    /// refusing to start (`[rules] skip_unsupported`).
    pub rules_skip_unsupported: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`[metrics] listen`); none: not
    /// served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Where the registration socket is unless configured.
pub const DEFAULT_REGISTRATION_SOCKET: &str = "/run/agent-sensor/register.sock";

impl Default for Config {
    fn default() -> Self {
        Self {
            all_processes: false,
            args_max_bytes: 4096,
            ring_buffer_bytes: 16 * 1024 * 1024,
            wakeup_bytes: 256 * 1024,
            poll_interval_ms: 20,
            tracked_processes: 65_536,
            lsm_hooks: true,
            output: Output::default(),
            file_classes: Vec::new(),
            repeat_window_ms: 0,
            identities: None,
            environment_marker: None,
            signing_key: None,
            checkpoint_records: 1000,
            checkpoint_interval_ms: 10_000,
            registration_socket: PathBuf::from(DEFAULT_REGISTRATION_SOCKET),
            registration_uids: Vec::new(),
            registration_gids: Vec::new(),
            runtimes: crate::enrich::container::RuntimeSources::default(),
            sinks: Vec::new(),
            rules: Vec::new(),
            rules_skip_unsupported: false,
            metrics_listen: None,
        }
    }
}

/// The file as written, with the position of every value for error messages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    observe: RawObserve,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    file: RawFile,
    #[serde(default)]
    identities: RawIdentities,
    #[serde(default)]
    evidence: RawEvidence,
    #[serde(default)]
    containers: RawContainers,
    #[serde(default)]
    sinks: Vec<Spanned<sinks::RawSink>>,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    files: Vec<PathBuf>,
    skip_unsupported: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainers {
    containerd_socket: Option<PathBuf>,
    storage_root: Option<PathBuf>,
    docker_root: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    signing_key: Option<PathBuf>,
    checkpoint_records: Option<Spanned<u32>>,
    checkpoint_interval_ms: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentities {
    manifest: Option<PathBuf>,
    registration_socket: Option<PathBuf>,
    environment_marker: Option<Spanned<String>>,
    #[serde(default)]
    registration_uids: Vec<u32>,
    #[serde(default)]
    registration_gids: Vec<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    classes: Vec<Spanned<RawClass>>,
    repeat_window_ms: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    class: String,
    patterns: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    all_processes: Option<bool>,
    args_max_bytes: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    tracked_processes: Option<Spanned<u32>>,
    ring_buffer_bytes: Option<Spanned<u32>>,
    wakeup_bytes: Option<Spanned<u32>>,
    poll_interval_ms: Option<Spanned<u32>>,
    lsm_hooks: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    path: Option<Spanned<String>>,
    fsync: Option<Spanned<String>>,
    fsync_interval_ms: Option<Spanned<u32>>,
    max_file_bytes: Option<Spanned<u64>>,
    max_file_age_ms: Option<Spanned<u64>>,
    buffer_bytes: Option<Spanned<u64>>,
    format: Option<Spanned<String>>,
    retention_bytes: Option<Spanned<u64>>,
    retention_age_ms: Option<Spanned<u64>>,
}

/// Where records go, how often they are made durable, and (for a directory) when a file is
/// rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Stdout, a file, or a directory of rotated files.
    pub target: OutputTarget,
    /// How soon written records are forced to disk: the records a crash can lose.
    pub fsync: Fsync,
    /// A directory's file is rotated once it holds this many bytes (it may exceed them by the
    /// last batch and the rotation record).
    pub max_file_bytes: u64,
    /// ... or once it is this old.
    pub max_file_age_ms: u64,
    /// Records held in memory while the output cannot take them (a full disk); beyond this
    /// they are dropped, counted, and reported in a `gap` record when space returns.
    pub buffer_bytes: u64,
    /// How records are written: our ECS-style records, or OCSF events.
    pub format: Format,
    /// A directory's old files are removed while all its files together exceed this
    /// (0: no size limit).
    pub retention_bytes: u64,
    /// ... and once last written longer ago than this (0: no age limit).
    pub retention_age_ms: u64,
}

/// The shape of the output lines (`output.format`, `--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The records of docs/schema.md (ECS-style names).
    #[default]
    Ecs,
    /// OCSF 1.8.0 events (docs/schema.md, "OCSF output").
    Ocsf,
}

impl Format {
    /// The format `output.format` or `--format` names (`ecs`, `ocsf`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ecs" => Some(Self::Ecs),
            "ocsf" => Some(Self::Ocsf),
            _ => None,
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Self {
            target: OutputTarget::Stdout,
            fsync: Fsync::Interval(1000),
            max_file_bytes: 64 * 1024 * 1024,
            max_file_age_ms: 3_600_000,
            buffer_bytes: 16 * 1024 * 1024,
            format: Format::Ecs,
            retention_bytes: 0,
            retention_age_ms: 0,
        }
    }
}

/// Where records are written (`output.path`, `--output`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// Standard output (`-`), for a pipe into a collector.
    Stdout,
    /// One file, appended to across runs.
    File(PathBuf),
    /// A directory of rotated files, a new one per run.
    Directory(PathBuf),
}

impl OutputTarget {
    /// `-` is stdout; a path ending in `/` is a directory (decided by the spelling, not by
    /// what exists, so a config means the same on every host); anything else is a file.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "" => None,
            "-" => Some(Self::Stdout),
            dir if dir.ends_with('/') => Some(Self::Directory(PathBuf::from(dir))),
            file => Some(Self::File(PathBuf::from(file))),
        }
    }
}

/// When written records are forced to disk (`fdatasync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// After every write, before the next batch is taken: no record waits for a sync.
    EveryRecord,
    /// At most this many milliseconds after a record is written.
    Interval(u32),
    /// Left to the kernel's writeback.
    Never,
}

/// A configuration mistake, located in its file.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<(usize, usize)>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Most argv bytes the kernel programs can copy per exec.
pub const ARGS_MAX_LIMIT: u32 = sensor_common::ARGS_CAP;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text`, the content of `path` (named in errors): every key known, every value in
    /// range, file-class rules compiled.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| ConfigError {
            file: path.to_owned(),
            line: span.map(|s| line_col(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message starts with its own position banner; keep only the reason.
            let reason = e.message().trim().to_owned();
            at(e.span(), reason)
        })?;
        let mut config = Self::default();
        if let Some(v) = raw.observe.all_processes {
            config.all_processes = v;
        }
        if let Some(v) = raw.observe.args_max_bytes {
            if *v.get_ref() == 0 || *v.get_ref() > ARGS_MAX_LIMIT {
                return Err(at(
                    Some(v.span()),
                    format!("observe.args_max_bytes must be between 1 and {ARGS_MAX_LIMIT}"),
                ));
            }
            config.args_max_bytes = v.into_inner();
        }
        if let Some(v) = raw.kernel.ring_buffer_bytes {
            let n = *v.get_ref();
            if !n.is_power_of_two() || !(64 * 1024..=1 << 30).contains(&n) {
                return Err(at(
                    Some(v.span()),
                    "kernel.ring_buffer_bytes must be a power of two from 65536 to 1073741824"
                        .to_owned(),
                ));
            }
            config.ring_buffer_bytes = n;
        }
        if let Some(v) = raw.kernel.tracked_processes {
            if !(16..=4_194_304).contains(v.get_ref()) {
                return Err(at(
                    Some(v.span()),
                    "kernel.tracked_processes must be between 16 and 4194304".to_owned(),
                ));
            }
            config.tracked_processes = v.into_inner();
        }
        if let Some(v) = raw.kernel.wakeup_bytes {
            config.wakeup_bytes = v.into_inner();
        }
        if let Some(v) = raw.kernel.lsm_hooks {
            config.lsm_hooks = v;
        }
        if config.wakeup_bytes >= config.ring_buffer_bytes {
            return Err(at(
                None,
                format!(
                    "kernel.wakeup_bytes ({}) must be smaller than kernel.ring_buffer_bytes ({})",
                    config.wakeup_bytes, config.ring_buffer_bytes
                ),
            ));
        }
        if let Some(v) = raw.kernel.poll_interval_ms {
            if !(1..=1000).contains(v.get_ref()) {
                return Err(at(
                    Some(v.span()),
                    "kernel.poll_interval_ms must be between 1 and 1000".to_owned(),
                ));
            }
            config.poll_interval_ms = v.into_inner();
        }
        if let Some(v) = raw.file.repeat_window_ms {
            if *v.get_ref() > 60_000 {
                return Err(at(
                    Some(v.span()),
                    "file.repeat_window_ms must be at most 60000".to_owned(),
                ));
            }
            config.repeat_window_ms = v.into_inner();
        }
        for spanned in raw.file.classes {
            let span = spanned.span();
            let c = spanned.into_inner();
            let rule = ClassRule {
                class: c.class,
                patterns: c.patterns,
            };
            Classifier::new(std::slice::from_ref(&rule))
                .map_err(|e| at(Some(span.clone()), format!("file.classes: {e}")))?;
            config.file_classes.push(rule);
        }
        if let Some(key) = raw.evidence.signing_key {
            config.signing_key = Some(path.parent().map_or(key.clone(), |dir| dir.join(&key)));
        }
        if let Some(v) = raw.evidence.checkpoint_records {
            if *v.get_ref() == 0 {
                return Err(at(
                    Some(v.span()),
                    "evidence.checkpoint_records must be at least 1".to_owned(),
                ));
            }
            config.checkpoint_records = v.into_inner();
        }
        if let Some(v) = raw.evidence.checkpoint_interval_ms {
            if !(100..=3_600_000).contains(v.get_ref()) {
                return Err(at(
                    Some(v.span()),
                    "evidence.checkpoint_interval_ms must be between 100 and 3600000".to_owned(),
                ));
            }
            config.checkpoint_interval_ms = v.into_inner();
        }
        if let Some(v) = raw.identities.environment_marker {
            let name = v.get_ref();
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(at(
                    Some(v.span()),
                    "identities.environment_marker must be a variable name (no `=`)".to_owned(),
                ));
            }
            config.environment_marker = Some(v.into_inner());
        }
        if let Some(socket) = raw.identities.registration_socket {
            config.registration_socket = socket;
        }
        config.registration_uids = raw.identities.registration_uids;
        config.registration_gids = raw.identities.registration_gids;
        let runtimes = &mut config.runtimes;
        for (value, field) in [
            (
                raw.containers.containerd_socket,
                &mut runtimes.containerd_socket,
            ),
            (raw.containers.storage_root, &mut runtimes.storage_root),
            (raw.containers.docker_root, &mut runtimes.docker_root),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        if let Some(manifest) = raw.identities.manifest {
            // Relative to the config file, so a config and its manifest can travel together.
            config.identities = Some(
                path.parent()
                    .map_or(manifest.clone(), |dir| dir.join(&manifest)),
            );
        }
        // Relative to the config file, like the manifest.
        config.rules = raw
            .rules
            .files
            .iter()
            .map(|f| path.parent().map_or(f.clone(), |dir| dir.join(f)))
            .collect();
        config.rules_skip_unsupported = raw.rules.skip_unsupported.unwrap_or(false);
        if let Some(v) = raw.metrics.listen {
            config.metrics_listen = Some(v.get_ref().parse().map_err(|_| {
                at(
                    Some(v.span()),
                    format!(
                        "metrics.listen must be an IP address and port (\"127.0.0.1:9464\", \"[::1]:9464\"), not {:?}",
                        v.get_ref()
                    ),
                )
            })?);
        }
        config.output = parse_output(raw.output, &at)?;
        config.sinks = sinks::parse(raw.sinks, path.parent(), &at)?;
        Ok(config)
    }
}

fn parse_output(
    raw: RawOutput,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<Output, ConfigError> {
    let mut output = Output::default();
    let mut not_a_directory = false;
    if let Some(v) = raw.path {
        output.target = OutputTarget::parse(v.get_ref()).ok_or_else(|| {
            at(
                Some(v.span()),
                "output.path must be `-`, a file, or a directory ending in `/`".to_owned(),
            )
        })?;
        not_a_directory = !matches!(output.target, OutputTarget::Directory(_));
    }
    // Rotation settings next to a file or stdout would be silently ignored: say so instead.
    // (Without output.path in the file, `--output DIR/` may still make them apply.)
    for (name, span) in [
        (
            "max_file_bytes",
            raw.max_file_bytes.as_ref().map(Spanned::span),
        ),
        (
            "max_file_age_ms",
            raw.max_file_age_ms.as_ref().map(Spanned::span),
        ),
        (
            "retention_bytes",
            raw.retention_bytes.as_ref().map(Spanned::span),
        ),
        (
            "retention_age_ms",
            raw.retention_age_ms.as_ref().map(Spanned::span),
        ),
    ] {
        if let (true, Some(span)) = (not_a_directory, span) {
            return Err(at(
                Some(span),
                format!(
                    "output.{name} applies to the files of a directory: end output.path with `/`"
                ),
            ));
        }
    }
    if let Some(v) = raw.retention_bytes {
        if *v.get_ref() != 0 && *v.get_ref() < 8192 {
            return Err(at(
                Some(v.span()),
                "output.retention_bytes must be 0 (no limit) or at least 8192".to_owned(),
            ));
        }
        output.retention_bytes = v.into_inner();
    }
    if let Some(v) = raw.retention_age_ms {
        if *v.get_ref() != 0 && *v.get_ref() < 1000 {
            return Err(at(
                Some(v.span()),
                "output.retention_age_ms must be 0 (no limit) or at least 1000".to_owned(),
            ));
        }
        output.retention_age_ms = v.into_inner();
    }
    let interval = raw.fsync_interval_ms.map(|v| {
        let ms = *v.get_ref();
        ((1..=60_000).contains(&ms), ms, v.span())
    });
    if let Some((false, _, span)) = &interval {
        return Err(at(
            Some(span.clone()),
            "output.fsync_interval_ms must be between 1 and 60000".to_owned(),
        ));
    }
    if let Some(v) = raw.fsync {
        output.fsync = match v.get_ref().as_str() {
            "every_record" => Fsync::EveryRecord,
            "interval" => Fsync::Interval(1000),
            "never" => Fsync::Never,
            other => {
                return Err(at(
                    Some(v.span()),
                    format!(
                        "output.fsync must be \"every_record\", \"interval\" or \"never\", not {other:?}"
                    ),
                ));
            }
        };
    }
    match (output.fsync, interval) {
        (Fsync::Interval(_), Some((_, ms, _))) => output.fsync = Fsync::Interval(ms),
        (_, Some((_, _, span))) => {
            return Err(at(
                Some(span),
                "output.fsync_interval_ms applies only with output.fsync = \"interval\"".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(v) = raw.max_file_bytes {
        if !(4096..=1 << 40).contains(v.get_ref()) {
            return Err(at(
                Some(v.span()),
                "output.max_file_bytes must be at least 4096 and at most 1099511627776".to_owned(),
            ));
        }
        output.max_file_bytes = v.into_inner();
    }
    if let Some(v) = raw.max_file_age_ms {
        if !(1000..=30 * 86_400_000).contains(v.get_ref()) {
            return Err(at(
                Some(v.span()),
                "output.max_file_age_ms must be between 1000 and 2592000000 (30 days)".to_owned(),
            ));
        }
        output.max_file_age_ms = v.into_inner();
    }
    if let Some(v) = raw.buffer_bytes {
        if !(65_536..=1 << 30).contains(v.get_ref()) {
            return Err(at(
                Some(v.span()),
                "output.buffer_bytes must be between 65536 and 1073741824".to_owned(),
            ));
        }
        output.buffer_bytes = v.into_inner();
    }
    if let Some(v) = raw.format {
        output.format = Format::parse(v.get_ref()).ok_or_else(|| {
            at(
                Some(v.span()),
                format!(
                    "output.format must be \"ecs\" or \"ocsf\", not {:?}",
                    v.get_ref()
                ),
            )
        })?;
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("sensor.toml"), text)
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn reads_every_setting() {
        let c = parse(
            "[observe]\nall_processes = true\nargs_max_bytes = 100\n\
             [kernel]\nring_buffer_bytes = 65536\nwakeup_bytes = 1024\npoll_interval_ms = 5\n\
             [output]\npath = \"/var/log/x.jsonl\"\n",
        )
        .unwrap();
        assert!(c.all_processes);
        assert_eq!(
            (
                c.args_max_bytes,
                c.ring_buffer_bytes,
                c.wakeup_bytes,
                c.poll_interval_ms
            ),
            (100, 65536, 1024, 5)
        );
        assert_eq!(
            c.output.target,
            OutputTarget::File(PathBuf::from("/var/log/x.jsonl"))
        );
    }

    #[test]
    fn reads_operator_file_classes() {
        let c = parse("[[file.classes]]\nclass = \"payroll\"\npatterns = [\"/srv/payroll/**\"]\n")
            .unwrap();
        assert_eq!(c.file_classes.len(), 1);
        assert_eq!(c.file_classes[0].class, "payroll");
        let e = parse("\n[[file.classes]]\nclass = \"payroll\"\npatterns = [\"relative/*\"]\n")
            .unwrap_err();
        assert_eq!(
            e.line.map(|l| l.0),
            Some(2),
            "the [[file.classes]] entry: {e}"
        );
        assert!(e.message.contains("\"relative/*\" is not absolute"), "{e}");
    }

    #[test]
    fn reads_the_output_section() {
        let c = parse(
            "[output]\npath = \"/var/log/agent-sensor/\"\nfsync = \"interval\"\n\
             fsync_interval_ms = 250\nmax_file_bytes = 1048576\nmax_file_age_ms = 60000\n\
             buffer_bytes = 65536\nformat = \"ocsf\"\nretention_bytes = 1073741824\n\
             retention_age_ms = 604800000\n",
        )
        .unwrap();
        assert_eq!(
            c.output,
            Output {
                target: OutputTarget::Directory(PathBuf::from("/var/log/agent-sensor/")),
                fsync: Fsync::Interval(250),
                max_file_bytes: 1 << 20,
                max_file_age_ms: 60_000,
                buffer_bytes: 65_536,
                format: Format::Ocsf,
                retention_bytes: 1 << 30,
                retention_age_ms: 604_800_000,
            }
        );
        for (setting, message) in [
            (
                "path = \"a.jsonl\"\nretention_bytes = 65536",
                "output.retention_bytes applies to the files of a directory",
            ),
            (
                "retention_bytes = 100",
                "output.retention_bytes must be 0 (no limit) or at least 8192",
            ),
            (
                "retention_age_ms = 10",
                "output.retention_age_ms must be 0 (no limit) or at least 1000",
            ),
        ] {
            let e = parse(&format!("[output]\n{setting}\n")).unwrap_err();
            assert!(e.message.starts_with(message), "{e}");
        }
        assert_eq!(parse("").unwrap().output.format, Format::Ecs);
        let c = parse("[output]\npath = \"t.jsonl\"\nfsync = \"every_record\"\n").unwrap();
        assert_eq!(
            c.output.target,
            OutputTarget::File(PathBuf::from("t.jsonl"))
        );
        assert_eq!(c.output.fsync, Fsync::EveryRecord);
        assert_eq!(
            parse("[output]\nfsync = \"never\"\n").unwrap().output.fsync,
            Fsync::Never
        );
        assert_eq!(OutputTarget::parse("-"), Some(OutputTarget::Stdout));
        assert_eq!(OutputTarget::parse(""), None);
    }

    #[test]
    fn locates_output_mistakes() {
        let cases = [
            (
                "[output]\nfsync = \"sometimes\"\n",
                2,
                "output.fsync must be",
            ),
            (
                "[output]\nfsync = \"never\"\nfsync_interval_ms = 10\n",
                3,
                "applies only with output.fsync = \"interval\"",
            ),
            (
                "[output]\nfsync_interval_ms = 0\n",
                2,
                "between 1 and 60000",
            ),
            (
                "[output]\npath = \"/var/log/x.jsonl\"\nmax_file_bytes = 100000\n",
                3,
                "end output.path with `/`",
            ),
            (
                "[output]\npath = \"d/\"\nmax_file_bytes = 10\n",
                3,
                "at least",
            ),
            (
                "[output]\nmax_file_age_ms = 5\n",
                2,
                "output.max_file_age_ms",
            ),
            ("[output]\nbuffer_bytes = 5\n", 2, "output.buffer_bytes"),
            ("[output]\npath = \"\"\n", 2, "output.path must be"),
            ("[output]\nrotate = 1\n", 2, "rotate"),
            (
                "[output]\nformat = \"cef\"\n",
                2,
                "output.format must be \"ecs\" or \"ocsf\"",
            ),
        ];
        for (text, line, reason) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line.map(|l| l.0), Some(line), "{text}: {e}");
            assert!(e.message.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn reads_the_metrics_address() {
        assert_eq!(parse("").unwrap().metrics_listen, None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(2));
        assert!(
            e.message
                .contains("metrics.listen must be an IP address and port"),
            "{e}"
        );
    }

    #[test]
    fn locates_mistakes() {
        let e = parse("[observe]\nargs_max_bytes = 999999\n").unwrap_err();
        assert_eq!(e.line, Some((2, 18)));
        assert!(
            e.to_string()
                .starts_with("sensor.toml:2:18: observe.args_max_bytes"),
            "{e}"
        );

        let e = parse("[observe]\nall_procesess = true\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(2));
        assert!(e.message.contains("all_procesess"), "{e}");

        let e = parse("[kernel]\nring_buffer_bytes = 100000\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(2));

        let e = parse("[observe\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(1));

        let e = parse("[observe]\nall_processes = \"yes\"\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(2));
    }
}
