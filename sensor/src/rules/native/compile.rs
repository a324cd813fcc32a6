//! A parsed condition compiled once into a tree that evaluates without allocating: fields
//! resolved, macros and lists expanded (a macro that reaches itself is refused), `in` lists
//! as sets, regexes, globs and CIDR blocks compiled, and every value checked against its
//! field's kind.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use crate::{
    glob::{NameGlob, PathGlob},
    rules::native::{
        field::{self, Field, Kind, Value, View},
        lang::{Expr, Op, SyntaxError, Word},
    },
};

/// Which text a compile error is in: the condition itself or a macro's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The condition (or sequence step) being compiled.
    Condition,
    /// The body of this macro.
    Macro(String),
}

/// What is wrong, in which text, at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The text the offset is in.
    pub origin: Origin,
    /// Byte offset in that text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// What names in a condition can refer to: a file's lists (already expanded) and macros.
pub struct Scope<'a> {
    /// By name, the values of each list.
    pub lists: &'a HashMap<String, Vec<String>>,
    /// By name, each macro's parsed body (or why it does not parse).
    pub macros: &'a HashMap<String, Result<Expr, SyntaxError>>,
}

/// A compiled condition.
#[derive(Debug)]
pub enum Node {
    /// Both.
    And(Box<Node>, Box<Node>),
    /// Either.
    Or(Box<Node>, Box<Node>),
    /// Not.
    Not(Box<Node>),
    /// The record has the field (a list field: at least one element).
    Exists(Field),
    /// The field's value passes the test (a list field: any element does; never when the
    /// record lacks the field).
    Test(Field, Test),
}

/// A test of one value.
#[derive(Debug)]
pub enum Test {
    /// Text equal.
    TextEq(String),
    /// Text different.
    TextNe(String),
    /// A number compared with this one (`=`, `!=`, `<`, ...).
    Number(Op, i64),
    /// Truth equal.
    Bool(bool),
    /// Text in the set.
    TextIn(HashSet<String>),
    /// Number in the set.
    NumberIn(HashSet<i64>),
    /// Text starts with.
    StartsWith(String),
    /// Text ends with.
    EndsWith(String),
    /// Text contains.
    Contains(String),
    /// A path matches the path glob.
    PathGlob(PathGlob),
    /// Text matches the name glob.
    NameGlob(NameGlob),
    /// Text matches the regular expression (anywhere, unless anchored).
    Regex(regex::Regex),
    /// An address in the block.
    Cidr(Cidr),
}

/// An IP block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or an address alone.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Self { network, prefix })
    }

    /// Whether `addr` is in the block (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Node {
    /// Whether the record seen through `view` satisfies this condition.
    pub fn matches(&self, view: &View<'_>) -> bool {
        match self {
            Node::And(a, b) => a.matches(view) && b.matches(view),
            Node::Or(a, b) => a.matches(view) || b.matches(view),
            Node::Not(a) => !a.matches(view),
            Node::Exists(f) => view.values(*f).next().is_some(),
            // Address fields are single-valued; their text is parsed once per record.
            Node::Test(f, Test::Cidr(c)) => view.address(*f).is_some_and(|a| c.contains(a)),
            Node::Test(f, test) => view.values(*f).any(|v| test.passes(v)),
        }
    }

    /// The `event.action`s a record must have for this to match it, when the condition says
    /// (`event.action = exec and ...`, `event.action in (...)`, either of two such): rules are
    /// skipped without evaluating for records of other actions. `None`: any action may match.
    pub fn actions(&self) -> Option<BTreeSet<&str>> {
        match self {
            Node::And(a, b) => match (a.actions(), b.actions()) {
                (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
                (one, None) | (None, one) => one,
            },
            Node::Or(a, b) => Some(a.actions()?.union(&b.actions()?).copied().collect()),
            Node::Test(Field::Action, Test::TextEq(action)) => Some(BTreeSet::from([&**action])),
            Node::Test(Field::Action, Test::TextIn(actions)) => {
                Some(actions.iter().map(String::as_str).collect())
            }
            Node::Not(_) | Node::Exists(_) | Node::Test(..) => None,
        }
    }
}

