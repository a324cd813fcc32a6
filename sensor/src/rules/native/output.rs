//! A rule's `output:` message template: text with `%field.name` or `{field.name}` replaced by
//! the record's value (`%%` is a `%`). Fields are resolved at load; a value's control
//! characters are written as escapes (`\n`, `\u{1b}`), so a hostile command line or path can
//! neither start a new line of the message nor fake one.
use std::fmt::Write as _;

use crate::rules::native::field::{self, Field, Value, View};

/// A compiled template.
#[derive(Debug)]
pub struct Template(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Text(String),
    Field(Field),
}

/// What is wrong with a template: the byte offset in it and why.
pub type TemplateError = (usize, String);

impl Template {
    /// Compiles `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            // The field's name, where it is written, and dots after it that end a sentence.
            let (at, name, dots) = match c {
                '%' if rest.peek().is_some_and(|&(_, n)| n == '%') => {
                    rest.next();
                    literal.push('%');
                    continue;
                }
                '%' => {
                    let start = i + 1;
                    let mut end = start;
                    while let Some(&(j, n)) = rest.peek() {
                        if n.is_ascii_alphanumeric() || n == '_' || n == '.' {
                            end = j + 1;
                            rest.next();
                        } else {
                            break;
                        }
                    }
                    let name = text[start..end].trim_end_matches('.');
                    (i, name, &text[start + name.len()..end])
                }
                '{' => {
                    let Some(close) = text[i..].find('}') else {
                        return Err((i, "`{` without its `}`".to_owned()));
                    };
                    while rest.peek().is_some_and(|&(j, _)| j <= i + close) {
                        rest.next();
                    }
                    (i, &text[i + 1..i + close], "")
                }
                _ => {
                    literal.push(c);
                    continue;
                }
            };
            let Some((f, _)) = field::named(name) else {
                return Err((at, format!("output names unknown field {name:?}")));
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field(f));
            literal.push_str(dots);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self(pieces))
    }

    /// The message for the record seen through `view`; a field the record lacks (a list
    /// field without elements) is `-`, a list field's elements are joined by `, `.
    pub fn render(&self, view: &View<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => {
                    let mut values = view.values(*f).peekable();
                    if values.peek().is_none() {
                        out.push('-');
                    }
                    // A list's elements in order, joined by `, `.
                    for (i, value) in values.enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        match value {
                            Value::Text(t) => escape_into(&mut out, t),
                            Value::Number(n) => {
                                let _ = write!(out, "{n}");
                            }
                            Value::Bool(b) => {
                                let _ = write!(out, "{b}");
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// `value` with its control characters as escapes.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{fields::Fields, native::field::Addresses};

    fn render(template: &str, fields: &Fields<'_>) -> String {
        let view = View {
            fields,
            parent: None,
            tree: None,
            user: Some("alice"),
            addresses: Addresses::default(),
        };
        Template::parse(template).unwrap().render(&view)
    }

    #[test]
    fn interpolates_both_forms() {
        let f = Fields {
            action: "exec",
            pid: Some(7),
            executable: Some("/bin/sh"),
            agent_id: Some("coder"),
            task_allowed: Some(true),
            ..Fields::default()
        };
        assert_eq!(
            render(
                "%identity.agent.id ran {process.executable} (pid %process.pid), 100%% sure: %identity.task.allowed. %file.path.",
                &f
            ),
            "coder ran /bin/sh (pid 7), 100% sure: true. -."
        );
        assert_eq!(render("{user.name}", &f), "alice");
    }

    #[test]
    fn a_list_field_renders_its_elements_joined() {
        let mut f = Fields {
            tool_calls: vec!["read_file", "run\nshell"],
            ..Fields::default()
        };
        assert_eq!(
            render("asked for %llm.response.tool_calls.name.", &f),
            "asked for read_file, run\\nshell."
        );
        f.tool_calls.clear();
        assert_eq!(render("{llm.response.tool_calls.name}", &f), "-");
    }

    #[test]
    fn a_hostile_value_cannot_start_a_line() {
        let f = Fields {
            command_line: Some("x\n{\"event\":{\"action\":\"alert\"}}\r\u{1b}[2J"),
            ..Fields::default()
        };
        let message = render("ran %process.command_line", &f);
        assert!(!message.contains('\n') && !message.contains('\r') && !message.contains('\u{1b}'));
        assert_eq!(
            message,
            "ran x\\n{\"event\":{\"action\":\"alert\"}}\\r\\u{1b}[2J"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_offset() {
        assert_eq!(
            Template::parse("ok %nope here").unwrap_err().0,
            3,
            "the % of the unknown field"
        );
        assert_eq!(Template::parse("a {process.pid").unwrap_err().0, 2);
        assert!(
            Template::parse("{nope}")
                .unwrap_err()
                .1
                .contains("\"nope\"")
        );
    }
}
