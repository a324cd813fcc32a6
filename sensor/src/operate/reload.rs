//! SIGHUP's re-read of the configuration (file, environment and command line, as at start):
//! which changed settings the running daemon takes and which wait for a restart. A config
//! that does not load is refused whole and the running one stays.
use crate::config::Config;

/// The configuration in force, and how to read the next one.
pub struct ConfigReload {
    running: Config,
    read: Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>,
}

impl ConfigReload {
    /// `running` is in force; `read` reads the next one as the start did.
    pub fn new(
        running: Config,
        read: impl Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
    ) -> Self {
        Self {
            running,
            read: Box::new(read),
        }
    }

    /// The configuration in force.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Reads the configuration again and takes what can change at run time; logs what was
    /// refused, or what waits for a restart. Returns whether anything was taken.
    pub fn reread(&mut self) -> bool {
        let next = match (self.read)() {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("configuration not reloaded, keeping the running one: {e:#}");
                return false;
            }
        };
        let restart = needs_restart(&self.running, &next);
        let taken = take_reloadable(&mut self.running, &next);
        if restart.is_empty() {
            tracing::info!(changed = ?taken, "configuration reloaded");
        } else {
            tracing::warn!(
                changed = ?taken,
                "configuration reloaded; changed but only taken at the next restart: {}",
                restart.join(", ")
            );
        }
        !taken.is_empty()
    }
}

/// Copies the settings a re-read applies at once from `next` into `running` (the identity
/// manifest and the rules are then read again, as on every SIGHUP): a different manifest
/// path, different rule files, and `rules.skip_unsupported`; the names of those that changed.
/// Turning rules or the manifest on or off needs a restart (the pipeline and the kernel
/// programs are set up for them at start).
fn take_reloadable(running: &mut Config, next: &Config) -> Vec<&'static str> {
    let mut taken = Vec::new();
    if next.identities.is_some() && running.identities.is_some() {
        if running.identities != next.identities {
            taken.push("identities.manifest");
        }
        running.identities.clone_from(&next.identities);
    }
    if !next.rules.is_empty() && !running.rules.is_empty() {
        if running.rules != next.rules {
            taken.push("rules.files");
        }
        running.rules.clone_from(&next.rules);
    }
    if running.rules_skip_unsupported != next.rules_skip_unsupported {
        taken.push("rules.skip_unsupported");
        running.rules_skip_unsupported = next.rules_skip_unsupported;
    }
    taken
}

/// The settings that differ between `running` and `next` and only take effect at a restart.
/// Every field is named here (the destructuring has no `..`), so a new setting cannot be left
/// out of this decision.
pub fn needs_restart(running: &Config, next: &Config) -> Vec<&'static str> {
    let Config {
        all_processes,
        args_max_bytes,
        ring_buffer_bytes,
        wakeup_bytes,
        poll_interval_ms,
        tracked_processes,
        lsm_hooks,
        output,
        file_classes,
        repeat_window_ms,
        identities,
        environment_marker,
        signing_key,
        checkpoint_records,
        checkpoint_interval_ms,
        registration_socket,
        registration_uids,
        registration_gids,
        runtimes,
        sinks,
        rules,
        rules_skip_unsupported: _,
        metrics_listen,
    } = running;
    let mut changed = Vec::new();
    macro_rules! compare {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if *$field != next.$field {
                changed.push($name);
            })*
        };
    }
    compare!(
        all_processes => "observe.all_processes",
        args_max_bytes => "observe.args_max_bytes",
        ring_buffer_bytes => "kernel.ring_buffer_bytes",
        wakeup_bytes => "kernel.wakeup_bytes",
        poll_interval_ms => "kernel.poll_interval_ms",
        tracked_processes => "kernel.tracked_processes",
        lsm_hooks => "kernel.lsm_hooks",
        output => "output",
        file_classes => "file.classes",
        repeat_window_ms => "file.repeat_window_ms",
        environment_marker => "identities.environment_marker",
        signing_key => "evidence.signing_key",
        checkpoint_records => "evidence.checkpoint_records",
        checkpoint_interval_ms => "evidence.checkpoint_interval_ms",
        registration_socket => "identities.registration_socket",
        registration_uids => "identities.registration_uids",
        registration_gids => "identities.registration_gids",
        runtimes => "containers",
        sinks => "sinks",
        metrics_listen => "metrics.listen",
    );
    if identities.is_some() != next.identities.is_some() {
        changed.push("identities.manifest (on or off)");
    }
    if rules.is_empty() != next.rules.is_empty() {
        changed.push("rules.files (on or off)");
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        sync::{Arc, Mutex},
    };

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/agent-sensor/sensor.toml"), text).unwrap()
    }

    fn reload(start: &str) -> (ConfigReload, Arc<Mutex<String>>) {
        let next = Arc::new(Mutex::new(start.to_owned()));
        let file = next.clone();
        let reload = ConfigReload::new(config(start), move || {
            Ok(Config::parse(
                Path::new("/etc/agent-sensor/sensor.toml"),
                &file.lock().unwrap(),
            )?)
        });
        (reload, next)
    }

    #[test]
    fn rule_files_and_the_manifest_path_are_taken_the_rest_waits() {
        let (mut reload, file) =
            reload("[rules]\nfiles = [\"a.yml\"]\n[identities]\nmanifest = \"agents/\"\n");
        *file.lock().unwrap() =
            "[rules]\nfiles = [\"a.yml\", \"b.yml\"]\nskip_unsupported = true\n\
             [identities]\nmanifest = \"other/\"\n[kernel]\npoll_interval_ms = 50\n"
                .to_owned();
        assert!(reload.reread());
        let running = reload.running();
        assert_eq!(
            running.rules,
            [
                PathBuf::from("/etc/agent-sensor/a.yml"),
                "/etc/agent-sensor/b.yml".into()
            ]
        );
        assert!(running.rules_skip_unsupported);
        assert_eq!(running.identities, Some("/etc/agent-sensor/other/".into()));
        // Not taken: the kernel's poll interval is the source's, set at start.
        assert_eq!(running.poll_interval_ms, 20);
        assert_eq!(
            needs_restart(running, &config(&file.lock().unwrap())),
            ["kernel.poll_interval_ms"]
        );
    }

    #[test]
    fn a_config_that_does_not_load_keeps_the_running_one() {
        let (mut reload, file) = reload("[rules]\nfiles = [\"a.yml\"]\n");
        *file.lock().unwrap() =
            "[rules]\nfiles = [\"b.yml\"]\n[kernel]\npoll_interval_ms = 0\n".to_owned();
        assert!(!reload.reread());
        assert_eq!(
            reload.running().rules,
            [PathBuf::from("/etc/agent-sensor/a.yml")]
        );
    }

    #[test]
    fn turning_rules_or_the_manifest_on_or_off_waits_for_a_restart() {
        let (mut reload, file) = reload("");
        *file.lock().unwrap() =
            "[rules]\nfiles = [\"a.yml\"]\n[identities]\nmanifest = \"m.yaml\"\n".to_owned();
        assert!(!reload.reread());
        assert!(reload.running().rules.is_empty());
        assert_eq!(
            needs_restart(reload.running(), &config(&file.lock().unwrap())),
            ["identities.manifest (on or off)", "rules.files (on or off)"]
        );
    }
}
