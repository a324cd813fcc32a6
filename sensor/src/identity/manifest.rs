//! The identity manifest: agents declared once, in YAML (a file, or a directory of them such
//! as a mounted ConfigMap), parsed into plain data and validated with file, line and reason for
//! every mistake before anything uses it.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::{
    glob::{GlobError, PathGlob},
    identity::{
        capture::{CapturePolicy, RawCapture},
        pattern::Pattern,
    },
    policy::form::{self, Policy, RawPolicy},
};

/// One declared agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentDecl {
    /// The agent's id (`agent.id`): 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    pub id: String,
    /// Its SPIFFE id, a `spiffe://` URI.
    pub spiffe_id: Option<String>,
    /// A name for people.
    pub name: Option<String>,
    /// What it is for.
    pub purpose: Option<String>,
    /// Who answers for what it does.
    pub business_owner: Option<String>,
    /// Who runs it.
    pub technical_owner: Option<String>,
    /// The team it belongs to.
    pub team: Option<String>,
    /// One of [`SENSITIVITY_TIERS`].
    pub data_sensitivity: Option<String>,
    /// The tasks it may be registered for.
    pub allowed_tasks: Vec<String>,
    /// Which processes are the agent; none: only registration attributes it.
    pub selectors: Vec<SelectorDecl>,
    /// What it may do (`policy:`; without one, only `allowed_tasks` is enforced).
    pub policy: Arc<Policy>,
    /// What of its content the sensor captures (`capture:`); none: nothing.
    pub capture: Option<CapturePolicy>,
    /// Where it was declared, for messages.
    pub origin: String,
}

/// Which processes are the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorDecl {
    /// A cgroup v2 path glob, relative to the cgroup2 mount (`/agents/reviewer/**`).
    Cgroup(String),
    /// An executable path or glob (`/opt/reviewer/bin/*`).
    Executable(String),
    /// The effective uid at exec.
    Uid(u32),
    /// What the container runtime records of the container the process runs in.
    Container(ContainerSelector),
    /// The Kubernetes pod (and container) the process runs in.
    Kubernetes(KubernetesSelector),
    /// The command line (argv joined by spaces) an exec'd process got, optionally only for an
    /// executable path or glob.
    Argv {
        /// Only for this executable path or glob.
        executable: Option<String>,
        /// The name pattern over argv joined by spaces.
        argv: Pattern,
    },
}

