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

use rsigma_eval::{Engine, Event, EventValue};
use rsigma_parser::{Detection, Level, LogSource, Modifier, SigmaRule, SigmaValue};
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
/// matches, by their index in the order they were added.
pub trait SigmaEngine {
    /// Pushes the index of every rule of `category` that `event` matches onto `hits`.
    fn matching(&self, event: &SigmaEvent<'_>, category: Category, hits: &mut Vec<usize>);
}

/// The loaded Sigma rules.
pub struct SigmaRules {
    engine: Engine,
    /// By rsigma's rule key (id, else title), the index in `rules`.
    keys: HashMap<String, usize>,
    rules: Vec<RuleInfo>,
    /// The rule log source each category is evaluated with.
    logsources: [LogSource; 3],
}

impl Default for SigmaRules {
    fn default() -> Self {
        let logsource = |c: Category| LogSource {
            category: Some(c.name().to_owned()),
            product: Some("linux".to_owned()),
            ..LogSource::default()
        };
        Self {
            engine: Engine::new(),
            keys: HashMap::new(),
            rules: Vec::new(),
            logsources: [
                logsource(Category::ProcessCreation),
                logsource(Category::FileEvent),
                logsource(Category::NetworkConnection),
            ],
        }
    }
}

impl SigmaEngine for SigmaRules {
    fn matching(&self, event: &SigmaEvent<'_>, category: Category, hits: &mut Vec<usize>) {
        let logsource = &self.logsources[category as usize];
        for m in self.engine.evaluate_with_logsource(event, logsource) {
            let key = m.header.rule_id.as_ref().unwrap_or(&m.header.rule_title);
            if let Some(&i) = self.keys.get(key) {
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
        for c in &collection.correlations {
            let (line, column) = key_position(text, "correlation", 1);
            rejected.push(reject(
                line,
                column,
                Some(&c.title),
                "correlation rules are not supported yet".to_owned(),
            ));
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
        self.engine.add_rule(rule).map_err(|e| {
            with_position(
                key_position(text, "detection", 1),
                format!("does not compile: {e}"),
            )
        })?;
        self.keys.insert(key, self.rules.len());
        self.rules.push(RuleInfo {
            id: rule.id.clone(),
            title: rule.title.clone(),
            author: rule.author.clone(),
            level: rule.level.as_ref().map_or("medium", Level::as_str),
            tags: rule.tags.clone(),
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
    "ProcessId",
    "User",
    "LogonId",
];
const FILE_FIELDS: &[&str] = &["TargetFilename", "Image", "ProcessId", "User"];
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

fn check_field(name: &str, category: Category) -> Result<(), String> {
    let fields = match category {
        Category::ProcessCreation => PROCESS_FIELDS,
        Category::FileEvent => FILE_FIELDS,
        Category::NetworkConnection => NETWORK_FIELDS,
    };
    if fields.contains(&name) {
        return Ok(());
    }
    Err(match name {
        "CurrentDirectory" => "field CurrentDirectory: the sensor's exec record does not carry \
                               the working directory"
            .to_owned(),
        _ => format!(
            "field {name:?} has no sensor field in {} (docs/rules.md lists the mapped ones: {})",
            category.name(),
            fields.join(", ")
        ),
    })
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
        let names = match category {
            Category::ProcessCreation => PROCESS_FIELDS,
            Category::FileEvent => FILE_FIELDS,
            Category::NetworkConnection => NETWORK_FIELDS,
        };
        for name in names {
            if let Some(v) = self.value(name) {
                visit(name, v);
            }
        }
    }

    fn value(&self, name: &str) -> Option<EventValue<'_>> {
        fn text(s: Option<&str>) -> Option<EventValue<'_>> {
            s.map(|s| EventValue::Str(Cow::Borrowed(s)))
        }
        let f = self.fields;
        let text_owned = |s: Option<String>| s.map(|s| EventValue::Str(Cow::Owned(s)));
        let int = |n: Option<u64>| n.map(|n| EventValue::Int(n as i64));
        match name {
            "Image" => text(f.executable),
            "CommandLine" => text(f.command_line),
            "ParentImage" => text(self.parent.and_then(|p| p.executable.as_deref())),
            "ParentCommandLine" => text(self.parent.and_then(|p| p.command_line.as_deref())),
            "ProcessId" => int(f.pid.map(u64::from)),
            "User" => text(self.user).or_else(|| text_owned(f.uid.map(|u| u.to_string()))),
            "LogonId" => int(f.login_uid.map(u64::from)),
            "TargetFilename" => text(f.target_filename),
            "DestinationIp" => text(f.destination_ip),
            "DestinationPort" => int(f.destination_port.map(u64::from)),
            "DestinationHostname" => text(f.destination_domain),
            "SourceIp" => text(f.source_ip),
            "SourcePort" => int(f.source_port.map(u64::from)),
            "Initiated" => f
                .initiated
                .map(|i| EventValue::Str(Cow::Borrowed(if i { "true" } else { "false" }))),
            "Protocol" => text(f.transport),
            _ => None,
        }
    }
}

impl Event for SigmaEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        // Only the fields of the record's own category exist (a rule of another category
        // never reaches here: the log source is checked first).
        let category = self.fields.category?;
        let names = match category {
            Category::ProcessCreation => PROCESS_FIELDS,
            Category::FileEvent => FILE_FIELDS,
            Category::NetworkConnection => NETWORK_FIELDS,
        };
        if !names.contains(&path) {
            return None;
        }
        self.value(path)
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
        (rules, rejected)
    }

    fn hits(rules: &SigmaRules, fields: &Fields<'_>) -> Vec<String> {
        let event = SigmaEvent {
            fields,
            parent: None,
            user: None,
        };
        let mut out = Vec::new();
        rules.matching(&event, fields.category.unwrap(), &mut out);
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
        let (rules, rejected) = load(CURL);
        assert!(rejected.is_empty(), "{rejected:?}");
        let exec = Fields {
            category: Some(Category::ProcessCreation),
            action: "exec",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl http://x/evil.sh"),
            ..Fields::default()
        };
        assert_eq!(hits(&rules, &exec), ["curl to pipe"]);
        let info = rules.rule(0);
        assert_eq!(info.author.as_deref(), Some("someone"));
        assert_eq!(info.level, "high");
        assert_eq!(info.tags, ["attack.t1105"]);
    }

    #[test]
    fn a_rule_never_fires_on_another_category() {
        let (rules, _) = load(CURL);
        // The same values on a file record: the process rule must not fire.
        let file = Fields {
            category: Some(Category::FileEvent),
            action: "open",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl EVIL"),
            ..Fields::default()
        };
        assert!(hits(&rules, &file).is_empty());
    }

    #[test]
    fn re_is_case_sensitive() {
        let yaml = CURL.replace("CommandLine|contains: 'EVIL'", "CommandLine|re: 'EVIL'");
        let (rules, rejected) = load(&yaml);
        assert!(rejected.is_empty(), "{rejected:?}");
        let mut exec = Fields {
            category: Some(Category::ProcessCreation),
            action: "exec",
            executable: Some("/usr/bin/curl"),
            command_line: Some("curl evil"),
            ..Fields::default()
        };
        assert!(hits(&rules, &exec).is_empty());
        exec.command_line = Some("curl EVIL");
        assert_eq!(hits(&rules, &exec).len(), 1);
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

        let cwd = CURL.replace("CommandLine|contains", "CurrentDirectory|startswith");
        let (_, rejected) = load(&cwd);
        assert!(
            rejected[0].reason.contains("working directory"),
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
