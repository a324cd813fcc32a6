//! Userspace pipeline throughput: synthesised kernel records (see `records.rs`) replayed through
//! decode, attribution, enrichment, the evidence chain and the file sink, on the daemon's own
//! single-threaded runtime. Reports events per second of CPU time (one core) and heap
//! allocations per event, per workload shape, as one JSON object per line on stdout.
//!
//! Each shape is replayed twice: without rules, then with the SigmaHQ Linux rules of
//! `../shared/sigma` (process creation, file events, network connections) and the example
//! rules loaded, the rules stage timed on its own inside the same loop.
//!
//! Once more with a `[[sinks]]` socket sink (its disk queue, its delivery thread, a Unix
//! socket reader of this process that discards what it reads): the sink path's cost, side by
//! side with the output alone.
//!
//! Then file classification alone (`classify.rs`): the classifier index against `globset` on
//! the built-in rules, per path and to build, as one more JSON object.
//!
//! The passes without and with rules run `--rounds` times (5), alternating; the report gives
//! each one's median and its range over the rounds. `--pass` runs one pass once, for a profiler.
//!
//! `cargo bench -p agent-sensor --bench pipeline -- [--events N] [--output FILE] [--shape S]
//! [--only pipeline|classify] [--quick] [--rounds N] [--pass plain|sink|rules]` (`cargo xtask
//! bench` runs it.)
use std::{
    alloc::{GlobalAlloc, Layout, System},
    path::PathBuf,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::runtime::Runtime;

use agent_sensor::{
    config::{
        Output, OutputTarget,
        sinks::{SinkConfig, SinkKind, StreamAddress},
    },
    decode,
    identity::manifest,
    pipeline::Pipeline,
    record::{Record, alert::Raised},
    rules::Rules,
    sink::{Sink, forward::Forwarders},
    source::replay,
    stage::Detect,
};

mod classify;
mod records;

use records::Shape;

/// Counts every allocation, so the report can say how many an event costs. Only this
/// benchmark's binary has it; the daemon uses the system allocator untouched.
///
/// Each thread counts in a slot of its own with plain loads and stores: one counter shared by
/// all threads needs a locked add per allocation, which cost the measured pipeline about 5 %
/// of its time (two per allocation, 13 allocations per event) that the daemon never pays.
struct Counting;

/// One thread's counts, on a cache line of its own.
#[repr(align(64))]
struct Slot {
    allocations: AtomicU64,
    bytes: AtomicU64,
}

/// Threads past the last slot share it (with locked adds: still exact).
const SLOTS: usize = 64;
static COUNTS: [Slot; SLOTS] = [const {
    Slot {
        allocations: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    }
}; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot, taken at its first allocation (`usize::MAX` until then). A
    /// constant without drop glue: reading it never allocates, even while a thread ends.
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn count(bytes: usize) {
    let slot = SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT_SLOT.fetch_add(1, Relaxed).min(SLOTS - 1));
        }
        slot.get()
    });
    let counts = &COUNTS[slot];
    if slot == SLOTS - 1 {
        counts.allocations.fetch_add(1, Relaxed);
        counts.bytes.fetch_add(bytes as u64, Relaxed);
    } else {
        // This thread is the slot's only writer.
        let add = |counter: &AtomicU64, n: u64| counter.store(counter.load(Relaxed) + n, Relaxed);
        add(&counts.allocations, 1);
        add(&counts.bytes, bytes as u64);
    }
}

/// Allocations and bytes allocated so far, by every thread.
fn counted() -> (u64, u64) {
    COUNTS.iter().fold((0, 0), |(n, b), slot| {
        (
            n + slot.allocations.load(Relaxed),
            b + slot.bytes.load(Relaxed),
        )
    })
}

// SAFETY: defers to the system allocator; only adds counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The one agent every synthesised record is attributed to (kernel agent number 1).
const MANIFEST: &str = "agents:
  - id: bench-agent
    name: Benchmark agent
    purpose: Stands for a real agent in the pipeline benchmark
    owners: { business: sre@example.com, technical: sre@example.com }
    team: platform
    data_sensitivity: internal
    selectors:
      - cgroup: /bench-agent
";

/// Process CPU time (all threads: the file sink writes on tokio's blocking threads), wall
/// time and allocations since `start`.
#[derive(Clone, Copy)]
struct Meter {
    cpu: Duration,
    wall: Instant,
    allocations: u64,
    bytes: u64,
}

