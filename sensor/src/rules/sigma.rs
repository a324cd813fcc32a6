//! Sigma rules as they are, for product `linux` and the `process_creation`, `file_event` and
//! `network_connection` categories: loading (every rule either compiles whole or is rejected
//! with its file, line, column and reason, never half-evaluated), Sigma's field names mapped
//! to the sensor's ([`SigmaEvent`], docs/rules.md), and evaluation.
//!
//! Evaluation is `rsigma-eval` 0.23.0 (pinned: 0.24 and later need rustc 1.96), behind
//! [`SigmaEngine`] so it can be swapped. It indexes rules by value, and is always asked with
//! the record's log source (`evaluate_with_logsource`: plain `evaluate` ignores a rule's
//! logsource, and a network rule would fire on process events). Its `base64offset` misses two
//! of the three offsets before 0.26, so rules using it are rejected.
use std::{borrow::Cow, collections::HashMap, fmt, path::Path};

use rsigma_eval::{
    CompiledRule, CorrelationConfig, CorrelationEngine, Engine, Event, EventValue,
    TimestampFallback,
};
use rsigma_parser::{
    ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, Detection, Level,
    LogSource, Modifier, SigmaCollection, SigmaRule, SigmaValue,
};
use serde_json::{Map, Value};

use crate::rules::{
    fields::{Category, Fields},
    lineage::Image,
};

