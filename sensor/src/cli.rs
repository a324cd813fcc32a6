//! The `agent-sensor` command line: argument definitions and dispatch.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The whole command line: one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "agent-sensor",
    version,
    about = "eBPF host sensor: attributes process activity to AI-agent identities and writes it as JSON Lines evidence"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; `main` runs each from [`crate::commands`] or [`crate::run`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the kernel programs and write records until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Report the kernel features the sensor can use here, and which it uses.
    Probe(ProbeArgs),
    /// Validate a configuration file and print the effective settings.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Ask the running sensor, over its registration socket, to attribute a process (and its
    /// descendants) to an agent and task, to end a process's task, or to list attributions.
    Register(RegisterArgs),
    /// Append an operator's annotation (a review, an override, an acknowledgement) to the
    /// running sensor's trail, sealed in the chain and signed at once; prints its place.
    Annotate(AnnotateArgs),
    /// Grant an agent a time-bound exception to one rule of its policy (who, why, for how
    /// long) over the control socket; recorded before it takes effect; prints its place.
    Except(ExceptArgs),
    /// Check that trails of records are complete and unaltered, and say where they are not.
    /// Exit status: 0 complete and unaltered, 1 altered, 2 no verdict (bad arguments, an
    /// unreadable file or key), 3 intact but incomplete (a run without its stop record).
    Verify {
        /// Files or directories of records.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
        /// The sensor's public key (`sensor.pub`): also check every checkpoint's signature.
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
        /// A live trail: the newest run may still be writing (no stop record yet, a record
        /// half written at the end).
        #[arg(long)]
        allow_open_end: bool,
    },
    /// The auditor's report of a trail, per agent (HTML, Markdown or JSON), with the
    /// verifier's verdict at the top; the exit status is the verdict's, as `verify` gives it.
    Report(ReportArgs),
    /// Print the JSON Schema of the records this version writes (the contract for consumers).
    Schema,
    /// Make the sensor's Ed25519 key pair (refuses to overwrite).
    Keygen {
        /// Where to write sensor.key (0600) and sensor.pub.
        #[arg(long, default_value = "/etc/agent-sensor")]
        dir: PathBuf,
    },
    /// Work with identity manifests.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Work with detection rules.
    #[command(subcommand)]
    Rules(RulesCommand),
}

/// What `rules` can do.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load rule files (or directories of them) and report each rule that does not load,
    /// as `file:line:column: reason`; fails when any does not.
    Check {
        /// Sigma rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Replay recorded events (JSON Lines as the sensor writes them) through the rules and
    /// print one JSON line per alert.
    Test {
        /// Sigma rule files or directories.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// The recorded events (`-` for standard input).
        #[arg(long)]
        events: PathBuf,
    },
}

/// What `identities` can do.
#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Validate a manifest (a file or a directory) and list its agents.
    Check {
        /// The YAML manifest, or a directory of them.
        path: PathBuf,
    },
}

/// The options of `run`, on top of the configuration file's settings.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file (defaults apply to everything it leaves out).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where records go: `-` for standard output, a file to append to, or a directory
    /// ending in `/` for a trail of rotated files.
    #[arg(long, short)]
    pub output: Option<String>,
    /// How records are written: `ecs` (the default) or `ocsf` (OCSF 1.8.0 events).
    #[arg(long, value_parser = ["ecs", "ocsf"])]
    pub format: Option<String>,
    /// Observe every process on the host.
    #[arg(long)]
    pub all_processes: bool,
    /// Observe this process and its descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// The identity manifest (a YAML file or a directory): the agents to observe.
    #[arg(long, value_name = "PATH")]
    pub identities: Option<PathBuf>,
    /// Detection rules (a Sigma file or a directory of them), on top of the config's; repeatable.
    #[arg(long, value_name = "PATH")]
    pub rules: Vec<PathBuf>,
}

/// The options of `register`: what to register, end or list, and where the socket is.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The process to attribute (with its descendants).
    #[arg(long, required_unless_present = "list")]
    pub pid: Option<u32>,
    /// The declared agent id.
    #[arg(long, required_unless_present_any = ["list", "end_task"])]
    pub agent: Option<String>,
    /// The task the agent is doing.
    #[arg(long)]
    pub task: Option<String>,
    /// The session the task belongs to.
    #[arg(long)]
    pub session: Option<String>,
    /// Take --pid over from another agent that holds it by a strong attribution (its own
    /// registration, cgroup or container match); the registration record names that agent.
    #[arg(long = "override", conflicts_with_all = ["end_task", "list"])]
    pub overrides: bool,
    /// End the task of --pid instead of registering.
    #[arg(long, conflicts_with_all = ["agent", "task", "session", "list"])]
    pub end_task: bool,
    /// List current attributions.
    #[arg(long, conflicts_with_all = ["pid", "agent", "task", "session"])]
    pub list: bool,
    /// The registration socket.
    #[arg(long, default_value = crate::config::DEFAULT_REGISTRATION_SOCKET)]
    pub socket: PathBuf,
}

/// The options of `annotate`: the annotation, and where the socket is.
#[derive(Debug, Args)]
pub struct AnnotateArgs {
    /// `review`, `override`, `acknowledgement` or `note`.
    #[arg(long)]
    pub kind: String,
    /// Who is annotating (the record also carries the uid the kernel reports).
    #[arg(long)]
    pub author: String,
    /// What and why.
    #[arg(long)]
    pub text: String,
    /// The hash of the record the annotation is about.
    #[arg(long, value_name = "HASH")]
    pub subject: Option<String>,
    /// The sensor's control socket.
    #[arg(long, default_value = crate::config::DEFAULT_REGISTRATION_SOCKET)]
    pub socket: PathBuf,
}

/// The options of `except`: the exception, and where the socket is.
#[derive(Debug, Args)]
pub struct ExceptArgs {
    /// The declared agent id.
    #[arg(long)]
    pub agent: String,
    /// The rule: `egress`, `files.read`, `files.write`, `executables` or `tasks`.
    #[arg(long)]
    pub rule: String,
    /// How long it lasts, in seconds (at most a week).
    #[arg(long)]
    pub seconds: u64,
    /// Who grants it (the record also carries the uid the kernel reports).
    #[arg(long)]
    pub author: String,
    /// Why.
    #[arg(long)]
    pub reason: String,
    /// The sensor's control socket.
    #[arg(long, default_value = crate::config::DEFAULT_REGISTRATION_SOCKET)]
    pub socket: PathBuf,
}

/// The options of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Trail files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// `html` (one self-contained page), `markdown` or `json`.
    #[arg(long, default_value = "markdown", value_parser = ["html", "markdown", "json"])]
    pub format: String,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Only this agent (`identity.agent.id`).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only records at or after this time (RFC 3339 in UTC, e.g. 2026-12-07T02:50:29Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339 in UTC).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The sensor's public key (`sensor.pub`): check every checkpoint's signature.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// A live trail: the newest run may still be writing.
    #[arg(long)]
    pub allow_open_end: bool,
    /// The identity manifest (a YAML file or a directory): list its agents with no records in
    /// range too, and show each declaration as the manifest has it now.
    #[arg(long, value_name = "PATH")]
    pub identities: Option<PathBuf>,
}
