//! The native condition language's syntax: a hand-written lexer and a recursive-descent parser
//! from a condition's text to an [`Expr`] tree whose every part keeps its byte offset in that
//! text, so errors can name the file, line and column (docs/rules.md, "Native rules").
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | FIELD "exists" | FIELD OP VALUE | FIELD "in" ( "(" items ")" | LIST )
//!          | MACRO
//! OP      := "=" | "!=" | "<" | "<=" | ">" | ">=" | "startswith" | "endswith" | "contains"
//!          | "glob" | "regex" | "cidr"
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`. What the words mean (which
//! field, macro or list) is decided later, by [`super::compile`].

/// A parse error: the byte offset in the condition, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the condition's text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A word or quoted string, with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text (a quoted string without its quotes, escapes resolved).
    pub text: String,
    /// It was quoted: never a list or macro name.
    pub quoted: bool,
    /// Byte offset in the condition's text.
    pub offset: usize,
}

/// The comparison of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
    /// `contains`
    Contains,
    /// `glob`
    Glob,
    /// `regex`
    Regex,
    /// `cidr`
    Cidr,
}

impl Op {
    /// How the condition writes it.
    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Contains => "contains",
            Op::Glob => "glob",
            Op::Regex => "regex",
            Op::Cidr => "cidr",
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// A macro, by name.
    Macro(Word),
    /// `FIELD exists`.
    Exists(Word),
    /// `FIELD OP VALUE`.
    Test {
        /// The field.
        field: Word,
        /// The comparison.
        op: Op,
        /// The value compared with.
        value: Word,
    },
    /// `FIELD in (A, B, ...)` or `FIELD in LIST`: each item a value or (unquoted) a list name.
    In {
        /// The field.
        field: Word,
        /// The items.
        items: Vec<Word>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    Open,
    Close,
    Comma,
    Op(Op),
    End,
}

/// Splits a condition into tokens, each with its byte offset.
fn lex(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset: usize, message: String| Err(SyntaxError { offset, message });
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((Token::Open, start)),
            b')' => out.push((Token::Close, start)),
            b',' => out.push((Token::Comma, start)),
            b'=' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    return err(start, "`==`: write `=`".to_owned());
                }
                out.push((Token::Op(Op::Eq), start));
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((Token::Op(Op::Ne), start));
                i += 1;
            }
            b'<' | b'>' => {
                let or_equal = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, or_equal) {
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (_, false) => Op::Gt,
                    (_, true) => Op::Ge,
                };
                out.push((Token::Op(op), start));
                i += usize::from(or_equal);
            }
            b'"' | b'\'' => {
                let (word, end) = quoted(text, start)?;
                out.push((Token::Word(word), start));
                i = end;
                continue;
            }
            _ if is_word_byte(c) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                let token = match word {
                    "startswith" => Token::Op(Op::StartsWith),
                    "endswith" => Token::Op(Op::EndsWith),
                    "contains" => Token::Op(Op::Contains),
                    "glob" => Token::Op(Op::Glob),
                    "regex" => Token::Op(Op::Regex),
                    "cidr" => Token::Op(Op::Cidr),
                    _ => Token::Word(Word {
                        text: word.to_owned(),
                        quoted: false,
                        offset: start,
                    }),
                };
                out.push((token, start));
                continue;
            }
            _ => {
                let ch = text[start..].chars().next().unwrap_or('?');
                return err(
                    start,
                    format!("unexpected {ch:?} (quote values with other characters)"),
                );
            }
        }
        i += 1;
    }
    out.push((Token::End, text.len()));
    Ok(out)
}

/// Bytes of an unquoted word: letters, digits and `_ . / : - * ? + @ ~ %` (and any non-ASCII
/// byte); anything else must be quoted.
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'_' | b'.' | b'/' | b':' | b'-' | b'*' | b'?' | b'+' | b'@' | b'~' | b'%'
        )
        || c >= 0x80
}

/// The quoted string starting at `start` and the offset just past it. `"..."` takes `\"`
/// and `\\` escapes; `'...'` is taken as written.
fn quoted(text: &str, start: usize) -> Result<(Word, usize), SyntaxError> {
    let quote = text.as_bytes()[start];
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + 1 + i;
        if c == char::from(quote) {
            let word = Word {
                text: value,
                quoted: true,
                offset: start,
            };
            return Ok((word, at + 1));
        }
        if c == '\\' && quote == b'"' {
            match chars.next() {
                Some((_, e @ ('"' | '\\'))) => value.push(e),
                _ => {
                    return Err(SyntaxError {
                        offset: at,
                        message: "only `\\\"` and `\\\\` are escapes in a double-quoted string"
                            .to_owned(),
                    });
                }
            }
        } else {
            value.push(c);
        }
    }
    Err(SyntaxError {
        offset: start,
        message: "string not closed".to_owned(),
    })
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

