//! File classification: what `file.class` costs per file record, with the daemon's classifier
//! (the glob dialect of `agent_sensor::glob` behind the classifier index) side by side with
//! the same built-in rules compiled by the `globset` crate, and with every pattern tried in
//! order (no index). Prints one JSON object; `cargo xtask bench` reports the ratios.
//!
//! The figures are CPU time of this thread, the best of several rounds: other work on a shared
//! machine only ever slows a round down.
use std::{hint::black_box, path::Path, time::Duration};

use agent_sensor::{enrich::fspath::Classifier, glob::PathGlob};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Paths a file record carries, most of them in no class (as on a real host), a few in one.
pub const PATHS: &[&str] = &[
    "/srv/agent/data/chunk-03.parquet",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/home/alice/project/src/main.rs",
    "/etc/ld.so.cache",
    "/home/alice/project/node_modules/@types/node/fs/promises.d.ts",
    "/proc/self/status",
    "/tmp/pip-build-env-1x2y3z/overlay/lib/python3.12/site-packages/setuptools/__init__.py",
    "/home/alice/.ssh/id_rsa",
    "/home/alice/.aws/credentials",
    "/srv/app/.env.production",
    "/run/secrets/kubernetes.io/serviceaccount/token",
];

/// The built-in rules compiled by globset, with each pattern's rule.
struct Globset {
    /// All patterns in one set: the first rule is the lowest rule among all matches.
    one: GlobSet,
    rule_of: Vec<usize>,
    /// One set per rule, tried in order until one matches.
    per_rule: Vec<GlobSet>,
    classes: Vec<String>,
}

/// One pattern of the daemon's dialect as globset patterns with the same matches (for the
/// built-in rules): `*`, `?`, `[...]`, `\` and `**` mean the same with `literal_separator`,
/// except that the daemon's `/a/**` also matches `/a` itself, which globset spells apart.
fn globset_patterns(pattern: &str) -> Vec<String> {
    let mut out = vec![pattern.to_owned()];
    if let Some(dir) = pattern.strip_suffix("/**").filter(|d| !d.is_empty()) {
        out.push(dir.to_owned());
    }
    out
}

fn glob(pattern: &str) -> globset::Glob {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .unwrap_or_else(|e| panic!("globset refuses {pattern:?}: {e}"))
}

impl Globset {
    fn new() -> Self {
        let rules = Classifier::builtin_rules();
        let mut one = GlobSetBuilder::new();
        let mut rule_of = Vec::new();
        let mut per_rule = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            let mut set = GlobSetBuilder::new();
            for pattern in rule.patterns.iter().flat_map(|p| globset_patterns(p)) {
                one.add(glob(&pattern));
                set.add(glob(&pattern));
                rule_of.push(r);
            }
            per_rule.push(set.build().expect("a glob set"));
        }
        Self {
            one: one.build().expect("a glob set"),
            rule_of,
            per_rule,
            classes: rules.into_iter().map(|r| r.class).collect(),
        }
    }

    fn classify_one_set(&self, path: &[u8], matches: &mut Vec<usize>) -> Option<&str> {
        self.one.matches_into(bytes_path(path), matches);
        let first = matches.iter().map(|&p| self.rule_of[p]).min()?;
        Some(&self.classes[first])
    }

    fn classify_per_rule(&self, path: &[u8]) -> Option<&str> {
        let path = bytes_path(path);
        let candidate = globset::Candidate::new(path);
        self.per_rule
            .iter()
            .position(|set| set.is_match_candidate(&candidate))
            .map(|r| self.classes[r].as_str())
    }
}

fn bytes_path(path: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt as _;
    Path::new(std::ffi::OsStr::from_bytes(path))
}

/// Every built-in pattern compiled alone, tried in rule order: the classifier without its
/// index.
struct EveryPattern(Vec<(PathGlob, String)>);

impl EveryPattern {
    fn new() -> Self {
        Self(
            Classifier::builtin_rules()
                .into_iter()
                .flat_map(|rule| {
                    rule.patterns
                        .into_iter()
                        .map(move |p| (PathGlob::new(&p).expect("a built-in"), rule.class.clone()))
                })
                .collect(),
        )
    }

