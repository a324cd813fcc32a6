//! The policy an agent's manifest entry declares (`policy:`), parsed into plain data and
//! validated with the place of every mistake: what the agent may reach on the network, which
//! files it may read and write, which executables it may run, and how its tasks are held to
//! `allowed_tasks`; each with a mode. docs/policy.md is the user's description.
use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};
use sha2::{Digest as _, Sha256};

use crate::glob::{GlobError, NameGlob, PathGlob, PrefixForm};

/// What a rule does with an action it does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing beyond the activity record.
    Observe,
    /// A decision record for every violation; the action goes ahead.
    Audit,
    /// The action is stopped and the decision recorded (only where the sensor can stop it).
    Enforce,
    /// `executables` and `files` only: the process is killed (SIGKILL from the kernel) as a
    /// forbidden exec or open completes, before it returns to user space, and the decision
    /// recorded.
    Kill,
}

impl Mode {
    /// The mode's name, as the manifest and the decision records write it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Audit => "audit",
            Self::Enforce => "enforce",
            Self::Kill => "kill",
        }
    }
}

/// One agent's policy, compiled.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The declaration it was compiled from, as canonical JSON (what makes two equal).
    declared: String,
    /// The version decisions cite: the declared one, or `sha256:` and the first 16 hex digits
    /// of the hash of the policy and `allowed_tasks` as declared.
    pub version: String,
    /// How a registration for a task outside `allowed_tasks` is treated (`enforce` unless
    /// declared otherwise: refused).
    pub tasks: Mode,
    /// Where the agent may connect and send to.
    pub egress: Option<Rule<Vec<Destination>>>,
    /// What it may read and write.
    pub files: Option<Rule<FileAccess>>,
    /// What it may run.
    pub executables: Option<Rule<Vec<PathGlob>>>,
}

impl Policy {
    /// One line for `identities check`: the version and each rule's mode.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("tasks {}", self.tasks.name())];
        if let Some(r) = &self.egress {
            parts.push(format!(
                "egress {}{} ({} allowed)",
                r.mode.name(),
                if r.fail_closed { ", fail closed" } else { "" },
                r.allow.len()
            ));
        }
        if let Some(r) = &self.files {
            let n = |s: &FileSet| s.paths.len() + s.classes.len();
            parts.push(format!(
                "files {}{} ({} read, {} write)",
                r.mode.name(),
                if r.fail_closed { ", fail closed" } else { "" },
                n(&r.allow.read),
                n(&r.allow.write)
            ));
        }
        if let Some(r) = &self.executables {
            parts.push(format!(
                "executables {}{} ({} allowed)",
                r.mode.name(),
                if r.fail_closed { ", fail closed" } else { "" },
                r.allow.len()
            ));
        }
        format!("policy {}: {}", self.version, parts.join(", "))
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.declared == other.declared && self.version == other.version
    }
}

impl Eq for Policy {}

impl Default for Policy {
    fn default() -> Self {
        Self {
            declared: declared(&[], None),
            version: version_of(&[], None),
            tasks: Mode::Enforce,
            egress: None,
            files: None,
            executables: None,
        }
    }
}

/// A rule's mode and what it allows.
#[derive(Clone, Debug)]
pub struct Rule<T> {
    /// What happens to an action the rule does not allow.
    pub mode: Mode,
    /// `fail_closed: true` (egress in `enforce` mode, executables and files in `kill` or
    /// `enforce` mode): the kernel goes on denying or killing what the rule does not allow
    /// after the sensor stops (docs/policy.md, "Fail-closed").
    pub fail_closed: bool,
    /// What the rule allows.
    pub allow: T,
}

/// An allowed network destination: every given part must match.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The address range.
    pub cidr: Option<Cidr>,
    /// The name the agent looked up for the address (`destination.domain`).
    pub dns: Option<NameGlob>,
    /// The ports; empty: any.
    pub ports: Vec<u16>,
}

/// The files a rule allows to be read and written.
#[derive(Clone, Debug, Default)]
pub struct FileAccess {
    /// Paths and classes that may be read.
    pub read: FileSet,
    /// Paths and classes that may be written (opened for writing, created, removed, renamed,
    /// linked, their mode, owner or size changed).
    pub write: FileSet,
}

