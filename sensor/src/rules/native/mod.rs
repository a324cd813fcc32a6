//! Native rules (docs/rules.md, "Native rules"): YAML files of `lists`, `macros` and `rules`,
//! each rule a condition in the sensor's own small language ([`lang`]) over the record's
//! fields ([`field`]), or a sequence of 2 to [`MAX_STEPS`] steps; compiled once at load ([`compile`]), with a
//! message template ([`output`]) and a per-agent rate limit, and what they remember between
//! records bounded ([`state`]). Every error names the file, line and column.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt::Write as _,
    path::Path,
};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::rules::sigma::{Rejection, RuleInfo};

pub mod compile;
pub mod field;
pub mod lang;
pub mod output;
pub mod state;

use compile::{CompileError, Node, Origin, Scope};
use field::View;
use output::Template;
use state::Bounded;

/// Whether a rule file's `text` is native: a top-level `rules:`, `lists:` or `macros:` key
/// (Sigma rules have none of these at the top level).
pub fn is_native(text: &str) -> bool {
    text.lines().any(|l| {
        ["rules:", "lists:", "macros:"]
            .iter()
            .any(|k| l.starts_with(k))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    lists: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    macros: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    title: String,
    author: Option<String>,
    #[allow(dead_code, reason = "documentation for people; not in the alert")]
    description: Option<String>,
    condition: Option<Spanned<String>>,
    sequence: Option<Spanned<RawSequence>>,
    severity: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    output: Option<Spanned<String>>,
    limit: Option<Spanned<RawLimit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSequence {
    by: Spanned<String>,
    within: Spanned<u32>,
    steps: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    alerts: u32,
    seconds: u32,
}

/// Whose records a sequence's steps must both be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The same agent (`identity.agent.id`); records of no agent never take part.
    Agent,
    /// The same process (`process.entity_id`).
    Process,
    /// The same process tree within one agent: descendants of the same topmost process of
    /// that agent; records of no agent never take part.
    Tree,
}

/// The most steps a sequence may have.
pub const MAX_STEPS: usize = 8;

enum Condition {
    /// One record.
    Single(Node),
    /// Records matching each of `steps` in order, the last within `within` ns of the first.
    Sequence {
        by: By,
        within: i128,
        steps: Vec<Node>,
    },
}

/// The records (by sequence) that matched a sequence's first steps, in order; only the first
/// `level` of a partial match at that level are set.
type Matched = [Option<u64>; MAX_STEPS - 1];

struct NativeRule {
    info: RuleInfo,
    condition: Condition,
    /// The only actions it can match (see [`Node::actions`]); `None`: any.
    actions: Option<Vec<String>>,
    output: Option<Template>,
    /// At most `.0` alerts per agent each `.1` ns.
    limit: Option<(u32, i128)>,
}

/// The loaded native rules and what they remember.
pub struct NativeRules {
    rules: Vec<NativeRule>,
    ids: HashSet<String>,
    /// A rule keys a sequence by process tree.
    trees: bool,
    /// Per (rule and level, sequence key): the partial match of a sequence that has matched
    /// that many steps ([`slot`]): when its first step matched, and its records' sequences.
    pending: Bounded<Matched>,
    /// Per (rule, agent): the rate-limit window's start and the alerts in it.
    windows: Bounded<u32>,
    /// Alerts a rate limit held back.
    pub suppressed: u64,
}

impl Default for NativeRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            ids: HashSet::new(),
            trees: false,
            pending: Bounded::new(state::CAPACITY),
            windows: Bounded::new(state::CAPACITY),
            suppressed: 0,
        }
    }
}

/// A native alert: its rule, message and the records (by sequence) that set it off.
pub struct Fired<'r> {
    /// The rule.
    pub rule: &'r RuleInfo,
    /// The rendered message.
    pub message: String,
    /// The triggering records' `chain.sequence`, oldest first.
    pub sequences: Vec<u64>,
}

impl NativeRules {
    /// How many rules are loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule keys a sequence by process tree (only then is a record's tree looked up).
    pub fn uses_trees(&self) -> bool {
        self.trees
    }

    /// State dropped while it could still matter (sequences' partial matches, rate-limit windows).
    pub fn evictions(&self) -> u64 {
        self.pending.evictions + self.windows.evictions
    }

