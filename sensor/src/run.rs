//! `agent-sensor run`: load, attach, drop privileges, snapshot, then run the source and the
//! pipeline until a signal, and shut down in order (drain, stop record, detach).
use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use sensor_common::TrackedProcess;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    builder::identity::agent_infos,
    cli::RunArgs,
    config::Config,
    enrich::container::Catalog,
    enrich::entity::EntityIds,
    enrich::fspath::Classifier,
    enrich::host,
    enrich::snapshot::{self, ProcSnapshot},
    identity::manifest,
    identity::registration,
    identity::registry::{self, Registry, SharedRegistry, Tasks},
    identity::selectors::{SelectorSync, SharedSelectors, Tracked},
    kernel::enforcement::{AgentPolicy, Enforcement, PolicyState, Wanted, files_kill_fail_closed},
    kernel::fail_closed::{self, Pins},
    kernel::loader,
    kernel::pipe_capture::PipeAgents,
    kernel::privileges,
    kernel::tls_attach::TlsAttacher,
    operate::{endpoint::Endpoint, metrics::Registry as Metrics, reload::ConfigReload},
    pipeline::{Context, Pipeline},
    record::host::HostInfo,
    sink::{
        Sink,
        forward::{Forwarders, health::SinkHealth},
    },
    source::{ring::KernelSource, ring_fill::RingFill},
};

/// Settings from the file with the command line on top.
pub(crate) fn effective_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = Config::load_with_environment(args.config.as_deref())?;
    if args.all_processes {
        config.all_processes = true;
    }
    if let Some(output) = &args.output {
        config.output.target = crate::config::OutputTarget::parse(output)
            .context("--output must be `-`, a file, or a directory ending in `/`")?;
    }
    if let Some(format) = &args.format {
        config.output.format =
            crate::config::Format::parse(format).context("--format must be `ecs` or `ocsf`")?;
    }
    if let Some(path) = &args.identities {
        config.identities = Some(path.clone());
    }
    config.rules.extend(args.rules.iter().cloned());
    Ok(config)
}

/// The configured detection rules, compiled; none configured is `None`. A rule that does not
/// load is a start-up error unless `rules.skip_unsupported` says to go on without it.
fn load_rules(config: &Config) -> anyhow::Result<Option<crate::rules::Rules>> {
    if config.rules.is_empty() {
        return Ok(None);
    }
    let loaded = crate::rules::Rules::load(&config.rules);
    if !loaded.rejected.is_empty() {
        let list: Vec<String> = loaded.rejected.iter().map(ToString::to_string).collect();
        if !config.rules_skip_unsupported {
            anyhow::bail!(
                "{} rule(s) not loaded (set rules.skip_unsupported to start without them):\n{}",
                list.len(),
                list.join("\n")
            );
        }
        for r in &list {
            tracing::warn!("rule not loaded: {r}");
        }
    }
    tracing::info!(
        rules = loaded.rules.len(),
        files = loaded.files,
        "detection rules loaded"
    );
    Ok(Some(loaded.rules))
}

