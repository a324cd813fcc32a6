//! The daemon's layout as a newcomer reads it: every module says what it owns (a `//!`
//! comment first), and imports go one way, between folders and between files (no cycles), so
//! each stage can be read and changed without the ones that use it.
//!
//! The graph is read from the sources: every `crate::…` and `super::…` path outside a
//! module's tests, grouped `use crate::{a, b::c}` forms included, resolved to the longest
//! module prefix that exists. A module's use of its own submodules (or theirs of it) is not
//! an edge: a folder is one unit.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Module = Vec<String>;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `kernel/loader.rs` → `[kernel, loader]`, `record/mod.rs` → `[record]`, `lib.rs` → `[]`.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(root)
        .expect("under src")
        .with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The source without comments and without the inline `mod tests` (tests may use anything).
fn code_of(source: &str) -> String {
    let body = match source.find("#[cfg(test)]\nmod tests") {
        Some(i) => &source[..i],
        None => source,
    };
    body.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts at `crate::` or `super::`, with `{…}` groups expanded one level.
fn paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut starts: Vec<(usize, bool)> = code
        .match_indices("crate::")
        .map(|(i, _)| (i, true))
        .chain(code.match_indices("super::").map(|(i, _)| (i, false)))
        .collect();
    starts.sort_unstable();
    for (at, anchor) in starts {
        let len = "crate::".len();
        // A whole word: not `mycrate::`.
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let rest = &code[at + len..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push((anchor, segments(&item)));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            out.push((anchor, segments(rest)));
        }
    }
    out
}

/// The leading `a::b::c` of `text`, as segments.
fn segments(text: &str) -> Vec<String> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .filter(|s| !s.is_empty() && *s != "self")
        .map(str::to_owned)
        .collect()
}

struct Graph {
    files: BTreeMap<Module, PathBuf>,
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    source_files(&root, &mut sources);
    let files: BTreeMap<Module, PathBuf> = sources
        .into_iter()
        .map(|f| (module_of(&root, &f), f))
        .collect();
    let resolve = |base: &[String], segs: &[String]| -> Option<Module> {
        (1..=segs.len()).rev().find_map(|k| {
            let m: Module = base.iter().chain(&segs[..k]).cloned().collect();
            files.contains_key(&m).then_some(m)
        })
    };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &files {
        if module.is_empty() {
            continue;
        }
        let source = fs::read_to_string(file).expect("readable source");
        for (is_crate, segs) in paths(&code_of(&source)) {
            let base: &[String] = if is_crate {
                &[]
            } else {
                &module[..module.len() - 1]
            };
            let Some(target) = resolve(base, &segs) else {
                continue;
            };
            let nested = target.starts_with(module) || module.starts_with(&target);
            if !nested {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Graph { files, edges }
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// The graph with modules named by `name` (edges inside one name dropped).
fn grouped(g: &Graph, name: impl Fn(&Module) -> String) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &g.edges {
        for to in targets {
            let (a, b) = (name(from), name(to));
            if a != b {
                out.entry(a).or_default().insert(b);
            }
        }
    }
    out
}

#[test]
fn no_import_cycles_between_folders() {
    let g = graph();
    let folders = grouped(&g, |m| m[0].clone());
    assert!(
        folders.contains_key("pipeline"),
        "the graph was read: {folders:?}"
    );
    assert_eq!(cycles(&folders), Vec::<Vec<String>>::new(), "{folders:#?}");
}

#[test]
fn no_import_cycles_between_modules() {
    let g = graph();
    let modules = grouped(&g, |m| m.join("::"));
    assert!(modules.len() > 30, "the graph was read: {modules:?}");
    assert_eq!(cycles(&modules), Vec::<Vec<String>>::new(), "{modules:#?}");
}

#[test]
fn the_checker_finds_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a", "d"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    let parsed = paths("use crate::{a::b, c::{d, e}};\nlet x = super::f::g(crate::h);");
    assert_eq!(
        parsed,
        vec![
            (true, vec!["a".to_owned(), "b".to_owned()]),
            (true, vec!["c".to_owned()]),
            (false, vec!["f".to_owned(), "g".to_owned()]),
            (true, vec!["h".to_owned()]),
        ]
    );
}

#[test]
fn every_module_says_what_it_owns() {
    let g = graph();
    let undocumented: Vec<_> = g
        .files
        .values()
        .filter(|f| {
            !fs::read_to_string(f)
                .expect("readable source")
                .starts_with("//!")
        })
        .collect();
    assert!(undocumented.is_empty(), "no `//!` first: {undocumented:?}");
}
