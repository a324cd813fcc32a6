//! Environment overrides for container use: `AGENT_SENSOR_<SECTION>_<KEY>` sets `key` of
//! `[section]` over the file (command-line flags still win over both). Each variable is
//! validated alone first, so a mistake names the variable, not a line of a file it is not in.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use super::{Config, ConfigError};

/// What every override's name starts with.
pub const PREFIX: &str = "AGENT_SENSOR_";

/// The sections an override can name. Other `AGENT_SENSOR_*` variables (the build's
/// `AGENT_SENSOR_CACHE`, the tests' `AGENT_SENSOR_BIN`) are not configuration and are left
/// alone. `[[sinks]]` is a list of tables: it is set in the file only.
const SECTIONS: &[&str] = &[
    "observe",
    "kernel",
    "output",
    "file",
    "identities",
    "evidence",
    "containers",
    "rules",
    "metrics",
    "sinks",
];

/// One `AGENT_SENSOR_<SECTION>_<KEY>=value` from the environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The variable's name, for errors.
    pub variable: String,
    /// `[section]`, lower case.
    pub section: String,
    /// The key in it, lower case.
    pub key: String,
    /// What it is set to.
    pub value: toml::Value,
}

/// The overrides among `vars` (the process's environment, or a test's), sorted by name so the
/// result never depends on the environment's order. A value that reads as a TOML value
/// (`true`, `1000`, `["a", "b"]`, `"quoted"`) is that value; anything else is a string
/// (`/var/lib/agent-sensor/trail/`, `0.0.0.0:9464`).
pub fn overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let error = |message: String| ConfigError {
            file: PathBuf::from(name),
            line: None,
            message,
        };
        if section == "sinks" {
            return Err(error(
                "[[sinks]] is a list of tables: set sinks in the config file".to_owned(),
            ));
        }
        let value = value
            .into_string()
            .map_err(|_| error("the value is not UTF-8".to_owned()))?;
        found.push(Override {
            variable: name.to_owned(),
            section,
            key: key.to_ascii_lowercase(),
            value: read_value(&value),
        });
    }
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    Ok(found)
}