/// `run`: the daemon. Loads and attaches the kernel programs, drops privileges, and runs until
/// SIGINT or SIGTERM; errors are start-up failures or an output that stopped taking records.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = effective_config(&args)?;
    let agents = match &config.identities {
        Some(path) => manifest::load(path)?,
        None => Vec::new(),
    };
    let rules = load_rules(&config)?;
    // The key is read before anything is loaded: a missing or exposed key is a start-up error.
    let signing_key = match &config.signing_key {
        Some(path) => Some(crate::evidence::signing::load_signing_key(path)?),
        None => None,
    };
    let registry: SharedRegistry =
        Arc::new(std::sync::RwLock::new(Arc::new(Registry::new(agents))));
    if !config.all_processes && args.pids.is_empty() && registry::current(&registry).is_empty() {
        tracing::warn!(
            "observing no process: declare agents (--identities), or pass --all-processes or --pid PID"
        );
    }
    // Load synchronously, before any thread exists, so dropping capabilities below covers
    // the whole process.
    // Pending execs cost a map entry per exec on the host: only when something in userspace
    // decides on execs (argv selectors, the marker). Argv selectors a reload adds apply to
    // unmatched execs only (a restart makes them apply to every exec).
    let pend_execs =
        config.environment_marker.is_some() || registry::current(&registry).has_argv_selectors();
    privileges::check_run()?;
    let tls = registry::current(&registry).captures_tls();
    let wanted = Wanted::of(&agent_policies(&registry::current(&registry)));
    if wanted.kill_fail_closed.files {
        fail_closed::refuse_unpinnable_files_kill(&files_kill_fail_closed(&agent_policies(
            &registry::current(&registry),
        )))?;
    }
    let stdio = registry::current(&registry).captures_stdio();
    let mut sensor = loader::load(
        &config,
        pend_execs,
        tls,
        wanted.egress,
        wanted.kill,
        stdio,
        wanted.lsm,
    )?;
    let pipes = if stdio {
        let mut agents = PipeAgents::new(&mut sensor.ebpf)?;
        agents.sync(&registry::current(&registry).stdio_captures());
        Some(agents)
    } else {
        None
    };
    let mut keep = privileges::KEPT_AFTER_LOAD.to_vec();
    // TLS capture attaches uprobes as agents map libraries: perf events and BPF links.
    let mut tls_attacher = if tls {
        keep.extend([privileges::CAP_BPF, privileges::CAP_PERFMON]);
        let mut attacher = TlsAttacher::new(&mut sensor.ebpf)?;
        attacher.sync_agents(&registry::current(&registry).tls_captures());
        attacher.attach_system(&mut sensor.ebpf);
        sensor.programs.push("uprobe:tls");
        Some(attacher)
    } else {
        None
    };
    // Enforcement: attached (egress: at the cgroup root), its policy in the kernel before
    // anything runs.
    let policy_state = PolicyState::default();
    // Fail-closed: pinned in bpffs (with the programs that keep the attribution map true), so
    // it outlives this process; the previous run's pins are released once this run denies.
    let pins = if wanted.pins() {
        let pins = Pins::create()?;
        let pinned = pins
            .pin_process_tracking(&mut sensor)
            .and_then(|()| pins.pin_kill_checks(&mut sensor, wanted.kill_fail_closed))
            .and_then(|()| pins.pin_lsm_checks(&mut sensor, wanted.lsm_fail_closed));
        if let Err(e) = pinned {
            // Nothing of this run enforces yet (its policy is not in the kernel): what it
            // pinned goes; an earlier run's pins stay.
            pins.remove();
            return Err(e.into());
        }
        Some(pins)
    } else {
        None
    };
    let enforcement = if wanted.any() {
        let attached = Enforcement::attach(
            &mut sensor.ebpf,
            wanted,
            &agent_policies(&registry::current(&registry)),
            &policy_state,
            pins.as_ref(),
        );
        if let (Err(_), Some(pins)) = (&attached, &pins) {
            // The egress links could not be pinned: nothing of this run's is enforced yet.
            pins.remove();
        }
        let enforcement = attached?;
        if wanted.egress {
            sensor.programs.extend(
                crate::kernel::programs::EGRESS_PROGRAMS
                    .iter()
                    .map(|&(_, hook)| leak_name(format!("cgroup:{hook}"))),
            );
        }
        Some(Arc::new(std::sync::Mutex::new(enforcement)))
    } else {
        None
    };
    if sensor
        .probe_map_fd()
        .is_some_and(privileges::map_access_needs_cap_bpf)
    {
        tracing::info!(
            "this kernel checks CAP_BPF on every map access (Linux < 6.5 with \
             kernel.unprivileged_bpf_disabled set): the daemon keeps CAP_BPF"
        );
        keep.push(privileges::CAP_BPF);
    }
    let maps = sensor.take_maps()?;
    // Opened with privileges, so a bad path fails before anything runs.
    let mut sink = Sink::open(&config.output).context("opening the output")?;
    let forwarders = Forwarders::open(&config.sinks, &config.output.target, sink.previous())
        .context("opening the sinks' queues")?;
    keep.sort_unstable();
    keep.dedup();
    privileges::drop_all_but(&keep).context("dropping capabilities after loading")?;
    // Capabilities are per thread: the delivery threads start without them.
    sink.deliver_to(forwarders)
        .context("starting the sinks' delivery threads")?;
    tracing::info!(programs = ?sensor.programs, all_processes = config.all_processes, "kernel programs attached");
    // Loading parsed the kernel's BTF and the programs' objects, several MiB freed by now but
    // kept by the allocator below what stays live: given back to the kernel once, here.
    #[cfg(target_env = "gnu")]
    // SAFETY: glibc's malloc_trim only releases free memory; it is safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reread = {
        let args = args.clone();
        move || effective_config(&args)
    };
    let result = runtime.block_on(async_main(
        ConfigReload::new(config, reread),
        Prepared { signing_key, rules },
        registry,
        args.pids,
        sensor.programs.clone(),
        maps,
        sink,
        Attached {
            tls: tls_attacher.as_mut().map(|a| (a, &mut sensor.ebpf)),
            enforcement,
            policy_state,
            pipes,
            pins,
        },
    ));
    // Detach only after the pipeline has drained and written its stop record.
    sensor.detach();
    result
}

