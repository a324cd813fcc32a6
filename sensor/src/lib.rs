//! agent-sensor's daemon and CLI, as a library so tests and tools can drive each stage.
//!
//! Pipeline: [`loader`] attaches the kernel programs; [`source`] drains their ring buffer;
//! [`decode`] turns raw records into typed events; [`pipeline`] enriches them ([`process_table`],
//! [`snapshot`], [`clock`], [`entity`], [`host`]) into [`record`]s for a [`sink`].
pub mod activity;
pub mod attribution;
pub mod btf;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod container;
pub mod decode;
pub mod dns;
pub mod dns_cache;
pub mod entity;
pub mod evidence;
pub mod features;
pub mod fspath;
pub mod host;
pub mod loader;
pub mod manifest;
pub mod ocsf;
pub mod pattern;
pub mod pipeline;
pub mod privileges;
pub mod process_table;
pub mod program_budget;
pub mod record;
pub mod record_json;
pub mod registration;
pub mod rendered;
pub mod repeats;
pub mod replay;
pub mod run;
pub mod schema;
pub mod selectors;
pub mod signing;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod telemetry;
pub mod verify;