/// A rule (or a whole file) that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rule file.
    pub file: String,
    /// 1-based line and column of what is wrong (the rule's start when nothing narrower).
    pub line: usize,
    /// See `line`.
    pub column: usize,
    /// The rule's title, when it got that far.
    pub title: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(t) = &self.title {
            write!(f, "rule {t:?}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// What an alert says of the Sigma rule that fired.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// `id`.
    pub id: Option<String>,
    /// `title`.
    pub title: String,
    /// `author`.
    pub author: Option<String>,
    /// `level`, `medium` when absent.
    pub level: &'static str,
    /// `tags`.
    pub tags: Vec<String>,
}

/// What the sensor needs of a Sigma evaluator: the rules of a log source that `event`
/// matches, and the correlation rules it completes, by their index in the order they were
/// added.
pub trait SigmaEngine {
    /// Pushes the index of every rule of `category` that `event` matches, then of every
    /// correlation rule it completes at `seconds` (the record's own time, since the epoch;
    /// without one, no correlation is fed), onto `hits`.
    fn matching(
        &mut self,
        event: &SigmaEvent<'_>,
        category: Category,
        seconds: Option<i64>,
        hits: &mut Vec<usize>,
    );
}

/// A correlation rule waiting for every rule file to be read (the rules it names may be in
/// any of them).
struct PendingCorrelation {
    rule: CorrelationRule,
    file: String,
    line: usize,
    column: usize,
}

/// The loaded Sigma rules.
pub struct SigmaRules {
    /// rsigma's correlation engine: it keeps the state of correlations and knows every
    /// detection rule (correlations name them), but detections are asked of `detectors`.
    engine: CorrelationEngine,
    /// A detection engine per log source (by [`Category`]), each holding that category's
    /// rules only: a record is probed for the fields, and checked against the rules, of its
    /// own category, not of all three (a `connect` record cost twice as much before).
    detectors: [Engine; 3],
    /// Correlation rules loaded.
    correlations: usize,
    pending: Vec<PendingCorrelation>,
    /// Rules checked, added to `engine` together by [`SigmaRules::finish`].
    staged: Vec<SigmaRule>,
    /// The same compiled, by [`Category`], added to `detectors` together by `finish`.
    compiled: [Vec<CompiledRule>; 3],
    /// The ids and names of the detection rules loaded (which correlations refer to), and
    /// their index in `rules`.
    names: HashMap<String, usize>,
    /// By index in `rules`: only a correlation asks for it (`generate: false`, Sigma's
    /// default), so its own matches are not alerts.
    quiet: Vec<bool>,
    /// By rsigma's rule key (id, else title), the index in `rules`.
    keys: HashMap<String, usize>,
    rules: Vec<RuleInfo>,
    /// The rule log source each category is evaluated with.
    logsources: [LogSource; 3],
    /// Correlation groups kept at most ([`CORRELATION_STATES`]; tests make it smaller).
    capacity: usize,
    /// The record second at which expired correlation state was last dropped while full
    /// (at most one such pass per second of record time).
    expired_at: Option<i64>,
    /// Records whose matches were not fed to the correlations because their state was full
    /// (`capacity` groups, none of them expired).
    pub correlation_dropped: u64,
}

impl Default for SigmaRules {
    fn default() -> Self {
        let logsource = |c: Category| LogSource {
            category: Some(c.name().to_owned()),
            product: Some("linux".to_owned()),
            ..LogSource::default()
        };
        Self {
            engine: CorrelationEngine::new(CorrelationConfig {
                // Only the record's own time: nothing falls back to the wall clock.
                timestamp_fallback: TimestampFallback::Skip,
                // rsigma's own cap drops the stalest groups without saying how many; the
                // sensor bounds the groups where it feeds them (`matching`) and counts, so
                // rsigma's is out of reach.
                max_state_entries: usize::MAX,
                max_group_entries: Some(CORRELATION_GROUP_ENTRIES),
                ..CorrelationConfig::default()
            }),
            detectors: Default::default(),
            compiled: Default::default(),
            correlations: 0,
            pending: Vec::new(),
            staged: Vec::new(),
            names: HashMap::new(),
            quiet: Vec::new(),
            keys: HashMap::new(),
            rules: Vec::new(),
            logsources: [
                logsource(Category::ProcessCreation),
                logsource(Category::FileEvent),
                logsource(Category::NetworkConnection),
            ],
            capacity: CORRELATION_STATES,
            expired_at: None,
            correlation_dropped: 0,
        }
    }
}

/// Correlation groups kept at most, across all correlations: when full, expired state is
/// dropped (once per second of record time at most); while still full, a record's matches
/// are not fed to the correlations, and counted ([`SigmaRules::correlation_dropped`]).
pub const CORRELATION_STATES: usize = 100_000;
/// Entries rsigma keeps per group (past it, the oldest go, so a count past this many would be
/// under-counted: a correlation whose threshold is not below it is refused at load).
pub const CORRELATION_GROUP_ENTRIES: usize = 1_000;

impl SigmaEngine for SigmaRules {
    fn matching(
        &mut self,
        event: &SigmaEvent<'_>,
        category: Category,
        seconds: Option<i64>,
        hits: &mut Vec<usize>,
    ) {
        let logsource = &self.logsources[category as usize];
        let mut results =
            self.detectors[category as usize].evaluate_with_logsource(event, logsource);
        if self.correlations > 0
            && !results.is_empty()
            && let Some(seconds) = seconds
        {
            if self.engine.state_count() >= self.capacity && self.expired_at != Some(seconds) {
                self.engine.evict_expired(seconds);
                self.expired_at = Some(seconds);
            }
            if self.engine.state_count() >= self.capacity {
                // Full of live state: this record's matches go to no correlation (the
                // rules' own alerts are still given), and the loss is counted.
                self.correlation_dropped += 1;
            } else {
                // Detections of rules only a correlation asks for (`generate: false`) are
                // left out here, and the correlations they complete added.
                results = self.engine.process_with_detections(event, results, seconds);
            }
        }
        for m in results {
            let key = m.header.rule_id.as_ref().unwrap_or(&m.header.rule_title);
            if let Some(&i) = self.keys.get(key)
                && !self.quiet[i]
            {
                hits.push(i);
            }
        }
    }
}

impl SigmaRules {
    /// How many rules are loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule at `index` (as [`SigmaEngine::matching`] names it).
    pub fn rule(&self, index: usize) -> &RuleInfo {
        &self.rules[index]
    }

    /// Loads the rules of one file's `text` (`file` names it in rejections); returns how
    /// many were loaded and pushes a rejection for each that was not.
    pub fn add_file(&mut self, file: &Path, text: &str, rejected: &mut Vec<Rejection>) -> usize {
        let name = file.display().to_string();
        let reject = |line: usize, column: usize, title: Option<&str>, reason: String| Rejection {
            file: name.clone(),
            line,
            column,
            title: title.map(str::to_owned),
            reason,
        };
        let collection = match rsigma_parser::parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                let (line, column) = position_in(&e.to_string());
                rejected.push(reject(line, column, None, e.to_string()));
                return 0;
            }
        };
        for e in &collection.errors {
            let (line, column) = position_in(e);
            rejected.push(reject(line, column, None, e.clone()));
        }
        for (n, c) in collection.correlations.iter().enumerate() {
            let (line, column) = nth_key_position(text, "correlation", n);
            self.pending.push(PendingCorrelation {
                rule: c.clone(),
                file: name.clone(),
                line,
                column,
            });
        }
        for f in &collection.filters {
            let (line, column) = key_position(text, "filter", 1);
            rejected.push(reject(
                line,
                column,
                Some(&f.title),
                "Sigma filters are not supported yet".to_owned(),
            ));
        }
        let mut loaded = 0;
        for rule in &collection.rules {
            match self.add_rule(rule, text) {
                Ok(()) => loaded += 1,
                Err((line, column, reason)) => {
                    rejected.push(reject(line, column, Some(&rule.title), reason));
                }
            }
        }
        loaded
    }

    /// Checks that every part of `rule` is something the sensor evaluates exactly, then
    /// compiles it; the error is the line, column and reason.
    fn add_rule(&mut self, rule: &SigmaRule, text: &str) -> Result<(), (usize, usize, String)> {
        let category = check_logsource(&rule.logsource)
            .map_err(|reason| with_position(key_position(text, "logsource", 1), reason))?;
        let mut names: Vec<&String> = rule.detection.named.keys().collect();
        names.sort();
        for name in names {
            check_detection(&rule.detection.named[name], category).map_err(|(key, reason)| {
                let at =
                    key.map_or_else(|| key_position(text, name, 1), |k| field_position(text, &k));
                with_position(at, reason)
            })?;
        }
        let key = rule.id.clone().unwrap_or_else(|| rule.title.clone());
        if self.keys.contains_key(&key) {
            return Err(with_position(
                key_position(text, "id", 1),
                format!("a rule with id {key:?} is already loaded"),
            ));
        }
        let compiled = rsigma_eval::compile_rule(rule).map_err(|e| {
            with_position(
                key_position(text, "detection", 1),
                format!("does not compile: {e}"),
            )
        })?;
        self.staged.push(rule.clone());
        self.compiled[category as usize].push(compiled);
        for n in rule.id.iter().chain(&rule.name) {
            self.names.insert(n.clone(), self.rules.len());
        }
        self.keys.insert(key, self.rules.len());
        self.quiet.push(false);
        self.rules.push(RuleInfo {
            id: rule.id.clone(),
            title: rule.title.clone(),
            author: rule.author.clone(),
            level: rule.level.as_ref().map_or("medium", Level::as_str),
            tags: rule.tags.clone(),
        });
        Ok(())
    }

    /// Compiles the correlation rules read, now that every rule file is: each must name
    /// only loaded rules and group by fields the sensor maps.
    pub fn finish(&mut self, rejected: &mut Vec<Rejection>) {
        // All at once: rsigma indexes rules added one by one only at each doubling of their
        // count, and evaluates the rest (47 of the corpus's 175) for every record.
        // Each detector gets its category's rules as compiled when they were checked.
        for (detector, compiled) in self.detectors.iter_mut().zip(&mut self.compiled) {
            detector.extend_compiled_rules(std::mem::take(compiled));
        }
        // The correlation engine gets them all (correlations name rules of any category).
        let staged = SigmaCollection {
            rules: std::mem::take(&mut self.staged),
            ..SigmaCollection::default()
        };
        if let Err(e) = self.engine.add_collection(&staged) {
            // Each compiled on its own, so this is rsigma's fault; said, never hidden.
            self.detectors = Default::default();
            rejected.extend(staged.rules.iter().map(|r| Rejection {
                file: "(the loaded Sigma rules)".to_owned(),
                line: 0,
                column: 0,
                title: Some(r.title.clone()),
                reason: format!("rsigma could not load the rules together: {e}"),
            }));
        }
        for p in std::mem::take(&mut self.pending) {
            let title = p.rule.title.clone();
            match self.add_correlation(&p.rule) {
                Ok(()) => {}
                Err(reason) => rejected.push(Rejection {
                    file: p.file,
                    line: p.line,
                    column: p.column,
                    title: Some(title),
                    reason,
                }),
            }
        }
    }

    fn add_correlation(&mut self, c: &CorrelationRule) -> Result<(), String> {
        if let Some(missing) = c.rules.iter().find(|r| !self.names.contains_key(*r)) {
            return Err(format!(
                "correlation refers to rule {missing:?}, which is not loaded"
            ));
        }
        let aliases: Vec<&str> = c.aliases.iter().map(|a| a.alias.as_str()).collect();
        let mut fields: Vec<&String> = c.group_by.iter().collect();
        if let CorrelationCondition::Threshold { field: Some(f), .. } = &c.condition {
            fields.extend(f);
        }
        for a in &c.aliases {
            fields.extend(a.mapping.values());
        }
        let mapped = |f: &str| {
            [PROCESS_FIELDS, FILE_FIELDS, NETWORK_FIELDS, AGENT_FIELDS]
                .iter()
                .any(|list| list.contains(&f))
        };
        if let Some(f) = fields
            .iter()
            .find(|f| !aliases.contains(&f.as_str()) && !mapped(f))
        {
            return Err(format!(
                "correlation field {f:?} has no sensor field (docs/rules.md lists the mapped ones)"
            ));
        }
        if let CorrelationCondition::Threshold { predicates, .. } = &c.condition
            && let Some((_, n)) = predicates
                .iter()
                .find(|(_, n)| *n >= CORRELATION_GROUP_ENTRIES as u64)
        {
            return Err(format!(
                "correlation threshold {n} is not below {CORRELATION_GROUP_ENTRIES}, the matches \
                 the sensor keeps per group: its count could not be exact"
            ));
        }
        let key = c.id.clone().unwrap_or_else(|| c.title.clone());
        if self.keys.contains_key(&key) {
            return Err(format!("a rule with id {key:?} is already loaded"));
        }
        // Sigma: a temporal correlation without a condition needs every rule it names.
        // rsigma 0.23 reads the absent condition as `gte: 1` (any one rule), so that is
        // made the count of rules (an explicit `gte: 1` is read the same way).
        let mut c = c.clone();
        if matches!(
            c.correlation_type,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        ) && let CorrelationCondition::Threshold {
            predicates,
            field: None,
            ..
        } = &mut c.condition
            && predicates.as_slice() == [(ConditionOperator::Gte, 1)]
        {
            predicates[0].1 = c.rules.len() as u64;
        }
        self.engine
            .add_correlation(&c)
            .map_err(|e| format!("correlation does not compile: {e}"))?;
        self.correlations += 1;
        if !c.generate {
            for r in &c.rules {
                self.quiet[self.names[r]] = true;
            }
        }
        self.keys.insert(key, self.rules.len());
        self.quiet.push(false);
        self.rules.push(RuleInfo {
            id: c.id.clone(),
            title: c.title.clone(),
            author: c.author.clone(),
            level: c.level.as_ref().map_or("medium", Level::as_str),
            tags: c.tags.clone(),
        });
        Ok(())
    }
}