impl Test {
    fn passes(&self, value: Value<'_>) -> bool {
        match (self, value) {
            (Test::TextEq(want), Value::Text(v)) => v == want,
            (Test::TextNe(want), Value::Text(v)) => v != want,
            (Test::Number(op, want), Value::Number(v)) => match op {
                Op::Eq => v == *want,
                Op::Ne => v != *want,
                Op::Lt => v < *want,
                Op::Le => v <= *want,
                Op::Gt => v > *want,
                Op::Ge => v >= *want,
                _ => false,
            },
            (Test::Bool(want), Value::Bool(v)) => v == *want,
            (Test::TextIn(set), Value::Text(v)) => set.contains(v),
            (Test::NumberIn(set), Value::Number(v)) => set.contains(&v),
            (Test::StartsWith(p), Value::Text(v)) => v.starts_with(p.as_str()),
            (Test::EndsWith(p), Value::Text(v)) => v.ends_with(p.as_str()),
            (Test::Contains(p), Value::Text(v)) => v.contains(p.as_str()),
            (Test::PathGlob(g), Value::Text(v)) => g.matches(v.as_bytes()),
            (Test::NameGlob(g), Value::Text(v)) => g.matches(v.as_bytes()),
            (Test::Regex(r), Value::Text(v)) => r.is_match(v),
            _ => false,
        }
    }
}

/// How many macros deep an expansion may go (a cycle is refused before this; this bounds
/// a long chain).
const MAX_MACRO_DEPTH: usize = 32;

/// Compiles `expr` (the condition's own text) in `scope`.
pub fn compile(expr: &Expr, scope: &Scope<'_>) -> Result<Node, CompileError> {
    Compiler {
        scope,
        expanding: Vec::new(),
    }
    .node(expr)
}

struct Compiler<'s> {
    scope: &'s Scope<'s>,
    /// The macros being expanded, outermost first: the innermost is the text being read.
    expanding: Vec<String>,
}

