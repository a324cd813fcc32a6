//! The one glob dialect users write: in identity selectors (cgroup and executable paths,
//! container and Kubernetes names, labels, argv) and in file classes. `docs/patterns.md` is the
//! users' description; this is the one parser and matcher behind every place.
//!
//! | syntax | matches |
//! | --- | --- |
//! | `*` | any run of bytes (also none); in a path, within one component (leading dots too, unlike a shell) |
//! | `?` | exactly one byte; in a path, not `/` |
//! | `**` | in a path, as a whole component: zero or more whole components (`/a/**` also matches `/a`); anywhere else just `*` |
//! | `[abc]`, `[a-z]` | one byte in the set; `]` first in the set and `-` first or last are literal |
//! | `[!x]`, `[^x]` | one byte not in the set |
//! | `\c` | the byte `c` literally (also inside `[...]`) |
//! | anything else | itself, byte for byte, case-sensitively |
//!
//! A pattern matches the **whole** subject. Two kinds of subject, one syntax:
//!
//! - [`PathGlob`]: a path. `/` separates components; it cannot be escaped, and no wildcard or
//!   byte class matches it. The pattern must be absolute (start with `/`) or start with the
//!   component `**`, and may not contain empty components (`//`, a trailing `/`) or `.`/`..`
//!   components, which could never match a normalised path. A trailing `/` of the path is
//!   ignored.
//! - [`NameGlob`]: a name that is not a path (an image, a pod name, a label value, a command
//!   line). It has no separator: `*` matches any run of bytes, `/` and spaces included, and
//!   `**` is `*`.
//!
//! For a pattern and a subject without `/` the two agree: `NameGlob(p)` matches `n` exactly
//! when `PathGlob("/" + p)` matches `/` + `n`. Classes are byte classes: a multi-byte UTF-8
//! character inside `[...]` adds each of its bytes, and `?` matches one byte of it. `{a,b}` is
//! not special (list several patterns instead).
//!
//! # Cost
//!
//! Matching never backtracks more than one level: `**` over components and `*` over bytes are
//! matched with the iterative "remember the last star" algorithm, which is exact for such
//! patterns because every other element consumes exactly one component (or byte). The elements
//! after the last star are checked against the end of the subject first, which rejects most
//! subjects at once. A match costs at most O(pattern length × subject length), with no
//! exponential blow-up on hostile input, and allocates nothing.

/// What is wrong with a pattern. The message is a predicate, to follow the pattern it is about
/// (`executable "bin/x" is not absolute: ...`); callers add where the pattern came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// An empty pattern, which would match nothing (or only an empty name).
    #[error("is empty, and an empty pattern matches nothing")]
    Empty,
    /// A path pattern that starts with neither `/` nor `**`.
    #[error("is not absolute: start it with `/` or `**/`")]
    NotAbsolute,
    /// A path pattern with `//` or a trailing `/`.
    #[error("has an empty component (`//` or a trailing `/`)")]
    EmptyComponent,
    /// A path pattern with a `.` or `..` component.
    #[error("has a `.` or `..` component, which never matches a normalised path")]
    DotComponent,
    /// A `[` with no `]` after it (in a path: within the component).
    #[error("has a `[` without its closing `]` (`\\[` is a literal `[`)")]
    UnterminatedClass,
    /// A range such as `[z-a]`.
    #[error("has a range whose end is below its start")]
    ReversedRange,
    /// A `\` at the end (in a path: of a component; `/` cannot be escaped).
    #[error("has a `\\` with nothing to escape")]
    TrailingEscape,
}

/// A compiled glob over a name that is not a path: `/` is a byte like any other (see the
/// [module docs](self)).
#[derive(Clone, Debug)]
pub struct NameGlob {
    tokens: Box<[Step<ByteToken>]>,
}

impl NameGlob {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        Ok(Self {
            tokens: tokens(pattern.as_bytes())?.into_boxed_slice(),
        })
    }

    /// Whether the glob matches the whole of `name`.
    pub fn matches(&self, name: &[u8]) -> bool {
        wildmatch(&self.tokens, name, |token, &b| token.matches(b))
    }
}

/// A compiled glob over absolute paths (see the [module docs](self)), for file classes and for
/// agent selectors over executables and cgroup paths.
#[derive(Clone, Debug)]
pub struct PathGlob {
    steps: Box<[Step<Segment>]>,
}