fn with_position((line, column): (usize, usize), reason: String) -> (usize, usize, String) {
    (line, column, reason)
}

fn check_logsource(ls: &LogSource) -> Result<Category, String> {
    let supported = "the sensor feeds product linux with category process_creation, file_event \
                     or network_connection";
    if !ls
        .product
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("linux"))
    {
        return Err(format!(
            "logsource product {:?}: {supported}",
            ls.product.as_deref().unwrap_or("(none)")
        ));
    }
    if let Some(service) = &ls.service {
        return Err(format!("logsource service {service:?}: {supported}"));
    }
    ls.category
        .as_deref()
        .and_then(Category::named)
        .ok_or_else(|| {
            format!(
                "logsource category {:?}: {supported}",
                ls.category.as_deref().unwrap_or("(none)")
            )
        })
}

/// A field or construct the sensor cannot evaluate exactly, as (the field key, why).
type Unsupported = (Option<String>, String);

fn check_detection(d: &Detection, category: Category) -> Result<(), Unsupported> {
    match d {
        Detection::AllOf(items) => items.iter().try_for_each(|item| {
            let key = item.field.name.clone();
            for m in &item.field.modifiers {
                check_modifier(*m).map_err(|reason| (key.clone(), reason))?;
                if *m == Modifier::FieldRef {
                    for v in &item.values {
                        if let SigmaValue::String(s) = v {
                            let other = s.as_plain().unwrap_or_default();
                            check_field(&other, category).map_err(|r| (key.clone(), r))?;
                        }
                    }
                }
            }
            match &item.field.name {
                Some(name) => check_field(name, category).map_err(|r| (key.clone(), r)),
                None => Ok(()),
            }
        }),
        Detection::AnyOf(ds) | Detection::And(ds) => {
            ds.iter().try_for_each(|d| check_detection(d, category))
        }
        Detection::Keywords(_) => Ok(()),
        Detection::ArrayMatch { field, .. } => Err((
            Some(field.clone()),
            "array matching: the sensor's Sigma fields are single values".to_owned(),
        )),
        Detection::Conditional { .. } => Err((
            None,
            "array matching: the sensor's Sigma fields are single values".to_owned(),
        )),
    }
}

