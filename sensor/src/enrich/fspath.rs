//! File paths of file syscalls: turns the path a process passed to `open`/`openat`/`rename`/
//! `unlink`/`chmod`/... into the absolute, normalised path the daemon reports, and gives it a
//! `file.class` hint when it is a well-known sensitive location (SSH keys, cloud credentials,
//! Kubernetes tokens, `/etc/shadow`, ...).
//!
//! The kernel programs report the path exactly as the process passed it (raw bytes; possibly
//! relative, with `.`, `..` and `//`; possibly hostile: invalid UTF-8, newlines, 4 KiB long)
//! plus the absolute path of the base directory (the cwd, or the directory behind `dirfd`).
//! Normalising is left to user space: it costs nothing there, and classification needs one
//! canonical spelling, so that `/root//.ssh/./id_rsa` and `../.ssh/id_rsa` run from `/root/x`
//! both come out as `/root/.ssh/id_rsa` and classify alike.
//!
//! Paths are bytes throughout (Linux paths are bytes): nothing is decoded, and every byte that
//! is not a separator or a dropped `.`/`..` component goes through unchanged, invalid UTF-8 and
//! control bytes included. Escaping them for output is the sink's job.
//!
//! # Glob syntax
//!
//! A [`ClassRule`] pattern is matched against the **whole** path, byte for byte and
//! case-sensitively. `/` always separates components: it cannot be escaped, and no wildcard or
//! byte class matches it.
//!
//! | syntax | matches |
//! | --- | --- |
//! | `*` | any run of bytes (also none) within one component; leading dots too, unlike a shell |
//! | `?` | exactly one byte within one component |
//! | `**` | as a whole component: zero or more whole components (`/a/**` also matches `/a`); anywhere else it is just `*` |
//! | `[abc]`, `[a-z]` | one byte in the set; `]` first in the set and `-` first or last are literal |
//! | `[!x]`, `[^x]` | one byte not in the set |
//! | `\c` | the byte `c` literally (also inside `[...]`) |
//! | anything else | itself |
//!
//! Classes are byte classes: a multi-byte UTF-8 character inside `[...]` adds each of its bytes.
//! A pattern must be absolute (start with `/`) or start with the component `**` (so `**/.env`
//! matches a `.env` in any directory). It may not contain empty components (`//`, a trailing
//! `/`) or `.`/`..` components, which could never match a normalised path.
//!
//! A relative path (what [`absolute`] returns when the base directory was unknown) can only
//! match patterns that start with `**`. That is deliberate: `.ssh/id_rsa` relative to an unknown
//! cwd is still an SSH key.
//!
//! # Rules and their order
//!
//! [`Classifier::classify`] returns the class of the **first** rule with a matching pattern. The
//! built-in rules ([`Classifier::builtin_rules`]) come first, narrower ones before broader ones
//! (that is how `ssh_public_key` keeps `~/.ssh/id_rsa.pub` out of `ssh_key`'s `id_*`, how
//! `gpg_private_key` keeps GnuPG's `<keygrip>.key` files out of `tls_private_key`'s `**/*.key`,
//! and how `kubernetes_token` claims `/run/secrets/kubernetes.io/...` before the generic
//! `credentials` catch-all `/run/secrets/**`). Operator rules from the config come after them,
//! so they add classes but cannot re-class or exempt a built-in location.
//!
//! Notable choices in the built-in table:
//! - `ssh_public_key` exists only so that public keys (`*.pub`) are not reported as `ssh_key`;
//!   it is the one built-in class that marks a location that is not sensitive.
//! - `env_file` covers `.env`, `.env.*` and direnv's `.envrc` (which routinely exports secrets).
//!   `.env.*` also matches committed templates such as `.env.example`; a glob cannot exclude
//!   them, and a false hint is cheaper than a missed `.env.production`.
//! - `shadow` lists the exact files shadow-utils reads and writes (`/etc/shadow`, its `-`
//!   backup and `+` new copy, the `gshadow` trio, `/etc/security/opasswd`); ad hoc copies such
//!   as `/etc/shadow.bak` are not matched (an operator rule can add them).
//! - `tls_private_key` includes `**/*.key`: on servers that suffix is nearly always a private
//!   key (TLS, Kubernetes PKI). The odd false hit is a GPG public key downloaded as `repo.key`.
//!   `*.pem` is not included: it is mostly certificates.
//! - `cloud_credentials` names the secret files of gcloud and the Azure CLI rather than the
//!   whole `~/.config/gcloud` and `~/.azure` directories, where every invocation writes logs.
//! - Kubernetes service-account files are symlinks into a timestamped `..data` directory, so
//!   their patterns end in `/**`.
//!
//! # Cost
//!
//! Patterns are compiled once, in [`Classifier::new`]. Matching never backtracks more than one
//! level: `**` over components and `*` over bytes are matched with the iterative
//! "remember the last star" algorithm, which is exact for such patterns because every other
//! element consumes exactly one component (or byte). The elements after the last star are
//! checked against the end of the path first, which rejects most paths at once. A match costs
//! at most O(pattern length × path length), with no exponential blow-up on hostile paths.
//!
//! [`Classifier::classify`] runs for every file record, so it does not try every pattern: an
//! index built in [`Classifier::new`] (the `index` module) picks the few patterns a path could
//! match from its leading directories and its last components, and only those are matched.
//! Nothing is allocated per path.

use std::fmt;

mod index;