    /// Loads the rules of one file; each that does not load is a rejection with its
    /// file, line and column.
    pub fn add_file(&mut self, file: &Path, text: &str, rejected: &mut Vec<Rejection>) -> usize {
        let name = file.display().to_string();
        let reject = |at: (usize, usize), title: Option<&str>, reason: String| Rejection {
            file: name.clone(),
            line: at.0,
            column: at.1,
            title: title.map(str::to_owned),
            reason,
        };
        let options = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        };
        let raw: RawFile = match serde_saphyr::from_str_with_options(text, options) {
            Ok(raw) => raw,
            Err(e) => {
                let at = e.location().map_or((1, 1), position);
                let message = e.to_string();
                let first = message.lines().next().unwrap_or("invalid YAML").to_owned();
                rejected.push(reject(at, None, first));
                return 0;
            }
        };
        let lists = match expand_lists(&raw.lists) {
            Ok(lists) => lists,
            Err((at, reason)) => {
                rejected.push(reject(at, None, reason));
                return 0;
            }
        };
        let macros: HashMap<String, _> = raw
            .macros
            .iter()
            .map(|(n, body)| (n.clone(), lang::parse(&body.value)))
            .collect();
        let scope = Scope {
            lists: &lists,
            macros: &macros,
        };
        let mut loaded = 0;
        for rule in &raw.rules {
            let title = rule.value.title.as_str();
            match self.add_rule(&rule.value, &scope, text, &raw.macros) {
                Ok(()) => loaded += 1,
                Err((at, reason)) => {
                    let at = at.unwrap_or_else(|| position(rule.defined));
                    rejected.push(reject(at, Some(title), reason));
                }
            }
        }
        loaded
    }

    fn add_rule(
        &mut self,
        rule: &RawRule,
        scope: &Scope<'_>,
        text: &str,
        macros: &BTreeMap<String, Spanned<String>>,
    ) -> Result<(), (Option<(usize, usize)>, String)> {
        // A compile error, placed in the condition's (or the macro's) own text.
        let place = |e: CompileError, condition: &Spanned<String>| {
            let (source, value) = match &e.origin {
                Origin::Condition => (condition.defined, condition.value.as_str()),
                Origin::Macro(m) => (macros[m].defined, macros[m].value.as_str()),
            };
            let in_macro = match &e.origin {
                Origin::Macro(m) => format!(" (in macro {m:?})"),
                Origin::Condition => String::new(),
            };
            (
                Some(locate(text, source, value, e.offset)),
                format!("{}{in_macro}", e.message),
            )
        };
        let condition = |c: &Spanned<String>| {
            let expr = lang::parse(&c.value).map_err(|e| {
                place(
                    CompileError {
                        origin: Origin::Condition,
                        offset: e.offset,
                        message: e.message,
                    },
                    c,
                )
            })?;
            compile::compile(&expr, scope).map_err(|e| place(e, c))
        };
        if self.ids.contains(&rule.id) {
            return Err((
                None,
                format!("a rule with id {:?} is already loaded", rule.id),
            ));
        }
        let condition = match (&rule.condition, &rule.sequence) {
            (Some(c), None) => Condition::Single(condition(c)?),
            (None, Some(s)) => {
                let by = match s.value.by.value.as_str() {
                    "agent" => By::Agent,
                    "process" => By::Process,
                    "tree" => By::Tree,
                    other => {
                        return Err((
                            Some(position(s.value.by.defined)),
                            format!("sequence by {other:?}: write agent, process or tree"),
                        ));
                    }
                };
                let within = s.value.within.value;
                if !(1..=86_400).contains(&within) {
                    return Err((
                        Some(position(s.value.within.defined)),
                        "sequence within: 1 to 86400 seconds".to_owned(),
                    ));
                }
                let n = s.value.steps.value.len();
                if !(2..=MAX_STEPS).contains(&n) {
                    return Err((
                        Some(position(s.value.steps.defined)),
                        format!("a sequence has 2 to {MAX_STEPS} steps (A then B ...), not {n}"),
                    ));
                }
                Condition::Sequence {
                    by,
                    within: i128::from(within) * 1_000_000_000,
                    steps: s
                        .value
                        .steps
                        .value
                        .iter()
                        .map(condition)
                        .collect::<Result<_, _>>()?,
                }
            }
            _ => {
                return Err((
                    None,
                    "a rule has either a condition or a sequence".to_owned(),
                ));
            }
        };
        let level = match &rule.severity {
            None => "medium",
            Some(s) => SEVERITIES.iter().find(|l| **l == s.value).ok_or_else(|| {
                (
                    Some(position(s.defined)),
                    format!("severity {:?}: one of {}", s.value, SEVERITIES.join(", ")),
                )
            })?,
        };
        for tag in &rule.tags {
            check_tag(&tag.value).map_err(|e| (Some(position(tag.defined)), e))?;
        }
        let output = match &rule.output {
            None => None,
            Some(o) => Some(Template::parse(&o.value).map_err(|(offset, reason)| {
                (Some(locate(text, o.defined, &o.value, offset)), reason)
            })?),
        };
        let limit = match &rule.limit {
            None => None,
            Some(l) if l.value.alerts == 0 || l.value.seconds == 0 => {
                return Err((
                    Some(position(l.defined)),
                    "limit: alerts and seconds must both be at least 1".to_owned(),
                ));
            }
            Some(l) => Some((l.value.alerts, i128::from(l.value.seconds) * 1_000_000_000)),
        };
        self.ids.insert(rule.id.clone());
        self.trees |= matches!(condition, Condition::Sequence { by: By::Tree, .. });
        // A sequence does nothing with a record that none of its steps matches.
        let actions = match &condition {
            Condition::Single(node) => node.actions(),
            Condition::Sequence { steps, .. } => {
                steps.iter().try_fold(BTreeSet::new(), |all, step| {
                    Some(all.union(&step.actions()?).copied().collect())
                })
            }
        }
        .map(|actions| actions.into_iter().map(str::to_owned).collect());
        self.rules.push(NativeRule {
            info: RuleInfo {
                id: Some(rule.id.clone()),
                title: rule.title.clone(),
                author: rule.author.clone(),
                level,
                tags: rule.tags.iter().map(|t| t.value.clone()).collect(),
            },
            condition,
            actions,
            output,
            limit,
        });
        Ok(())
    }

    /// Evaluates every rule on the record seen through `view` (sealed as `sequence`, when
    /// known), calling `fired` for each alert.
    pub fn evaluate(
        &mut self,
        view: &View<'_>,
        sequence: Option<u64>,
        fired: &mut dyn FnMut(Fired<'_>),
    ) {
        let now = view.fields.nanos;
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(actions) = &rule.actions
                && !actions.iter().any(|a| a == view.fields.action)
            {
                continue;
            }
            let sequences = match &rule.condition {
                Condition::Single(node) => {
                    if !node.matches(view) {
                        continue;
                    }
                    sequence.into_iter().collect()
                }
                Condition::Sequence { by, within, steps } => {
                    // Without a time or a key, a record takes no part in a sequence.
                    let (Some(now), Some(key)) = (now, by.key(view)) else {
                        continue;
                    };
                    let lifetime = |slot: usize| lifetime_of(&self.rules, slot / MAX_STEPS);
                    let mut done = None;
                    // The highest level first, so that one record never takes two steps of
                    // one match (it can take a step of each of several).
                    for level in (1..steps.len()).rev() {
                        if !steps[level].matches(view) {
                            continue;
                        }
                        let Some((started, mut matched)) = self.pending.remove(slot(i, level), key)
                        else {
                            continue;
                        };
                        // A step out of the window (or out of order) discards the match.
                        if now < started || now - started > *within {
                            continue;
                        }
                        if level + 1 == steps.len() {
                            let earlier = matched[..level].iter().flatten().copied();
                            done = Some(earlier.chain(sequence).collect());
                            continue;
                        }
                        matched[level] = sequence;
                        // Of two matches at one level, the later-started leaves more time.
                        let next = slot(i, level + 1);
                        if self
                            .pending
                            .get_mut(next, key)
                            .is_none_or(|(other, _)| *other <= started)
                        {
                            self.pending
                                .insert(next, key, started, matched, now, &lifetime);
                        }
                    }
                    if steps[0].matches(view) {
                        let mut matched = [None; MAX_STEPS - 1];
                        matched[0] = sequence;
                        self.pending
                            .insert(slot(i, 1), key, now, matched, now, &lifetime);
                    }
                    match done {
                        Some(s) => s,
                        None => continue,
                    }
                }
            };
            if let (Some((alerts, window)), Some(now)) = (rule.limit, now) {
                let agent = view.fields.agent_id.unwrap_or("");
                match self.windows.get_mut(i, agent) {
                    Some((start, count)) if now - *start <= window => {
                        if *count >= alerts {
                            self.suppressed += 1;
                            continue;
                        }
                        *count += 1;
                    }
                    _ => {
                        let lifetime = |r: usize| self.rules[r].limit.map_or(0, |l| l.1);
                        self.windows.insert(i, agent, now, 1, now, &lifetime);
                    }
                }
            }
            let message = match &rule.output {
                Some(t) => t.render(view),
                None => default_message(&rule.info.title, view),
            };
            fired(Fired {
                rule: &rule.info,
                message,
                sequences,
            });
        }
    }
}