fn check_modifier(m: Modifier) -> Result<(), String> {
    match m {
        Modifier::Base64Offset => Err(
            "modifier base64offset: rsigma-eval 0.23 (the version this sensor pins) misses two \
             of its three offsets"
                .to_owned(),
        ),
        Modifier::Expand => Err("modifier expand: no placeholder values are configured".to_owned()),
        Modifier::Minute
        | Modifier::Hour
        | Modifier::Day
        | Modifier::Week
        | Modifier::Month
        | Modifier::Year => Err(format!(
            "modifier {}: the sensor maps no timestamp field for Sigma",
            format!("{m:?}").to_lowercase()
        )),
        _ => Ok(()),
    }
}

/// The Sigma fields of each category and what they are in the sensor's records
/// (docs/rules.md keeps the same table).
const PROCESS_FIELDS: &[&str] = &[
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "CurrentDirectory",
    "ProcessId",
    "User",
    "LogonId",
];
const FILE_FIELDS: &[&str] = &["TargetFilename", "Image", "ProcessId", "User"];
/// The agent a record is attributed to, by the sensor's own names: for correlations
/// (`group-by`, and the fields they count), of every category; not for detection rules.
const AGENT_FIELDS: &[&str] = &[
    "identity.agent.id",
    "identity.agent.team",
    "identity.agent.data_sensitivity",
    "identity.task.id",
];
const NETWORK_FIELDS: &[&str] = &[
    "Image",
    "ProcessId",
    "User",
    "DestinationIp",
    "DestinationPort",
    "DestinationHostname",
    "SourceIp",
    "SourcePort",
    "Initiated",
    "Protocol",
];

/// The Sigma fields a record of `category` has.
fn category_fields(category: Category) -> &'static [&'static str] {
    match category {
        Category::ProcessCreation => PROCESS_FIELDS,
        Category::FileEvent => FILE_FIELDS,
        Category::NetworkConnection => NETWORK_FIELDS,
    }
}

fn check_field(name: &str, category: Category) -> Result<(), String> {
    let fields = category_fields(category);
    if fields.contains(&name) {
        return Ok(());
    }
    Err(format!(
        "field {name:?} has no sensor field in {} (docs/rules.md lists the mapped ones: {})",
        category.name(),
        fields.join(", ")
    ))
}