/// Puts the agents' enforced rules, as the registry, exceptions and lookups say now, in the
/// kernel.
fn sync_enforcement(
    enforcement: &std::sync::Mutex<Enforcement>,
    registry: &SharedRegistry,
    state: &PolicyState,
) {
    let registry = registry::current(registry);
    enforcement
        .lock()
        .expect("no poisoned lock")
        .sync(&agent_policies(&registry), state);
}

/// Every declared agent's policy, by its number.
fn agent_policies(registry: &Registry) -> Vec<AgentPolicy<'_>> {
    (1..=registry.len() as u32)
        .filter_map(|number| {
            let d = registry.get(number)?;
            Some(AgentPolicy {
                number,
                id: &d.id,
                policy: &d.policy,
            })
        })
        .collect()
}

/// Names of attached programs live as long as the process; the start record wants `&'static`.
fn leak_name(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// What `run` attached that the daemon keeps current while it runs.
struct Attached<'a> {
    /// The TLS capture, with the loaded object it attaches from.
    tls: Option<(&'a mut TlsAttacher, &'a mut aya::Ebpf)>,
    /// What the kernel enforces of the agents' policies.
    enforcement: Option<Arc<std::sync::Mutex<Enforcement>>>,
    /// The exceptions and lookups it is made of (shared with the pipeline).
    policy_state: PolicyState,
    /// The stdio capture's agents.
    pipes: Option<PipeAgents>,
    /// Where this run pinned its fail-closed enforcement, if it did.
    pins: Option<Pins>,
}

/// What `run` read and compiled before loading the kernel programs (bad ones fail first).
struct Prepared {
    signing_key: Option<ed25519_dalek::SigningKey>,
    rules: Option<crate::rules::Rules>,
}

