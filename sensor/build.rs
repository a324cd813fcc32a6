//! Builds the kernel programs (`sensor-ebpf`) for the BPF target with the nightly pinned in
//! `sensor-ebpf/rust-toolchain.toml` and bpf-linker, and embeds them in the daemon.
//! `cargo xtask setup` installs both.
//!
//! Without bpf-linker (a machine that never ran set-up) the daemon is built without its
//! kernel programs, with a warning, so the library and its root-free tests still build and
//! run under a plain `cargo test`; such a binary refuses to load, saying why. `CI` or
//! `AGENT_SENSOR_REQUIRE_EBPF` in the environment makes a missing bpf-linker an error.
use std::{env, path::PathBuf};

fn main() -> aya_build::Result<()> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("../sensor-ebpf");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=AGENT_SENSOR_REQUIRE_EBPF");
    if !put_bpf_linker_on_path() {
        let required = ["CI", "AGENT_SENSOR_REQUIRE_EBPF"]
            .iter()
            .any(|v| env::var_os(v).is_some_and(|v| !v.is_empty()));
        assert!(
            !required,
            "bpf-linker is missing and the kernel programs are required: run `cargo xtask setup`"
        );
        println!(
            "cargo:warning=building agent-sensor WITHOUT its kernel programs (no bpf-linker): \
             it will refuse to load them; run `cargo xtask setup`, then build again"
        );
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
        std::fs::write(out_dir.join("sensor"), b"").expect("write to OUT_DIR");
        return Ok(());
    }
    let toolchain = ebpf_toolchain(&ebpf_dir);
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sensor-ebpf",
            root_dir: ebpf_dir.to_str().expect("UTF-8 repository path"),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The pinned channel, or the toolchain `AGENT_SENSOR_EBPF_TOOLCHAIN` names (set-up says when
/// that makes the bytecode differ from other machines').
fn ebpf_toolchain(ebpf_dir: &std::path::Path) -> String {
    println!("cargo:rerun-if-env-changed=AGENT_SENSOR_EBPF_TOOLCHAIN");
    if let Some(chosen) = env::var("AGENT_SENSOR_EBPF_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return chosen;
    }
    let file = ebpf_dir.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    text.lines()
        .find_map(|l| {
            let value = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("{} has no `channel = \"...\"` line", file.display()))
}

/// `cargo xtask setup` builds bpf-linker under the user's cache; use it when PATH has none, so a
/// plain `cargo build` works after set-up too. False when there is none.
fn put_bpf_linker_on_path() -> bool {
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()) {
        return true;
    }
    let cache = env::var_os("AGENT_SENSOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/agent-sensor")));
    let Some(bin) = cache.map(|c| c.join("bpf-linker/bin")) else {
        return false;
    };
    if bin.join("bpf-linker").is_file() {
        let paths = std::iter::once(bin).chain(env::split_paths(&path));
        let joined = env::join_paths(paths).expect("PATH entries without separators");
        // SAFETY: build scripts are single-threaded here, before any child is spawned.
        unsafe { env::set_var("PATH", joined) };
        true
    } else {
        false
    }
}