impl Meter {
    fn start() -> Self {
        let (allocations, bytes) = counted();
        Self {
            cpu: cpu_time(),
            wall: Instant::now(),
            allocations,
            bytes,
        }
    }

    fn stop(self, events: usize) -> Measured {
        let (allocations, bytes) = counted();
        Measured {
            events,
            output_bytes: 0,
            cpu: cpu_time().saturating_sub(self.cpu).as_secs_f64(),
            wall: self.wall.elapsed().as_secs_f64(),
            allocations: allocations - self.allocations,
            bytes: bytes - self.bytes,
        }
    }
}

struct Measured {
    /// Records replayed (every one an event).
    events: usize,
    /// Bytes the file sink wrote.
    output_bytes: u64,
    cpu: f64,
    wall: f64,
    allocations: u64,
    bytes: u64,
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Args {
    events: usize,
    output: PathBuf,
    /// Only this shape (for profiling one), or all.
    shape: Option<String>,
    /// Only the pipeline replay or only file classification; both when `None`.
    only: Option<String>,
    /// A tenth of the classification calls.
    quick: bool,
    /// Rounds of the passes without and with rules, interleaved.
    rounds: usize,
    /// Only this pass, once (for profiling one): nothing on stdout.
    pass: Option<Pass>,
}

#[derive(Clone, Copy, Debug)]
enum Pass {
    Plain,
    Sink,
    Rules,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 300_000,
        // Per process: two benches at once (two checkouts) must not delete each other's file.
        output: std::env::temp_dir().join(format!(
            "agent-sensor-pipeline-replay-{}.jsonl",
            std::process::id()
        )),
        shape: None,
        only: None,
        quick: false,
        rounds: 5,
        pass: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => args.events = it.next().and_then(|n| n.parse().ok()).expect("--events N"),
            "--output" => args.output = it.next().expect("--output FILE").into(),
            "--shape" => args.shape = Some(it.next().expect("--shape open|exec|connect|mixed")),
            "--only" => {
                let part = it.next().filter(|p| p == "pipeline" || p == "classify");
                args.only = Some(part.expect("--only pipeline|classify"));
            }
            "--quick" => args.quick = true,
            "--rounds" => {
                let rounds = it.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0);
                args.rounds = rounds.expect("--rounds N (at least 1)");
            }
            "--pass" => {
                args.pass = Some(match it.next().as_deref() {
                    Some("plain") => Pass::Plain,
                    Some("sink") => Pass::Sink,
                    Some("rules") => Pass::Rules,
                    _ => panic!("--pass plain|sink|rules"),
                });
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?}; use --events N, --output FILE, --shape S, --only P, --quick, --rounds N, --pass P"
            ),
        }
    }
    args
}

/// The rules, timing themselves: nanoseconds spent in `detect` and alerts raised.
struct Timed {
    rules: Rules,
    spent_ns: std::sync::Arc<AtomicU64>,
    alerts: std::sync::Arc<AtomicU64>,
}

impl Detect for Timed {
    type Rules = Rules;

    fn reload(&mut self, next: Rules) {
        self.rules.reload(next);
    }

    fn detect(&mut self, record: &Record, sequence: u64, out: &mut Vec<Raised>) {
        // Every call timed (the rules' own metric times one in 16): the clock reads are
        // counted against the rules, not left out.
        let start = Instant::now();
        let before = out.len();
        self.rules.detect(record, sequence, out);
        // The pipeline's thread is the only writer: no locked add.
        let add = |counter: &AtomicU64, n: u64| counter.store(counter.load(Relaxed) + n, Relaxed);
        add(&self.spent_ns, start.elapsed().as_nanos() as u64);
        add(&self.alerts, (out.len() - before) as u64);
    }
}

/// The whole Linux Sigma corpus of the three categories, and the example rules.
fn all_rules() -> Rules {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sigma = root.join("../../shared/sigma");
    let mut paths = vec![root.join("../examples/rules")];
    for dir in [
        "rules/linux",
        "rules-threat-hunting/linux",
        "rules-emerging-threats",
    ] {
        paths.push(sigma.join(dir));
    }
    // Every rule that loads (the corpus also has other categories and services).
    let loaded = Rules::load(&paths);
    eprintln!(
        "rules: {} loaded from {} files ({} not loaded: other categories and services, CurrentDirectory)",
        loaded.rules.len(),
        loaded.files,
        loaded.rejected.len()
    );
    loaded.rules
}

