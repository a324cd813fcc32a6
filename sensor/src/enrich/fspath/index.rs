//! The classifier's index: for one path, the few patterns that could match it, found without
//! trying them all.
//!
//! Every pattern is filed under one condition that any path it matches must meet (its fixed
//! leading directories, a literal component at a fixed distance from the end, a literal prefix
//! or suffix of such a component, a literal component anywhere), and only the patterns whose
//! condition a path meets are matched in full. Patterns are numbered in priority order (rule
//! order, then pattern order), so the first match is the lowest-numbered pattern that matches;
//! each list is in number order, and lists stop at the best match found so far.
//!
//! A lookup walks the path's components once forward (the leading ones down the trie, all of
//! them if there are anywhere-names) and its last few backward, hashes only the components a
//! Bloom filter lets through, and allocates nothing.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use crate::glob::{ByteToken, PathGlob, Segment, Step, same, split_first, split_last};

/// How many of a path's last components the tail keys look at (a key further from the end
/// than that is filed as a name anywhere instead).
const TAIL_DEPTH: usize = 4;

#[derive(Clone, Debug)]
pub(super) struct Index {
    /// Anchored patterns, by their leading literal components; node 0 is before the first one,
    /// and its child `""` is the root of absolute paths.
    trie: Vec<Node>,
    /// `tail[j]`: patterns keyed by the path's component `j` places from the end.
    tail: Vec<TailKeys>,
    /// Patterns that need a literal component somewhere in the path.
    anywhere: Names,
    /// Patterns with no usable condition: tried on every path.
    always: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
struct Node {
    children: Vec<(Box<[u8]>, u32)>,
    /// Patterns whose literal leading components end here.
    patterns: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
struct TailKeys {
    /// The component is exactly this name.
    names: Names,
    /// The component starts or ends with these bytes (a glob's literal edge); few, so a list.
    affixes: Vec<Affix>,
}

#[derive(Clone, Debug)]
struct Affix {
    bytes: Box<[u8]>,
    suffix: bool,
    pattern: u32,
}

/// Pattern lists by exact component name.
#[derive(Clone, Debug, Default)]
struct Names {
    /// A one-hash Bloom filter over each name's length and first and last bytes: most
    /// components are rejected without hashing them (a 4 KiB hostile name among them).
    filter: [u64; 4],
    map: HashMap<Box<[u8]>, Vec<u32>, BuildHasherDefault<FxHasher>>,
}

/// Where a pattern is filed.
enum Key<'a> {
    /// Leading literal components, the root's `""` first for an absolute pattern.
    Trie(Vec<&'a [u8]>),
    TailName(usize, &'a [u8]),
    TailAffix(usize, Vec<u8>, bool),
    Anywhere(&'a [u8]),
    Always,
}

impl Index {
    /// Files `patterns`, numbered by position (which is their priority).
    pub(super) fn new<'a>(patterns: impl IntoIterator<Item = &'a PathGlob>) -> Self {
        let mut index = Self {
            trie: vec![Node::default()],
            tail: Vec::new(),
            anywhere: Names::default(),
            always: Vec::new(),
        };
        for (number, pattern) in patterns.into_iter().enumerate() {
            let number = u32::try_from(number).expect("fewer than 2^32 patterns");
            match key(pattern) {
                Key::Trie(names) => {
                    let mut node = 0;
                    for name in names {
                        node = index.child_or_insert(node, name);
                    }
                    index.trie[node].patterns.push(number);
                }
                Key::TailName(j, name) => index.tail_keys(j).names.insert(name, number),
                Key::TailAffix(j, bytes, suffix) => index.tail_keys(j).affixes.push(Affix {
                    bytes: bytes.into(),
                    suffix,
                    pattern: number,
                }),
                Key::Anywhere(name) => index.anywhere.insert(name, number),
                Key::Always => index.always.push(number),
            }
        }
        index
    }

    fn child_or_insert(&mut self, node: usize, name: &[u8]) -> usize {
        if let Some(child) = self.trie[node].child(name) {
            return child as usize;
        }
        let child = self.trie.len();
        self.trie.push(Node::default());
        self.trie[node].children.push((name.into(), child as u32));
        child
    }

    fn tail_keys(&mut self, j: usize) -> &mut TailKeys {
        if self.tail.len() <= j {
            self.tail.resize_with(j + 1, TailKeys::default);
        }
        &mut self.tail[j]
    }

    /// The lowest-numbered pattern for which `matches` holds among those that could match
    /// `path` (trimmed of one trailing `/`, as [`PathGlob::matches_trimmed`] takes it).
    pub(super) fn first_match(&self, path: &[u8], matches: impl Fn(u32) -> bool) -> Option<u32> {
        let mut best = Best {
            number: u32::MAX,
            matches,
        };
        // Forward: down the trie while it lasts, and through every component when some
        // pattern needs a name anywhere, in one walk.
        let anywhere = !self.anywhere.map.is_empty();
        let mut node = Some(&self.trie[0]);
        let mut rest = Some(path);
        while let Some(components) = rest {
            let (first, after) = split_first(components);
            if let Some(parent) = node {
                node = parent.child(first).map(|child| &self.trie[child as usize]);
                match node {
                    Some(node) => best.consider(&node.patterns),
                    None if !anywhere => break,
                    None => {}
                }
            }
            if anywhere {
                best.consider(self.anywhere.get(first));
            }
            rest = after;
        }
        let mut rest = Some(path);
        for keys in &self.tail {
            let Some(components) = rest else { break };
            let (before, last) = split_last(components);
            best.consider(keys.names.get(last));
            for affix in &keys.affixes {
                if affix.pattern >= best.number {
                    break;
                }
                let n = affix.bytes.len();
                let edge = last.len() >= n
                    && if affix.suffix {
                        same(&last[last.len() - n..], &affix.bytes)
                    } else {
                        same(&last[..n], &affix.bytes)
                    };
                if edge && (best.matches)(affix.pattern) {
                    best.number = affix.pattern;
                    break;
                }
            }
            rest = before;
        }
        best.consider(&self.always);
        (best.number != u32::MAX).then_some(best.number)
    }

    /// How many patterns are tried on every path, for tests.
    #[cfg(test)]
    pub(super) fn unindexed(&self) -> usize {
        self.always.len()
            + self.trie[self.trie[0].child(b"").unwrap_or(0) as usize]
                .patterns
                .len()
    }
}

struct Best<F> {
    number: u32,
    matches: F,
}

impl<F: Fn(u32) -> bool> Best<F> {
    /// Tries `candidates` (in number order) until one matches or none can beat the best.
    #[inline]
    fn consider(&mut self, candidates: &[u32]) {
        if candidates.first().is_some_and(|&first| first < self.number) {
            self.try_all(candidates);
        }
    }

    #[inline(never)]
    fn try_all(&mut self, candidates: &[u32]) {
        for &number in candidates {
            if number >= self.number {
                return;
            }
            if (self.matches)(number) {
                self.number = number;
                return;
            }
        }
    }
}

impl Node {
    fn child(&self, name: &[u8]) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| same(n, name))
            .map(|&(_, child)| child)
    }
}

impl Names {
    fn insert(&mut self, name: &[u8], pattern: u32) {
        let bit = filter_bit(name);
        self.filter[bit / 64] |= 1 << (bit % 64);
        self.map.entry(name.into()).or_default().push(pattern);
    }