#[allow(
    clippy::too_many_arguments,
    reason = "the daemon's parts, each handed over once by `run`"
)]
async fn async_main(
    reload: ConfigReload,
    prepared: Prepared,
    registry: SharedRegistry,
    pids: Vec<u32>,
    programs: Vec<&'static str>,
    maps: loader::SensorMaps,
    sink: Sink,
    attached: Attached<'_>,
) -> anyhow::Result<()> {
    let Prepared { signing_key, rules } = prepared;
    let config = reload.running().clone();
    let Attached {
        mut tls,
        enforcement,
        policy_state,
        mut pipes,
        pins,
    } = attached;
    // Signals first: a SIGTERM that arrives while starting must still stop cleanly (without a
    // handler it would kill the process before its stop record).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let hangup = signal(SignalKind::hangup())?;
    let host = Arc::new(HostInfo::discover().context("reading host identity from /proc")?);
    let tasks = Tasks::default();
    let cgroups = crate::identity::selectors::CgroupIndex::default();
    let tracked: Tracked = Arc::new(std::sync::Mutex::new(maps.tracked));
    // The programs are attached, so anything that starts from now on is seen; the snapshot
    // covers what ran before. Selectors and tracked trees are in the kernel's maps, and running
    // processes attributed, before the start record says the sensor observes.
    let mut selector_sync = SelectorSync::new(
        registry.clone(),
        maps.selectors,
        tracked.clone(),
        cgroups.clone(),
        Catalog::new(config.runtimes.clone()),
    );
    selector_sync.refresh().await;
    let mut procs = snapshot::read_all();
    selector_sync.attribute_running(procs.values_mut());
    let selector_sync: SharedSelectors = Arc::new(tokio::sync::Mutex::new(selector_sync));
    let ctx = Context {
        entity_ids: EntityIds::new(&host.boot_id),
        host,
        instance_id: host::new_instance_id()
            .context("making an instance id")?
            .into(),
        classifier: Classifier::new(&config.file_classes).context("compiling file classes")?,
        agents: agent_infos(&registry::current(&registry)),
        tasks: tasks.clone(),
        cgroups: cgroups.clone(),
        selectors: Some(selector_sync.clone()),
        all_processes: config.all_processes,
        marker: config
            .environment_marker
            .as_ref()
            .map(|name| format!("{name}=").into_bytes()),
        registry: registry.clone(),
        tracked: Some(tracked.clone()),
    };
    track(&tracked, &mut procs, &pids)?;
    let mut observed: Vec<&ProcSnapshot> = procs
        .values()
        .filter(|p| config.all_processes || p.agent.is_some())
        .collect();
    observed.sort_by_key(|p| p.tgid);
    let sink_health = sink.sink_health();
    let mut pipeline = Pipeline::new(ctx, sink, config.repeat_window_ms);
    pipeline.set_format(config.output.format);
    if let Some(rules) = rules {
        pipeline.detect_with(Box::new(rules));
    }
    let exceptions = policy_state.exceptions.clone();
    pipeline.share_exceptions(exceptions.clone());
    pipeline.share_resolved(policy_state.resolved.clone());
    if let Some(enforcer) = &enforcement {
        // In the kernel before the requester hears the exception is in force, and before the
        // pipeline goes on from the agent's DNS answer.
        let (e, r, s) = (enforcer.clone(), registry.clone(), policy_state.clone());
        exceptions.on_grant(move |_| sync_enforcement(&e, &r, &s));
        let (e, r, s) = (enforcer.clone(), registry.clone(), policy_state.clone());
        policy_state
            .resolved
            .on_learn(move |_| sync_enforcement(&e, &r, &s));
    }
    if let Some(key) = signing_key {
        pipeline.sign_with(crate::evidence::sealer::Checkpoints::new(
            key,
            config.checkpoint_records,
            config.checkpoint_interval_ms,
        ));
    }
    let endpoint = match config.metrics_listen {
        Some(address) => {
            let ring = RingFill::map(
                std::os::fd::AsFd::as_fd(&maps.events),
                config.ring_buffer_bytes,
            )
            .context("mapping the ring buffer's positions for the metrics")?;
            Some(serve_metrics(address, &pipeline, sink_health, ring).await?)
        }
        None => None,
    };
    // The control socket exists before the start record says the sensor runs: a client
    // that waits for that record can connect at once (its request waits in the backlog).
    let allowed = registration::Allowed {
        uids: config.registration_uids.clone(),
        gids: config.registration_gids.clone(),
    };
    let listener =
        registration::bind(&config.registration_socket, &allowed).with_context(|| {
            format!(
                "binding the registration socket {}",
                config.registration_socket.display()
            )
        })?;
    pipeline
        .start(&programs, config.all_processes)
        .await
        .context("writing the start record")?;
    pipeline
        .snapshot(&observed)
        .await
        .context("writing the snapshot")?;
    // This run's programs deny from here on, the running processes attributed: an earlier
    // run's fail-closed pins can go (this run's own, if any, stay).
    match fail_closed::release_others(pins.as_ref().map(Pins::dir)) {
        Ok(released) if !released.is_empty() => tracing::info!(
            ?released,
            "released the fail-closed enforcement an earlier run pinned"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "cannot release the fail-closed enforcement an earlier run pinned in {}: {e}",
            fail_closed::PIN_DIR
        ),
    }

    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(None);
    let source = KernelSource::new(
        maps.events,
        maps.lost,
        Duration::from_millis(u64::from(config.poll_interval_ms)),
    )
    .context("polling the ring buffer")?;
    let tx_control = tx.clone();
    let tx_tls = tx.clone();
    // The control socket: registrations (with a manifest) and operators' annotations.
    let registration = {
        let server = Arc::new(registration::Server {
            registry: registry.clone(),
            tasks: tasks.clone(),
            tracked: tracked.clone(),
            allowed,
            events: tx.clone(),
            exceptions: exceptions.clone(),
        });
        tokio::spawn(server.serve(listener))
    };
    let source = tokio::spawn(source.run(tx, stop_rx));
    let selectors = tokio::spawn(keep_selectors_current(
        selector_sync.clone(),
        Reload {
            registry: registry.clone(),
            manifest: config.identities.clone(),
            events: tx_control.clone(),
        },
        RulesReload {
            config: config.clone(),
            events: tx_control,
        },
        reload,
        hangup,
    ));
    let mut pipeline = tokio::spawn(pipeline.run(rx));

    // TLS capture follows the agents' libraries here, not in a task: it needs the loaded
    // object, which this function borrows.
    let mut tls_tick = tokio::time::interval(TLS_SCAN);
    // A reload's stdio capture settings reach the kernel at the same pace.
    let mut pipes_tick = tokio::time::interval(TLS_SCAN);
    // Reloads and exceptions that end reach the kernel's policy at this pace.
    let mut enforcement_tick = tokio::time::interval(ENFORCEMENT_SYNC);
    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT".to_owned(),
            _ = sigterm.recv() => break "SIGTERM".to_owned(),
            result = &mut pipeline => {
                // The pipeline only ends early on an output error.
                let _ = source.await;
                let stats = result.context("pipeline task")?.context("writing records")?;
                bail!("the pipeline stopped unexpectedly after {} records", stats.records_written);
            }
            _ = enforcement_tick.tick(), if enforcement.is_some() => {
                if let Some(enforcer) = &enforcement {
                    sync_enforcement(enforcer, &registry, &policy_state);
                }
            }
            _ = pipes_tick.tick(), if pipes.is_some() => {
                if let Some(p) = pipes.as_mut() {
                    p.sync(&registry::current(&registry).stdio_captures());
                }
            }
            _ = tls_tick.tick(), if tls.is_some() => {
                if let Some((attacher, ebpf)) = tls.as_mut() {
                    attacher.sync_agents(&registry::current(&registry).tls_captures());
                    if attacher.has_agents() {
                        let entries = tracked.lock().expect("no poisoned lock").entries();
                        for n in attacher.scan(ebpf, &entries) {
                            tracing::info!(pid = n.tgid, executable = %n.executable, reason = %n.reason, "TLS capture cannot see this process");
                            let message = crate::pipeline::inbox::Message::TlsNotCaptured {
                                tgid: n.tgid,
                                attribution: n.attribution,
                                reason: n.reason,
                            };
                            // Waits for room: a full inbox must not drop the record.
                            let _ = tx_tls.send(message).await;
                        }
                    }
                }
            }
        }
    };
    tracing::info!(%reason, "stopping: draining the kernel's records");
    if let (Some(pins), Some(enforcer)) = (&pins, &enforcement) {
        enforcer
            .lock()
            .expect("no poisoned lock")
            .keep_fail_closed_only(&agent_policies(&registry::current(&registry)));
        tracing::info!(
            pins = %pins.dir().display(),
            "fail-closed rules stay enforced after the sensor stops; release them with rm -r {}",
            fail_closed::PIN_DIR
        );
    }
    selectors.abort();
    registration.abort();
    if let Some(endpoint) = endpoint {
        endpoint.abort();
    }
    let _ = std::fs::remove_file(&config.registration_socket);
    let _ = stop_tx.send(Some(format!("signal {reason}")));
    source.await.context("source task")?;
    let stats = pipeline
        .await
        .context("pipeline task")?
        .context("writing records")?;
    tracing::info!(
        records = stats.records_written,
        kernel_lost = stats.kernel_lost,
        decode_errors = ?stats.decode_errors,
        "stopped"
    );
    Ok(())
}