/// Files by path glob or by `file.class`.
#[derive(Clone, Debug, Default)]
pub struct FileSet {
    /// Path globs (`docs/patterns.md`).
    pub paths: Vec<PathGlob>,
    /// `file.class` names.
    pub classes: Vec<String>,
}

impl FileSet {
    /// Whether `path` (of class `class`) is in the set.
    pub fn contains(&self, path: &str, class: Option<&str>) -> bool {
        class.is_some_and(|c| self.classes.iter().any(|x| x == c))
            || self.paths.iter().any(|g| g.matches(path.as_bytes()))
    }
}

/// An IPv4 or IPv6 address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or an address alone (a range of one).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self {
            network: addr,
            prefix,
        })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let mask = |bits: u32| {
            u128::MAX
                .checked_shl(bits - u32::from(self.prefix))
                .unwrap_or(0)
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask(32);
                u128::from(n.to_bits()) & m == u128::from(a.to_bits()) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask(128);
                n.to_bits() & m == a.to_bits() & m
            }
            _ => false,
        }
    }
}

impl Cidr {
    /// The range as the kernel's egress policy keys it: the network address as IPv6 (IPv4
    /// mapped, `::ffff:a.b.c.d`), host bits cleared, and its prefix length in those 128 bits.
    pub fn mapped(&self) -> ([u8; 16], u32) {
        let (addr, bits) = match self.network {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6, u32::from(self.prefix)),
        };
        let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
        ((addr.to_bits() & mask).to_be_bytes(), bits)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The `policy:` block as written.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    version: Option<String>,
    tasks: Option<RawTasks>,
    egress: Option<Spanned<RawEgress>>,
    files: Option<Spanned<RawFiles>>,
    executables: Option<Spanned<RawExecutables>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    mode: Mode,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    mode: Mode,
    // Left out of the canonical form when false, so policies written before it keep their
    // versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fail_closed: bool,
    #[serde(default)]
    allow: Vec<Spanned<RawDestination>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    cidr: Option<String>,
    dns: Option<String>,
    #[serde(default)]
    ports: Vec<u16>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    mode: Mode,
    // In kill mode only (refused with a reason in any other).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fail_closed: bool,
    #[serde(default)]
    read: RawFileSet,
    #[serde(default)]
    write: RawFileSet,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFileSet {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    classes: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawExecutables {
    mode: Mode,
    // In kill mode only (refused with a reason in any other).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fail_closed: bool,
    #[serde(default)]
    allow: Vec<String>,
}

/// A policy mistake: where (when it has a place of its own) and what.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The place of the part that is wrong.
    pub at: Option<Location>,
    /// What is wrong.
    pub message: String,
}

fn error(at: Location, message: String) -> PolicyError {
    PolicyError {
        at: Some(at),
        message,
    }
}

/// Why a path pattern cannot go in the kernel's trie for `kill` or `enforce` mode, if it
/// cannot (`sensor_common::EXEC_PATH_KEY` bytes of path per key).
pub fn unenforceable(form: Option<&PrefixForm>) -> Option<&'static str> {
    match form {
        None => Some(
            "only exact paths, DIR/** and a `*` at the end of the last component can be enforced in the kernel",
        ),
        Some(PrefixForm::Exact(p) | PrefixForm::OneLevel(p))
            if p.len() >= sensor_common::EXEC_PATH_KEY =>
        {
            Some("the kernel's trie holds paths of at most 251 bytes")
        }
        Some(PrefixForm::Subtree(p)) if p.len() + 1 >= sensor_common::EXEC_PATH_KEY => {
            Some("the kernel's trie holds paths of at most 251 bytes")
        }
        Some(_) => None,
    }
}

/// Checks that every pattern of a rule the kernel enforces can go in its trie.
fn enforceable_paths(
    globs: &[PathGlob],
    texts: &[String],
    what: &str,
    mode: Mode,
    at: Location,
) -> Result<(), PolicyError> {
    for (glob, text) in globs.iter().zip(texts) {
        if let Some(why) = unenforceable(glob.prefix_form().as_ref()) {
            return Err(error(
                at,
                format!("mode {}: {what} {text:?}: {why}", mode.name()),
            ));
        }
    }
    Ok(())
}

/// Why `kill` is refused on every rule but `executables` and `files`.
fn not_killable(kind: &str) -> String {
    format!("mode kill is for executables and files rules only, not {kind}")
}