/// The line and column a YAML error message names (`... at line 3 column 5`), else 1:1.
fn position_in(message: &str) -> (usize, usize) {
    let number_after = |word: &str| -> Option<usize> {
        let at = message.find(word)? + word.len();
        let digits: String = message[at..]
            .chars()
            .skip_while(|c| *c == ' ')
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    match (number_after("line"), number_after("column")) {
        (Some(l), Some(c)) => (l, c),
        (Some(l), None) => (l, 1),
        _ => (1, 1),
    }
}

/// Where the first mapping key `key` is written (`key:` at the start of a line, after
/// indentation), else `default` line, column 1.
fn key_position(text: &str, key: &str, default: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with(':')
        {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (default, 1)
}

/// Where the `n`th (from 0) top-level `key:` is written, else 1:1.
fn nth_key_position(text: &str, key: &str, n: usize) -> (usize, usize) {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .nth(n)
        .map_or((1, 1), |(i, _)| (i + 1, 1))
}

/// Where a field key (`Field:` or `Field|modifier:`) is first written.
fn field_position(text: &str, field: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = trimmed.strip_prefix(field)
            && (rest.starts_with('|') || rest.trim_start().starts_with(':'))
        {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    key_position(text, "detection", 1)
}

/// A record as Sigma sees it: Sigma's field names over the record's [`Fields`], with the
/// parent's image and the user's name.
pub struct SigmaEvent<'a> {
    /// The record's fields.
    pub fields: &'a Fields<'a>,
    /// What the parent process runs, if known.
    pub parent: Option<&'a Image>,
    /// The effective user's name, if known.
    pub user: Option<&'a str>,
}

impl SigmaEvent<'_> {
    /// Every mapped field of this record's category with a value, as Sigma names it.
    fn each(&self, visit: &mut dyn FnMut(&'static str, EventValue<'_>)) {
        let Some(category) = self.fields.category else {
            return;
        };
        let names = category_fields(category);
        for name in names {
            if let Some(v) = self.value(name) {
                visit(name, v);
            }
        }
    }

    fn value(&self, name: &str) -> Option<EventValue<'_>> {
        self.lookup(name).and_then(|(_, v)| v)
    }

    /// A Sigma field's value in this record, with the categories whose records have it (bits
    /// of [`within`]; the `*_FIELDS` tables say the same, a test keeps them in step): one
    /// `match` on the name, as rsigma asks for fields record by record.
    fn lookup(&self, name: &str) -> Option<(u8, Option<EventValue<'_>>)> {
        fn text(s: Option<&str>) -> Option<EventValue<'_>> {
            s.map(|s| EventValue::Str(Cow::Borrowed(s)))
        }
        use within::{ALL, FILE, NETWORK, PROCESS};
        let f = self.fields;
        let text_owned = |s: Option<String>| s.map(|s| EventValue::Str(Cow::Owned(s)));
        let int = |n: Option<u64>| n.map(|n| EventValue::Int(n as i64));
        Some(match name {
            "Image" => (ALL, text(f.executable)),
            "CommandLine" => (PROCESS, text(f.command_line)),
            "ParentImage" => (
                PROCESS,
                text(self.parent.and_then(|p| p.executable.as_deref())),
            ),
            "ParentCommandLine" => (
                PROCESS,
                text(self.parent.and_then(|p| p.command_line.as_deref())),
            ),
            "CurrentDirectory" => (PROCESS, text(f.working_directory)),
            "ProcessId" => (ALL, int(f.pid.map(u64::from))),
            "User" => (
                ALL,
                text(self.user).or_else(|| text_owned(f.uid.map(|u| u.to_string()))),
            ),
            "LogonId" => (PROCESS, int(f.login_uid.map(u64::from))),
            "TargetFilename" => (FILE, text(f.target_filename)),
            "DestinationIp" => (NETWORK, text(f.destination_ip)),
            "DestinationPort" => (NETWORK, int(f.destination_port.map(u64::from))),
            "DestinationHostname" => (NETWORK, text(f.destination_domain)),
            "SourceIp" => (NETWORK, text(f.source_ip)),
            "SourcePort" => (NETWORK, int(f.source_port.map(u64::from))),
            "Initiated" => (
                NETWORK,
                f.initiated
                    .map(|i| EventValue::Str(Cow::Borrowed(if i { "true" } else { "false" }))),
            ),
            "Protocol" => (NETWORK, text(f.transport)),
            "identity.agent.id" => (ALL, text(f.agent_id)),
            "identity.agent.team" => (ALL, text(f.agent_team)),
            "identity.agent.data_sensitivity" => (ALL, text(f.data_sensitivity)),
            "identity.task.id" => (ALL, text(f.task_id)),
            _ => return None,
        })
    }
}

/// Which categories' records have a Sigma field: a bit per [`Category`].
mod within {
    use super::Category;

    pub const PROCESS: u8 = 1 << Category::ProcessCreation as u8;
    pub const FILE: u8 = 1 << Category::FileEvent as u8;
    pub const NETWORK: u8 = 1 << Category::NetworkConnection as u8;
    pub const ALL: u8 = PROCESS | FILE | NETWORK;
}

