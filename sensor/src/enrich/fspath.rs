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
//! # Patterns
//!
//! A [`ClassRule`] pattern is a path glob of the one dialect users write everywhere
//! (`docs/patterns.md`; parsed and matched by [`crate::glob::PathGlob`], the same as the
//! identity manifest's cgroup and executable selectors), matched against the **whole** path,
//! byte for byte and case-sensitively: `*`, `?` and `[...]` within one component, `**` as a
//! whole component for any number of components, `\` for a literal. A pattern must be
//! absolute or start with `**/` (so `**/.env` matches a `.env` in any directory).
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
//! Patterns are compiled once, in [`Classifier::new`]; matching one costs at most
//! O(pattern length × path length) with no exponential blow-up (see [`crate::glob`]).
//!
//! [`Classifier::classify`] runs for every file record, so it does not try every pattern: an
//! index built in [`Classifier::new`] (the `index` module) picks the few patterns a path could
//! match from its leading directories and its last components, and only those are matched.
//! Nothing is allocated per path. `cargo xtask bench` measures it against the `globset` crate
//! on the same rules (docs/benchmark.md, "File classification").

use std::fmt;

use crate::glob::{GlobError, PathGlob};

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
    /// The class name is not one or more of `[a-z0-9_]`.
    #[error("file class name {class:?} is invalid: use one or more of a-z, 0-9 and _")]
    BadClassName {
        /// The name as given.
        class: String,
    },
    /// The rule lists no pattern.
    #[error("file class {class:?} has no patterns")]
    NoPatterns {
        /// The rule's class.
        class: String,
    },
    /// One of the rule's patterns is not a valid path glob.
    #[error("file class {class:?}: pattern {pattern:?} {error}")]
    Glob {
        /// The rule's class.
        class: String,
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        #[source]
        error: GlobError,
    },
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
    patterns: Vec<PathGlob>,
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
            rule.patterns[p].matches_trimmed(trimmed)
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
            .find(|rule| {
                rule.patterns
                    .iter()
                    .any(|p| p.matches_components(&components))
            })
            .map(|rule| rule.class.as_str())
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
            .map(|pattern| {
                PathGlob::new(pattern).map_err(|error| PatternError::Glob {
                    class: class.clone(),
                    pattern: pattern.clone(),
                    error,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            class: class.clone(),
            patterns,
        })
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

    // ---- Classifier ----

    #[test]
    fn hostile_paths_do_not_blow_up() {
        let one_name = format!("/{}", "a".repeat(4095)).into_bytes();
        let many_names = "/a".repeat(2048).into_bytes();
        let mixed = "/aaaaaaaaaaaaaaa".repeat(256).into_bytes();
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

    #[test]
    fn file_classes_and_path_selectors_agree() {
        // The same pattern in a `[[file.classes]]` rule and in a manifest's `cgroup:` or
        // `executable:` selector (a PathGlob) picks the same paths.
        let builtin = builtin();
        let patterns = [
            "/srv/*/secrets/**",
            "**/*.key",
            "/opt/[a-c]*/bin/?x",
            "/opt/keys/[!.]*",
            "**/q\\*",
            "/**",
            "/",
        ];
        let paths = [
            "/srv/app/secrets",
            "/srv/app/secrets/db/password",
            "/srv/app/x/secrets/y",
            "/opt/app/bin/ax",
            "/opt/dpp/bin/ax",
            "/opt/keys/signing",
            "/opt/keys/.hidden",
            "/a/q*",
            "/a/qx",
            "/home/alice/x.key",
            "/",
            "relative/q*",
        ];
        for p in patterns {
            let glob = PathGlob::new(p).unwrap();
            let classifier = Classifier::new(&[rule("c", &[p])]).unwrap();
            for path in paths {
                let path = path.as_bytes();
                let expected = builtin
                    .classify(path)
                    .or_else(|| glob.matches(path).then_some("c"));
                assert_eq!(classifier.classify(path), expected, "{p:?} {path:?}");
            }
        }
    }

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
        assert_eq!(
            err(rule("Bad-Name", &["/x"])),
            PatternError::BadClassName {
                class: "Bad-Name".into()
            }
        );
        assert_eq!(
            err(rule("", &["/x"])),
            PatternError::BadClassName {
                class: String::new()
            }
        );
        assert_eq!(
            err(rule("c", &[])),
            PatternError::NoPatterns { class: "c".into() }
        );
        let cases = [
            ("", GlobError::Empty),
            ("etc/x", GlobError::NotAbsolute),
            ("/a//b", GlobError::EmptyComponent),
            ("/a/../b", GlobError::DotComponent),
            ("/a[b", GlobError::UnterminatedClass),
            ("/[9-0]", GlobError::ReversedRange),
            ("/a\\", GlobError::TrailingEscape),
        ];
        for (p, error) in cases {
            assert_eq!(
                err(rule("c", &["/x", p])),
                PatternError::Glob {
                    class: "c".into(),
                    pattern: p.into(),
                    error
                },
                "{p:?}"
            );
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
        let e = Classifier::new(&[rule("keys", &["/srv/[z-a]"])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file class \"keys\": pattern \"/srv/[z-a]\" has a range whose end is below its start"
        );
    }
}