/// The declaration as canonical JSON: `allowed_tasks` and the policy block.
fn declared(allowed_tasks: &[String], raw: Option<&RawPolicy>) -> String {
    serde_json::json!({"allowed_tasks": allowed_tasks, "policy": raw}).to_string()
}

/// The version decisions cite when the policy declares none.
fn version_of(allowed_tasks: &[String], raw: Option<&RawPolicy>) -> String {
    let hash = Sha256::digest(declared(allowed_tasks, raw).as_bytes());
    format!("sha256:{}", crate::record::hex(&hash[..8]))
}

fn path_globs(paths: &[String], what: &str, at: Location) -> Result<Vec<PathGlob>, PolicyError> {
    paths
        .iter()
        .map(|p| {
            if !p.starts_with('/') {
                return Err(error(at, format!("{what} {p:?} must be an absolute path")));
            }
            PathGlob::new(p).map_err(|e: GlobError| error(at, format!("{what} {p:?} {e}")))
        })
        .collect()
}

fn file_set(raw: &RawFileSet, what: &str, at: Location) -> Result<FileSet, PolicyError> {
    for c in &raw.classes {
        if c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(error(
                at,
                format!("files {what} class {c:?} is not a file class name (a-z, 0-9, _)"),
            ));
        }
    }
    Ok(FileSet {
        paths: path_globs(&raw.paths, &format!("files {what} path"), at)?,
        classes: raw.classes.clone(),
    })
}

fn destination(raw: &Spanned<RawDestination>) -> Result<Destination, PolicyError> {
    let at = raw.referenced;
    let d = &raw.value;
    if d.cidr.is_none() && d.dns.is_none() {
        return Err(error(
            at,
            "an egress destination needs cidr or dns (and optionally ports)".to_owned(),
        ));
    }
    let cidr = d
        .cidr
        .as_deref()
        .map(|c| {
            Cidr::parse(c).ok_or_else(|| {
                error(
                    at,
                    format!("egress cidr {c:?} is not an address or address/prefix"),
                )
            })
        })
        .transpose()?;
    let dns = d
        .dns
        .as_deref()
        .map(|n| NameGlob::new(n).map_err(|e| error(at, format!("egress dns {n:?} {e}"))))
        .transpose()?;
    if d.ports.contains(&0) {
        return Err(error(at, "egress port 0 is not a port".to_owned()));
    }
    Ok(Destination {
        cidr,
        dns,
        ports: d.ports.clone(),
    })
}

/// Checks that the kernel can enforce these egress destinations: all entries together name at
/// most `sensor_common::EGRESS_PORTS` distinct ports (what one entry of the kernel's trie
/// holds).
fn enforceable_egress(allow: &[Destination], at: Location) -> Result<(), PolicyError> {
    let mut ports: Vec<u16> = allow.iter().flat_map(|d| d.ports.clone()).collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.len() > sensor_common::EGRESS_PORTS {
        return Err(error(
            at,
            format!(
                "mode enforce allows at most {} distinct egress ports per agent ({} given)",
                sensor_common::EGRESS_PORTS,
                ports.len()
            ),
        ));
    }
    Ok(())
}

/// Why an `executables` or `files` rule in `mode` cannot fail closed (only rules the kernel
/// stops, in kill or enforce mode, can).
fn not_fail_closed(rule: &str, mode: Mode) -> String {
    format!(
        "fail_closed on {rule} rules needs mode kill or enforce (in mode {} nothing is \
         stopped, so nothing can go on being stopped after the sensor stops)",
        mode.name(),
    )
}