impl Event for SigmaEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        // Only the fields of the record's own category exist (a rule of another category
        // never reaches here: the log source is checked first).
        let category = self.fields.category?;
        let (categories, value) = self.lookup(path)?;
        if categories & (1 << category as u8) == 0 {
            return None;
        }
        value
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.each(&mut |_, v| {
            if !found && let Some(s) = v.as_str() {
                found = pred(&s);
            }
        });
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.each(&mut |_, v| {
            if let Some(s) = v.as_str() {
                out.push(Cow::Owned(s.into_owned()));
            }
        });
        out
    }

    /// Without a `Vec` of copies (rsigma's default): the keyword index visits every record.
    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.each(&mut |_, v| {
            if let Some(s) = v.as_str() {
                visit(&s);
            }
        });
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        self.each(&mut |name, v| {
            map.insert(name.to_owned(), v.to_json());
        });
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> (SigmaRules, Vec<Rejection>) {
        let mut rules = SigmaRules::default();
        let mut rejected = Vec::new();
        rules.add_file(Path::new("t.yml"), yaml, &mut rejected);
        rules.finish(&mut rejected);
        (rules, rejected)
    }

    /// `get_field`'s one `match` gives each category exactly the fields its table lists
    /// (and the agent's to all), and knows no other name.
    #[test]
    fn field_categories_agree_with_the_tables() {
        let fields = Fields::default();
        let event = SigmaEvent {
            fields: &fields,
            parent: None,
            user: None,
        };
        let tables = [PROCESS_FIELDS, FILE_FIELDS, NETWORK_FIELDS, AGENT_FIELDS];
        for name in tables.concat() {
            let (categories, _) = event.lookup(name).expect(name);
            for c in [
                Category::ProcessCreation,
                Category::FileEvent,
                Category::NetworkConnection,
            ] {
                let listed = category_fields(c).contains(&name) || AGENT_FIELDS.contains(&name);
                assert_eq!(categories & (1 << c as u8) != 0, listed, "{name} in {c:?}");
            }
        }
        assert!(event.lookup("Hashes").is_none());
        assert!(event.lookup("image").is_none());
    }

    fn hits(rules: &mut SigmaRules, fields: &Fields<'_>) -> Vec<String> {
        hits_at(rules, fields, None)
    }

    fn hits_at(rules: &mut SigmaRules, fields: &Fields<'_>, seconds: Option<i64>) -> Vec<String> {
        let event = SigmaEvent {
            fields,
            parent: None,
            user: None,
        };
        let mut out = Vec::new();
        rules.matching(&event, fields.category.unwrap(), seconds, &mut out);
        out.into_iter()
            .map(|i| rules.rule(i).title.clone())
            .collect()
    }

    const CURL: &str = "title: curl to pipe
id: 11111111-0000-0000-0000-000000000001
author: someone
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
        CommandLine|contains: 'EVIL'
    condition: selection
level: high
tags:
    - attack.t1105
";

    #[test]
    fn matches_case_insensitively_and_keeps_attribution() {
        let (mut rules, rejected) = load(CURL);
        assert!(rejected.is_empty(), "{rejected:?}");
        let exec = Fields {
            category: Some(Category::ProcessCreation),
            action: "exec",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl http://x/evil.sh"),
            ..Fields::default()
        };
        assert_eq!(hits(&mut rules, &exec), ["curl to pipe"]);
        let info = rules.rule(0);
        assert_eq!(info.author.as_deref(), Some("someone"));
        assert_eq!(info.level, "high");
        assert_eq!(info.tags, ["attack.t1105"]);
    }

    #[test]
    fn a_rule_never_fires_on_another_category() {
        let (mut rules, _) = load(CURL);
        // The same values on a file record: the process rule must not fire.
        let file = Fields {
            category: Some(Category::FileEvent),
            action: "open",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl EVIL"),
            ..Fields::default()
        };
        assert!(hits(&mut rules, &file).is_empty());
    }

    #[test]
    fn re_is_case_sensitive() {
        let yaml = CURL.replace("CommandLine|contains: 'EVIL'", "CommandLine|re: 'EVIL'");
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let mut exec = Fields {
            category: Some(Category::ProcessCreation),
            action: "exec",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl evil"),
            ..Fields::default()
        };
        assert!(hits(&mut rules, &exec).is_empty());
        exec.command_line = Some("curl EVIL");
        assert_eq!(hits(&mut rules, &exec).len(), 1);
    }

    #[test]
    fn rejects_with_file_line_column_and_reason() {
        let yaml = CURL.replace("Image|endswith", "Image|base64offset|contains");
        let (rules, rejected) = load(&yaml);
        assert!(rules.is_empty());
        assert_eq!(rejected.len(), 1);
        let r = &rejected[0];
        assert_eq!((r.line, r.column), (9, 9), "{r}");
        assert!(r.reason.contains("base64offset"), "{r}");
        assert!(
            r.to_string()
                .starts_with("t.yml:9:9: rule \"curl to pipe\": ")
        );

        let unmapped = CURL.replace("CommandLine|contains", "IntegrityLevel|startswith");
        let (_, rejected) = load(&unmapped);
        assert!(
            rejected[0]
                .reason
                .contains("field \"IntegrityLevel\" has no sensor field in process_creation"),
            "{rejected:?}"
        );
        assert_eq!(rejected[0].line, 10);

        let windows = CURL.replace("product: linux", "product: windows");
        let (_, rejected) = load(&windows);
        assert_eq!(rejected[0].line, 4);
        assert!(rejected[0].reason.contains("product \"windows\""));

        let (_, rejected) = load("title: x\n  bad: [unclosed\n");
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].line >= 2, "{}", rejected[0]);
    }
}

