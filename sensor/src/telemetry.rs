//! The daemon's own logs: structured, on standard error, kept apart from the record stream.
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// `RUST_LOG` overrides the level (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal only: a log collector (a container's log, a
        // pipe) gets plain `key=value` text it can parse.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