/// Binds the metrics endpoint (a start-up error names the address) and serves the pipeline's
/// and the sinks' metrics there; ready once the pipeline says so and every sink is healthy.
async fn serve_metrics(
    address: std::net::SocketAddr,
    pipeline: &Pipeline,
    sinks: Option<SinkHealth>,
    ring: RingFill,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = crate::operate::endpoint::bind(address)
        .await
        .with_context(|| format!("binding the metrics endpoint {address} (metrics.listen)"))?;
    let bound = listener.local_addr().unwrap_or(address);
    let registry = Metrics::default();
    let metrics = pipeline.metrics();
    registry.register(metrics.clone());
    registry.register(Arc::new(ring));
    if let Some(sinks) = &sinks {
        registry.register(Arc::new(sinks.clone()));
    }
    let endpoint = Endpoint {
        registry,
        ready: Arc::new(move || {
            metrics.ready()?;
            sinks
                .as_ref()
                .and_then(SinkHealth::unready)
                .map_or(Ok(()), Err)
        }),
    };
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(endpoint.serve(listener)))
}

/// How often opted-in agents' processes are checked for TLS libraries not yet attached.
const TLS_SCAN: Duration = Duration::from_millis(100);

/// How often the kernel's policy is brought in step with the manifest and exceptions.
const ENFORCEMENT_SYNC: Duration = Duration::from_millis(100);

