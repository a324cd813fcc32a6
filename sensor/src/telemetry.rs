//! The daemon's own logs: structured, on standard error, kept apart from the record stream.
use tracing_subscriber::EnvFilter;

/// `RUST_LOG` overrides the level (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