/// Decoding alone: the floor under everything else.
fn decode_pass(shape: Shape, args: &Args) -> Measured {
    let (batches, events) = records::batches(shape, args.events);
    let meter = Meter::start();
    let mut decoded = 0usize;
    for batch in &batches {
        for bytes in batch.records() {
            decoded += usize::from(decode::decode(bytes).is_ok());
        }
    }
    let measured = meter.stop(events);
    assert_eq!(decoded, events, "every synthesised record decodes");
    measured
}

/// The pipeline context of a replay: the bench manifest's one agent.
fn context() -> agent_sensor::pipeline::Context {
    let agents = manifest::parse("bench.yaml".as_ref(), MANIFEST).expect("the manifest");
    replay::context(agents).expect("a pipeline context")
}

/// The durable file sink with its default settings, as a live run has it.
fn file_output(args: &Args) -> Output {
    Output {
        target: OutputTarget::File(args.output.clone()),
        ..Output::default()
    }
}

/// Decode, attribution, enrichment, the chain and the file sink.
fn plain_pass(runtime: &Runtime, shape: Shape, args: &Args) -> Measured {
    let _ = std::fs::remove_file(&args.output);
    let ctx = context();
    let (batches, events) = records::batches(shape, args.events);
    let meter = Meter::start();
    let stats = runtime
        .block_on(async {
            let sink = Sink::open(&file_output(args)).map_err(std::io::Error::other)?;
            replay::replay(Pipeline::new(ctx, sink, 0), batches).await
        })
        .expect("the replay");
    let mut measured = meter.stop(events);
    measured.output_bytes = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&args.output);
    assert_eq!(
        stats.decode_errors.values().sum::<u64>(),
        0,
        "decode errors in the replay"
    );
    // The stop record is the pipeline's own.
    assert_eq!(
        stats.records_written,
        events as u64 + 1,
        "one record per event"
    );
    measured
}

/// As the plain pass, with a socket sink too: the queue's writes and the delivery thread
/// count.
fn sink_pass(runtime: &Runtime, shape: Shape, args: &Args) -> Measured {
    let dir = args.output.with_extension("sink");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the sink's directory");
    let socket = dir.join("reader.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("a socket");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the sink connects");
        std::io::copy(&mut s, &mut std::io::sink()).expect("reading the sink")
    });
    let ctx = context();
    let (batches, events) = records::batches(shape, args.events);
    let config = SinkConfig {
        name: "bench".into(),
        kind: SinkKind::Socket(StreamAddress::Unix(socket)),
        queue_dir: dir.clone(),
        queue_bytes: 1 << 32,
        queue_sync: false,
        batch_records: 500,
        timeout_ms: 60_000,
        retry_max_ms: 1000,
        tls: None,
    };
    let meter = Meter::start();
    runtime
        .block_on(async {
            let output = file_output(args);
            let mut sink = Sink::open(&output).map_err(std::io::Error::other)?;
            let forwarders = Forwarders::open(std::slice::from_ref(&config), &output.target, None)
                .map_err(std::io::Error::other)?;
            sink.deliver_to(forwarders)?;
            replay::replay(Pipeline::new(ctx, sink, 0), batches).await
        })
        .expect("the replay with a sink");
    // The stop drained the queue into the socket; the reader ends with it.
    let read = reader.join().expect("the reader");
    let mut measured = meter.stop(events);
    measured.output_bytes = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    assert_eq!(
        read, measured.output_bytes,
        "the sink delivered the whole output"
    );
    let _ = std::fs::remove_file(&args.output);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// The plain pass with every rule loaded, the rules stage timed inside the same loop.
struct RulesPass {
    measured: Measured,
    rules_loaded: usize,
    rules_seconds: f64,
    alerts: u64,
}

fn rules_pass(runtime: &Runtime, shape: Shape, args: &Args) -> RulesPass {
    let _ = std::fs::remove_file(&args.output);
    let ctx = context();
    let timed = Timed {
        rules: all_rules(),
        spent_ns: std::sync::Arc::default(),
        alerts: std::sync::Arc::default(),
    };
    let (rules_loaded, spent_ns, alerts) = (
        timed.rules.len(),
        timed.spent_ns.clone(),
        timed.alerts.clone(),
    );
    let (batches, events) = records::batches(shape, args.events);
    let meter = Meter::start();
    let stats = runtime
        .block_on(async {
            let sink = Sink::open(&file_output(args)).map_err(std::io::Error::other)?;
            let mut pipeline = Pipeline::new(ctx, sink, 0);
            pipeline.detect_with(Box::new(timed));
            replay::replay(pipeline, batches).await
        })
        .expect("the replay with rules");
    let measured = meter.stop(events);
    let _ = std::fs::remove_file(&args.output);
    let alerts = alerts.load(Relaxed);
    assert_eq!(
        stats.records_written,
        events as u64 + 1 + alerts,
        "one record per event, and the alerts"
    );
    RulesPass {
        measured,
        rules_loaded,
        rules_seconds: spent_ns.load(Relaxed) as f64 / 1e9,
        alerts,
    }
}

