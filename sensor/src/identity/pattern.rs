//! Patterns for names that are not paths (images, pods, labels, argv), in the one glob dialect
//! of [`crate::glob`] (`docs/patterns.md`): `*` any run of bytes (`/` and spaces included),
//! `?` one byte, `[...]` one byte of a set, `\` makes the next character literal; everything
//! else matches itself. Matching is linear in the text (no backtracking blow-up on hostile
//! input).

use std::fmt;

use crate::glob::{GlobError, NameGlob};

/// A compiled name pattern that remembers how it was written (for messages and for comparing
/// declarations).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    glob: NameGlob,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl Pattern {
    /// Compiles `source`; the error says what is wrong with it (an empty pattern is one: leave
    /// the key out instead).
    pub fn new(source: &str) -> Result<Self, GlobError> {
        Ok(Self {
            glob: NameGlob::new(source)?,
            source: source.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &[u8]) -> bool {
        self.glob.matches(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::new(p).unwrap().matches(t.as_bytes())
    }

    #[test]
    fn matches_like_a_shell() {
        assert!(m(
            "docker.io/library/busybox:*",
            "docker.io/library/busybox:1.36"
        ));
        assert!(!m(
            "docker.io/library/busybox:*",
            "docker.io/library/busybox"
        ));
        assert!(m("reviewer-?", "reviewer-0"));
        assert!(!m("reviewer-?", "reviewer-10"));
        assert!(m("*", ""));
        assert!(m("*agent.py*", "python3 /opt/agent.py --serve"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m(r"\*", "*"));
        assert!(!m(r"\*", "x"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
    }

    #[test]
    fn byte_classes_as_in_paths() {
        // The one dialect: `[...]` is a set here too (it was a literal `[` before).
        assert!(m("reviewer-[0-9]", "reviewer-3"));
        assert!(!m("reviewer-[0-9]", "reviewer-a"));
        assert!(m(r"\[x]", "[x]"));
    }

    #[test]
    fn refuses_what_would_surprise() {
        assert_eq!(Pattern::new(""), Err(GlobError::Empty));
        assert_eq!(Pattern::new("abc\\"), Err(GlobError::TrailingEscape));
        assert_eq!(Pattern::new("v[1"), Err(GlobError::UnterminatedClass));
    }

    #[test]
    fn hostile_text_stays_linear_enough() {
        let text = "a".repeat(4096);
        let p = Pattern::new(&"*a".repeat(30)).unwrap();
        assert!(p.matches(text.as_bytes()));
        let p = Pattern::new(&format!("{}b", "*a".repeat(30))).unwrap();
        assert!(!p.matches(text.as_bytes()));
    }
}