/// How often selectors are compiled again against the system (new cgroups, new files).
const SELECTOR_REFRESH: Duration = Duration::from_millis(250);

/// What reloading the manifest needs.
struct Reload {
    registry: SharedRegistry,
    manifest: Option<std::path::PathBuf>,
    events: mpsc::Sender<crate::pipeline::inbox::Message>,
}

impl Reload {
    /// The manifest's newest modification time (of the file, or of any file in the directory).
    fn stamp(&self) -> Option<std::time::SystemTime> {
        let path = self.manifest.as_deref()?;
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if path.is_dir() {
            std::fs::read_dir(path)
                .ok()?
                .flatten()
                .filter_map(|e| mtime(&e.path()))
                .chain(mtime(path))
                .max()
        } else {
            mtime(path)
        }
    }

    /// Reads the manifest again; a bad one is reported and the registry in force stays.
    async fn run(&self, trigger: &'static str) {
        let Some(path) = &self.manifest else { return };
        let result = manifest::load(path).map(|decls| {
            let next = Arc::new(registry::current(&self.registry).reloaded(decls));
            *self.registry.write().expect("no poisoned lock") = next.clone();
            next
        });
        match &result {
            Ok(r) => tracing::info!(trigger, agents = r.len(), "identity manifest reloaded"),
            Err(e) => tracing::error!(
                trigger,
                "identity manifest not reloaded, keeping the previous one: {e}"
            ),
        }
        let _ = self
            .events
            .send(crate::pipeline::inbox::Message::Reloaded { trigger, result })
            .await;
    }
}