/// How deep parentheses and `not`s may nest: a hostile condition cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Parses a whole condition.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut p = Parser {
        tokens: lex(text)?,
        at: 0,
    };
    if matches!(p.peek(), Token::End) {
        return Err(SyntaxError {
            offset: 0,
            message: "empty condition".to_owned(),
        });
    }
    let expr = p.or(0)?;
    match p.peek() {
        Token::End => Ok(expr),
        Token::Close => Err(p.error("`)` without its `(`")),
        _ => Err(p.error("expected `and`, `or` or the end of the condition")),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].0
    }

    fn offset(&self) -> usize {
        self.tokens[self.at].1
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].0.clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            offset: self.offset(),
            message: message.to_owned(),
        }
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if !w.quoted && w.text == k)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.next();
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.next();
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nested more than {MAX_DEPTH} deep")));
        }
        if self.keyword("not") {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let offset = self.offset();
        match self.next() {
            Token::Open => {
                let inner = self.or(depth + 1)?;
                if !matches!(self.peek(), Token::Close) {
                    return Err(self.error("expected `)`"));
                }
                self.next();
                Ok(inner)
            }
            Token::Word(w) if w.quoted => Err(SyntaxError {
                offset,
                message: "a quoted value where a field or macro name was expected".to_owned(),
            }),
            Token::Word(w) if ["and", "or", "in", "exists"].contains(&w.text.as_str()) => {
                Err(SyntaxError {
                    offset,
                    message: format!("`{}` where a field or macro name was expected", w.text),
                })
            }
            Token::Word(w) => self.after_name(w),
            Token::End => Err(SyntaxError {
                offset,
                message: "the condition ends where a test was expected".to_owned(),
            }),
            Token::Op(op) => Err(SyntaxError {
                offset,
                message: format!("`{}` where a field or macro name was expected", op.text()),
            }),
            Token::Close | Token::Comma => Err(SyntaxError {
                offset,
                message: "expected a test, a macro or `(`".to_owned(),
            }),
        }
    }

    /// What follows a name: an operator makes it a field, nothing makes it a macro.
    fn after_name(&mut self, name: Word) -> Result<Expr, SyntaxError> {
        if self.keyword("exists") {
            self.next();
            return Ok(Expr::Exists(name));
        }
        if self.keyword("in") {
            self.next();
            return self.in_items(name);
        }
        if let Token::Op(op) = *self.peek() {
            self.next();
            let offset = self.offset();
            return match self.next() {
                Token::Word(value) => Ok(Expr::Test {
                    field: name,
                    op,
                    value,
                }),
                _ => Err(SyntaxError {
                    offset,
                    message: format!("expected a value after `{}`", op.text()),
                }),
            };
        }
        Ok(Expr::Macro(name))
    }

    fn in_items(&mut self, field: Word) -> Result<Expr, SyntaxError> {
        if let Token::Word(list) = self.peek().clone() {
            // `FIELD in LIST`
            self.next();
            return Ok(Expr::In {
                field,
                items: vec![list],
            });
        }
        if !matches!(self.peek(), Token::Open) {
            return Err(self.error("expected `(` or a list name after `in`"));
        }
        self.next();
        let mut items = Vec::new();
        loop {
            let offset = self.offset();
            match self.next() {
                Token::Word(w) => items.push(w),
                Token::Close if items.is_empty() => {
                    return Err(SyntaxError {
                        offset,
                        message: "an empty `in ()` matches nothing".to_owned(),
                    });
                }
                _ => {
                    return Err(SyntaxError {
                        offset,
                        message: "expected a value in the `in` list".to_owned(),
                    });
                }
            }
            let offset = self.offset();
            match self.next() {
                Token::Comma => {}
                Token::Close => return Ok(Expr::In { field, items }),
                _ => {
                    return Err(SyntaxError {
                        offset,
                        message: "expected `,` or `)` in the `in` list".to_owned(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(e: &Expr) -> String {
        match e {
            Expr::And(a, b) => format!("({} and {})", w(a), w(b)),
            Expr::Or(a, b) => format!("({} or {})", w(a), w(b)),
            Expr::Not(a) => format!("not {}", w(a)),
            Expr::Macro(m) => m.text.clone(),
            Expr::Exists(f) => format!("{} exists", f.text),
            Expr::Test { field, op, value } => {
                format!("{} {} {:?}", field.text, op.text(), value.text)
            }
            Expr::In { field, items } => {
                let items: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
                format!("{} in {items:?}", field.text)
            }
        }
    }

    fn shape(text: &str) -> String {
        w(&parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")))
    }

    fn error(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn precedence_not_then_and_then_or() {
        assert_eq!(shape("a or b and c"), "(a or (b and c))");
        assert_eq!(shape("a and b or c"), "((a and b) or c)");
        assert_eq!(shape("not a and b"), "(not a and b)");
        assert_eq!(shape("not (a and b)"), "not (a and b)");
        assert_eq!(shape("(a or b) and c"), "((a or b) and c)");
        assert_eq!(shape("not not a"), "not not a");
        assert_eq!(shape("a or b or c"), "((a or b) or c)");
    }

    #[test]
    fn every_operator() {
        assert_eq!(shape("x = 1"), "x = \"1\"");
        assert_eq!(shape("x!=a"), "x != \"a\"");
        assert_eq!(shape("x<1 and x<=2"), "(x < \"1\" and x <= \"2\")");
        assert_eq!(shape("x>1 or x>=2"), "(x > \"1\" or x >= \"2\")");
        assert_eq!(
            shape("p startswith /tmp/ and p endswith .sh and p contains 'a b'"),
            "((p startswith \"/tmp/\" and p endswith \".sh\") and p contains \"a b\")"
        );
        assert_eq!(shape("p glob '/x/**'"), "p glob \"/x/**\"");
        assert_eq!(shape(r#"p regex "^a\\.b\"$""#), "p regex \"^a\\\\.b\\\"$\"");
        assert_eq!(shape("ip cidr 10.0.0.0/8"), "ip cidr \"10.0.0.0/8\"");
        assert_eq!(shape("f exists"), "f exists");
        assert_eq!(
            shape("f in (a, 'b c', list)"),
            "f in [\"a\", \"b c\", \"list\"]"
        );
        assert_eq!(shape("f in shells"), "f in [\"shells\"]");
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(error("").1, "empty condition");
        assert_eq!(error("a and").0, 5);
        assert_eq!(error("a and (b or c").0, 13);
        assert_eq!(error("a )").0, 2);
        assert_eq!(error("x == 1").0, 2);
        assert_eq!(error("x = 'open").0, 4);
        assert_eq!(error("x in ()").0, 6);
        assert_eq!(error("x in (a b)").0, 8);
        assert_eq!(error("x = ").0, 4);
        assert_eq!(error("x = a b").0, 6);
        assert_eq!(error("x = a; rm").0, 5);
        assert_eq!(error("'x' = a").0, 0);
        assert_eq!(error("and x").0, 0);
        assert_eq!(error(r#"x = "a\n""#).0, 6);
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(error(&deep).1.contains("nested"));
        let nots = format!("{}a", "not ".repeat(100));
        assert!(error(&nots).1.contains("nested"));
    }

    #[test]
    fn quoted_values_keep_operators_and_keywords_as_text() {
        assert_eq!(shape("x = 'and or not ( ) ='"), "x = \"and or not ( ) =\"");
        assert_eq!(shape("x = \"it's\""), "x = \"it's\"");
        // A newline inside a quoted value is just a byte of it.
        assert_eq!(shape("x = 'a\nb'"), "x = \"a\\nb\"");
    }
}