    /// Inlined, so that a name the filter rejects (nearly all) costs a few instructions.
    #[inline]
    fn get(&self, name: &[u8]) -> &[u32] {
        let bit = filter_bit(name);
        if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return &[];
        }
        self.lookup(name)
    }

    #[inline(never)]
    fn lookup(&self, name: &[u8]) -> &[u32] {
        self.map.get(name).map_or(&[], Vec::as_slice)
    }
}

fn filter_bit(name: &[u8]) -> usize {
    let ends = u32::from(name.first().copied().unwrap_or(0)) << 8
        | u32::from(name.last().copied().unwrap_or(0));
    // Truncating the length keeps the bit in range; a false positive only costs a lookup.
    let mixed = (name.len() as u32 ^ ends << 12).wrapping_mul(0x9e37_79b1);
    (mixed >> 24) as usize
}

/// The most selective condition of `pattern` that is cheap to check.
fn key(pattern: &PathGlob) -> Key<'_> {
    let steps = pattern.steps();
    let head: Vec<&[u8]> = steps.iter().map_while(literal).collect();
    // An absolute pattern's head starts with the root's "": more than that (or an exact path
    // such as "/") narrows the search.
    if head.len() >= 2 || (!head.is_empty() && head.len() == steps.len()) {
        return Key::Trie(head);
    }
    // The steps after the last `**` match the path's last components, one each.
    let tail_start = steps
        .iter()
        .rposition(|s| matches!(s, Step::Star))
        .map_or(0, |star| star + 1);
    let tail = || {
        steps[tail_start..]
            .iter()
            .rev()
            .enumerate()
            .take(TAIL_DEPTH)
    };
    if let Some((j, name)) = tail().find_map(|(j, s)| literal(s).map(|name| (j, name))) {
        return Key::TailName(j, name);
    }
    if let Some((j, (bytes, suffix))) = tail().find_map(|(j, s)| match s {
        Step::One(Segment::Glob(tokens)) => affix(tokens).map(|a| (j, a)),
        _ => None,
    }) {
        return Key::TailAffix(j, bytes, suffix);
    }
    // The longest name is likely the rarest.
    if let Some(name) = steps
        .iter()
        .filter_map(literal)
        .filter(|name| !name.is_empty())
        .max_by_key(|name| name.len())
    {
        return Key::Anywhere(name);
    }
    if head.is_empty() {
        Key::Always
    } else {
        Key::Trie(head)
    }
}