/// The `pending` slot of rule `rule`'s partial matches that have matched `level` steps.
fn slot(rule: usize, level: usize) -> usize {
    rule * MAX_STEPS + level
}

/// How long a rule's pending partial match can matter (ns).
fn lifetime_of(rules: &[NativeRule], rule: usize) -> i128 {
    match rules[rule].condition {
        Condition::Sequence { within, .. } => within,
        Condition::Single(_) => 0,
    }
}

impl By {
    fn key<'v>(self, view: &View<'v>) -> Option<&'v str> {
        match self {
            By::Agent => view.fields.agent_id,
            By::Process => view.fields.entity_id,
            By::Tree => view.tree,
        }
    }
}

const SEVERITIES: &[&str] = &["informational", "low", "medium", "high", "critical"];

/// A tag is free text, but one that names an ATT&CK technique (`attack.t...`) must be a
/// technique id: `attack.t1059` or `attack.t1059.004`.
fn check_tag(tag: &str) -> Result<(), String> {
    let Some(id) = tag.strip_prefix("attack.t") else {
        return Ok(());
    };
    let (technique, sub) = id.split_once('.').unwrap_or((id, "000"));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if digits(technique, 4) && digits(sub, 3) {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?}: an ATT&CK technique is attack.tNNNN or attack.tNNNN.NNN"
        ))
    }
}