impl PathGlob {
    /// Compiles an absolute path glob; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let bytes = pattern.as_bytes();
        if bytes.is_empty() {
            return Err(GlobError::Empty);
        }
        if bytes == b"/" {
            // Only the root, whose components are [""].
            return Ok(Self {
                steps: Box::new([Step::One(Segment::Literal(Box::new([])))]),
            });
        }
        let absolute = bytes[0] == b'/';
        if !(absolute || bytes == b"**" || bytes.starts_with(b"**/")) {
            return Err(GlobError::NotAbsolute);
        }
        let mut steps: Vec<Step<Segment>> = Vec::new();
        for (index, component) in bytes.split(|&b| b == b'/').enumerate() {
            if component.is_empty() {
                if index == 0 {
                    // The root of an absolute pattern, matching the path's leading "".
                    steps.push(Step::One(Segment::Literal(Box::new([]))));
                    continue;
                }
                return Err(GlobError::EmptyComponent);
            }
            match Segment::compile(component)? {
                // `**/**` is `**`.
                Step::Star if matches!(steps.last(), Some(Step::Star)) => {}
                step => steps.push(step),
            }
        }
        Ok(Self {
            steps: steps.into_boxed_slice(),
        })
    }

    /// Whether the glob matches the whole `path` (one trailing `/` ignored). An empty path
    /// matches nothing.
    pub fn matches(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return false;
        }
        self.matches_trimmed(path.strip_suffix(b"/").unwrap_or(path))
    }

    /// The glob's fixed leading directories (`/opt/a` for `/opt/a/*/bin`), where a search for
    /// its matches can start.
    pub fn literal_prefix(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for step in self.steps.iter().skip(1) {
            match step {
                Step::One(Segment::Literal(name)) => {
                    out.push(b'/');
                    out.extend_from_slice(name);
                }
                _ => break,
            }
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }

    /// Whether the glob has no wildcard at all (an exact path).
    pub fn is_literal(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::One(Segment::Literal(_))))
    }

    /// The glob as a kernel's prefix match can hold it (for rules enforced in the kernel), or
    /// `None` when it has a wildcard elsewhere than at its end.
    pub fn prefix_form(&self) -> Option<PrefixForm> {
        // Absolute: the first step is the root's empty component.
        if !matches!(self.steps.first(), Some(Step::One(Segment::Literal(root))) if root.is_empty())
        {
            return None;
        }
        let (last, leading) = self.steps.split_last()?;
        let mut prefix = Vec::new();
        for step in leading.iter().skip(1) {
            let Step::One(Segment::Literal(name)) = step else {
                return None;
            };
            prefix.push(b'/');
            prefix.extend_from_slice(name);
        }
        if self.steps.len() == 1 {
            // `/` alone, or `**`.
            return match last {
                Step::One(Segment::Literal(_)) => Some(PrefixForm::Exact(b"/".to_vec())),
                _ => None,
            };
        }
        match last {
            Step::Star => Some(PrefixForm::Subtree(prefix)),
            Step::One(Segment::Literal(name)) => {
                prefix.push(b'/');
                prefix.extend_from_slice(name);
                Some(PrefixForm::Exact(prefix))
            }
            Step::One(Segment::Glob(tokens)) => {
                let (star, literal) = tokens.split_last()?;
                if !matches!(star, Step::Star) {
                    return None;
                }
                prefix.push(b'/');
                for token in literal {
                    let Step::One(ByteToken::Literal(b)) = token else {
                        return None;
                    };
                    prefix.push(*b);
                }
                Some(PrefixForm::OneLevel(prefix))
            }
        }
    }

    /// The compiled components, `**` as [`Step::Star`] (for the classifier's index).
    pub(crate) fn steps(&self) -> &[Step<Segment>] {
        &self.steps
    }

    /// Whether the pattern matches a path split at its slashes (the reference for
    /// [`Self::matches_trimmed`]).
    #[cfg(test)]
    pub(crate) fn matches_components(&self, components: &[&[u8]]) -> bool {
        wildmatch(&self.steps, components, |segment, component| {
            segment.matches(component)
        })
    }

    /// Whether the pattern matches `path`, a non-empty path trimmed of one trailing `/`:
    /// `/a/b` is the components `""`, `"a"`, `"b"`; `""` (the root) is `[""]`, so `/*` does
    /// not match the root.
    ///
    /// [`wildmatch`] over components, walked in place rather than split into a vector: the
    /// subject is `Some(bytes)` for the components `bytes.split('/')`, `None` for none.
    pub(crate) fn matches_trimmed(&self, path: &[u8]) -> bool {
        let (mut steps, mut subject) = (&self.steps[..], Some(path));
        // The steps after the last star can only match the path's last components.
        while let Some((Step::One(segment), steps_rest)) = steps.split_last() {
            let Some(components) = subject else {
                return false;
            };
            let (before, last) = split_last(components);
            if !segment.matches(last) {
                return false;
            }
            steps = steps_rest;
            subject = before;
        }
        let mut pi = 0;
        let mut resume: Option<(usize, Option<&[u8]>)> = None;
        loop {
            match (steps.get(pi), subject) {
                (Some(Step::Star), _) => {
                    if pi + 1 == steps.len() {
                        return true;
                    }
                    pi += 1;
                    resume = Some((pi, subject));
                    continue;
                }
                (Some(Step::One(segment)), Some(components)) => {
                    let (first, after) = split_first(components);
                    if segment.matches(first) {
                        pi += 1;
                        subject = after;
                        continue;
                    }
                }
                (None, None) => return true,
                _ => {}
            }
            // The last star takes one more component.
            match resume {
                Some((star_pi, Some(components))) => {
                    let after = split_first(components).1;
                    resume = Some((star_pi, after));
                    pi = star_pi;
                    subject = after;
                }
                _ => return false,
            }
        }
    }
}