    fn classify(&self, path: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|(glob, _)| glob.matches(path))
            .map(|(_, class)| class.as_str())
    }
}

/// This thread's CPU time.
fn cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Nanoseconds of CPU per call of `f`, the best of nine rounds of `calls / 9`.
fn per_call<T>(calls: u32, mut f: impl FnMut() -> T) -> f64 {
    let round = (calls / 9).max(1);
    (0..9)
        .map(|_| {
            let start = cpu_time();
            for _ in 0..round {
                black_box(f());
            }
            cpu_time().saturating_sub(start).as_secs_f64() * 1e9 / f64::from(round)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Measures and returns the JSON line. `scale` divides the number of calls (`--quick`).
pub fn measure(scale: u32) -> serde_json::Value {
    let classifier = Classifier::new(&[]).expect("the built-in rules");
    let globset = Globset::new();
    let every = EveryPattern::new();
    let patterns: usize = Classifier::builtin_rules()
        .iter()
        .map(|r| r.patterns.len())
        .sum();

    let mut matches = Vec::new();
    let mut rows = Vec::new();
    let (mut index_sum, mut globset_sum, mut per_rule_sum, mut every_sum) = (0.0, 0.0, 0.0, 0.0);
    for path in PATHS {
        let bytes = path.as_bytes();
        let class = classifier.classify(bytes);
        // The same answers, or the comparison would not be of the same work.
        assert_eq!(
            globset.classify_one_set(bytes, &mut matches),
            class,
            "{path}"
        );
        assert_eq!(globset.classify_per_rule(bytes), class, "{path}");
        assert_eq!(every.classify(bytes), class, "{path}");
        let index_ns = per_call(2_000_000 / scale, || {
            classifier.classify(black_box(bytes)).is_some()
        });
        let globset_ns = per_call(200_000 / scale, || {
            globset
                .classify_one_set(black_box(bytes), &mut matches)
                .is_some()
        });
        let per_rule_ns = per_call(200_000 / scale, || {
            globset.classify_per_rule(black_box(bytes)).is_some()
        });
        let every_ns = per_call(200_000 / scale, || {
            every.classify(black_box(bytes)).is_some()
        });
        index_sum += index_ns;
        globset_sum += globset_ns;
        per_rule_sum += per_rule_ns;
        every_sum += every_ns;
        eprintln!(
            "classify {path}: index {index_ns:.1} ns, globset {globset_ns:.0} ns (a set per rule {per_rule_ns:.0} ns), every pattern {every_ns:.0} ns"
        );
        rows.push(serde_json::json!({
            "path": path,
            "class": class,
            "index_ns": index_ns,
            "globset_ns": globset_ns,
            "globset_per_rule_ns": per_rule_ns,
            "every_pattern_ns": every_ns,
        }));
    }
    // Both include turning the rule table into owned rules, as the daemon's start-up does.
    let build_us = |f: &dyn Fn()| per_call(270 / scale.min(27), f) / 1000.0;
    let index_build_us = build_us(&|| {
        black_box(Classifier::new(&[]).expect("the built-in rules"));
    });
    let globset_build_us = build_us(&|| {
        let mut set = GlobSetBuilder::new();
        for rule in Classifier::builtin_rules() {
            for pattern in rule.patterns.iter().flat_map(|p| globset_patterns(p)) {
                set.add(glob(&pattern));
            }
        }
        black_box(set.build().expect("a glob set"));
    });
    eprintln!(
        "classify: building the built-in rules: index {index_build_us:.0} µs, globset {globset_build_us:.0} µs"
    );
    let n = f64::from(u32::try_from(PATHS.len()).expect("a few paths"));
    serde_json::json!({
        "classify": {
            "rules": Classifier::builtin_rules().len(),
            "patterns": patterns,
            "paths": rows,
            "mean_index_ns": index_sum / n,
            "mean_globset_ns": globset_sum / n,
            "mean_globset_per_rule_ns": per_rule_sum / n,
            "mean_every_pattern_ns": every_sum / n,
            "index_build_us": index_build_us,
            "globset_build_us": globset_build_us,
        }
    })
}