/// `<title>: <action> by <executable> (pid N)`.
fn default_message(title: &str, view: &View<'_>) -> String {
    let f = view.fields;
    let mut out = format!("{title}: {} by ", f.action);
    output::escape_into(&mut out, f.executable.unwrap_or("an unknown executable"));
    if let Some(pid) = f.pid {
        let _ = write!(out, " (pid {pid})");
    }
    out
}

/// What is wrong, at which (line, column).
type Placed = ((usize, usize), String);

/// Each list's values, a value naming another list standing for its values; a list that
/// reaches itself is refused at its position.
fn expand_lists(
    raw: &BTreeMap<String, Spanned<Vec<String>>>,
) -> Result<HashMap<String, Vec<String>>, Placed> {
    fn expand(
        name: &str,
        raw: &BTreeMap<String, Spanned<Vec<String>>>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), Placed> {
        if path.iter().any(|p| p == name) {
            return Err((
                position(raw[path[0].as_str()].defined),
                format!(
                    "list {:?} refers to itself ({} -> {name})",
                    path[0],
                    path.join(" -> ")
                ),
            ));
        }
        path.push(name.to_owned());
        for v in &raw[name].value {
            if raw.contains_key(v) {
                expand(v, raw, path, out)?;
            } else {
                out.push(v.clone());
            }
        }
        path.pop();
        Ok(())
    }
    raw.keys()
        .map(|name| {
            let mut values = Vec::new();
            expand(name, raw, &mut Vec::new(), &mut values)?;
            Ok((name.clone(), values))
        })
        .collect()
}

/// A YAML location as 1-based (line, column).
fn position(l: Location) -> (usize, usize) {
    (
        usize::try_from(l.line()).unwrap_or(1).max(1),
        usize::try_from(l.column()).unwrap_or(1).max(1),
    )
}

/// The file position of byte `offset` of `value`, a YAML scalar written at `at`: plain,
/// quoted or a block (`|`, `>`). Counts the value's non-blank characters before `offset`
/// and walks as many in the file, past the opening quote or block indicator.
fn locate(file: &str, at: Location, value: &str, offset: usize) -> (usize, usize) {
    let (line, column) = position(at);
    let want = value
        .get(..offset)
        .unwrap_or(value)
        .chars()
        .filter(|c| !c.is_whitespace())
        .count();
    let Some(start_line) = file.lines().nth(line - 1) else {
        return (line, column);
    };
    let start: usize = file
        .lines()
        .take(line - 1)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + start_line
            .char_indices()
            .nth(column - 1)
            .map_or(start_line.len(), |(i, _)| i);
    let (mut l, mut c) = (line, column);
    let mut seen = 0;
    let at_end = offset >= value.len();
    let mut chars = file[start..].chars().peekable();
    match chars.peek() {
        Some('"' | '\'') => {
            chars.next();
            c += 1;
        }
        Some('|' | '>') => {
            for ch in chars.by_ref() {
                if ch == '\n' {
                    break;
                }
            }
            (l, c) = (l + 1, 1);
        }
        _ => {}
    }
    for ch in chars {
        if !ch.is_whitespace() {
            if seen == want {
                return (l, c);
            }
            seen += 1;
            if at_end && seen == want {
                return (l, c + 1);
            }
        }
        if ch == '\n' {
            (l, c) = (l + 1, 1);
        } else {
            c += 1;
        }
    }
    (l, c)
}

#[cfg(test)]
mod tests;