impl fmt::Display for SelectorDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pat =
            |key: &str, p: &Option<Pattern>| p.as_ref().map(|p| format!(" {key}={:?}", p.as_str()));
        let labels = |f: &mut fmt::Formatter<'_>, l: &[(String, Pattern)], prefix: &str| {
            l.iter()
                .try_for_each(|(k, p)| write!(f, " {prefix}{k}={:?}", p.as_str()))
        };
        match self {
            Self::Cgroup(g) => write!(f, "cgroup {g:?}"),
            Self::Executable(x) => write!(f, "executable {x:?}"),
            Self::Uid(u) => write!(f, "uid {u}"),
            Self::Container(c) => {
                write!(f, "container")?;
                for part in [
                    pat("id", &c.id),
                    pat("image", &c.image),
                    pat("name", &c.name),
                ]
                .into_iter()
                .flatten()
                {
                    f.write_str(&part)?;
                }
                if let Some(r) = &c.runtime {
                    write!(f, " runtime={r}")?;
                }
                labels(f, &c.labels, "labels.")
            }
            Self::Kubernetes(k) => {
                write!(f, "kubernetes")?;
                for part in [
                    pat("namespace", &k.namespace),
                    pat("pod", &k.pod),
                    pat("container", &k.container),
                    pat("service_account", &k.service_account),
                ]
                .into_iter()
                .flatten()
                {
                    f.write_str(&part)?;
                }
                labels(f, &k.labels, "pod labels.")
            }
            Self::Argv { executable, argv } => {
                write!(f, "argv {:?}", argv.as_str())?;
                match executable {
                    Some(x) => write!(f, " of executable {x:?}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Every given key must match (name patterns of the one glob dialect: `docs/patterns.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSelector {
    /// The container id.
    pub id: Option<Pattern>,
    /// The image reference, as the runtime records it.
    pub image: Option<Pattern>,
    /// The container name.
    pub name: Option<Pattern>,
    /// `containerd`, `cri-o`, `docker` or `podman`.
    pub runtime: Option<String>,
    /// Labels that must be present, each value matching its pattern.
    pub labels: Vec<(String, Pattern)>,
}

/// Every given key must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubernetesSelector {
    /// The pod's namespace.
    pub namespace: Option<Pattern>,
    /// The pod's name.
    pub pod: Option<Pattern>,
    /// The container's name within the pod.
    pub container: Option<Pattern>,
    /// The pod's service account.
    pub service_account: Option<Pattern>,
    /// The pod's labels.
    pub labels: Vec<(String, Pattern)>,
}

/// The runtimes a container selector can name.
pub const RUNTIMES: &[&str] = &["containerd", "cri-o", "docker", "podman"];

/// The data-sensitivity tiers an agent can declare.
pub const SENSITIVITY_TIERS: &[&str] = &["public", "internal", "confidential", "restricted"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    agents: Vec<Spanned<RawAgent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    spiffe_id: Option<String>,
    name: Option<String>,
    purpose: Option<String>,
    #[serde(default)]
    owners: RawOwners,
    team: Option<String>,
    data_sensitivity: Option<String>,
    #[serde(default)]
    allowed_tasks: Vec<String>,
    #[serde(default)]
    selectors: Vec<Spanned<RawSelector>>,
    policy: Option<Spanned<RawPolicy>>,
    capture: Option<Spanned<RawCapture>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOwners {
    business: Option<String>,
    technical: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    cgroup: Option<String>,
    executable: Option<String>,
    uid: Option<u32>,
    container: Option<RawContainer>,
    kubernetes: Option<RawKubernetes>,
    argv: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    id: Option<String>,
    image: Option<String>,
    name: Option<String>,
    runtime: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    namespace: Option<String>,
    pod: Option<String>,
    container: Option<String>,
    service_account: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What is wrong with a container or kubernetes selector (the manifest adds file and line).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum SelectorError {
    #[error("{key} {value:?} {error}")]
    Pattern {
        key: &'static str,
        value: String,
        error: GlobError,
    },
    #[error("label {key:?} = {value:?} {error}")]
    Label {
        key: String,
        value: String,
        error: GlobError,
    },
    #[error("a label key cannot be empty")]
    EmptyLabelKey,
    #[error("container runtime {0:?} must be one of {runtimes}", runtimes = RUNTIMES.join(", "))]
    Runtime(String),
    #[error("a container selector needs at least one of id, image, name, runtime, labels")]
    EmptyContainer,
    #[error(
        "a kubernetes selector needs at least one of namespace, pod, container, service_account, labels"
    )]
    EmptyKubernetes,
}

/// Compiles an optional pattern, naming the key in the error.
fn pattern(key: &'static str, value: Option<String>) -> Result<Option<Pattern>, SelectorError> {
    value
        .map(|value| {
            Pattern::new(&value).map_err(|error| SelectorError::Pattern { key, value, error })
        })
        .transpose()
}

fn label_patterns(
    labels: BTreeMap<String, String>,
) -> Result<Vec<(String, Pattern)>, SelectorError> {
    labels
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty() {
                return Err(SelectorError::EmptyLabelKey);
            }
            match Pattern::new(&value) {
                Ok(p) => Ok((key, p)),
                Err(error) => Err(SelectorError::Label { key, value, error }),
            }
        })
        .collect()
}

impl RawContainer {
    fn compile(self) -> Result<ContainerSelector, SelectorError> {
        if let Some(r) = &self.runtime
            && !RUNTIMES.contains(&r.as_str())
        {
            return Err(SelectorError::Runtime(r.clone()));
        }
        let s = ContainerSelector {
            id: pattern("container id", self.id)?,
            image: pattern("container image", self.image)?,
            name: pattern("container name", self.name)?,
            runtime: self.runtime,
            labels: label_patterns(self.labels)?,
        };
        if s == ContainerSelector::default() {
            return Err(SelectorError::EmptyContainer);
        }
        Ok(s)
    }
}