/// The median of `value` over `rounds`, and its smallest and largest.
fn median<T>(rounds: &[T], value: impl Fn(&T) -> f64) -> (f64, [f64; 2]) {
    let mut values: Vec<f64> = rounds.iter().map(value).collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let middle = if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    };
    (middle, [values[0], values[n - 1]])
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let part = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let shapes = Shape::ALL
        .into_iter()
        .filter(|_| part("pipeline"))
        .filter(|s| args.shape.as_deref().is_none_or(|name| name == s.name()));
    for shape in shapes {
        if let Some(pass) = args.pass {
            // One pass alone, for a profiler: its figures on stderr only.
            let m = match pass {
                Pass::Plain => plain_pass(&runtime, shape, &args),
                Pass::Sink => sink_pass(&runtime, shape, &args),
                Pass::Rules => rules_pass(&runtime, shape, &args).measured,
            };
            eprintln!(
                "pipeline {:>7}, {pass:?} pass alone: {:>9.0} events/s/core",
                shape.name(),
                m.events as f64 / m.cpu
            );
            continue;
        }
        let decode = decode_pass(shape, &args);
        // The passes with and without rules alternate, round after round: the VM's speed
        // drifts over seconds, and a slow phase then falls on one round of each, not on
        // every measurement of one pass. The medians are the figures; the spread is reported.
        let (mut plain, mut rules) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            plain.push(plain_pass(&runtime, shape, &args));
            rules.push(rules_pass(&runtime, shape, &args));
        }
        let with_sink = sink_pass(&runtime, shape, &args);
        let events = with_sink.events;
        let rate = |m: &Measured| m.events as f64 / m.cpu;
        let (full, full_range) = median(&plain, rate);
        let (with_rules, with_rules_range) = median(&rules, |r| rate(&r.measured));
        let (rules_stage, rules_stage_range) =
            median(&rules, |r| r.measured.events as f64 / r.rules_seconds);
        let first = &rules[0];
        let per_event = |n: u64| n as f64 / events as f64;
        let line = serde_json::json!({
            "rounds": args.rounds,
            "rules_loaded": first.rules_loaded,
            "with_sink_events_per_core_second": rate(&with_sink),
            "with_sink_allocations_per_event": per_event(with_sink.allocations),
            "with_rules_events_per_core_second": with_rules,
            "with_rules_events_per_core_second_range": with_rules_range,
            "with_rules_allocations_per_event": per_event(first.measured.allocations),
            "rules_stage_events_per_second": rules_stage,
            "rules_stage_events_per_second_range": rules_stage_range,
            "alerts": first.alerts,
            "shape": shape.name(),
            "events": events,
            "events_per_core_second": full,
            "events_per_core_second_range": full_range,
            "allocations_per_event": per_event(plain[0].allocations),
            "allocated_bytes_per_event": per_event(plain[0].bytes),
            "output_bytes_per_event": per_event(plain[0].output_bytes),
            "decode_events_per_core_second": rate(&decode),
            "decode_allocations_per_event": per_event(decode.allocations),
            "decode_wall_seconds": decode.wall,
        });
        println!("{line}");
        let range = |r: [f64; 2]| format!("[{:.0}–{:.0}]", r[0], r[1]);
        eprintln!(
            "pipeline {:>7}: {full:>9.0} {} events/s/core, {:.1} allocations/event, {:.0} bytes/event out; decode alone {:.0} events/s/core",
            shape.name(),
            range(full_range),
            per_event(plain[0].allocations),
            per_event(plain[0].output_bytes),
            rate(&decode),
        );
        eprintln!(
            "          with a socket sink: {:>9.0} events/s/core, {:.1} allocations/event",
            rate(&with_sink),
            per_event(with_sink.allocations),
        );
        eprintln!(
            "          with {} rules: {with_rules:>9.0} {} events/s/core, rules stage alone {rules_stage:.0} {} events/s, {} alerts",
            first.rules_loaded,
            range(with_rules_range),
            range(rules_stage_range),
            first.alerts,
        );
    }
    if part("classify") {
        println!("{}", classify::measure(if args.quick { 10 } else { 1 }));
    }
}
