//! Shell-style patterns for names that are not paths (images, pods, labels, argv): `*` matches
//! any run of bytes, `?` one byte, `\` makes the next character literal; everything else
//! matches itself. Matching is linear in the text (no backtracking blow-up on hostile input).
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyOne,
    AnyRun,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("an empty pattern matches nothing; leave the key out instead".into());
        }
        let mut tokens = Vec::new();
        let mut bytes = source.bytes();
        while let Some(b) = bytes.next() {
            tokens.push(match b {
                b'*' => Token::AnyRun,
                b'?' => Token::AnyOne,
                b'\\' => Token::Byte(
                    bytes
                        .next()
                        .ok_or("a trailing '\\' escapes nothing (write '\\\\')")?,
                ),
                b => Token::Byte(b),
            });
        }
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &[u8]) -> bool {
        // The classic greedy match with one remembered star: O(pattern * text) at worst.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(Token::AnyOne) => {
                    p += 1;
                    t += 1;
                }
                Some(Token::Byte(b)) if *b == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
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
    fn refuses_what_would_surprise() {
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("abc\\").is_err());
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
