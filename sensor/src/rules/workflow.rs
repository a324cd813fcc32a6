//! The detection engineer's commands: `agent-sensor rules check FILES...` (every rule that
//! does not load, as `file:line:column: reason`) and `agent-sensor rules test --rules FILES
//! --events EVENTS.jsonl` (recorded events replayed through the same evaluation the daemon
//! runs, one JSON line per alert).
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;

use crate::rules::Rules;

/// `rules check`: loads `paths`, prints each rejection and a summary; fails on any rejection.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let loaded = Rules::load(paths);
    for r in &loaded.rejected {
        println!("{r}");
    }
    println!(
        "{} rule(s) loaded from {} file(s), {} not loaded",
        loaded.rules.len(),
        loaded.files,
        loaded.rejected.len()
    );
    Ok(if loaded.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `rules test`: replays `events` through the rules in `rules` (which must all load), prints
/// `{"line": N, "alert": {...}}` per alert; a line that is not a JSON object is an error
/// naming it.
pub fn test(rules: &[PathBuf], events: &Path) -> anyhow::Result<ExitCode> {
    let loaded = Rules::load(rules);
    if !loaded.rejected.is_empty() {
        let list: Vec<String> = loaded.rejected.iter().map(ToString::to_string).collect();
        anyhow::bail!("rules not loaded:\n{}", list.join("\n"));
    }
    let mut rules = loaded.rules;
    let input: Box<dyn BufRead> = if events.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(events).with_context(
            || format!("cannot read events from {}", events.display()),
        )?))
    };
    let mut out = std::io::stdout().lock();
    let mut alerts = 0u64;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("{}:{n}: cannot read", events.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{n}: not a JSON record", events.display()))?;
        anyhow::ensure!(
            value.is_object(),
            "{}:{n}: not a JSON object",
            events.display()
        );
        for alert in rules.test_line(&value) {
            let text = serde_json::to_string(&serde_json::json!({"line": n, "alert": alert}))?;
            writeln!(out, "{text}")?;
            alerts += 1;
        }
    }
    eprintln!("{alerts} alert(s)");
    Ok(ExitCode::SUCCESS)
}