impl RawKubernetes {
    fn compile(self) -> Result<KubernetesSelector, SelectorError> {
        let s = KubernetesSelector {
            namespace: pattern("kubernetes namespace", self.namespace)?,
            pod: pattern("kubernetes pod", self.pod)?,
            container: pattern("kubernetes container", self.container)?,
            service_account: pattern("kubernetes service_account", self.service_account)?,
            labels: label_patterns(self.labels)?,
        };
        if s == KubernetesSelector::default() {
            return Err(SelectorError::EmptyKubernetes);
        }
        Ok(s)
    }
}

/// A manifest mistake, located.
#[derive(Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// Line and column, when the mistake has a place.
    pub line: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ManifestError {}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Reads a manifest file, or every `*.yaml`/`*.yml` file of a directory (in name order).
pub fn load(path: &Path) -> Result<Vec<AgentDecl>, ManifestError> {
    let err = |file: &Path, message: String| ManifestError {
        file: file.to_owned(),
        line: None,
        message,
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| err(path, format!("cannot read the manifest directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut agents: Vec<AgentDecl> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| err(&file, format!("cannot read the manifest: {e}")))?;
        for agent in parse(&file, &text)? {
            if let Some(first) = seen.insert(agent.id.clone(), agent.origin.clone()) {
                return Err(err(
                    &file,
                    format!(
                        "agent id {:?} at {} is already declared at {first}",
                        agent.id, agent.origin
                    ),
                ));
            }
            agents.push(agent);
        }
    }
    Ok(agents)
}

/// Parses and validates one manifest document.
pub fn parse(file: &Path, text: &str) -> Result<Vec<AgentDecl>, ManifestError> {
    let at = |loc: Option<serde_saphyr::Location>, message: String| ManifestError {
        file: file.to_owned(),
        line: loc.filter(|l| l.line() > 0).map(|l| (l.line(), l.column())),
        message,
    };
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let raw: RawManifest = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        // The message alone; the position goes in front like every other error here.
        let message = e.to_string();
        let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
        at(e.location(), message)
    })?;
    let mut out = Vec::new();
    for spanned in raw.agents {
        let loc = Some(spanned.referenced);
        let a = spanned.value;
        if !valid_id(&a.id) {
            return Err(at(
                loc,
                format!(
                    "agent id {:?}: use 1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
                    a.id
                ),
            ));
        }
        if let Some(spiffe) = &a.spiffe_id
            && (!spiffe.starts_with("spiffe://") || spiffe.len() <= "spiffe://".len())
        {
            return Err(at(
                loc,
                format!(
                    "agent {}: spiffe_id {spiffe:?} must be a spiffe:// URI",
                    a.id
                ),
            ));
        }
        if let Some(tier) = &a.data_sensitivity
            && !SENSITIVITY_TIERS.contains(&tier.as_str())
        {
            return Err(at(
                loc,
                format!(
                    "agent {}: data_sensitivity {tier:?} must be one of {}",
                    a.id,
                    SENSITIVITY_TIERS.join(", ")
                ),
            ));
        }
        let mut selectors = Vec::new();
        for s in a.selectors {
            let sloc = Some(s.referenced);
            let r = s.value;
            // `argv` may narrow `executable`; otherwise one kind per selector.
            let given = [
                r.cgroup.is_some(),
                r.executable.is_some() || r.argv.is_some(),
                r.uid.is_some(),
                r.container.is_some(),
                r.kubernetes.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return Err(at(
                    sloc,
                    format!(
                        "agent {}: each selector names exactly one of cgroup, executable (optionally with argv), argv, uid, container, kubernetes",
                        a.id
                    ),
                ));
            }
            let selector = if let Some(argv) = r.argv {
                if let Some(x) = &r.executable {
                    PathGlob::new(x)
                        .map_err(|e| at(sloc, format!("agent {}: executable {x:?} {e}", a.id)))?;
                }
                SelectorDecl::Argv {
                    executable: r.executable,
                    argv: Pattern::new(&argv)
                        .map_err(|e| at(sloc, format!("agent {}: argv {argv:?} {e}", a.id)))?,
                }
            } else if let Some(c) = r.cgroup {
                PathGlob::new(&c)
                    .map_err(|e| at(sloc, format!("agent {}: cgroup {c:?} {e}", a.id)))?;
                SelectorDecl::Cgroup(c)
            } else if let Some(x) = r.executable {
                PathGlob::new(&x)
                    .map_err(|e| at(sloc, format!("agent {}: executable {x:?} {e}", a.id)))?;
                SelectorDecl::Executable(x)
            } else if let Some(c) = r.container {
                SelectorDecl::Container(
                    c.compile()
                        .map_err(|e| at(sloc, format!("agent {}: {e}", a.id)))?,
                )
            } else if let Some(k) = r.kubernetes {
                SelectorDecl::Kubernetes(
                    k.compile()
                        .map_err(|e| at(sloc, format!("agent {}: {e}", a.id)))?,
                )
            } else {
                SelectorDecl::Uid(r.uid.expect("one of the five"))
            };
            selectors.push(selector);
        }
        let policy =
            form::compile(&a.allowed_tasks, a.policy.as_ref().map(|p| &p.value)).map_err(|e| {
                let place = e.at.or(a.policy.as_ref().map(|p| p.referenced));
                at(place, format!("agent {} policy: {}", a.id, e.message))
            })?;
        let capture = a
            .capture
            .map(|c| {
                let cloc = Some(c.referenced);
                c.value
                    .compile()
                    .map_err(|e| at(cloc, format!("agent {}: {e}", a.id)))
            })
            .transpose()?;
        out.push(AgentDecl {
            origin: format!("{}:{}", file.display(), loc.map_or(0, |l| l.line())),
            id: a.id,
            spiffe_id: a.spiffe_id,
            name: a.name,
            purpose: a.purpose,
            business_owner: a.owners.business,
            technical_owner: a.owners.technical,
            team: a.team,
            data_sensitivity: a.data_sensitivity,
            allowed_tasks: a.allowed_tasks,
            selectors,
            policy: Arc::new(policy),
            capture,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<AgentDecl>, ManifestError> {
        parse(Path::new("agents.yaml"), text)
    }

    const GOOD: &str = "agents:\n  - id: code-reviewer\n    spiffe_id: spiffe://example.org/agents/reviewer\n    name: Code reviewer\n    purpose: Reviews pull requests\n    owners:\n      business: alice@example.com\n      technical: bob@example.com\n    team: platform\n    data_sensitivity: confidential\n    allowed_tasks: [review, comment]\n    selectors:\n      - cgroup: /agents/reviewer/**\n      - executable: /opt/reviewer/bin/reviewer\n      - uid: 1001\n";

    #[test]
    fn reads_a_full_declaration() {
        let agents = parse_str(GOOD).unwrap();
        assert_eq!(agents.len(), 1);
        let a = &agents[0];
        assert_eq!(a.id, "code-reviewer");
        assert_eq!(a.business_owner.as_deref(), Some("alice@example.com"));
        assert_eq!(a.technical_owner.as_deref(), Some("bob@example.com"));
        assert_eq!(a.allowed_tasks, ["review", "comment"]);
        assert_eq!(
            a.selectors,
            vec![
                SelectorDecl::Cgroup("/agents/reviewer/**".into()),
                SelectorDecl::Executable("/opt/reviewer/bin/reviewer".into()),
                SelectorDecl::Uid(1001)
            ]
        );
    }

    #[test]
    fn locates_every_mistake() {
        let line_of = |text: &str| parse_str(text).unwrap_err().line.map(|l| l.0);
        // Unknown field.
        assert_eq!(
            line_of("agents:\n  - id: a\n    colour: red\n    selectors: [{uid: 1}]\n"),
            Some(3)
        );
        // Bad id.
        let e = parse_str("agents:\n  - id: A B\n    selectors: [{uid: 1}]\n").unwrap_err();
        assert!(e.message.contains("agent id \"A B\""), "{e}");
        assert_eq!(e.line.map(|l| l.0), Some(2));
        // Two kinds in one selector.
        let e =
            parse_str("agents:\n  - id: a\n    selectors:\n      - uid: 1\n        cgroup: /x\n")
                .unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(4), "{e}");
        // A bad glob.
        let e = parse_str("agents:\n  - id: a\n    selectors:\n      - executable: relative/bin\n")
            .unwrap_err();
        assert!(e.message.contains("not absolute"), "{e}");
        // Tier, SPIFFE id, missing selectors, YAML syntax.
        assert!(
            parse_str(
                "agents:\n  - id: a\n    data_sensitivity: secret\n    selectors: [{uid: 1}]\n"
            )
            .unwrap_err()
            .message
            .contains("data_sensitivity")
        );
        assert!(
            parse_str("agents:\n  - id: a\n    spiffe_id: http://x\n    selectors: [{uid: 1}]\n")
                .unwrap_err()
                .message
                .contains("spiffe")
        );
        // An agent without selectors is one that only registration attributes.
        assert!(
            parse_str("agents:\n  - id: a\n").unwrap()[0]
                .selectors
                .is_empty()
        );
        assert!(parse_str("agents: [\n").is_err());
        let e = parse_str("agents:\n  - id: a\n    selectors: [{uid: -1}]\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(3), "{e}");
        assert!(e.to_string().starts_with("agents.yaml:3:"), "{e}");
    }

    #[test]
    fn container_and_kubernetes_selectors() {
        let agents = parse_str(
            "agents:\n  - id: a\n    selectors:\n      - container: {image: 'docker.io/library/busybox:*', runtime: containerd, labels: {app: reviewer}}\n      - kubernetes:\n          namespace: agents\n          pod: reviewer-*\n          service_account: reviewer\n          labels: {tier: '*'}\n",
        )
        .unwrap();
        let SelectorDecl::Container(c) = &agents[0].selectors[0] else {
            panic!("{:?}", agents[0].selectors)
        };
        assert!(
            c.image
                .as_ref()
                .unwrap()
                .matches(b"docker.io/library/busybox:1")
        );
        assert_eq!(c.runtime.as_deref(), Some("containerd"));
        assert_eq!(c.labels[0].0, "app");
        let SelectorDecl::Kubernetes(k) = &agents[0].selectors[1] else {
            panic!()
        };
        assert!(k.pod.as_ref().unwrap().matches(b"reviewer-7"));
        assert_eq!(k.labels.len(), 1);

        let e =
            parse_str("agents:\n  - id: a\n    selectors:\n      - container: {runtime: lxc}\n")
                .unwrap_err();
        assert!(e.message.contains("runtime \"lxc\""), "{e}");
        assert_eq!(e.line.map(|l| l.0), Some(4));
        let e =
            parse_str("agents:\n  - id: a\n    selectors:\n      - kubernetes: {}\n").unwrap_err();
        assert!(e.message.contains("at least one"), "{e}");
        let e = parse_str("agents:\n  - id: a\n    selectors:\n      - kubernetes: {pod: ''}\n")
            .unwrap_err();
        assert!(e.message.contains("kubernetes pod"), "{e}");
        let e = parse_str(
            "agents:\n  - id: a\n    selectors:\n      - kubernetes: {namespace: x, colour: red}\n",
        )
        .unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(4), "{e}");
    }

    #[test]
    fn argv_selectors_alone_or_narrowing_an_executable() {
        let agents = parse_str(
            "agents:\n  - id: a\n    selectors:\n      - {executable: /usr/bin/python3*, argv: '* /opt/reviewer/main.py*'}\n      - argv: 'reviewer --serve*'\n",
        )
        .unwrap();
        assert!(matches!(
            &agents[0].selectors[0],
            SelectorDecl::Argv { executable: Some(x), argv } if x == "/usr/bin/python3*" && argv.matches(b"python3 /opt/reviewer/main.py --x")
        ));
        assert!(matches!(
            &agents[0].selectors[1],
            SelectorDecl::Argv {
                executable: None,
                ..
            }
        ));
        let e = parse_str("agents:\n  - id: a\n    selectors:\n      - {uid: 1, argv: x}\n")
            .unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(4), "{e}");
        let e =
            parse_str("agents:\n  - id: a\n    selectors:\n      - {argv: 'x\\'}\n").unwrap_err();
        assert!(e.message.contains("argv"), "{e}");
    }

    #[test]
    fn a_bad_pattern_is_located_and_explained() {
        // Name patterns and path globs are one dialect: the same mistakes, said the same way.
        let cases = [
            (
                "kubernetes: {pod: 'reviewer-[0-9'}",
                "agent a: kubernetes pod \"reviewer-[0-9\" has a `[` without its closing `]`",
            ),
            (
                "container: {labels: {tier: 'x\\'}}",
                "agent a: label \"tier\" = \"x\\\\\" has a `\\` with nothing to escape",
            ),
            (
                "cgroup: '/agents/[b-a]'",
                "agent a: cgroup \"/agents/[b-a]\" has a range whose end is below its start",
            ),
            (
                "executable: /opt//x",
                "agent a: executable \"/opt//x\" has an empty component",
            ),
            (
                "{executable: /opt/x, argv: ''}",
                "agent a: argv \"\" is empty",
            ),
        ];
        for (selector, message) in cases {
            let text = format!("agents:\n  - id: a\n    selectors:\n      - {selector}\n");
            let e = parse_str(&text).unwrap_err();
            assert!(e.to_string().starts_with("agents.yaml:4:"), "{e}");
            assert!(e.message.starts_with(message), "{selector}: {e}");
        }
    }

    #[test]
    fn duplicate_ids_across_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "agents:\n  - id: x\n    selectors: [{uid: 1}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "agents:\n  - id: y\n    selectors: [{uid: 2}]\n  - id: x\n    selectors: [{uid: 3}]\n",
        )
        .unwrap();
        std::fs::write(dir.join("ignored.txt"), "not yaml").unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.message.contains("already declared"), "{e}");
        std::fs::remove_file(dir.join("b.yml")).unwrap();
        assert_eq!(load(&dir).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn capture_is_opt_in_and_validated() {
        use crate::identity::capture::{CapturePolicy, ContentPolicy};
        let agents = parse_str("agents:\n  - id: a\n    selectors: [{uid: 1}]\n").unwrap();
        assert_eq!(agents[0].capture, None);
        let agents = parse_str(
            "agents:\n  - id: a\n    capture: {tls: true, content: digest, max_bytes: 4096}\n",
        )
        .unwrap();
        assert_eq!(
            agents[0].capture,
            Some(CapturePolicy {
                tls: true,
                stdio: false,
                content: ContentPolicy::Digest,
                max_bytes: 4096
            })
        );
        let agents = parse_str("agents:\n  - id: a\n    capture: {tls: true}\n").unwrap();
        assert_eq!(
            agents[0].capture.map(|c| (c.content, c.max_bytes)),
            Some((ContentPolicy::Redacted, 16 * 1024))
        );
        let e =
            parse_str("agents:\n  - id: a\n    capture:\n      content: everything\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(4), "{e}");
        assert!(
            e.message.contains("content \"everything\" must be one of"),
            "{e}"
        );
        let e =
            parse_str("agents:\n  - id: a\n    capture:\n      max_bytes: 1048576\n").unwrap_err();
        assert!(
            e.message.contains("max_bytes 1048576 must be between"),
            "{e}"
        );
        let e =
            parse_str("agents:\n  - id: a\n    capture: {tls: true, pcap: true}\n").unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(3), "{e}");
    }
}