/// One element of a sequence pattern: something that matches exactly one element of the
/// subject, or a star that matches any run of them. Used twice: components over a path
/// (`**` is the star), and bytes over a component (`*` is the star).
#[derive(Clone, Debug)]
pub(crate) enum Step<T> {
    One(T),
    Star,
}

/// A path glob that a prefix match decides ([`PathGlob::prefix_form`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixForm {
    /// No wildcard: this path.
    Exact(Vec<u8>),
    /// `DIR/**`: `DIR` and every path under it (`DIR` without its trailing `/`; empty for
    /// `/**`).
    Subtree(Vec<u8>),
    /// `PREFIX*` in the last component: `PREFIX` followed by anything without a `/`.
    OneLevel(Vec<u8>),
}

/// One pattern component other than `**`.
#[derive(Clone, Debug)]
pub(crate) enum Segment {
    /// No wildcards (after unescaping): compared as a whole.
    Literal(Box<[u8]>),
    Glob(Box<[Step<ByteToken>]>),
}

/// One byte-matching element of a component glob.
#[derive(Clone, Debug)]
pub(crate) enum ByteToken {
    Literal(u8),
    /// `?`
    Any,
    /// `[...]`, negation already applied.
    Set(ByteSet),
}

/// A set of bytes, as a 256-bit bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn negate(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }
}

/// The high bit of each byte of `word` that is a `/`, exactly (no borrow between bytes, so
/// the lowest and the highest set bits are both right).
fn slashes(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = word ^ 0x2f2f_2f2f_2f2f_2f2f;
    // A byte's high bit ends up set iff the byte is non-zero.
    let nonzero = ((x & !HIGH).wrapping_add(!HIGH)) | x;
    !nonzero & HIGH
}

