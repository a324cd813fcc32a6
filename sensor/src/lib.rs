//! agent-sensor's daemon and CLI, as a library so tests and tools can drive each stage.
//!
//! Pipeline: [`loader`] attaches the kernel programs; [`source`] drains their ring buffer;
//! [`decode`] turns raw records into typed events; [`pipeline`] enriches them ([`process_table`],
//! [`snapshot`], [`clock`], [`entity`], [`host`]) into [`record`]s for a [`sink`].
pub mod audit;
pub mod builder;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod encode;
pub mod enrich;
pub mod evidence;
pub mod identity;
pub mod kernel;
pub mod pipeline;
pub mod record;
pub mod run;
pub mod sink;
pub mod source;
pub mod stage;
pub mod telemetry;

/// The time budget of a test that guards against a blow-up (hostile paths): `cargo xtask cross`
/// runs the arm64 tests as a debug build under qemu-user, tens of times slower than natively,
/// and says by how much in `AGENT_SENSOR_TEST_SLOWDOWN`; a blow-up still exceeds the stretched
/// budget by far.
#[cfg(test)]
pub(crate) fn test_budget(native: std::time::Duration) -> std::time::Duration {
    let slowdown = std::env::var("AGENT_SENSOR_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    native * slowdown.max(1)
}