fn literal(step: &Step<Segment>) -> Option<&[u8]> {
    match step {
        Step::One(Segment::Literal(name)) => Some(name),
        _ => None,
    }
}

/// A component glob's longer literal edge: the bytes every match starts with, or ends with
/// (`true`); none when both are empty.
fn affix(tokens: &[Step<ByteToken>]) -> Option<(Vec<u8>, bool)> {
    let byte = |t: &Step<ByteToken>| match t {
        Step::One(ByteToken::Literal(b)) => Some(*b),
        _ => None,
    };
    let prefix: Vec<u8> = tokens.iter().map_while(byte).collect();
    let mut suffix: Vec<u8> = tokens.iter().rev().map_while(byte).collect();
    suffix.reverse();
    if prefix.len() >= suffix.len() {
        (!prefix.is_empty()).then_some((prefix, false))
    } else {
        Some((suffix, true))
    }
}

/// FxHash (rustc's): a multiply and rotate per 8 bytes. Not flood-resistant, which needs no
/// care here: the keys are fixed at configuration time, and a hostile lookup costs at most a
/// few comparisons.
#[derive(Clone, Copy, Debug, Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The table takes its control bits from the top: bring the well-mixed bits there.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        hint::black_box,
        time::{Duration, Instant},
    };

    use crate::enrich::fspath::{ClassRule, Classifier};

    fn rule(class: &str, patterns: &[&str]) -> ClassRule {
        ClassRule {
            class: class.to_owned(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// xorshift64: deterministic, no dependency.
    fn rng(mut state: u64) -> impl FnMut(usize) -> usize {
        move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        }
    }

    /// Paths a glob pattern is about: its wildcards filled in a few ways each.
    fn instances(pattern: &str, next: &mut impl FnMut(usize) -> usize) -> Vec<Vec<u8>> {
        const DEEP: [&str; 5] = ["", "a", "home/alice", ".ssh/x", "a/b/c/d"];
        const RUN: [&str; 6] = ["", "z", "id_", ".pub", "_key", "x.y"];
        let mut out = Vec::new();
        for _ in 0..6 {
            let mut path = Vec::new();
            for (i, component) in pattern.split('/').enumerate() {
                if i > 0 {
                    path.push(b'/');
                }
                if component == "**" {
                    path.extend_from_slice(DEEP[next(DEEP.len())].as_bytes());
                    continue;
                }
                let mut bytes = component.bytes();
                while let Some(b) = bytes.next() {
                    match b {
                        b'*' => path.extend_from_slice(RUN[next(RUN.len())].as_bytes()),
                        b'?' => path.push(b"q.\xff"[next(3)]),
                        b'\\' => path.extend(bytes.next()),
                        b'[' => {
                            // The first byte listed, which is in the set unless negated.
                            let set: Vec<u8> = bytes.by_ref().take_while(|&b| b != b']').collect();
                            path.push(
                                set.iter()
                                    .copied()
                                    .find(|b| !b"!^".contains(b))
                                    .unwrap_or(b'b'),
                            );
                        }
                        b => path.push(b),
                    }
                }
            }
            // A leading `**` filled with nothing leaves "/x": absolute. With "a" it is "a/x",
            // relative, which `**` patterns match too.
            out.push(path);
        }
        out
    }

    /// `path` and its near misses: one component more, less, longer, shorter; relative; with
    /// slashes doubled or trailing.
    fn variants(path: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![path.to_vec()];
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = path.to_vec();
            f(&mut v);
            v
        };
        out.push(with(&|v| v.extend_from_slice(b"/x")));
        out.push(with(&|v| v.push(b'/')));
        out.push(with(&|v| v.extend_from_slice(b"//")));
        out.push(with(&|v| v.push(b'x')));
        out.push(with(&|v| v.push(0xff)));
        out.push(with(&|v| {
            v.pop();
        }));
        out.push(with(&|v| {
            let cut = v.iter().rposition(|&b| b == b'/').unwrap_or(0);
            v.truncate(cut);
        }));
        out.push(with(&|v| {
            if v.first() == Some(&b'/') {
                v.remove(0);
            }
        }));
        out.push(with(&|v| {
            v.splice(0..0, b"/home/u".iter().copied());
        }));
        out.push(with(&|v| {
            if let Some(slash) = v.iter().rposition(|&b| b == b'/') {
                v.insert(slash, b'/');
            }
        }));
        out.push(with(&|v| {
            if let Some(slash) = v.iter().rposition(|&b| b == b'/') {
                v.splice(slash..slash, b"/..".iter().copied());
            }
        }));
        out
    }

    /// Hostile and odd paths, whatever the rules.
    fn hostile() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = [
            "",
            "/",
            "//",
            "///",
            ".",
            "..",
            "/..",
            "/../..",
            "a",
            "a/",
            "/a/",
            "/a//",
            "//a",
            "/.ssh",
            "/.ssh/",
            ".ssh/id_rsa",
            "../.ssh/id_rsa",
            "/.ssh/id_rsa/",
            "/.env/",
            "/etc/shadow/",
            "/etc/shadow//",
            "/etc//shadow",
            "/etc/./shadow",
            "/etc/../etc/shadow",
            "/run/secrets",
            "/run/secrets/",
            "/run",
            "/var/run/secrets/kubernetes.io",
            "/.config/gcloud/legacy_credentials",
            "x/.config/gcloud/legacy_credentials/y",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
        out.push(b"/home/\xff\xfe/.ssh/id_rsa".to_vec());
        out.push(b"/home/a/.ssh/\xffid_rsa".to_vec());
        out.push(b"/etc/\xc3(/\n/.env\r".to_vec());
        out.push(format!("/{}", "a".repeat(4095)).into_bytes());
        out.push(format!("/{}.key", "a".repeat(4091)).into_bytes());
        out.push(format!("/{}/.env", "a".repeat(4090)).into_bytes());
        out.push("/a".repeat(1000).into_bytes());
        out.push(format!("{}/.ssh/id_rsa", "/a".repeat(1000)).into_bytes());
        out.push(format!("{}/.ssh/id_rsa", "/..".repeat(1000)).into_bytes());
        out.push("/".repeat(1000).into_bytes());
        out.push(format!("/etc{}", "/".repeat(1000)).into_bytes());
        out.push(format!("{}/legacy_credentials/x", "/.config/gcloud".repeat(300)).into_bytes());
        out
    }

    /// Operator rules with the wild patterns the built-ins lack.
    fn wild_rules() -> Vec<ClassRule> {
        vec![
            rule("anywhere_x", &["**/x/**"]),
            rule("deep_key", &["/a/**/b/*.key", "**/.ssh/**/id_*"]),
            rule("ssh_key", &["/opt/keys/*", "**/keys/[!.]*"]),
            rule("root_glob", &["/*/x*", "/[a-c]/**"]),
            rule("root", &["/"]),
            rule("question", &["**/?", "**/??/*"]),
            rule("middle", &["/**/secret/**/*", "**/q.\\*"]),
            rule("everything_hidden", &["**/.*"]),
            rule("everything", &["**"]),
        ]
    }

    fn assert_agree(classifier: &Classifier, paths: &[Vec<u8>]) -> usize {
        let mut classified = 0;
        for path in paths {
            let fast = classifier.classify(path);
            assert_eq!(
                fast,
                classifier.classify_slowly(path),
                "{:?}",
                String::from_utf8_lossy(path)
            );
            classified += usize::from(fast.is_some());
        }
        classified
    }

    fn corpus(rules: &[ClassRule], next: &mut impl FnMut(usize) -> usize) -> Vec<Vec<u8>> {
        let mut paths = hostile();
        for rule in rules {
            for pattern in &rule.patterns {
                for path in instances(pattern, next) {
                    paths.extend(variants(&path));
                }
            }
        }
        paths
    }

    #[test]
    fn built_ins_agree_with_trying_every_pattern() {
        let classifier = Classifier::new(&[]).unwrap();
        let paths = corpus(&Classifier::builtin_rules(), &mut rng(1));
        let classified = assert_agree(&classifier, &paths);
        // The corpus must hit every class and miss too, or it proves nothing.
        for rule in Classifier::builtin_rules() {
            assert!(
                paths
                    .iter()
                    .any(|p| classifier.classify(p) == Some(rule.class.as_str())),
                "no path of class {}",
                rule.class
            );
        }
        assert!(classified > paths.len() / 4 && classified < paths.len() * 3 / 4);
    }

    #[test]
    fn wild_operator_rules_agree_with_trying_every_pattern() {
        let rules = wild_rules();
        let classifier = Classifier::new(&rules).unwrap();
        let mut next = rng(2);
        let mut all = Classifier::builtin_rules();
        all.extend(rules.iter().cloned());
        let paths = corpus(&all, &mut next);
        assert_agree(&classifier, &paths);
        for rule in &rules[..rules.len() - 1] {
            assert!(
                paths
                    .iter()
                    .any(|p| classifier.classify(p) == Some(rule.class.as_str())),
                "no path of class {}",
                rule.class
            );
        }
        // Each wild rule alone (no later catch-all to hide a miss).
        for rule in &rules {
            let alone = Classifier::new(std::slice::from_ref(rule)).unwrap();
            assert_agree(&alone, &paths);
        }
    }

    #[test]
    fn random_operator_rules_agree_with_trying_every_pattern() {
        let mut next = rng(3);
        let segments = [
            "**", "*", "a", "b", "a*", "*b", "?", "[ab]", "[!a]", "*a*", "a?b", ".ssh", "id_*",
            "*.key", "etc", "x",
        ];
        let names = [
            "a", "b", "ab", "ba", "aab", "x", ".ssh", "id_rsa", "k.key", "etc", "",
        ];
        let mut classified = 0;
        for round in 0..300 {
            let rules: Vec<ClassRule> = (0..=next(4))
                .map(|r| {
                    let patterns: Vec<String> = (0..=next(3))
                        .map(|_| {
                            let mut p = if next(2) == 0 { "" } else { "**" }.to_owned();
                            for _ in 0..=next(5) {
                                p.push('/');
                                p.push_str(segments[next(segments.len())]);
                            }
                            p
                        })
                        .collect();
                    ClassRule {
                        class: format!("r{round}_{r}"),
                        patterns,
                    }
                })
                .collect();
            let classifier = Classifier::new(&rules).unwrap();
            let mut paths = Vec::new();
            for _ in 0..100 {
                let mut path = if next(4) == 0 { "" } else { "/" }.to_owned();
                for i in 0..next(7) {
                    if i > 0 {
                        path.push('/');
                    }
                    path.push_str(names[next(names.len())]);
                }
                paths.push(path.into_bytes());
            }
            for rule in &rules {
                for pattern in &rule.patterns {
                    paths.extend(instances(pattern, &mut next));
                }
            }
            classified += assert_agree(&classifier, &paths);
        }
        assert!(classified > 10_000, "too few matches to tell: {classified}");
    }

    #[test]
    fn every_built_in_pattern_is_indexed() {
        // A pattern the index cannot narrow is tried on every path: a new built-in must not
        // be one.
        assert_eq!(Classifier::new(&[]).unwrap().index.unindexed(), 0);
        let wild = Classifier::new(&[rule("w", &["**/?", "/**/?", "/*/?"])]).unwrap();
        // `/*/?` is narrowed by its root, which must be the third component from the end.
        assert_eq!(wild.index.unindexed(), 2);
    }

    #[test]
    fn hostile_paths_stay_cheap() {
        let classifier = Classifier::new(&wild_rules()).unwrap();
        let start = Instant::now();
        for path in hostile() {
            black_box(classifier.classify(&path));
        }
        let took = start.elapsed();
        assert!(
            took < crate::test_budget(Duration::from_millis(50)),
            "took {took:?}"
        );
    }
}