/// The absolute, lexically normalised form of `path`: joined onto `base` when relative
/// (`base` is an absolute directory path; `None` when the kernel could not tell it, then a
/// relative path is returned normalised but still relative), with empty and `.` components
/// removed, `..` removing the previous component (never going above `/`), repeated slashes
/// collapsed, no trailing slash except for "/" itself. An empty `path` stays empty (the
/// syscall failed with ENOENT; callers handle it).
///
/// This is lexical: `a/link/..` is treated as `a` even if `link` is a symlink, and nothing is
/// looked up on disk. The kernel-resolved path, reported separately, is authoritative when
/// present.
///
/// Details:
/// - An absolute `path` ignores `base`.
/// - A `base` that is not absolute (empty, or something like `(unreachable)/x`) is treated as
///   `None`, rather than inventing a root for it. `base` itself is normalised too.
/// - A relative result keeps the `..` components it cannot resolve (`../x` stays `../x`), and
///   is `.` rather than empty when nothing is left (`a/..`), so that an empty result always
///   means an empty `path`.
/// - Only the components `.` and `..` are special: `...`, `..data` or `.\n` are names.
/// - Linear in the length of the input.
pub fn absolute(base: Option<&[u8]>, path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(path.len() + base.map_or(0, <[u8]>::len) + 1);
    let rooted = if path[0] == b'/' {
        true
    } else if let Some(base) = base.filter(|base| base.first() == Some(&b'/')) {
        push_components(&mut out, true, base);
        true
    } else {
        false
    };
    push_components(&mut out, rooted, path);
    if out.is_empty() {
        out.push(if rooted { b'/' } else { b'.' });
    }
    out
}

/// Appends the components of `input` to `out`, resolving `.` and `..`.
///
/// `out` holds a normalised path without its root: `""` or `/a/b` when `rooted` (the root
/// itself is the empty string), `""`, `a/b` or `../a` when not.
fn push_components(out: &mut Vec<u8>, rooted: bool, input: &[u8]) {
    for component in input.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." if rooted || !(out.is_empty() || out == b".." || out.ends_with(b"/..")) => {
                // Drop the last component; at the root there is none (`/..` is `/`).
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                // A name, or a `..` a relative path has to keep.
                if rooted || !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
}

/// One class rule: a name and the glob patterns of the paths it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRule {
    /// The `file.class` reported for a matching path; one or more of `[a-z0-9_]`.
    pub class: String,
    /// Glob patterns (see the [module docs](self)); the rule matches when any of them does.
    pub patterns: Vec<String>,
}

/// Why a [`ClassRule`] was rejected by [`Classifier::new`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("file class name {class:?} is invalid: use one or more of a-z, 0-9 and _")]
    BadClassName { class: String },
    #[error("file class {class:?} has no patterns")]
    NoPatterns { class: String },
    #[error("file class {class:?} has an empty pattern")]
    Empty { class: String },
    #[error(
        "file class {class:?}: pattern {pattern:?} is not absolute: start it with `/` or `**/`"
    )]
    NotAbsolute { class: String, pattern: String },
    #[error(
        "file class {class:?}: pattern {pattern:?} has an empty component (`//` or a trailing `/`)"
    )]
    EmptyComponent { class: String, pattern: String },
    #[error(
        "file class {class:?}: pattern {pattern:?} has a `.` or `..` component, which never matches a normalised path"
    )]
    DotComponent { class: String, pattern: String },
    #[error("file class {class:?}: pattern {pattern:?} has a `[` without its closing `]`")]
    UnterminatedClass { class: String, pattern: String },
    #[error("file class {class:?}: pattern {pattern:?} has a range whose end is below its start")]
    ReversedRange { class: String, pattern: String },
    #[error("file class {class:?}: pattern {pattern:?} has a `\\` with nothing to escape")]
    TrailingEscape { class: String, pattern: String },
}

/// The built-in rules, in the order they are checked. See the module docs for the choices.
const BUILTIN: &[(&str, &[&str])] = &[
    // Before `ssh_key`, whose `id_*` would otherwise claim `id_*.pub`.
    (
        "ssh_public_key",
        &["**/.ssh/*.pub", "/etc/ssh/ssh_host_*_key.pub"],
    ),
    (
        "ssh_key",
        &[
            "**/.ssh/id_*",
            "**/.ssh/*_key",
            // AWS EC2 key pairs are usually kept as `~/.ssh/<name>.pem`.
            "**/.ssh/*.pem",
            "/etc/ssh/ssh_host_*_key",
        ],
    ),
    (
        "ssh_authorized_keys",
        &["**/.ssh/authorized_keys", "**/.ssh/authorized_keys2"],
    ),
    (
        "shadow",
        &[
            "/etc/shadow",
            "/etc/shadow-",
            "/etc/shadow+",
            "/etc/gshadow",
            "/etc/gshadow-",
            "/etc/gshadow+",
            "/etc/security/opasswd",
        ],
    ),
    ("sudoers", &["/etc/sudoers", "/etc/sudoers.d/*"]),
    // Before `credentials`' `/run/secrets/**`.
    (
        "kubernetes_token",
        &[
            "/var/run/secrets/kubernetes.io/serviceaccount/**",
            "/run/secrets/kubernetes.io/serviceaccount/**",
            // The same token as the node sees it.
            "/var/lib/kubelet/pods/*/volumes/kubernetes.io~projected/kube-api-access-*/**",
        ],
    ),
    (
        "kubernetes_secret",
        &["/var/lib/kubelet/pods/*/volumes/kubernetes.io~secret/**"],
    ),
    (
        "kubeconfig",
        &[
            "**/.kube/config",
            // admin.conf, super-admin.conf, kubelet.conf, controller-manager.conf, scheduler.conf
            "/etc/kubernetes/*.conf",
            "/etc/rancher/k3s/k3s.yaml",
            "/etc/rancher/rke2/rke2.yaml",
        ],
    ),
    (
        "cloud_credentials",
        &[
            "**/.aws/credentials",
            "**/.aws/config",
            "**/.aws/sso/cache/*",
            "**/.aws/cli/cache/*",
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/**",
            "/run/secrets/eks.amazonaws.com/serviceaccount/**",
            "**/.config/gcloud/credentials.db",
            "**/.config/gcloud/access_tokens.db",
            "**/.config/gcloud/application_default_credentials.json",
            "**/.config/gcloud/legacy_credentials/**",
            "**/.azure/msal_token_cache.*",
            "**/.azure/service_principal_entries.*",
            "**/.azure/accessTokens.json",
            "/var/run/secrets/azure/tokens/*",
            "/run/secrets/azure/tokens/*",
            "**/.oci/config",
            "**/.oci/*.pem",
        ],
    ),
    ("env_file", &["**/.env", "**/.env.*", "**/.envrc"]),
    // Before `tls_private_key`: GnuPG names its private keys `<keygrip>.key`.
    (
        "gpg_private_key",
        &["**/.gnupg/private-keys-v1.d/*", "**/.gnupg/secring.gpg"],
    ),
    (
        "tls_private_key",
        &[
            "/etc/ssl/private/**",
            "/etc/pki/tls/private/**",
            "/etc/letsencrypt/live/*/privkey*.pem",
            "/etc/letsencrypt/archive/*/privkey*.pem",
            "**/*.key",
        ],
    ),
    // Generic, and last: the `/run/secrets/**` catch-all (Docker and other mounted secrets)
    // must not shadow the specific classes above.
    (
        "credentials",
        &[
            "**/.netrc",
            "**/.pgpass",
            "**/.my.cnf",
            "**/.git-credentials",
            "**/.docker/config.json",
            "**/.config/containers/auth.json",
            "/run/user/*/containers/auth.json",
            "/run/containers/*/auth.json",
            "**/.npmrc",
            "**/.pypirc",
            "**/.vault-token",
            "**/.config/gh/hosts.yml",
            "**/.terraform.d/credentials.tfrc.json",
            "/var/run/secrets/**",
            "/run/secrets/**",
        ],
    ),
];