#[cfg(test)]
mod correlation_tests {
    use super::*;

    fn load(yaml: &str) -> (SigmaRules, Vec<Rejection>) {
        let mut rules = SigmaRules::default();
        let mut rejected = Vec::new();
        rules.add_file(Path::new("c.yml"), yaml, &mut rejected);
        rules.finish(&mut rejected);
        (rules, rejected)
    }

    /// Two detection rules (a tool ran; a connection to a port) and correlations over them.
    const BASE: &str = "title: tool ran
id: 22222222-0000-0000-0000-000000000001
name: tool_ran
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/corr-tool'
    condition: selection
---
title: other tool ran
id: 22222222-0000-0000-0000-000000000002
name: other_ran
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/corr-other'
    condition: selection
---
title: connection
id: 22222222-0000-0000-0000-000000000003
name: connection
logsource:
    product: linux
    category: network_connection
detection:
    selection:
        Initiated: 'true'
    condition: selection
";

    fn exec<'a>(image: &'a str, user: &'a str) -> Fields<'a> {
        Fields {
            category: Some(Category::ProcessCreation),
            action: "exec",
            executable: Some(image),
            command_line: Some(user),
            ..Fields::default()
        }
    }

    fn hits_at(rules: &mut SigmaRules, f: &Fields<'_>, user: &str, seconds: i64) -> Vec<String> {
        let event = SigmaEvent {
            fields: f,
            parent: None,
            user: Some(user),
        };
        let mut out = Vec::new();
        rules.matching(&event, f.category.unwrap(), Some(seconds), &mut out);
        out.into_iter()
            .map(|i| rules.rule(i).title.clone())
            .collect()
    }

    #[test]
    fn event_count_fires_on_the_nth_within_the_timespan_per_group() {
        let yaml = format!(
            "{BASE}---
title: tool ran three times
id: 22222222-0000-0000-0000-0000000000c1
correlation:
    type: event_count
    rules: [tool_ran]
    group-by: [User]
    timespan: 10s
    condition:
        gte: 3
level: high
"
        );
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let tool = exec("/tmp/corr-tool", "");
        // `generate` is false by default: the referenced rule's own matches are not alerts.
        assert!(hits_at(&mut rules, &tool, "alice", 100).is_empty());
        assert!(hits_at(&mut rules, &tool, "bob", 101).is_empty());
        assert!(hits_at(&mut rules, &tool, "alice", 102).is_empty());
        // 20 s on, the first has left the window.
        assert!(hits_at(&mut rules, &tool, "alice", 113).is_empty());
        assert!(hits_at(&mut rules, &tool, "alice", 114).is_empty());
        assert_eq!(
            hits_at(&mut rules, &tool, "alice", 115),
            ["tool ran three times"]
        );
        // Other rules are untouched.
        let other = exec("/tmp/corr-other", "");
        assert_eq!(
            hits_at(&mut rules, &other, "alice", 114),
            ["other tool ran"]
        );
    }

    #[test]
    fn value_count_counts_distinct_values() {
        let yaml = format!(
            "{BASE}---
title: many ports
correlation:
    type: value_count
    rules: [connection]
    group-by: [Image]
    timespan: 1m
    condition:
        field: DestinationPort
        gte: 3
"
        );
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let connect = |port: u16| Fields {
            category: Some(Category::NetworkConnection),
            action: "connect",
            executable: Some("/usr/bin/nc"),
            destination_ip: Some("10.0.0.1"),
            destination_port: Some(port),
            initiated: Some(true),
            ..Fields::default()
        };
        assert!(hits_at(&mut rules, &connect(22), "u", 0).is_empty());
        assert!(hits_at(&mut rules, &connect(22), "u", 1).is_empty());
        assert!(hits_at(&mut rules, &connect(80), "u", 2).is_empty());
        assert_eq!(hits_at(&mut rules, &connect(443), "u", 3), ["many ports"]);
    }

    #[test]
    fn temporal_needs_every_rule_within_the_timespan() {
        let yaml = format!(
            "{BASE}---
title: both tools
correlation:
    type: temporal
    rules: [tool_ran, other_ran]
    group-by: [User]
    timespan: 5s
    generate: true
"
        );
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let tool = exec("/tmp/corr-tool", "");
        let other = exec("/tmp/corr-other", "");
        // generate: true keeps the referenced rules' own alerts.
        assert_eq!(hits_at(&mut rules, &tool, "a", 0), ["tool ran"]);
        assert_eq!(hits_at(&mut rules, &other, "b", 1), ["other tool ran"]);
        assert_eq!(hits_at(&mut rules, &other, "a", 9), ["other tool ran"]);
        assert_eq!(
            hits_at(&mut rules, &tool, "a", 10),
            ["tool ran", "both tools"]
        );
    }