/// What reloading the detection rules needs: their paths and how to treat rules that do not
/// load, from the config.
struct RulesReload {
    config: Config,
    events: mpsc::Sender<crate::pipeline::inbox::Message>,
}

impl RulesReload {
    /// The newest modification time of the rule files and directories, and how many there
    /// are (a file removed is a change too); `None` without rules.
    fn stamp(&self) -> Option<(std::time::SystemTime, usize)> {
        if self.config.rules.is_empty() {
            return None;
        }
        let mut files = Vec::new();
        for path in &self.config.rules {
            files.push(path.clone());
            let _ = crate::rules::rule_files(path, &mut files);
        }
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let newest = files.iter().filter_map(|f| mtime(f)).max()?;
        Some((newest, files.len()))
    }

    /// Compiles the rules again, off the runtime's thread; rules that do not load keep the
    /// old ones in force (unless `rules.skip_unsupported`), and the record says why.
    async fn run(&self, trigger: &'static str) {
        if self.config.rules.is_empty() {
            return;
        }
        let config = self.config.clone();
        let result = tokio::task::spawn_blocking(move || load_rules(&config))
            .await
            .map_err(|e| e.to_string())
            .and_then(|loaded| loaded.map_err(|e| format!("{e:#}")))
            .and_then(|rules| rules.ok_or_else(|| "no rules configured".to_owned()))
            .map(Box::new);
        match &result {
            Ok(r) => tracing::info!(trigger, rules = r.len(), "detection rules reloaded"),
            Err(e) => tracing::error!(
                trigger,
                "detection rules not reloaded, keeping the previous ones: {e}"
            ),
        }
        let _ = self
            .events
            .send(crate::pipeline::inbox::Message::RulesReloaded { trigger, result })
            .await;
    }
}

/// Keeps the selector maps current; when a cgroup starts matching, attributes the processes
/// already in it. Reloads the manifest and the detection rules on SIGHUP (after the
/// configuration, which may name others) or when they change.
async fn keep_selectors_current(
    sync: SharedSelectors,
    mut reload: Reload,
    mut rules: RulesReload,
    mut config: ConfigReload,
    mut hangup: tokio::signal::unix::Signal,
) {
    let mut tick = tokio::time::interval(SELECTOR_REFRESH);
    let mut stamp = reload.stamp();
    let mut rules_stamp = rules.stamp();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = reload.stamp();
                if now != stamp {
                    stamp = now;
                    reload.run("file change").await;
                }
                let now = rules.stamp();
                if now != rules_stamp {
                    rules_stamp = now;
                    rules.run("file change").await;
                }
            }
            _ = hangup.recv() => {
                config.reread();
                reload.manifest.clone_from(&config.running().identities);
                rules.config = config.running().clone();
                // Read now: files the new config names are not a change to reload again.
                stamp = reload.stamp();
                rules_stamp = rules.stamp();
                reload.run("SIGHUP").await;
                rules.run("SIGHUP").await;
            }
        }
        let mut sync = sync.lock().await;
        if !sync.refresh().await.is_empty() {
            let mut procs = snapshot::read_all();
            sync.attribute_running(procs.values_mut());
        }
    }
}

/// Puts the given process trees into the kernel's tracked-process map (parents first, so a
/// fork racing with this is inherited in the kernel), leaving agents' entries as they are.
fn track(
    tracked: &Tracked,
    procs: &mut HashMap<u32, ProcSnapshot>,
    roots: &[u32],
) -> anyhow::Result<()> {
    for &pid in roots {
        if !procs.contains_key(&pid) {
            bail!("--pid {pid}: no such process");
        }
    }
    let mut map = tracked.lock().expect("no poisoned lock");
    for tgid in snapshot::descendants(procs, roots) {
        let Some(p) = procs.get_mut(&tgid) else {
            continue;
        };
        if p.agent.is_none() {
            map.insert(tgid, TrackedProcess::default(), 0)
                .with_context(|| format!("tracking process {tgid}"))?;
            p.agent = Some(TrackedProcess::default());
        }
    }
    Ok(())
}