/// Classifies absolute paths into sensitive-location classes.
#[derive(Clone, Debug)]
pub struct Classifier {
    rules: Vec<CompiledRule>,
    /// Every pattern's (rule, pattern) position, by pattern number: rule order, then pattern
    /// order, so that a lower number is a higher priority.
    numbered: Vec<(u32, u32)>,
    index: index::Index,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    class: String,
    patterns: Vec<Pattern>,
}

impl Classifier {
    /// The built-in rules (below) followed by `extra` (operator rules from config, checked after
    /// the built-ins; an operator rule may reuse a built-in class name).
    pub fn new(extra: &[ClassRule]) -> Result<Self, PatternError> {
        let builtin = Self::builtin_rules();
        let rules = builtin
            .iter()
            .chain(extra)
            .map(CompiledRule::new)
            .collect::<Result<Vec<_>, _>>()?;
        let numbered: Vec<(u32, u32)> = (0u32..)
            .zip(&rules)
            .flat_map(|(r, rule)| (0u32..).zip(&rule.patterns).map(move |(p, _)| (r, p)))
            .collect();
        let index = index::Index::new(
            numbered
                .iter()
                .map(|&(r, p)| &rules[r as usize].patterns[p as usize]),
        );
        Ok(Self {
            rules,
            numbered,
            index,
        })
    }

    /// The built-in rules, for docs and tests.
    pub fn builtin_rules() -> Vec<ClassRule> {
        BUILTIN
            .iter()
            .map(|(class, patterns)| ClassRule {
                class: (*class).to_owned(),
                patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            })
            .collect()
    }

    /// The class of the first rule whose pattern matches the whole path, if any.
    ///
    /// `path` should be what [`absolute`] returns; it is matched as given, not normalised
    /// again. An empty path has no class.
    pub fn classify(&self, path: &[u8]) -> Option<&str> {
        if path.is_empty() {
            return None;
        }
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let pattern = |number: u32| {
            let (r, p) = self.numbered[number as usize];
            (&self.rules[r as usize], p as usize)
        };
        let first = self.index.first_match(trimmed, |number| {
            let (rule, p) = pattern(number);
            rule.patterns[p].matches_path(trimmed)
        })?;
        Some(pattern(first).0.class.as_str())
    }

    /// What `classify` did before the index: every pattern of every rule in order, on the
    /// path split into a vector. The reference the index is tested against.
    #[cfg(test)]
    fn classify_slowly(&self, path: &[u8]) -> Option<&str> {
        if path.is_empty() {
            return None;
        }
        // "/a/b" is ["", "a", "b"]; "/" is [""], so `/*` does not match the root.
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        self.rules
            .iter()
            .find(|rule| rule.patterns.iter().any(|p| p.matches(&components)))
            .map(|rule| rule.class.as_str())
    }
}

/// One compiled path glob (the syntax above), for matchers outside the classifier, such as
/// agent selectors over executables and cgroup paths.
#[derive(Clone, Debug)]
pub struct PathGlob {
    pattern: Pattern,
}

impl PathGlob {
    /// Compiles an absolute glob; the error says what is wrong with it.
    pub fn new(glob: &str) -> Result<Self, String> {
        Pattern::compile(glob)
            .map(|pattern| Self { pattern })
            .map_err(|flaw| match flaw {
                Flaw::Empty => "the pattern is empty".to_owned(),
                Flaw::NotAbsolute => {
                    "the pattern is not absolute: start it with `/` or `**/`".to_owned()
                }
                Flaw::EmptyComponent => {
                    "the pattern has an empty component (`//` or a trailing `/`)".to_owned()
                }
                Flaw::DotComponent => "a `.` or `..` component can never match".to_owned(),
                Flaw::UnterminatedClass => "a `[` is not closed".to_owned(),
                Flaw::ReversedRange => "a range in `[...]` is reversed".to_owned(),
                Flaw::TrailingEscape => "the pattern ends in `\\`".to_owned(),
            })
    }