    /// `group-by: [identity.agent.id]`: each agent counts its own records (records of no
    /// agent count together, apart from every agent's); the same names are no detection
    /// fields.
    #[test]
    fn a_correlation_groups_by_the_agent() {
        let yaml = format!(
            "{BASE}---
title: an agent ran the tool twice
correlation:
    type: event_count
    rules: [tool_ran]
    group-by: [identity.agent.id, identity.task.id]
    timespan: 10s
    condition:
        gte: 2
"
        );
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let by = |agent: Option<&'static str>| Fields {
            agent_id: agent,
            task_id: agent.map(|_| "review"),
            ..exec("/tmp/corr-tool", "")
        };
        // One user, three agents (one of them none): only a's second fires.
        assert!(hits_at(&mut rules, &by(Some("a")), "root", 0).is_empty());
        assert!(hits_at(&mut rules, &by(Some("b")), "root", 1).is_empty());
        assert!(hits_at(&mut rules, &by(None), "root", 2).is_empty());
        assert_eq!(
            hits_at(&mut rules, &by(Some("a")), "root", 3),
            ["an agent ran the tool twice"]
        );
        assert_eq!(
            hits_at(&mut rules, &by(None), "root", 4),
            ["an agent ran the tool twice"]
        );
        // A detection rule cannot name them.
        let (_, rejected) = load(
            "title: x
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        identity.agent.id: a
    condition: selection
",
        );
        assert!(
            rejected[0].reason.contains("no sensor field"),
            "{}",
            rejected[0]
        );
    }

    /// Correlation state is bounded where the sensor feeds it: when full, expired groups go
    /// first; while full of live ones, a record's matches go to no correlation, counted.
    #[test]
    fn full_correlation_state_drops_expired_groups_first_then_counts_what_it_does_not_feed() {
        let yaml = format!(
            "{BASE}---
title: a user ran the tool twice
correlation:
    type: event_count
    rules: [tool_ran]
    group-by: [User]
    timespan: 10s
    condition:
        gte: 2
"
        );
        let (mut rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        rules.capacity = 3;
        let tool = exec("/tmp/corr-tool", "");
        for (i, user) in ["u1", "u2", "u3"].into_iter().enumerate() {
            assert!(hits_at(&mut rules, &tool, user, i as i64).is_empty());
        }
        assert_eq!(rules.engine.state_count(), 3);
        // Full, nothing expired: u4's exec is not fed, nor u1's second (which would fire).
        assert!(hits_at(&mut rules, &tool, "u4", 5).is_empty());
        assert!(hits_at(&mut rules, &tool, "u1", 5).is_empty());
        assert_eq!(rules.correlation_dropped, 2);
        assert_eq!(rules.engine.state_count(), 3);
        // 11 s after u1 (0), 10 s after u2 (1): u1's group has expired and makes room.
        assert!(hits_at(&mut rules, &tool, "u4", 11).is_empty());
        assert_eq!(rules.correlation_dropped, 2);
        assert_eq!(
            hits_at(&mut rules, &tool, "u4", 12),
            ["a user ran the tool twice"]
        );
        // Records no correlation counts are never dropped.
        let other = exec("/tmp/corr-other", "");
        assert_eq!(hits_at(&mut rules, &other, "u9", 12), ["other tool ran"]);
        assert_eq!(rules.correlation_dropped, 2);
    }

    #[test]
    fn a_correlation_of_unknown_rules_or_fields_is_refused_with_its_reason() {
        let missing = format!(
            "{BASE}---
title: missing
correlation:
    type: event_count
    rules: [nope]
    timespan: 10s
    condition:
        gte: 2
"
        );
        let (rules, rejected) = load(&missing);
        assert_eq!(rules.len(), 3);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].reason.contains("\"nope\""), "{}", rejected[0]);
        assert_eq!(
            missing.lines().nth(rejected[0].line - 1),
            Some("correlation:"),
            "{}",
            rejected[0]
        );
        let field = missing.replace(
            "rules: [nope]",
            "rules: [tool_ran]\n    group-by: [IntegrityLevel]",
        );
        let (_, rejected) = load(&field);
        assert!(
            rejected[0].reason.contains("\"IntegrityLevel\""),
            "{}",
            rejected[0]
        );
        // A count the per-group bound could cut short is refused; one below it loads.
        let high = missing.replace("rules: [nope]", "rules: [tool_ran]");
        let (_, rejected) = load(&high.replace("gte: 2", "gte: 1000"));
        assert!(
            rejected[0].reason.contains("threshold 1000"),
            "{}",
            rejected[0]
        );
        let (rules, rejected) = load(&high.replace("gte: 2", "gte: 999"));
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(rules.len(), 4);
    }
}