/// Compiles an agent's `policy:` block (none: `allowed_tasks` enforced, nothing else checked).
pub fn compile(allowed_tasks: &[String], raw: Option<&RawPolicy>) -> Result<Policy, PolicyError> {
    let Some(raw) = raw else {
        return Ok(Policy {
            declared: declared(allowed_tasks, None),
            version: version_of(allowed_tasks, None),
            ..Policy::default()
        });
    };
    if raw.tasks.as_ref().is_some_and(|t| t.mode == Mode::Kill) {
        return Err(PolicyError {
            at: None,
            message: not_killable("tasks"),
        });
    }
    if let Some(v) = &raw.version
        && (v.is_empty() || v.len() > 128 || v.chars().any(char::is_control))
    {
        return Err(PolicyError {
            at: None,
            message: format!("policy version {v:?} must be 1 to 128 printable characters"),
        });
    }
    let egress = raw
        .egress
        .as_ref()
        .map(|e| {
            let allow: Vec<Destination> = e
                .value
                .allow
                .iter()
                .map(destination)
                .collect::<Result<_, _>>()?;
            if e.value.mode == Mode::Enforce {
                enforceable_egress(&allow, e.referenced)?;
            }
            if e.value.mode == Mode::Kill {
                return Err(error(e.referenced, not_killable("egress")));
            }
            if e.value.fail_closed && e.value.mode != Mode::Enforce {
                return Err(error(
                    e.referenced,
                    format!(
                        "fail_closed: true needs mode enforce (in mode {} nothing is denied, \
                         so nothing can go on being denied after the sensor stops)",
                        e.value.mode.name()
                    ),
                ));
            }
            Ok(Rule {
                mode: e.value.mode,
                fail_closed: e.value.fail_closed,
                allow,
            })
        })
        .transpose()?;
    let files = raw
        .files
        .as_ref()
        .map(|f| {
            let at = f.referenced;
            if f.value.fail_closed && !matches!(f.value.mode, Mode::Kill | Mode::Enforce) {
                return Err(error(at, not_fail_closed("files", f.value.mode)));
            }
            let allow = FileAccess {
                read: file_set(&f.value.read, "read", at)?,
                write: file_set(&f.value.write, "write", at)?,
            };
            let mode = f.value.mode;
            if matches!(mode, Mode::Kill | Mode::Enforce) {
                for (set, raw, what) in [
                    (&allow.read, &f.value.read, "files read"),
                    (&allow.write, &f.value.write, "files write"),
                ] {
                    if let Some(class) = set.classes.first() {
                        return Err(error(
                            at,
                            format!(
                                "mode {}: {what} class {class:?}: file classes cannot be \
                                 enforced in the kernel (they are decided in userspace); name \
                                 the paths, or use audit",
                                mode.name()
                            ),
                        ));
                    }
                    enforceable_paths(&set.paths, &raw.paths, &format!("{what} path"), mode, at)?;
                }
            }
            Ok(Rule {
                mode: f.value.mode,
                fail_closed: f.value.fail_closed,
                allow,
            })
        })
        .transpose()?;
    let executables = raw
        .executables
        .as_ref()
        .map(|x| {
            let at = x.referenced;
            if x.value.fail_closed && !matches!(x.value.mode, Mode::Kill | Mode::Enforce) {
                return Err(error(at, not_fail_closed("executables", x.value.mode)));
            }
            let allow = path_globs(&x.value.allow, "executable", at)?;
            if matches!(x.value.mode, Mode::Kill | Mode::Enforce) {
                enforceable_paths(&allow, &x.value.allow, "executable", x.value.mode, at)?;
            }
            Ok(Rule {
                mode: x.value.mode,
                fail_closed: x.value.fail_closed,
                allow,
            })
        })
        .transpose()?;
    Ok(Policy {
        declared: declared(allowed_tasks, Some(raw)),
        version: raw
            .version
            .clone()
            .unwrap_or_else(|| version_of(allowed_tasks, Some(raw))),
        tasks: raw.tasks.as_ref().map_or(Mode::Enforce, |t| t.mode),
        egress,
        files,
        executables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_contain_their_addresses_and_mapped_ones() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(
            !Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/x",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(net.to_string(), "10.1.0.0/16");
    }

    /// `identities check`'s message for an agent `a` with this policy block (indented 4).
    fn mistake(policy: &str) -> String {
        let text =
            format!("agents:\n  - id: a\n    selectors: [{{uid: 1}}]\n    policy:\n{policy}");
        crate::identity::manifest::parse(std::path::Path::new("m.yaml"), &text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_mistake_is_located_and_named() {
        let cases = [
            (
                "      egress:\n        mode: audit\n        allow:\n          - {cidr: 10.0.0.0/40}\n",
                "m.yaml:8:13: agent a policy: egress cidr \"10.0.0.0/40\" is not an address or address/prefix",
            ),
            (
                "      egress:\n        mode: audit\n        allow:\n          - {ports: [443]}\n",
                "m.yaml:8:13: agent a policy: an egress destination needs cidr or dns (and optionally ports)",
            ),
            (
                "      egress:\n        mode: audit\n        allow: [{cidr: 10.0.0.1, ports: [0]}]\n",
                "m.yaml:7:17: agent a policy: egress port 0 is not a port",
            ),
            (
                "      egress:\n        mode: enforce\n        allow: [{cidr: 10.0.0.0/8, ports: [1, 2, 3, 4, 5, 6, 7, 8, 9]}, {cidr: ::1, ports: [10, 11, 12, 13, 14, 15, 16, 17]}]\n",
                "m.yaml:6:9: agent a policy: mode enforce allows at most 16 distinct egress ports per agent (17 given)",
            ),
            (
                "      files:\n        mode: enforce\n        read: {paths: [\"/srv/**\"], classes: [ssh_key]}\n",
                "m.yaml:6:9: agent a policy: mode enforce: files read class \"ssh_key\": file classes cannot be enforced in the kernel (they are decided in userspace); name the paths, or use audit",
            ),
            (
                "      files:\n        mode: enforce\n        write: {paths: [\"/srv/*/x\"]}\n",
                "m.yaml:6:9: agent a policy: mode enforce: files write path \"/srv/*/x\": only exact paths, DIR/** and a `*` at the end of the last component can be enforced in the kernel",
            ),
            (
                "      files:\n        mode: audit\n        read: {paths: [relative/*]}\n",
                "m.yaml:6:9: agent a policy: files read path \"relative/*\" must be an absolute path",
            ),
            (
                "      files:\n        mode: audit\n        write: {classes: [SSH-key]}\n",
                "m.yaml:6:9: agent a policy: files write class \"SSH-key\" is not a file class name (a-z, 0-9, _)",
            ),
            (
                "      executables:\n        mode: audit\n        allow: [\"/usr/bin/[\"]\n",
                "m.yaml:6:9: agent a policy: executable \"/usr/bin/[\" ",
            ),
            (
                "      version: \"\"\n",
                "m.yaml:5:7: agent a policy: policy version \"\" must be 1 to 128 printable characters",
            ),
            (
                "      executables:\n        mode: enforce\n        allow: [\"/usr/bin/*/x\"]\n",
                "m.yaml:6:9: agent a policy: mode enforce: executable \"/usr/bin/*/x\": only exact paths, DIR/** and a `*` at the end of the last component can be enforced in the kernel",
            ),
            (
                "      executables:\n        mode: kill\n        allow: [\"/usr/bin/git\", \"/opt/*/bin/tool\"]\n",
                "m.yaml:6:9: agent a policy: mode kill: executable \"/opt/*/bin/tool\": only exact paths, DIR/** and a `*` at the end of the last component can be enforced in the kernel",
            ),
            (
                "      egress:\n        mode: audit\n        fail_closed: true\n        allow: []\n",
                "m.yaml:6:9: agent a policy: fail_closed: true needs mode enforce (in mode audit nothing is denied",
            ),
            (
                "      files:\n        mode: observe\n        fail_closed: true\n",
                "m.yaml:6:9: agent a policy: fail_closed on files rules needs mode kill or enforce (in mode observe nothing is stopped",
            ),
            (
                "      executables:\n        mode: audit\n        fail_closed: true\n",
                "m.yaml:6:9: agent a policy: fail_closed on executables rules needs mode kill or enforce (in mode audit nothing is stopped",
            ),
            (
                "      egress:\n        mode: kill\n        allow: []\n",
                "m.yaml:6:9: agent a policy: mode kill is for executables and files rules only, not egress",
            ),
            (
                "      files:\n        mode: kill\n        read: {paths: [\"/srv/**\", \"/srv/*/x\"]}\n",
                "m.yaml:6:9: agent a policy: mode kill: files read path \"/srv/*/x\": only exact paths, DIR/** and a `*` at the end of the last component can be enforced in the kernel",
            ),
            (
                "      files:\n        mode: kill\n        write: {paths: [\"/tmp/**\"], classes: [ssh_key]}\n",
                "m.yaml:6:9: agent a policy: mode kill: files write class \"ssh_key\": file classes cannot be enforced in the kernel (they are decided in userspace); name the paths, or use audit",
            ),
            (
                "      tasks: {mode: kill}\n",
                "m.yaml:5:7: agent a policy: mode kill is for executables and files rules only, not tasks",
            ),
        ];
        for (policy, expected) in cases {
            let message = mistake(policy);
            assert!(
                message.starts_with(expected),
                "{message}\nexpected {expected}"
            );
        }
        // Unknown keys and modes are serde's errors, located by the parser.
        let unknown = mistake("      egress:\n        mode: audit\n        deny: []\n");
        assert!(
            unknown.starts_with("m.yaml:7:") && unknown.contains("deny"),
            "{unknown}"
        );
        let mode = mistake("      files:\n        mode: block\n");
        assert!(
            mode.starts_with("m.yaml:6:") && mode.contains("block"),
            "{mode}"
        );
    }

    #[test]
    fn a_full_policy_compiles() {
        let text = "agents:\n  - id: a\n    allowed_tasks: [review]\n    selectors: [{uid: 1}]\n    policy:\n      tasks: {mode: audit}\n      egress:\n        mode: audit\n        allow: [{dns: \"*.example.org\", ports: [443]}, {cidr: \"fd00::/8\"}]\n      files:\n        mode: observe\n        read: {paths: [\"/srv/**\"], classes: [ssh_key]}\n      executables:\n        mode: audit\n        allow: [/usr/bin/git]\n";
        let agents =
            crate::identity::manifest::parse(std::path::Path::new("m.yaml"), text).unwrap();
        let p = &agents[0].policy;
        assert_eq!(p.tasks, Mode::Audit);
        assert_eq!(p.egress.as_ref().unwrap().allow.len(), 2);
        assert_eq!(p.files.as_ref().unwrap().mode, Mode::Observe);
        assert!(p.version.starts_with("sha256:"));
        assert_eq!(
            p.summary(),
            format!(
                "policy {}: tasks audit, egress audit (2 allowed), files observe (2 read, 0 write), executables audit (1 allowed)",
                p.version
            )
        );
    }

    #[test]
    fn an_enforced_egress_rule_can_fail_closed() {
        let parse = |extra: &str| {
            let text = format!(
                "agents:\n  - id: a\n    selectors: [{{uid: 1}}]\n    policy:\n      egress:\n        mode: enforce\n{extra}        allow: [{{cidr: 127.0.0.0/8}}]\n"
            );
            let agents =
                crate::identity::manifest::parse(std::path::Path::new("m.yaml"), &text).unwrap();
            agents[0].policy.as_ref().clone()
        };
        let closed = parse("        fail_closed: true\n");
        assert!(closed.egress.as_ref().unwrap().fail_closed);
        assert!(
            closed
                .summary()
                .ends_with("egress enforce, fail closed (1 allowed)")
        );
        let open = parse("");
        assert!(!open.egress.as_ref().unwrap().fail_closed);
        // `fail_closed: false` is what leaving it out says: the same policy, the same version.
        assert_eq!(parse("        fail_closed: false\n"), open);
        assert_ne!(closed.version, open.version);
    }

    #[test]
    fn executables_and_files_rules_in_kill_or_enforce_mode_can_fail_closed() {
        for mode in ["kill", "enforce"] {
            let text = format!(
                "agents:\n  - id: a\n    selectors: [{{uid: 1}}]\n    policy:\n      files:\n        mode: {mode}\n        fail_closed: true\n        read: {{paths: [\"/usr/**\"]}}\n      executables:\n        mode: {mode}\n        fail_closed: true\n        allow: [\"/usr/bin/*\"]\n"
            );
            let agents =
                crate::identity::manifest::parse(std::path::Path::new("m.yaml"), &text).unwrap();
            let policy = agents[0].policy.as_ref();
            assert!(policy.files.as_ref().unwrap().fail_closed, "{mode}");
            assert!(policy.executables.as_ref().unwrap().fail_closed, "{mode}");
            assert!(
                policy.summary().contains(&format!(
                    "files {mode}, fail closed (1 read, 0 write), executables {mode}, fail closed"
                )),
                "{}",
                policy.summary()
            );
        }
    }

    #[test]
    fn the_version_is_declared_or_a_hash_of_what_is_declared() {
        let none = compile(&[], None).unwrap();
        assert!(none.version.starts_with("sha256:") && none.version.len() == 23);
        let tasks = compile(&["review".to_owned()], None).unwrap();
        assert_ne!(none.version, tasks.version, "allowed_tasks are part of it");
        assert_eq!(tasks.tasks, Mode::Enforce);
        assert!(tasks.egress.is_none() && tasks.files.is_none() && tasks.executables.is_none());
    }
}