    /// Whether the glob matches the whole absolute `path`.
    pub fn matches(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return false;
        }
        self.pattern
            .matches_path(path.strip_suffix(b"/").unwrap_or(path))
    }

    /// The glob's fixed leading directories (`/opt/a` for `/opt/a/*/bin`), where a search for
    /// its matches can start.
    pub fn literal_prefix(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for step in self.pattern.steps.iter().skip(1) {
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
        self.pattern
            .steps
            .iter()
            .all(|s| matches!(s, Step::One(Segment::Literal(_))))
    }
}

impl CompiledRule {
    fn new(rule: &ClassRule) -> Result<Self, PatternError> {
        let class = &rule.class;
        let valid_name = !class.is_empty()
            && class
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name {
            return Err(PatternError::BadClassName {
                class: class.clone(),
            });
        }
        if rule.patterns.is_empty() {
            return Err(PatternError::NoPatterns {
                class: class.clone(),
            });
        }
        let patterns = rule
            .patterns
            .iter()
            .map(|pattern| Pattern::compile(pattern).map_err(|flaw| flaw.error(class, pattern)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            class: class.clone(),
            patterns,
        })
    }
}

/// What is wrong with a pattern, before the rule's context is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    Empty,
    NotAbsolute,
    EmptyComponent,
    DotComponent,
    UnterminatedClass,
    ReversedRange,
    TrailingEscape,
}

impl Flaw {
    fn error(self, class: &str, pattern: &str) -> PatternError {
        let (class, pattern) = (class.to_owned(), pattern.to_owned());
        match self {
            Flaw::Empty => PatternError::Empty { class },
            Flaw::NotAbsolute => PatternError::NotAbsolute { class, pattern },
            Flaw::EmptyComponent => PatternError::EmptyComponent { class, pattern },
            Flaw::DotComponent => PatternError::DotComponent { class, pattern },
            Flaw::UnterminatedClass => PatternError::UnterminatedClass { class, pattern },
            Flaw::ReversedRange => PatternError::ReversedRange { class, pattern },
            Flaw::TrailingEscape => PatternError::TrailingEscape { class, pattern },
        }
    }
}

/// One element of a sequence pattern: something that matches exactly one element of the
/// subject, or a star that matches any run of them. Used twice: components over a path
/// (`**` is the star), and bytes over a component (`*` is the star).
#[derive(Clone, Debug)]
enum Step<T> {
    One(T),
    Star,
}

/// A compiled pattern: its components, `**` as [`Step::Star`].
#[derive(Clone, Debug)]
struct Pattern {
    steps: Box<[Step<Segment>]>,
}

/// One pattern component other than `**`.
#[derive(Clone, Debug)]
enum Segment {
    /// No wildcards (after unescaping): compared as a whole.
    Literal(Box<[u8]>),
    Glob(Box<[Step<ByteToken>]>),
}

/// One byte-matching element of a component glob.
#[derive(Clone, Debug)]
enum ByteToken {
    Literal(u8),
    /// `?`
    Any,
    /// `[...]`, negation already applied.
    Set(ByteSet),
}

/// A set of bytes, as a 256-bit bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

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