impl Compiler<'_> {
    fn error(&self, offset: usize, message: String) -> CompileError {
        CompileError {
            origin: self
                .expanding
                .last()
                .map_or(Origin::Condition, |m| Origin::Macro(m.clone())),
            offset,
            message,
        }
    }

    fn node(&mut self, expr: &Expr) -> Result<Node, CompileError> {
        Ok(match expr {
            Expr::And(a, b) => Node::And(Box::new(self.node(a)?), Box::new(self.node(b)?)),
            Expr::Or(a, b) => Node::Or(Box::new(self.node(a)?), Box::new(self.node(b)?)),
            Expr::Not(a) => Node::Not(Box::new(self.node(a)?)),
            Expr::Macro(name) => self.expand(name)?,
            Expr::Exists(f) => Node::Exists(self.field(f)?.0),
            Expr::Test {
                field: f,
                op,
                value,
            } => {
                let (field, kind) = self.field(f)?;
                if field.is_list() && *op == Op::Ne {
                    // On a list, `!=` is "has elements, none equal": `F exists and not F = V`,
                    // the same identity as on any field (an element that differs is not
                    // enough, or `!=` would hold on nearly every list).
                    let equal = Node::Test(field, self.test(f, kind, Op::Eq, value)?);
                    Node::And(
                        Box::new(Node::Exists(field)),
                        Box::new(Node::Not(Box::new(equal))),
                    )
                } else {
                    Node::Test(field, self.test(f, kind, *op, value)?)
                }
            }
            Expr::In { field: f, items } => {
                let (field, kind) = self.field(f)?;
                Node::Test(field, self.set(kind, items)?)
            }
        })
    }

    fn expand(&mut self, name: &Word) -> Result<Node, CompileError> {
        let Some(body) = self.scope.macros.get(&name.text) else {
            let hint = if field::named(&name.text).is_some() {
                format!("field {:?} needs an operator after it", name.text)
            } else {
                format!("{:?} is no macro of this file, and no test", name.text)
            };
            return Err(self.error(name.offset, hint));
        };
        if self.expanding.contains(&name.text) {
            return Err(self.error(
                name.offset,
                format!(
                    "macro {:?} refers to itself ({} -> {})",
                    name.text,
                    self.expanding.join(" -> "),
                    name.text
                ),
            ));
        }
        if self.expanding.len() >= MAX_MACRO_DEPTH {
            return Err(self.error(
                name.offset,
                format!("macros nested more than {MAX_MACRO_DEPTH} deep"),
            ));
        }
        self.expanding.push(name.text.clone());
        let node = match body {
            Ok(expr) => self.node(expr),
            Err(e) => Err(self.error(e.offset, e.message.clone())),
        };
        self.expanding.pop();
        node
    }

    fn field(&self, name: &Word) -> Result<(Field, Kind), CompileError> {
        field::named(&name.text).ok_or_else(|| {
            let known: Vec<&str> = field::FIELDS.iter().map(|(n, _, _)| *n).collect();
            self.error(
                name.offset,
                format!(
                    "unknown field {:?} (the fields are: {})",
                    name.text,
                    known.join(", ")
                ),
            )
        })
    }

    fn number(&self, value: &Word) -> Result<i64, CompileError> {
        value
            .text
            .parse()
            .map_err(|_| self.error(value.offset, format!("{:?} is not a number", value.text)))
    }

    fn test(&self, f: &Word, kind: Kind, op: Op, value: &Word) -> Result<Test, CompileError> {
        let text = || value.text.clone();
        let wrong = || {
            self.error(
                f.offset,
                format!("`{}` does not apply to {} ({kind:?})", op.text(), f.text),
            )
        };
        Ok(match (kind, op) {
            (Kind::Number, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge) => {
                Test::Number(op, self.number(value)?)
            }
            (Kind::Bool, Op::Eq | Op::Ne) => {
                let b = match value.text.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(
                            self.error(value.offset, format!("{other:?} is not true or false"))
                        );
                    }
                };
                Test::Bool(if op == Op::Eq { b } else { !b })
            }
            (Kind::Number | Kind::Bool, _) | (_, Op::Lt | Op::Le | Op::Gt | Op::Ge) => {
                return Err(wrong());
            }
            (_, Op::Eq) => Test::TextEq(text()),
            (_, Op::Ne) => Test::TextNe(text()),
            (_, Op::StartsWith) => Test::StartsWith(text()),
            (_, Op::EndsWith) => Test::EndsWith(text()),
            (_, Op::Contains) => Test::Contains(text()),
            (Kind::Path, Op::Glob) => Test::PathGlob(
                PathGlob::new(&value.text)
                    .map_err(|e| self.error(value.offset, format!("glob {:?} {e}", value.text)))?,
            ),
            (_, Op::Glob) => Test::NameGlob(
                NameGlob::new(&value.text)
                    .map_err(|e| self.error(value.offset, format!("glob {:?} {e}", value.text)))?,
            ),
            (_, Op::Regex) => Test::Regex(
                regex::RegexBuilder::new(&value.text)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        let first = e.to_string();
                        let reason = first.lines().last().unwrap_or("invalid").trim();
                        self.error(
                            value.offset,
                            format!("regex {:?} does not compile: {reason}", value.text),
                        )
                    })?,
            ),
            (Kind::Address, Op::Cidr) => {
                Test::Cidr(Cidr::parse(&value.text).map_err(|e| self.error(value.offset, e))?)
            }
            (_, Op::Cidr) => return Err(wrong()),
        })
    }

    /// An `in` list: each unquoted item that names a list stands for its values.
    fn set(&self, kind: Kind, items: &[Word]) -> Result<Test, CompileError> {
        let mut values: Vec<(&str, usize)> = Vec::new();
        for item in items {
            match self.scope.lists.get(&item.text).filter(|_| !item.quoted) {
                Some(list) => values.extend(list.iter().map(|v| (v.as_str(), item.offset))),
                None => values.push((&item.text, item.offset)),
            }
        }
        Ok(match kind {
            Kind::Number => Test::NumberIn(
                values
                    .into_iter()
                    .map(|(v, offset)| {
                        v.parse()
                            .map_err(|_| self.error(offset, format!("{v:?} is not a number")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Bool => {
                return Err(self.error(
                    items[0].offset,
                    "`in` does not apply to a true/false field".to_owned(),
                ));
            }
            Kind::Text | Kind::Path | Kind::Address => {
                Test::TextIn(values.into_iter().map(|(v, _)| v.to_owned()).collect())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{
        fields::Fields,
        lineage::Image,
        native::{field::Addresses, lang::parse},
    };

    type Macros = HashMap<String, Result<Expr, SyntaxError>>;

    fn scope_parts() -> (HashMap<String, Vec<String>>, Macros) {
        let lists = HashMap::from([(
            "shells".to_owned(),
            vec!["/bin/sh".to_owned(), "/bin/bash".to_owned()],
        )]);
        let macro_text = [
            (
                "spawned_shell",
                "event.action = exec and process.executable in (shells)",
            ),
            ("loop_a", "loop_b"),
            ("loop_b", "event.action = exec and loop_a"),
            ("broken", "event.action = = exec"),
            ("bad_field", "nope = 1"),
        ];
        let macros = macro_text
            .iter()
            .map(|(n, t)| ((*n).to_owned(), parse(t)))
            .collect();
        (lists, macros)
    }

    fn compiled(text: &str) -> Result<Node, CompileError> {
        let (lists, macros) = scope_parts();
        let scope = Scope {
            lists: &lists,
            macros: &macros,
        };
        let expr = parse(text).map_err(|e| CompileError {
            origin: Origin::Condition,
            offset: e.offset,
            message: e.message,
        })?;
        compile(&expr, &scope)
    }

    fn exec() -> Fields<'static> {
        Fields {
            action: "exec",
            pid: Some(42),
            executable: Some("/bin/bash"),
            command_line: Some("bash -c 'id; cat /etc/shadow'"),
            uid: Some(1000),
            destination_ip: Some("10.1.2.3"),
            destination_port: Some(443),
            agent_id: Some("coder"),
            data_sensitivity: Some("restricted"),
            task_id: Some("deploy"),
            task_allowed: Some(false),
            ..Fields::default()
        }
    }

    fn holds(text: &str, fields: &Fields<'_>) -> bool {
        let parent = Image {
            executable: Some("/usr/bin/python3".into()),
            command_line: Some("python3 agent.py".into()),
            ..Image::default()
        };
        let view = View {
            fields,
            parent: Some(&parent),
            tree: None,
            user: Some("alice"),
            addresses: Addresses::default(),
        };
        compiled(text)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .matches(&view)
    }

    #[test]
    fn every_operator_on_a_record() {
        let f = exec();
        for (cond, want) in [
            ("event.action = exec", true),
            ("event.action = EXEC", false),
            ("event.action != exec", false),
            ("process.pid = 42", true),
            ("process.pid != 42", false),
            ("process.pid < 43 and process.pid <= 42", true),
            ("process.pid > 42", false),
            ("process.pid >= 42", true),
            ("process.pid in (1, 42)", true),
            ("process.executable in (shells)", true),
            ("process.executable in shells", true),
            ("process.executable in ('shells')", false),
            ("process.executable startswith /bin/", true),
            ("process.executable endswith /bash", true),
            ("process.command_line contains /etc/shadow", true),
            ("process.executable glob '/bin/*'", true),
            ("process.executable glob '/usr/**'", false),
            ("process.command_line glob 'bash *shadow*'", true),
            ("process.command_line regex '^bash -c .*shadow'", true),
            ("process.command_line regex '^BASH'", false),
            ("destination.ip cidr 10.0.0.0/8", true),
            ("destination.ip cidr 10.1.2.3", true),
            ("destination.ip cidr 192.168.0.0/16", false),
            ("destination.ip cidr ::/0", false),
            ("destination.port in (80, 443)", true),
            ("process.parent.executable endswith python3", true),
            ("process.parent.command_line contains agent.py", true),
            ("user.id = 1000 and user.name = alice", true),
            ("identity.agent.data_sensitivity = restricted", true),
            ("identity.task.allowed = false", true),
            ("identity.task.allowed != false", false),
            ("file.path exists", false),
            ("process.command_line exists", true),
            ("spawned_shell", true),
            ("not spawned_shell", false),
            // A test on a field the record lacks is false, whatever the operator.
            ("file.path != /x", false),
            ("not file.path = /x", true),
            (
                "event.action = open or process.pid = 42 and user.id = 0",
                false,
            ),
            (
                "(event.action = open or process.pid = 42) and user.id = 1000",
                true,
            ),
        ] {
            assert_eq!(holds(cond, &f), want, "{cond}");
        }
    }

    /// A list field: every operator holds when any element passes; `!=` is "has elements,
    /// none equal"; `exists` is "has elements"; an empty list is a field the record lacks.
    #[test]
    fn a_list_field_holds_when_any_element_does() {
        let mut f = exec();
        f.tool_calls = vec!["read_file", "bash", "web_fetch"];
        for (cond, want) in [
            ("llm.response.tool_calls.name = bash", true),
            ("llm.response.tool_calls.name = read", false),
            ("llm.response.tool_calls.name != bash", false),
            ("llm.response.tool_calls.name != python", true),
            ("not llm.response.tool_calls.name = bash", false),
            ("not llm.response.tool_calls.name != bash", true),
            ("llm.response.tool_calls.name in (python, web_fetch)", true),
            ("llm.response.tool_calls.name in (python, node)", false),
            ("llm.response.tool_calls.name startswith web_", true),
            ("llm.response.tool_calls.name endswith _file", true),
            ("llm.response.tool_calls.name contains ash", true),
            ("llm.response.tool_calls.name glob 'web_*'", true),
            ("llm.response.tool_calls.name glob 'shell*'", false),
            ("llm.response.tool_calls.name regex '^(ba|z)sh$'", true),
            ("llm.response.tool_calls.name regex '^sh$'", false),
            ("llm.response.tool_calls.name exists", true),
            // Two tests on one list are two independent "any element"s.
            (
                "llm.response.tool_calls.name = bash and llm.response.tool_calls.name = read_file",
                true,
            ),
        ] {
            assert_eq!(holds(cond, &f), want, "{cond}");
        }
        // One element.
        f.tool_calls = vec!["bash"];
        assert!(holds("llm.response.tool_calls.name != python", &f));
        assert!(!holds("llm.response.tool_calls.name != bash", &f));
        // No elements: like a field the record lacks, every test is false.
        f.tool_calls.clear();
        for cond in [
            "llm.response.tool_calls.name = bash",
            "llm.response.tool_calls.name != bash",
            "llm.response.tool_calls.name regex '.*'",
            "llm.response.tool_calls.name exists",
        ] {
            assert!(!holds(cond, &f), "{cond}");
        }
        assert!(holds("not llm.response.tool_calls.name = bash", &f));
        assert!(holds("not llm.response.tool_calls.name exists", &f));
        assert!(
            compiled("llm.response.tool_calls.name < 3")
                .unwrap_err()
                .message
                .contains("does not apply")
        );
    }

    #[test]
    fn an_ipv4_mapped_address_is_in_its_ipv4_block() {
        let mut f = exec();
        f.destination_ip = Some("::ffff:10.9.8.7");
        assert!(holds("destination.ip cidr 10.0.0.0/8", &f));
        f.destination_ip = Some("fd00::1");
        assert!(holds("destination.ip cidr fd00::/8", &f));
        assert!(holds("not destination.ip cidr 10.0.0.0/8", &f));
        f.destination_ip = Some("not an address");
        assert!(!holds("destination.ip cidr 0.0.0.0/0", &f));
    }

    #[test]
    fn compile_errors_name_the_text_and_offset() {
        let e = |text: &str| compiled(text).unwrap_err();
        let err = e("process.pid = x");
        assert_eq!((err.origin.clone(), err.offset), (Origin::Condition, 14));
        assert!(err.message.contains("not a number"));
        assert!(e("nope = 1").message.contains("unknown field \"nope\""));
        assert_eq!(e("event.action = exec and nope = 1").offset, 24);
        assert!(
            e("process.executable")
                .message
                .contains("needs an operator")
        );
        assert!(e("whatever").message.contains("no macro"));
        assert!(
            e("process.pid contains 1")
                .message
                .contains("does not apply")
        );
        assert!(
            e("process.executable < 1")
                .message
                .contains("does not apply")
        );
        assert!(
            e("process.executable cidr 10.0.0.0/8")
                .message
                .contains("does not apply")
        );
        assert!(
            e("destination.ip cidr 10.0.0.0/33")
                .message
                .contains("prefix")
        );
        assert!(
            e("destination.ip cidr nonsense")
                .message
                .contains("not an IP")
        );
        assert!(
            e("process.command_line regex '('")
                .message
                .contains("regex")
        );
        assert!(
            e("process.executable glob 'bin/*'")
                .message
                .contains("absolute")
        );
        assert!(
            e("identity.task.allowed = maybe")
                .message
                .contains("true or false")
        );
        assert!(e("process.pid in (1, x)").message.contains("not a number"));
        // A macro that reaches itself, and errors inside a macro's body, name the macro.
        let cycle = e("loop_a");
        assert_eq!(cycle.origin, Origin::Macro("loop_b".to_owned()));
        assert!(
            cycle.message.contains("loop_a -> loop_b -> loop_a"),
            "{cycle:?}"
        );
        let broken = e("broken");
        assert_eq!(
            (broken.origin, broken.offset),
            (Origin::Macro("broken".to_owned()), 15)
        );
        let bad = e("event.action = exec and bad_field");
        assert_eq!(
            (bad.origin, bad.offset),
            (Origin::Macro("bad_field".to_owned()), 0)
        );
    }

    #[test]
    fn hostile_values_are_only_compared() {
        let mut f = exec();
        f.command_line = Some("x\n{\"event\":{\"action\":\"alert\"}} ' or 1=1 --");
        assert!(holds("process.command_line contains '1=1'", &f));
        assert!(!holds("process.command_line = x", &f));
        // A value that looks like a list name is a list only unquoted.
        f.executable = Some("shells");
        assert!(holds("process.executable = shells", &f));
        assert!(!holds("process.executable in shells", &f));
    }
}