/// The first `/` in `bytes`, eight bytes at a time: components can be 4 KiB long.
fn find_slash(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(chunk) = bytes.get(start..start + 8) {
        let found = slashes(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if found != 0 {
            return Some(start + found.trailing_zeros() as usize / 8);
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|&b| b == b'/')
        .map(|i| start + i)
}

/// The last `/` in `bytes`, eight bytes at a time.
fn rfind_slash(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    while end >= 8 {
        let chunk = &bytes[end - 8..end];
        let found = slashes(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if found != 0 {
            return Some(end - 1 - found.leading_zeros() as usize / 8);
        }
        end -= 8;
    }
    bytes[..end].iter().rposition(|&b| b == b'/')
}

/// Byte-slice equality without a call into libc's `memcmp`, which costs more than the
/// comparison itself for names as short as path components.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, a_rest)), Some((y, b_rest))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return false;
        }
        (a, b) = (a_rest, b_rest);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// The first component of `components` and the rest (`None` when it was the only one).
pub(crate) fn split_first(components: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find_slash(components) {
        Some(slash) => (&components[..slash], Some(&components[slash + 1..])),
        None => (components, None),
    }
}

/// The last component of `components` and the ones before it (`None` when it was the only one).
pub(crate) fn split_last(components: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match rfind_slash(components) {
        Some(slash) => (Some(&components[..slash]), &components[slash + 1..]),
        None => (None, components),
    }
}

impl Segment {
    /// Compiles one non-empty pattern component; `**` becomes [`Step::Star`].
    fn compile(component: &[u8]) -> Result<Step<Self>, GlobError> {
        if component == b"**" {
            return Ok(Step::Star);
        }
        let tokens = tokens(component)?;
        let literal: Option<Vec<u8>> = tokens
            .iter()
            .map(|token| match token {
                Step::One(ByteToken::Literal(b)) => Some(*b),
                _ => None,
            })
            .collect();
        Ok(Step::One(match literal {
            Some(literal) if literal == b"." || literal == b".." => {
                return Err(GlobError::DotComponent);
            }
            Some(literal) => Segment::Literal(literal.into_boxed_slice()),
            None => Segment::Glob(tokens.into_boxed_slice()),
        }))
    }

    fn matches(&self, component: &[u8]) -> bool {
        match self {
            Segment::Literal(literal) => same(literal, component),
            Segment::Glob(tokens) => wildmatch(tokens, component, |token, &b| token.matches(b)),
        }
    }
}

/// The byte tokens of `pattern` (a path component, or a whole name): `*`, `**` and `***` are
/// one [`Step::Star`].
fn tokens(pattern: &[u8]) -> Result<Vec<Step<ByteToken>>, GlobError> {
    let mut tokens: Vec<Step<ByteToken>> = Vec::new();
    let mut i = 0;
    while let Some(&b) = pattern.get(i) {
        i += 1;
        let token = match b {
            b'*' => {
                if !matches!(tokens.last(), Some(Step::Star)) {
                    tokens.push(Step::Star);
                }
                continue;
            }
            b'?' => ByteToken::Any,
            b'\\' => {
                let &escaped = pattern.get(i).ok_or(GlobError::TrailingEscape)?;
                i += 1;
                ByteToken::Literal(escaped)
            }
            b'[' => {
                let (set, used) = parse_byte_class(&pattern[i..])?;
                i += used;
                ByteToken::Set(set)
            }
            _ => ByteToken::Literal(b),
        };
        tokens.push(Step::One(token));
    }
    Ok(tokens)
}

impl ByteToken {
    fn matches(&self, b: u8) -> bool {
        match self {
            ByteToken::Literal(literal) => *literal == b,
            ByteToken::Any => true,
            ByteToken::Set(set) => set.contains(b),
        }
    }
}

/// Parses a byte class; `s` starts just after the `[`. Returns the set and the number of bytes
/// used, the closing `]` included.
fn parse_byte_class(s: &[u8]) -> Result<(ByteSet, usize), GlobError> {
    let next = |i: &mut usize| -> Result<u8, GlobError> {
        let b = *s.get(*i).ok_or(GlobError::UnterminatedClass)?;
        *i += 1;
        Ok(b)
    };
    let mut i = 0;
    let negated = matches!(s.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut set = ByteSet::default();
    let mut first = true;
    loop {
        let mut low = next(&mut i)?;
        if low == b']' && !first {
            break;
        }
        first = false;
        if low == b'\\' {
            low = next(&mut i)?;
        }
        // A range, unless the `-` is the last byte of the set (`[a-]`).
        if s.get(i) == Some(&b'-') && s.get(i + 1).is_some_and(|&b| b != b']') {
            i += 1;
            let mut high = next(&mut i)?;
            if high == b'\\' {
                high = next(&mut i)?;
            }
            if high < low {
                return Err(GlobError::ReversedRange);
            }
            for b in low..=high {
                set.insert(b);
            }
        } else {
            set.insert(low);
        }
    }
    if negated {
        set.negate();
    }
    Ok((set, i))
}

/// Whether `pattern` matches all of `subject`, where each [`Step::One`] matches one element
/// (as `one` decides) and each [`Step::Star`] any run of elements.
///
/// Iterative, remembering only the last star: when a later step fails, the last star takes one
/// more element and matching resumes after it. That is exact, because every other step
/// consumes exactly one element, so the leftmost match of the steps between two stars is always
/// the best one. At most O(pattern × subject) calls of `one`.
fn wildmatch<P, S>(pattern: &[Step<P>], subject: &[S], one: impl Fn(&P, &S) -> bool) -> bool {
    // The steps after the last star can only match the subject's tail: check them first.
    let (mut pattern, mut subject) = (pattern, subject);
    while let Some((Step::One(p), pattern_rest)) = pattern.split_last() {
        match subject.split_last() {
            Some((s, subject_rest)) if one(p, s) => {
                pattern = pattern_rest;
                subject = subject_rest;
            }
            _ => return false,
        }
    }
    // Now the pattern is empty or ends with a star.
    let (mut pi, mut si) = (0, 0);
    // After the last star seen: where its steps start, and where in the subject they were last
    // tried.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        match pattern.get(pi) {
            Some(Step::Star) => {
                if pi + 1 == pattern.len() {
                    return true;
                }
                pi += 1;
                resume = Some((pi, si));
                continue;
            }
            Some(Step::One(p)) if si < subject.len() && one(p, &subject[si]) => {
                pi += 1;
                si += 1;
                continue;
            }
            None if si == subject.len() => return true,
            _ => {}
        }
        match resume {
            Some((star_pi, star_si)) if star_si < subject.len() => {
                resume = Some((star_pi, star_si + 1));
                pi = star_pi;
                si = star_si + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_forms_are_the_globs_a_prefix_match_decides() {
        let form = |p: &str| PathGlob::new(p).unwrap().prefix_form();
        assert_eq!(
            form("/usr/bin/git"),
            Some(PrefixForm::Exact(b"/usr/bin/git".to_vec()))
        );
        assert_eq!(form("/"), Some(PrefixForm::Exact(b"/".to_vec())));
        assert_eq!(
            form("/opt/a/**"),
            Some(PrefixForm::Subtree(b"/opt/a".to_vec()))
        );
        assert_eq!(form("/**"), Some(PrefixForm::Subtree(Vec::new())));
        assert_eq!(
            form("/opt/a/*"),
            Some(PrefixForm::OneLevel(b"/opt/a/".to_vec()))
        );
        assert_eq!(
            form("/usr/bin/git*"),
            Some(PrefixForm::OneLevel(b"/usr/bin/git".to_vec()))
        );
        assert_eq!(
            form("/usr/bin/\\*x"),
            Some(PrefixForm::Exact(b"/usr/bin/*x".to_vec()))
        );
        for other in [
            "/opt/*/bin",
            "/usr/bin/g?t",
            "/usr/bin/[gh]it",
            "/a/**/b",
            "**/x",
            "/a/*x",
            "**",
        ] {
            assert_eq!(form(other), None, "{other}");
        }
    }
    use std::time::{Duration, Instant};

    fn pattern(p: &str) -> PathGlob {
        PathGlob::new(p).unwrap_or_else(|e| panic!("{p:?}: {e:?}"))
    }

    /// Whether `p` matches `path`, split as `classify` splits it.
    fn m(p: &str, path: &str) -> bool {
        matches_bytes(&pattern(p), path.as_bytes())
    }

    fn matches_bytes(pattern: &PathGlob, path: &[u8]) -> bool {
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        let in_place = pattern.matches_trimmed(trimmed);
        assert_eq!(
            in_place,
            pattern.matches_components(&components),
            "{path:?}"
        );
        assert_eq!(in_place, pattern.matches(path), "{path:?}");
        in_place
    }

    #[test]
    fn literals_match_the_whole_path_only() {
        assert!(m("/etc/shadow", "/etc/shadow"));
        assert!(!m("/etc/shadow", "/etc/shadow-"));
        assert!(!m("/etc/shadow", "/etc/shado"));
        assert!(!m("/etc/shadow", "/x/etc/shadow"));
        assert!(!m("/etc/shadow", "/etc/shadow/x"));
        assert!(!m("/etc/shadow", "etc/shadow"));
        assert!(!m("/etc/shadow", "/ETC/SHADOW"));
    }

    #[test]
    fn the_root_pattern_matches_only_the_root() {
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
        assert!(!m("/*", "/"));
        assert!(m("/*", "/a"));
        assert!(m("/**", "/"));
    }

    #[test]
    fn star_stays_within_one_component() {
        assert!(m("/etc/sudoers.d/*", "/etc/sudoers.d/90-cloud"));
        assert!(m("/a/*", "/a/.hidden"));
        assert!(m("/a/x*", "/a/x"));
        assert!(m("/a/*x*y", "/a/axxbxy"));
        assert!(!m("/a/*", "/a/b/c"));
        assert!(!m("/a/*", "/a"));
        assert!(!m("/*/c", "/a/b/c"));
        assert!(m("/a/*.key", "/a/server.key"));
        assert!(!m("/a/*.key", "/a/server.key.bak"));
        assert!(m("/a/x**y", "/a/xzzy"), "`**` inside a component is `*`");
        assert!(!m("/a/x**y", "/a/x/y"));
    }

    #[test]
    fn question_mark_is_exactly_one_byte() {
        assert!(m("/a/?", "/a/b"));
        assert!(!m("/a/?", "/a/"));
        assert!(!m("/a/?", "/a/bc"));
        assert!(!m("/a?b", "/a/b"));
        assert!(m("/a/??", "/a/\u{e9}"), "two UTF-8 bytes are two bytes");
        assert!(matches_bytes(&pattern("/a/?"), b"/a/\xff"));
    }

    #[test]
    fn double_star_at_the_start() {
        let p = "**/.ssh/id_*";
        assert!(m(p, "/root/.ssh/id_rsa"));
        assert!(m(p, "/home/a/b/c/.ssh/id_ed25519"));
        assert!(m(p, "/.ssh/id_rsa"), "zero components");
        assert!(m(p, ".ssh/id_rsa"), "relative paths match `**` patterns");
        assert!(!m(p, "/root/.ssh/x/id_rsa"));
        assert!(!m(p, "/root/.ssh"));
        assert!(m("**", "/anything/at/all"));
        assert!(m("**", "/"));
    }

    #[test]
    fn double_star_in_the_middle() {
        let p = "/etc/**/pki/*.key";
        assert!(m(p, "/etc/pki/ca.key"), "zero components");
        assert!(m(p, "/etc/kubernetes/pki/ca.key"));
        assert!(m(p, "/etc/a/b/c/pki/ca.key"));
        assert!(!m(p, "/etc/kubernetes/pki/etcd/ca.key"));
        assert!(!m(p, "/var/etc/pki/ca.key"));
        assert!(m("/a/**/**/b", "/a/b"));
        assert!(m("/a/**/b/**/c", "/a/x/b/y/b/c"));
        assert!(!m("/a/**/b/**/c", "/a/x/c"));
    }

    #[test]
    fn double_star_at_the_end() {
        let p = "/etc/ssl/private/**";
        assert!(m(p, "/etc/ssl/private/server.key"));
        assert!(m(p, "/etc/ssl/private/a/b/c"));
        assert!(
            m(p, "/etc/ssl/private"),
            "zero components: the directory itself"
        );
        assert!(!m(p, "/etc/ssl/privatex"));
        assert!(!m(p, "/etc/ssl"));
    }

    #[test]
    fn byte_classes() {
        assert!(m("/[abc]", "/b"));
        assert!(!m("/[abc]", "/d"));
        assert!(!m("/[abc]", "/ab"));
        assert!(m("/x[a-z0-9]", "/x7"));
        assert!(!m("/x[a-z0-9]", "/xA"));
        assert!(m("/[!x]", "/y"));
        assert!(!m("/[!x]", "/x"));
        assert!(m("/[^x]", "/y"));
        assert!(!m("/[^x]", "/x"));
        assert!(m("/[]]", "/]"), "`]` first is literal");
        assert!(m("/[!]]", "/a"));
        assert!(!m("/[!]]", "/]"));
        assert!(m("/[a-]", "/-"), "`-` last is literal");
        assert!(m("/[-a]", "/-"), "`-` first is literal");
        assert!(m("/[\\]x]", "/]"));
        assert!(m("/[\\!]", "/!"));
        assert!(!m("/[\\!]", "/a"));
        assert!(m("/[*?]", "/*"));
        assert!(!m("/[*?]", "/a"), "wildcards are literal in a class");
        assert!(matches_bytes(&pattern("/[!a]"), b"/\xff"));
        assert!(!m("/[!a]", "/"), "a class still needs one byte");
    }

    #[test]
    fn escapes() {
        assert!(m("/a\\*", "/a*"));
        assert!(!m("/a\\*", "/ab"));
        assert!(m("/a\\?", "/a?"));
        assert!(!m("/a\\?", "/ab"));
        assert!(m("/\\[x]", "/[x]"));
        assert!(m("/a\\\\b", "/a\\b"));
        assert!(m("/\\a", "/a"));
        assert!(m("/x/\\*\\*", "/x/**"), "an escaped `**` is literal");
        assert!(!m("/x/\\*\\*", "/x/y"));
    }

    #[test]
    fn patterns_are_checked() {
        let err = |p: &str| PathGlob::new(p).unwrap_err();
        assert_eq!(err(""), GlobError::Empty);
        assert_eq!(err("etc/shadow"), GlobError::NotAbsolute);
        assert_eq!(err("*/shadow"), GlobError::NotAbsolute);
        assert_eq!(err("**shadow"), GlobError::NotAbsolute);
        assert_eq!(err("/etc//shadow"), GlobError::EmptyComponent);
        assert_eq!(err("/etc/"), GlobError::EmptyComponent);
        assert_eq!(err("**/"), GlobError::EmptyComponent);
        assert_eq!(err("/etc/../shadow"), GlobError::DotComponent);
        assert_eq!(err("**/./x"), GlobError::DotComponent);
        assert_eq!(err("/a/\\.\\."), GlobError::DotComponent);
        assert_eq!(err("/a[bc"), GlobError::UnterminatedClass);
        assert_eq!(err("/a[]"), GlobError::UnterminatedClass);
        assert_eq!(
            err("/a[b/c]"),
            GlobError::UnterminatedClass,
            "`/` ends a component"
        );
        assert_eq!(err("/a[b\\"), GlobError::UnterminatedClass);
        assert_eq!(err("/[z-a]"), GlobError::ReversedRange);
        assert_eq!(err("/a\\"), GlobError::TrailingEscape);
        assert_eq!(
            err("/a\\/b"),
            GlobError::TrailingEscape,
            "`/` cannot be escaped"
        );
        for ok in ["/", "**", "**/x", "/**", "/a.b/..c/...", "/[a-a]"] {
            assert!(PathGlob::new(ok).is_ok(), "{ok:?}");
        }
    }

    /// The obvious exponential matcher, as a reference.
    fn naive<P, S>(pattern: &[Step<P>], subject: &[S], one: &dyn Fn(&P, &S) -> bool) -> bool {
        match pattern.split_first() {
            None => subject.is_empty(),
            Some((Step::Star, rest)) => {
                (0..=subject.len()).any(|k| naive(rest, &subject[k..], one))
            }
            Some((Step::One(p), rest)) => {
                subject.first().is_some_and(|s| one(p, s)) && naive(rest, &subject[1..], one)
            }
        }
    }

    fn naive_path(pattern: &PathGlob, path: &[u8]) -> bool {
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        naive(
            &pattern.steps,
            &components,
            &|segment: &Segment, c: &&[u8]| match segment {
                Segment::Literal(l) => **l == **c,
                Segment::Glob(g) => naive(g, c, &|t: &ByteToken, b: &u8| t.matches(*b)),
            },
        )
    }

    #[test]
    fn slash_search_finds_every_slash() {
        for len in 0..40 {
            for at in 0..len {
                for other in [
                    None,
                    Some(0),
                    Some(at / 2),
                    Some(usize::midpoint(at, len)),
                    Some(len - 1),
                ] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b'/';
                    // Bytes one off '/' in either bit must not count.
                    bytes
                        .iter_mut()
                        .step_by(3)
                        .filter(|b| **b == b'a')
                        .for_each(|b| *b = b'.');
                    bytes
                        .iter_mut()
                        .skip(1)
                        .step_by(5)
                        .filter(|b| **b != b'/')
                        .for_each(|b| *b = b'\xaf');
                    if let Some(o) = other {
                        bytes[o] = b'/';
                    }
                    let first = bytes.iter().position(|&b| b == b'/');
                    let last = bytes.iter().rposition(|&b| b == b'/');
                    assert_eq!(find_slash(&bytes), first, "{bytes:?}");
                    assert_eq!(rfind_slash(&bytes), last, "{bytes:?}");
                }
            }
            assert_eq!(find_slash(&vec![0; len]), None);
            assert_eq!(rfind_slash(&vec![0xff; len]), None);
        }
    }

    #[test]
    fn agrees_with_the_naive_matcher() {
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let segments = [
            "**", "*", "a", "b", "a*", "*b", "?", "[ab]", "[!a]", "*a*", "a?b",
        ];
        let names = ["a", "b", "ab", "ba", "aab", "abb", "bab", "x"];
        let mut agreed = 0;
        for _ in 0..4000 {
            let lead = if next(2) == 0 { "" } else { "**" };
            let mut p = lead.to_owned();
            for _ in 0..=next(4) {
                p.push('/');
                p.push_str(segments[next(segments.len())]);
            }
            let mut path = String::new();
            for _ in 0..next(6) {
                path.push('/');
                path.push_str(names[next(names.len())]);
            }
            if path.is_empty() {
                path.push('/');
            }
            let compiled = pattern(&p);
            let (fast, slow) = (m(&p, &path), naive_path(&compiled, path.as_bytes()));
            assert_eq!(fast, slow, "pattern {p:?} path {path:?}");
            agreed += usize::from(fast);
        }
        assert!(
            agreed > 200,
            "the generator should produce matches too ({agreed})"
        );
    }

    fn assert_fast(p: &str, path: &[u8], expected: bool) {
        let compiled = pattern(p);
        let start = Instant::now();
        assert_eq!(matches_bytes(&compiled, path), expected, "{p:?}");
        let took = start.elapsed();
        assert!(
            took < crate::test_budget(Duration::from_millis(50)),
            "{p:?} took {took:?}"
        );
    }

    #[test]
    fn hostile_paths_do_not_blow_up() {
        let one_name = format!("/{}", "a".repeat(4095)).into_bytes();
        let many_names = "/a".repeat(2048).into_bytes();
        let mixed = "/aaaaaaaaaaaaaaa".repeat(256).into_bytes();
        for path in [&one_name, &many_names, &mixed] {
            assert_fast("**/**/**/*a*a*a*a*b", path, false);
            assert_fast("**/*a*a*a*a*a*a*a*a*b*/**", path, false);
            assert_fast("**/a*/**/a*/**/a*/**/b*/**", path, false);
            // Matches need components of at least five `a`s.
            let long_names = path != &many_names;
            assert_fast("**/**/**/*a*a*a*a*a", path, long_names);
            assert_fast("/**/*a*a*a*a*a*/**", path, long_names);
        }
        assert_fast("/a/**/a/**/a/**/a/**/b", &many_names, false);
        assert_fast("/a/**/a/**/a/**/a/**/a", &many_names, true);
    }

    // ---- names, and the one dialect ----

    fn name(p: &str, n: &str) -> bool {
        NameGlob::new(p)
            .unwrap_or_else(|e| panic!("{p:?}: {e:?}"))
            .matches(n.as_bytes())
    }

    #[test]
    fn names_have_no_separator() {
        assert!(name("*agent.py*", "python3 /opt/agent.py --serve"));
        assert!(name("docker.io/*", "docker.io/library/busybox:1.36"));
        assert!(name("**", "a/b"), "`**` is `*`");
        assert!(name("a**b", "a/x/b"));
        assert!(name("a?b", "a/b"), "`?` matches a `/` in a name");
        assert!(name("a[/]b", "a/b"));
        assert!(name("\\/", "/"));
        assert!(name("*", ""), "`*` matches an empty name");
    }

    #[test]
    fn names_take_the_whole_dialect() {
        assert!(name("reviewer-[0-9]", "reviewer-7"));
        assert!(!name("reviewer-[0-9]", "reviewer-x"));
        assert!(name("reviewer-[!0-9]", "reviewer-x"));
        assert!(name("[^a]", "b"));
        assert!(name("[]]", "]"));
        assert!(name("v\\[1\\]", "v[1]"), "an escaped `[` is literal");
        assert!(!name("v\\[1\\]", "v1"));
        assert!(name("{a,b}", "{a,b}"), "braces are not special");
        assert!(!name("Busybox", "busybox"), "case-sensitive");
        assert!(name("??", "\u{e9}"), "`?` is one byte");
        let err = |p: &str| NameGlob::new(p).unwrap_err();
        assert_eq!(err(""), GlobError::Empty);
        assert_eq!(err("abc\\"), GlobError::TrailingEscape);
        assert_eq!(err("v[1"), GlobError::UnterminatedClass);
        assert_eq!(err("[z-a]"), GlobError::ReversedRange);
        // Path rules do not apply to names.
        for ok in ["relative", ".", "..", "a//b", "a/"] {
            assert!(NameGlob::new(ok).is_ok(), "{ok:?}");
        }
    }

    /// Every pattern of a few pieces: what the same-meaning tests go through.
    fn slash_free_patterns() -> Vec<String> {
        const PIECES: [&str; 12] = [
            "*", "**", "?", "a", "b", "[ab]", "[!a]", "[a-c]", "\\*", "\\a", ".", "\\",
        ];
        let mut out: Vec<String> = PIECES.iter().map(|p| (*p).to_owned()).collect();
        for a in PIECES {
            for b in PIECES {
                out.push(format!("{a}{b}"));
                for c in ["a", "*", "[b-c]"] {
                    out.push(format!("{a}{b}{c}"));
                }
            }
        }
        out.push("[a".to_owned());
        out.push("[c-a]".to_owned());
        out
    }

    #[test]
    fn the_same_pattern_means_the_same_in_names_and_paths() {
        let names = [
            "", "a", "b", "c", "ab", "ba", "aab", "abc", "*", "*a", "a*", ".", "..", ".a", "x",
            "aaaa", "\\",
        ];
        let mut compared = 0;
        for p in slash_free_patterns() {
            let as_path = PathGlob::new(&format!("/{p}"));
            let as_name = NameGlob::new(&p);
            match (&as_path, &as_name) {
                // `.` and `..` are names, but never path components.
                (Err(GlobError::DotComponent), Ok(_)) => {
                    assert!(matches!(p.replace('\\', "").as_str(), "." | ".."), "{p:?}");
                    continue;
                }
                (Err(path), Err(name)) => {
                    assert_eq!(path, name, "the same mistake in {p:?}");
                    continue;
                }
                (Ok(_), Ok(_)) => {}
                _ => panic!("{p:?}: {as_path:?} as a path, {as_name:?} as a name"),
            }
            let (as_path, as_name) = (as_path.unwrap(), as_name.unwrap());
            for n in names {
                let in_name = as_name.matches(n.as_bytes());
                let in_path = as_path.matches(format!("/{n}").as_bytes());
                // "/" + "" is the root, which no glob of one component matches.
                if !n.is_empty() {
                    assert_eq!(in_name, in_path, "pattern {p:?}, name {n:?}");
                }
                let reference = naive(&as_name.tokens, n.as_bytes(), &|t: &ByteToken, b: &u8| {
                    t.matches(*b)
                });
                assert_eq!(in_name, reference, "pattern {p:?}, name {n:?}");
                compared += usize::from(in_name);
            }
        }
        assert!(compared > 500, "too few matches to tell: {compared}");
    }
}