impl Pattern {
    fn compile(pattern: &str) -> Result<Self, Flaw> {
        let bytes = pattern.as_bytes();
        if bytes.is_empty() {
            return Err(Flaw::Empty);
        }
        if bytes == b"/" {
            // Only the root, which `classify` splits into [""].
            return Ok(Self {
                steps: Box::new([Step::One(Segment::Literal(Box::new([])))]),
            });
        }
        let absolute = bytes[0] == b'/';
        if !(absolute || bytes == b"**" || bytes.starts_with(b"**/")) {
            return Err(Flaw::NotAbsolute);
        }
        let mut steps: Vec<Step<Segment>> = Vec::new();
        for (index, component) in bytes.split(|&b| b == b'/').enumerate() {
            if component.is_empty() {
                if index == 0 {
                    // The root of an absolute pattern, matching the path's leading "".
                    steps.push(Step::One(Segment::Literal(Box::new([]))));
                    continue;
                }
                return Err(Flaw::EmptyComponent);
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

    /// Whether the pattern matches a path split at its slashes (the reference for
    /// [`Self::matches_path`]).
    #[cfg(test)]
    fn matches(&self, components: &[&[u8]]) -> bool {
        wildmatch(&self.steps, components, |segment, component| {
            segment.matches(component)
        })
    }

    /// Whether the pattern matches `path`, a non-empty path trimmed of one trailing `/`:
    /// "/a/b" is the components "", "a", "b"; "" (the root) is [""], so `/*` does not match
    /// the root.
    ///
    /// [`wildmatch`] over components, walked in place rather than split into a vector: the
    /// subject is `Some(bytes)` for the components `bytes.split('/')`, `None` for none.
    fn matches_path(&self, path: &[u8]) -> bool {
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
fn same(a: &[u8], b: &[u8]) -> bool {
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
fn split_first(components: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find_slash(components) {
        Some(slash) => (&components[..slash], Some(&components[slash + 1..])),
        None => (components, None),
    }
}

/// The last component of `components` and the ones before it (`None` when it was the only one).
fn split_last(components: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match rfind_slash(components) {
        Some(slash) => (Some(&components[..slash]), &components[slash + 1..]),
        None => (None, components),
    }
}

impl Segment {
    /// Compiles one non-empty pattern component; `**` becomes [`Step::Star`].
    fn compile(component: &[u8]) -> Result<Step<Self>, Flaw> {
        if component == b"**" {
            return Ok(Step::Star);
        }
        let mut tokens: Vec<Step<ByteToken>> = Vec::new();
        let mut i = 0;
        while let Some(&b) = component.get(i) {
            i += 1;
            let token = match b {
                b'*' => {
                    // `**` inside a component, or `***`, is `*`.
                    if !matches!(tokens.last(), Some(Step::Star)) {
                        tokens.push(Step::Star);
                    }
                    continue;
                }
                b'?' => ByteToken::Any,
                b'\\' => {
                    let &escaped = component.get(i).ok_or(Flaw::TrailingEscape)?;
                    i += 1;
                    ByteToken::Literal(escaped)
                }
                b'[' => {
                    let (set, used) = parse_byte_class(&component[i..])?;
                    i += used;
                    ByteToken::Set(set)
                }
                _ => ByteToken::Literal(b),
            };
            tokens.push(Step::One(token));
        }
        let literal: Option<Vec<u8>> = tokens
            .iter()
            .map(|token| match token {
                Step::One(ByteToken::Literal(b)) => Some(*b),
                _ => None,
            })
            .collect();
        Ok(Step::One(match literal {
            Some(literal) if literal == b"." || literal == b".." => {
                return Err(Flaw::DotComponent);
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
fn parse_byte_class(s: &[u8]) -> Result<(ByteSet, usize), Flaw> {
    let next = |i: &mut usize| -> Result<u8, Flaw> {
        let b = *s.get(*i).ok_or(Flaw::UnterminatedClass)?;
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
                return Err(Flaw::ReversedRange);
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

impl fmt::Display for ClassRule {
    /// `class: pattern, pattern, ...`, as in the docs' rule table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.patterns.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn abs(base: Option<&str>, path: &str) -> String {
        String::from_utf8(absolute(base.map(str::as_bytes), path.as_bytes())).unwrap()
    }

    // ---- absolute ----

    #[test]
    fn relative_paths_join_the_base() {
        assert_eq!(
            abs(Some("/home/alice"), "docs/a.txt"),
            "/home/alice/docs/a.txt"
        );
        assert_eq!(abs(Some("/"), "etc/passwd"), "/etc/passwd");
        assert_eq!(abs(Some("/home/alice/"), "x"), "/home/alice/x");
        assert_eq!(abs(Some("/srv/app"), ".env"), "/srv/app/.env");
    }

    #[test]
    fn absolute_paths_ignore_the_base() {
        assert_eq!(abs(Some("/home/alice"), "/etc/shadow"), "/etc/shadow");
        assert_eq!(abs(None, "/etc/shadow"), "/etc/shadow");
    }

    #[test]
    fn dot_dot_never_goes_above_the_root() {
        assert_eq!(abs(None, "/.."), "/");
        assert_eq!(abs(None, "/../..//etc"), "/etc");
        assert_eq!(abs(Some("/"), "../../x"), "/x");
        assert_eq!(abs(None, "/etc/../../../shadow"), "/shadow");
    }

    #[test]
    fn dot_dot_beyond_the_base_climbs_into_it_and_stops_at_the_root() {
        assert_eq!(
            abs(Some("/home/alice"), "../bob/.ssh/id_rsa"),
            "/home/bob/.ssh/id_rsa"
        );
        assert_eq!(
            abs(Some("/home/alice"), "../../../../etc/shadow"),
            "/etc/shadow"
        );
        assert_eq!(abs(Some("/home/alice"), ".."), "/home");
        assert_eq!(abs(Some("/home/alice"), "../.."), "/");
    }

    #[test]
    fn dot_components_are_dropped() {
        assert_eq!(abs(Some("/srv"), "./app/./.env"), "/srv/app/.env");
        assert_eq!(abs(Some("/srv"), "."), "/srv");
        assert_eq!(abs(Some("/srv"), "./"), "/srv");
        assert_eq!(abs(None, "/./etc/./ssh/."), "/etc/ssh");
    }

    #[test]
    fn repeated_and_trailing_slashes_collapse() {
        assert_eq!(abs(None, "//etc///passwd"), "/etc/passwd");
        assert_eq!(abs(None, "/etc/ssh/"), "/etc/ssh");
        assert_eq!(abs(None, "/etc/ssh//"), "/etc/ssh");
        assert_eq!(abs(None, "/"), "/");
        assert_eq!(abs(None, "///"), "/");
        assert_eq!(abs(Some("/srv"), "app//"), "/srv/app");
    }

    #[test]
    fn the_base_is_normalised_too() {
        assert_eq!(abs(Some("/home//alice/./"), "x"), "/home/alice/x");
        assert_eq!(abs(Some("/home/alice/.."), "x"), "/home/x");
    }

    #[test]
    fn without_a_base_relative_paths_stay_relative() {
        assert_eq!(abs(None, "a/./b/../c/"), "a/c");
        assert_eq!(abs(None, "./.ssh//id_rsa"), ".ssh/id_rsa");
        assert_eq!(abs(None, "../x"), "../x");
        assert_eq!(abs(None, "../../x/../y"), "../../y");
        assert_eq!(abs(None, "a/../.."), "..");
        assert_eq!(abs(None, "a/../../b/.."), "..");
        assert_eq!(abs(None, "a/.."), ".");
        assert_eq!(abs(None, "."), ".");
        assert_eq!(abs(None, "./"), ".");
    }

    #[test]
    fn a_base_that_is_not_absolute_counts_as_unknown() {
        assert_eq!(abs(Some(""), "a/b"), "a/b");
        assert_eq!(abs(Some("(unreachable)/srv"), "../x"), "../x");
    }

    #[test]
    fn an_empty_path_stays_empty() {
        assert_eq!(absolute(None, b""), b"");
        assert_eq!(absolute(Some(b"/home/alice"), b""), b"");
    }

    #[test]
    fn only_dot_and_dot_dot_are_special() {
        assert_eq!(abs(None, "/a/.../b"), "/a/.../b");
        assert_eq!(
            abs(
                Some("/var/run/secrets/kubernetes.io/serviceaccount"),
                "..data/token"
            ),
            "/var/run/secrets/kubernetes.io/serviceaccount/..data/token"
        );
        assert_eq!(abs(None, "/a/.b/..c/b.."), "/a/.b/..c/b..");
    }

    #[test]
    fn hostile_bytes_are_preserved_exactly() {
        let path = b"x/\xff\xfe\n/./\x1b[31m/../\xc3(/y\r";
        assert_eq!(
            absolute(Some(b"/tmp/\x80base"), path),
            b"/tmp/\x80base/x/\xff\xfe\n/\xc3(/y\r".to_vec()
        );
        assert_eq!(absolute(None, b"/\n/..\n/\xff"), b"/\n/..\n/\xff".to_vec());
    }

    #[test]
    fn four_kib_paths() {
        let deep = "a/".repeat(2048);
        let out = abs(Some("/base"), &deep);
        assert_eq!(out.len(), "/base".len() + 2 * 2048);
        assert!(out.starts_with("/base/a/a/") && out.ends_with("/a"));

        assert_eq!(abs(Some("/home/alice"), &"../".repeat(1365)), "/");
        assert_eq!(
            abs(None, &"../".repeat(1365)),
            "../".repeat(1365).trim_end_matches('/')
        );
        assert_eq!(abs(None, &"a/../".repeat(819)), ".");

        let long_name = "b".repeat(4096);
        assert_eq!(abs(Some("/"), &long_name), format!("/{long_name}"));
        assert_eq!(abs(None, &"/".repeat(4096)), "/");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        let cases = [
            (Some("/home/alice"), "../bob//x/./y/"),
            (None, "../../a/./b/.."),
            (None, "/a/b/../../.."),
            (Some("/"), "."),
            (None, "a/.."),
        ];
        for (base, path) in cases {
            let once = abs(base, path);
            assert_eq!(abs(None, &once), once, "{base:?} {path:?}");
            assert_eq!(abs(base, &once), once, "{base:?} {path:?}");
        }
    }

    // ---- glob ----

    fn pattern(p: &str) -> Pattern {
        Pattern::compile(p).unwrap_or_else(|flaw| panic!("{p:?}: {flaw:?}"))
    }

    /// Whether `p` matches `path`, split as `classify` splits it.
    fn m(p: &str, path: &str) -> bool {
        matches_bytes(&pattern(p), path.as_bytes())
    }

    fn matches_bytes(pattern: &Pattern, path: &[u8]) -> bool {
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        let in_place = pattern.matches_path(trimmed);
        assert_eq!(in_place, pattern.matches(&components), "{path:?}");
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
        let err = |p: &str| Pattern::compile(p).unwrap_err();
        assert_eq!(err(""), Flaw::Empty);
        assert_eq!(err("etc/shadow"), Flaw::NotAbsolute);
        assert_eq!(err("*/shadow"), Flaw::NotAbsolute);
        assert_eq!(err("**shadow"), Flaw::NotAbsolute);
        assert_eq!(err("/etc//shadow"), Flaw::EmptyComponent);
        assert_eq!(err("/etc/"), Flaw::EmptyComponent);
        assert_eq!(err("**/"), Flaw::EmptyComponent);
        assert_eq!(err("/etc/../shadow"), Flaw::DotComponent);
        assert_eq!(err("**/./x"), Flaw::DotComponent);
        assert_eq!(err("/a/\\.\\."), Flaw::DotComponent);
        assert_eq!(err("/a[bc"), Flaw::UnterminatedClass);
        assert_eq!(err("/a[]"), Flaw::UnterminatedClass);
        assert_eq!(
            err("/a[b/c]"),
            Flaw::UnterminatedClass,
            "`/` ends a component"
        );
        assert_eq!(err("/a[b\\"), Flaw::UnterminatedClass);
        assert_eq!(err("/[z-a]"), Flaw::ReversedRange);
        assert_eq!(err("/a\\"), Flaw::TrailingEscape);
        assert_eq!(err("/a\\/b"), Flaw::TrailingEscape, "`/` cannot be escaped");
        for ok in ["/", "**", "**/x", "/**", "/a.b/..c/...", "/[a-a]"] {
            assert!(Pattern::compile(ok).is_ok(), "{ok:?}");
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

    fn naive_path(pattern: &Pattern, path: &[u8]) -> bool {
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
                    Some((at + len) / 2),
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
            for _ in 0..1 + next(4) {
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

        let classifier = Classifier::new(&[]).unwrap();
        let start = Instant::now();
        for path in [&one_name, &many_names, &mixed] {
            assert_eq!(classifier.classify(path), None);
        }
        let took = start.elapsed();
        assert!(
            took < crate::test_budget(Duration::from_millis(50)),
            "built-ins took {took:?}"
        );
    }

    // ---- Classifier ----

    fn builtin() -> Classifier {
        Classifier::new(&[]).expect("the built-in rules compile")
    }

    const POSITIVE: &[(&str, &str)] = &[
        ("/root/.ssh/id_rsa.pub", "ssh_public_key"),
        ("/home/alice/.ssh/id_ed25519.pub", "ssh_public_key"),
        ("/etc/ssh/ssh_host_ed25519_key.pub", "ssh_public_key"),
        ("/root/.ssh/id_ed25519", "ssh_key"),
        ("/root/.ssh/id_rsa", "ssh_key"),
        ("/home/alice/.ssh/id_ecdsa_sk", "ssh_key"),
        ("/home/alice/.ssh/id_rsa_github", "ssh_key"),
        ("/home/alice/.ssh/deploy_key", "ssh_key"),
        ("/home/alice/.ssh/aws-prod.pem", "ssh_key"),
        ("/etc/ssh/ssh_host_rsa_key", "ssh_key"),
        ("/etc/ssh/ssh_host_ed25519_key", "ssh_key"),
        ("/root/.ssh/authorized_keys", "ssh_authorized_keys"),
        ("/home/alice/.ssh/authorized_keys2", "ssh_authorized_keys"),
        ("/etc/shadow", "shadow"),
        ("/etc/shadow-", "shadow"),
        ("/etc/shadow+", "shadow"),
        ("/etc/gshadow", "shadow"),
        ("/etc/gshadow-", "shadow"),
        ("/etc/security/opasswd", "shadow"),
        ("/etc/sudoers", "sudoers"),
        ("/etc/sudoers.d/90-cloud-init-users", "sudoers"),
        (
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "kubernetes_token",
        ),
        (
            "/run/secrets/kubernetes.io/serviceaccount/token",
            "kubernetes_token",
        ),
        (
            "/run/secrets/kubernetes.io/serviceaccount/..2024_05_01_12_00_00.123456789/token",
            "kubernetes_token",
        ),
        (
            "/var/lib/kubelet/pods/6b1f0c1e-0000-4000-8000-000000000000/volumes/kubernetes.io~projected/kube-api-access-x7k2p/token",
            "kubernetes_token",
        ),
        (
            "/var/lib/kubelet/pods/6b1f0c1e/volumes/kubernetes.io~secret/db-creds/..data/password",
            "kubernetes_secret",
        ),
        ("/home/alice/.kube/config", "kubeconfig"),
        ("/etc/kubernetes/admin.conf", "kubeconfig"),
        ("/etc/rancher/k3s/k3s.yaml", "kubeconfig"),
        ("/home/alice/.aws/credentials", "cloud_credentials"),
        ("/root/.aws/config", "cloud_credentials"),
        (
            "/home/alice/.aws/sso/cache/0123abcd.json",
            "cloud_credentials",
        ),
        (
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            "cloud_credentials",
        ),
        (
            "/home/alice/.config/gcloud/credentials.db",
            "cloud_credentials",
        ),
        (
            "/home/alice/.config/gcloud/application_default_credentials.json",
            "cloud_credentials",
        ),
        (
            "/home/alice/.config/gcloud/legacy_credentials/alice@example.com/adc.json",
            "cloud_credentials",
        ),
        (
            "/home/alice/.azure/msal_token_cache.json",
            "cloud_credentials",
        ),
        (
            "/home/alice/.azure/service_principal_entries.json",
            "cloud_credentials",
        ),
        (
            "/var/run/secrets/azure/tokens/azure-identity-token",
            "cloud_credentials",
        ),
        ("/home/alice/.oci/config", "cloud_credentials"),
        ("/home/alice/.oci/oci_api_key.pem", "cloud_credentials"),
        ("/srv/app/.env", "env_file"),
        ("/srv/app/.env.production", "env_file"),
        ("/srv/app/.env.local", "env_file"),
        ("/srv/app/.envrc", "env_file"),
        ("/etc/ssl/private/ssl-cert-snakeoil.key", "tls_private_key"),
        ("/etc/pki/tls/private/localhost.key", "tls_private_key"),
        (
            "/etc/letsencrypt/live/example.com/privkey.pem",
            "tls_private_key",
        ),
        (
            "/etc/letsencrypt/archive/example.com/privkey3.pem",
            "tls_private_key",
        ),
        ("/etc/kubernetes/pki/ca.key", "tls_private_key"),
        ("/opt/app/certs/server.key", "tls_private_key"),
        ("/home/alice/.netrc", "credentials"),
        ("/home/alice/.pgpass", "credentials"),
        ("/root/.my.cnf", "credentials"),
        ("/home/alice/.git-credentials", "credentials"),
        ("/home/alice/.docker/config.json", "credentials"),
        ("/run/user/1000/containers/auth.json", "credentials"),
        ("/home/alice/.npmrc", "credentials"),
        ("/home/alice/.pypirc", "credentials"),
        ("/home/alice/.vault-token", "credentials"),
        ("/home/alice/.config/gh/hosts.yml", "credentials"),
        (
            "/home/alice/.gnupg/private-keys-v1.d/0123456789ABCDEF.key",
            "gpg_private_key",
        ),
        ("/home/alice/.gnupg/secring.gpg", "gpg_private_key"),
        ("/run/secrets/db_password", "credentials"),
    ];

    #[test]
    fn built_in_classes_match_real_paths() {
        let classifier = builtin();
        for (path, class) in POSITIVE {
            assert_eq!(classifier.classify(path.as_bytes()), Some(*class), "{path}");
        }
    }

    #[test]
    fn every_built_in_class_is_exercised() {
        for rule in Classifier::builtin_rules() {
            assert!(
                POSITIVE.iter().any(|(_, class)| *class == rule.class),
                "no positive example for {}",
                rule.class
            );
        }
    }

    #[test]
    fn near_misses_have_no_class() {
        let classifier = builtin();
        for path in [
            "/srv/app/env",
            "/srv/app/.environment",
            "/srv/app/.env/bin/python",
            "/srv/app/dotenv.py",
            "/home/alice/.ssh/known_hosts",
            "/home/alice/.ssh/config",
            "/home/alice/.ssh",
            "/home/alice/ssh/id_rsa",
            "/home/alice/.ssh/keys/id_rsa",
            "/etc/ssh/sshd_config",
            "/etc/ssh/ssh_host_rsa_key.bak",
            "/etc/shadow.bak",
            "/etc/passwd",
            "/etc/shadowsocks.json",
            "/etc/sudoers.d",
            "/home/alice/.aws/cli/alias",
            "/home/alice/.config/gcloud/logs/2024.01.01/12.00.00.log",
            "/home/alice/.azure/commands/2024-01-01.log",
            "/home/alice/.kube/cache/discovery/x.json",
            "/var/lib/kubelet/pods/x/volumes/kubernetes.io~configmap/cfg/app.yaml",
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/",
            "",
        ] {
            assert_eq!(classifier.classify(path.as_bytes()), None, "{path}");
        }
    }

    #[test]
    fn classify_takes_absolute_output() {
        let classifier = builtin();
        let path = absolute(Some(b"/home/alice/project"), b"../.ssh//./id_rsa");
        assert_eq!(classifier.classify(&path), Some("ssh_key"));
        let unknown_base = absolute(None, b"./.aws/credentials");
        assert_eq!(
            classifier.classify(&unknown_base),
            Some("cloud_credentials")
        );
        assert_eq!(
            classifier.classify(b"/home/\xff/.ssh/id_rsa"),
            Some("ssh_key")
        );
        assert_eq!(classifier.classify(b"/srv/\n/.env"), Some("env_file"));
    }

    #[test]
    fn built_in_rules_are_well_formed() {
        let rules = Classifier::builtin_rules();
        let classes: Vec<&str> = rules.iter().map(|r| r.class.as_str()).collect();
        let position = |c: &str| classes.iter().position(|x| *x == c).unwrap();
        assert!(position("ssh_public_key") < position("ssh_key"));
        assert!(position("kubernetes_token") < position("credentials"));
        assert!(position("cloud_credentials") < position("credentials"));
        assert!(position("gpg_private_key") < position("tls_private_key"));
        let mut unique = classes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), classes.len(), "one rule per built-in class");
        assert_eq!(
            rules[0].to_string(),
            "ssh_public_key: **/.ssh/*.pub, /etc/ssh/ssh_host_*_key.pub"
        );
    }

    fn rule(class: &str, patterns: &[&str]) -> ClassRule {
        ClassRule {
            class: class.to_owned(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn operator_rules_follow_the_built_ins() {
        let classifier = Classifier::new(&[
            rule("app_secret", &["/srv/app/secrets/**", "**/*.secret"]),
            rule("ssh_key", &["/opt/keys/*"]),
            rule("mine", &["/etc/shadow", "/etc/shadow.bak"]),
        ])
        .unwrap();
        assert_eq!(
            classifier.classify(b"/srv/app/secrets/db/password"),
            Some("app_secret")
        );
        assert_eq!(classifier.classify(b"/home/a/x.secret"), Some("app_secret"));
        assert_eq!(classifier.classify(b"/opt/keys/signing"), Some("ssh_key"));
        assert_eq!(
            classifier.classify(b"/etc/shadow"),
            Some("shadow"),
            "built-ins first"
        );
        assert_eq!(classifier.classify(b"/etc/shadow.bak"), Some("mine"));
        assert_eq!(classifier.classify(b"/srv/app/config.toml"), None);
    }

    #[test]
    fn invalid_operator_rules_are_rejected() {
        let err = |r: ClassRule| Classifier::new(&[r]).unwrap_err();
        let (class, pattern) = ("c".to_owned(), "etc/x".to_owned());
        assert_eq!(
            err(rule("Bad-Name", &["/x"])),
            PatternError::BadClassName {
                class: "Bad-Name".into()
            }
        );
        assert_eq!(
            err(rule("", &["/x"])),
            PatternError::BadClassName { class: "".into() }
        );
        assert_eq!(
            err(rule("c", &[])),
            PatternError::NoPatterns { class: "c".into() }
        );
        assert_eq!(
            err(rule("c", &["/x", ""])),
            PatternError::Empty { class: "c".into() }
        );
        assert_eq!(
            err(rule("c", &["/x", "etc/x"])),
            PatternError::NotAbsolute {
                class: class.clone(),
                pattern: pattern.clone()
            }
        );
        type Make = fn(String, String) -> PatternError;
        let cases: [(&str, Make); 5] = [
            ("/a//b", |class, pattern| PatternError::EmptyComponent {
                class,
                pattern,
            }),
            ("/a/../b", |class, pattern| PatternError::DotComponent {
                class,
                pattern,
            }),
            ("/a[b", |class, pattern| PatternError::UnterminatedClass {
                class,
                pattern,
            }),
            ("/[9-0]", |class, pattern| PatternError::ReversedRange {
                class,
                pattern,
            }),
            ("/a\\", |class, pattern| PatternError::TrailingEscape {
                class,
                pattern,
            }),
        ];
        for (p, make) in cases {
            assert_eq!(err(rule("c", &[p])), make("c".into(), p.into()), "{p:?}");
        }
    }

    #[test]
    fn error_messages_name_the_class_and_pattern() {
        let e = Classifier::new(&[rule("my_class", &["relative/\npath"])]).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("\"my_class\""), "{message}");
        assert!(
            message.contains("\"relative/\\npath\""),
            "escaped: {message}"
        );
        let e = Classifier::new(&[rule("x", &["/a\\"])]).unwrap_err();
        assert!(e.to_string().contains("\"/a\\\\\""), "{e}");
    }
}