fn read_value(text: &str) -> toml::Value {
    // Exactly one value: text that would add keys or sections (`1\n[observe]`) is a string.
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

impl Config {
    /// What `run` and `check-config` use: the file at `path` (the defaults without one) with
    /// the process environment's overrides on top.
    pub fn load_with_environment(path: Option<&Path>) -> Result<Self, ConfigError> {
        let overrides = overrides(std::env::vars_os())?;
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    file: path.to_owned(),
                    line: None,
                    message: format!("cannot read the config file: {e}"),
                })?;
                Self::parse_with_overrides(path, &text, &overrides)
            }
            // Relative paths in overrides are then relative to the working directory.
            None => Self::parse_with_overrides(Path::new(""), "", &overrides),
        }
    }

    /// `text` (the content of `path`) with `overrides` applied. The file must be valid on its
    /// own (its errors keep their lines); a mistake an override brings names the variable;
    /// what only several overrides together break names them all.
    pub fn parse_with_overrides(
        path: &Path,
        text: &str,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let from_file = Self::parse(path, text)?;
        if overrides.is_empty() {
            return Ok(from_file);
        }
        let file: toml::Table = toml::from_str(text).unwrap_or_default();
        let with = |overrides: &[Override]| {
            let mut table = file.clone();
            for o in overrides {
                if let toml::Value::Table(section) = table
                    .entry(o.section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                {
                    section.insert(o.key.clone(), o.value.clone());
                }
            }
            let merged = toml::to_string(&table).expect("a parsed table serializes");
            Self::parse(path, &merged)
        };
        with(overrides).or_else(|all| {
            for o in overrides {
                with(std::slice::from_ref(o)).map_err(|e| ConfigError {
                    file: PathBuf::from(&o.variable),
                    line: None,
                    message: e.message,
                })?;
            }
            let names: Vec<&str> = overrides.iter().map(|o| o.variable.as_str()).collect();
            Err(ConfigError {
                file: path.to_owned(),
                line: None,
                message: format!("{} (with {})", all.message, names.join(", ")),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<Override> {
        overrides(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .unwrap()
    }

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse_with_overrides(Path::new("/etc/agent-sensor/sensor.toml"), text, &env(vars))
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let c = parse(
            "[output]\npath = \"/var/log/a.jsonl\"\n[kernel]\npoll_interval_ms = 5\n",
            &[
                ("AGENT_SENSOR_OUTPUT_PATH", "/var/lib/agent-sensor/trail/"),
                ("AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS", "50"),
                ("AGENT_SENSOR_OBSERVE_ALL_PROCESSES", "true"),
                ("AGENT_SENSOR_METRICS_LISTEN", "0.0.0.0:9464"),
                ("AGENT_SENSOR_RULES_FILES", "[\"rules/\"]"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.output.target,
            super::super::OutputTarget::Directory("/var/lib/agent-sensor/trail/".into())
        );
        assert_eq!(c.poll_interval_ms, 50);
        assert!(c.all_processes);
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9464".parse().unwrap()));
        // Relative to the config file, as in the file.
        assert_eq!(c.rules, vec![PathBuf::from("/etc/agent-sensor/rules/")]);
    }

    #[test]
    fn other_agent_sensor_variables_are_not_configuration() {
        assert!(
            env(&[
                ("AGENT_SENSOR_BIN", "/x"),
                ("AGENT_SENSOR_CACHE", "/y"),
                ("AGENT_SENSOR_EBPF_TOOLCHAIN", "nightly"),
                ("PATH", "/bin"),
            ])
            .is_empty()
        );
    }

    #[test]
    fn a_bad_override_names_the_variable() {
        let e = parse("", &[("AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS", "0")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS: kernel.poll_interval_ms must be between 1 and 1000"
        );
        let e = parse("", &[("AGENT_SENSOR_KERNEL_POLL_INTERVALL_MS", "5")]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "AGENT_SENSOR_KERNEL_POLL_INTERVALL_MS: unknown field `poll_intervall_ms`"
            ),
            "{e}"
        );
        let e = parse("", &[("AGENT_SENSOR_OBSERVE_ALL_PROCESSES", "yes")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AGENT_SENSOR_OBSERVE_ALL_PROCESSES: "),
            "{e}"
        );
        let e = overrides([("AGENT_SENSOR_SINKS_0_KIND".into(), "file".into())]).unwrap_err();
        assert!(
            e.to_string().starts_with("AGENT_SENSOR_SINKS_0_KIND: "),
            "{e}"
        );
    }

    #[test]
    fn a_mistake_in_the_file_keeps_its_line() {
        let e = parse(
            "[kernel]\npoll_interval_ms = 0\n",
            &[("AGENT_SENSOR_OBSERVE_ALL_PROCESSES", "true")],
        )
        .unwrap_err();
        assert_eq!(e.line, Some((2, 20)));
    }

    #[test]
    fn overrides_are_checked_with_the_file() {
        let file = "[kernel]\nwakeup_bytes = 1024\n";
        let ring = ("AGENT_SENSOR_KERNEL_RING_BUFFER_BYTES", "65536");
        assert_eq!(parse(file, &[ring]).unwrap().ring_buffer_bytes, 65536);
        let e = parse("[kernel]\nwakeup_bytes = 131072\n", &[ring]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AGENT_SENSOR_KERNEL_RING_BUFFER_BYTES: kernel.wakeup_bytes (131072)"),
            "{e}"
        );
        // Each fine with the file, not together.
        let e = parse(
            file,
            &[ring, ("AGENT_SENSOR_KERNEL_WAKEUP_BYTES", "131072")],
        )
        .unwrap_err();
        assert!(
            e.message.ends_with(
                "(with AGENT_SENSOR_KERNEL_RING_BUFFER_BYTES, AGENT_SENSOR_KERNEL_WAKEUP_BYTES)"
            ),
            "{e}"
        );
    }

    #[test]
    fn hostile_values_stay_one_string() {
        // A value cannot add keys or sections: it is one TOML value or one string.
        let sneaky = "\"/a\"\n[observe]\nall_processes = true";
        let c = parse("", &[("AGENT_SENSOR_CONTAINERS_CONTAINERD_SOCKET", sneaky)]).unwrap();
        assert!(!c.all_processes);
        assert_eq!(c.runtimes.containerd_socket, PathBuf::from(sneaky));
        let e = parse(
            "",
            &[("AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS", "5\n[observe]")],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS: "),
            "{e}"
        );
    }
}
