//! Private apt configurations: the matrix downloads Debian packages from suites the host does
//! not name (bullseye, trixie, bookworm-backports) without touching the host's sources. Each
//! configuration has its own sources list, package lists and download cache under the matrix
//! cache; the host's dpkg database is used only when QEMU is installed.
//!
//! Everything apt and dpkg print goes to standard error: `cargo xtask run | jq` and the
//! records on standard output must never see package-manager chatter.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// Every suite is signed with keys in Debian's archive keyring, present on Debian hosts
/// (package `debian-archive-keyring`).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";

/// One private apt configuration (its sources, lists and cache in `dir`).
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    /// Makes (or reuses) the configuration in `dir` naming `suites` (`bookworm-security` and
    /// the like come from the security mirror). Writes the sources list only when it changed,
    /// so the lists stay valid across runs.
    pub fn new(dir: PathBuf, suites: &[&str]) -> anyhow::Result<Apt> {
        if !Path::new(KEYRING).is_file() {
            bail!(
                "{KEYRING} is missing: it verifies Debian's suites; install it with \
                 `apt-get install debian-archive-keyring`"
            );
        }
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("making {}", dir.join(sub).display()))?;
        }
        let mut sources = String::new();
        for suite in suites {
            let mirror = if suite.ends_with("-security") {
                SECURITY
            } else {
                MIRROR
            };
            let _ = writeln!(sources, "deb [signed-by={KEYRING}] {mirror} {suite} main");
        }
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&list, sources).with_context(|| format!("writing {}", list.display()))?;
            // Lists fetched for other sources must not count as fresh.
            let _ = fs::remove_file(dir.join("updated"));
        }
        Ok(Apt { dir })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            // The host's sources.list.d must not be read.
            "-oDir::Etc::SourceParts=/dev/null".to_owned(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            // The lists directory is root's; apt's unprivileged sandbox user cannot write it.
            "-oAPT::Sandbox::User=root".to_owned(),
            // Only package indices: no translations or AppStream metadata.
            "-oAcquire::Languages=none".to_owned(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_owned(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_owned(),
            // Other engineers' installs hold the dpkg lock for a while: wait instead of failing.
            "-oDPkg::Lock::Timeout=600".to_owned(),
        ]
    }

    /// `apt-get update` for this configuration, once (later runs use the cached lists; delete
    /// `updated` in the directory to refresh them).
    pub fn update(&self) -> anyhow::Result<()> {
        let stamp = self.dir.join("updated");
        if stamp.is_file() {
            return Ok(());
        }
        self.apt_get(&["update", "-q"]).context(
            "apt-get update for the kernel matrix's suites failed; is deb.debian.org reachable?",
        )?;
        fs::write(&stamp, "")?;
        Ok(())
    }

    /// Forgets the cached lists (a package named in them is gone from the mirror).
    pub fn refresh(&self) -> anyhow::Result<()> {
        let _ = fs::remove_file(self.dir.join("updated"));
        self.update()
    }

    /// Runs `apt-get ARGS` with this configuration, its output on standard error.
    pub fn apt_get(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("apt-get")
            .args(self.options())
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    /// Downloads `package` (name or name=version) into `dir` and returns the .deb's path.
    pub fn download(&self, package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let before = debs(dir)?;
        run(Command::new("apt-get")
            .args(self.options())
            .args(["download", "-q", package])
            .current_dir(dir))
        .with_context(|| format!("downloading {package}"))?;
        let name = package.split('=').next().unwrap_or(package);
        debs(dir)?
            .into_iter()
            .find(|p| {
                !before.contains(p)
                    || p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{name}_")))
            })
            .with_context(|| {
                format!(
                    "apt-get download {package} left no .deb in {}",
                    dir.display()
                )
            })
    }

    /// `apt-cache ARGS`, its standard output (apt-cache prints only the answer there).
    pub fn cache_query(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("apt-cache")
            .args(self.options())
            .args(args)
            .output()
            .context("cannot start apt-cache")?;
        if !out.status.success() {
            bail!(
                "apt-cache {} failed with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn debs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect())
}
