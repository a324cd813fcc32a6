//! agent-sensor's daemon and CLI, as a library so tests and tools can drive each stage.
//!
//! The folders are the stages, in the order data flows through them:
//!
//! | stage | folder | its job |
//! | --- | --- | --- |
//! | kernel | [`kernel`] | privileges, BTF, feature probes, loading and attaching the programs |
//! | source | [`source`] | the ring buffer of a live run, or recorded records replayed |
//! | decode | [`decode`] | raw kernel bytes to a typed event (the only code that reads them) |
//! | resolve | [`identity`] | which agent a process is: manifest, registry, selectors, registration socket, [`identity::resolver`] |
//! | reassemble | [`llm`] | captured TLS plaintext to HTTP exchanges read in their LLM provider's shape, credentials masked |
//! | build | [`builder`] | records from events and caches: `event.*`, `process.*`, `file.*`, network, `identity.*` and `container.*` blocks, the sensor's own records |
//! | decide | [`policy`] | each agent's policy (declared in the manifest) and the decision on each of its actions: `policy_decision` records |
//! | enrich | [`enrich`] | the caches builders read: process table, entity ids, host, clock, DNS, file classes, containers |
//! | rules | [`rules`] | alerts from records: Sigma rules over the sensor's fields, between build and seal |
//! | record | [`record`] | the record types and their schema (what every stage passes on) |
//! | seal | [`encode`], [`evidence`] | a record as bytes (ECS or OCSF), sealed into the hash chain, signed checkpoints |
//! | sink | [`sink`] | where sealed records go: stdout, a file, a trail directory; the `[[sinks]]` to pipelines (a disk queue each) |
//! | operate | [`operate`] | what SREs run it with: the metrics registry, `/metrics`, `/healthz`, `/readyz` |
//!
//! [`pipeline`] is the loop that moves data between the stages (their traits are in
//! [`stage`]) and its inbox; [`glob`] is the one pattern dialect users write, for identity
//! selectors and file classes alike; [`audit`] is what auditors run over trails afterwards;
//! [`run`], [`commands`], [`cli`] and [`config`] are the daemon and its command line. Imports
//! go one way: no two modules, and no two folders, need each other (`tests/layout.rs` checks).
#![warn(missing_docs)]

pub mod audit;
pub mod builder;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod encode;
pub mod enrich;
pub mod evidence;
pub mod glob;
pub mod identity;
pub mod kernel;
pub mod llm;
pub mod mcp;
pub mod operate;
pub mod pipeline;
pub mod policy;
pub mod record;
pub mod rules;
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
