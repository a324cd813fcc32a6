//! The subcommands other than `run`: `probe`, `check-config`, `identities check`, `register`,
//! `annotate`, `except`, `verify`, `keygen`, each returning the exit code `main` ends with.
use std::{path::Path, process::ExitCode};

use crate::{
    cli::ProbeArgs, config::Config, kernel::features, kernel::loader, kernel::program_budget,
};

/// One program `run` loads, as this kernel's verifier judged it.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize)]
struct ProgramVerdict {
    name: String,
    loads: bool,
    // Flattened: `None` writes nothing by itself.
    #[serde(flatten)]
    #[serialize_always]
    stats: Option<loader::ProgramStats>,
    /// Why the kernel refuses it and what to do, when it does.
    refused: Option<String>,
}

/// `probe`: reports the kernel's features and loads the real programs as `run` would, so an
/// operator learns before deploying whether this kernel takes them, and why not; failure when
/// it does not.
pub fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let features::Findings {
        features: found,
        variants,
    } = features::probe();
    let missing = features::missing_required(&found);
    // The real programs, loaded as `run` loads them: a kernel can offer every program type and
    // still refuse the sensor's own programs.
    let programs: Vec<ProgramVerdict> = match loader::verify_programs(&Config::default(), variants)
    {
        Ok(results) => results
            .into_iter()
            .map(|r| match r {
                Ok(stats) => ProgramVerdict {
                    name: stats.name.to_owned(),
                    loads: true,
                    stats: Some(stats),
                    refused: None,
                },
                Err(e) => ProgramVerdict {
                    name: refused_name(&e),
                    loads: false,
                    stats: None,
                    refused: Some(e.to_string()),
                },
            })
            .collect(),
        Err(e) => vec![ProgramVerdict {
            name: "all".to_owned(),
            loads: false,
            stats: None,
            refused: Some(e.to_string()),
        }],
    };
    if args.json {
        let report = serde_json::json!({ "features": found, "programs": programs });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &found {
            let state = if f.available { "yes" } else { "no " };
            let role = match (f.required, f.used) {
                (true, _) => "required",
                (false, true) => "used",
                (false, false) => "unused",
            };
            println!("{:<15} {state}  {role:<8}  {}", f.name, f.detail);
        }
        let used: Vec<&str> = found.iter().filter(|f| f.used).map(|f| f.name).collect();
        println!("\nthe sensor will use: {}", used.join(", "));
        println!("\nthe sensor's programs on this kernel:");
        for p in &programs {
            match (&p.stats, &p.refused) {
                (Some(s), _) => println!(
                    "{:<20} loads    stack {} of {} bytes, {} instructions, {} verified",
                    p.name,
                    show(s.stack),
                    program_budget::STACK_LIMIT,
                    show(s.insns),
                    s.verified_insns.map_or_else(
                        || "not reported by this kernel".to_owned(),
                        |n| n.to_string()
                    ),
                ),
                (None, Some(why)) => println!("{:<20} REFUSED  {why}", p.name),
                (None, None) => {}
            }
        }
    }
    let refused: Vec<&str> = programs
        .iter()
        .filter(|p| !p.loads)
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|f| f.name).collect();
        eprintln!(
            "agent-sensor: error: this kernel lacks what the sensor needs: {}",
            names.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if !refused.is_empty() {
        eprintln!(
            "agent-sensor: error: this kernel refuses the sensor's programs: {} (see above)",
            refused.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn show<T: ToString>(n: Option<T>) -> String {
    n.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn refused_name(e: &loader::LoadError) -> String {
    match e {
        loader::LoadError::Refused { name, .. } | loader::LoadError::Program { name, .. } => {
            (*name).to_owned()
        }
        _ => "?".to_owned(),
    }
}

/// `check-config`: validates a configuration file, with the environment's overrides, without a
/// kernel and prints the effective settings.
pub fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load_with_environment(Some(file))?;
    println!("{file}: ok\n{config:#?}", file = file.display());
    Ok(ExitCode::SUCCESS)
}

/// `identities check`: validates a manifest without a kernel and lists its agents and selectors.
pub fn check_identities(path: &Path) -> anyhow::Result<ExitCode> {
    let agents = crate::identity::manifest::load(path)?;
    println!("{}: ok, {} agent(s)", path.display(), agents.len());
    for a in &agents {
        let mut selectors: Vec<String> = a.selectors.iter().map(ToString::to_string).collect();
        selectors.extend(a.capture.map(|c| c.to_string()));
        println!("  {} ({}): {}", a.id, a.origin, selectors.join(", "));
        println!("    {}", a.policy.summary());
    }
    Ok(ExitCode::SUCCESS)
}

/// `register`: asks the running sensor to attribute a process tree, end its task, or list
/// attributions; prints the reply, failure when refused.
pub fn register(args: &crate::cli::RegisterArgs) -> anyhow::Result<ExitCode> {
    let body = if args.list {
        serde_json::json!({"op": "list"})
    } else if args.end_task {
        serde_json::json!({"op": "end_task", "pid": args.pid})
    } else {
        serde_json::json!({"op": "register", "pid": args.pid, "agent": args.agent, "task": args.task, "session": args.session,
            "override": args.overrides})
    };
    send(&args.socket, &body)
}

/// `annotate`: appends an operator's annotation to the running sensor's trail; prints its place
/// in the chain, failure when refused.
pub fn annotate(args: &crate::cli::AnnotateArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"op": "annotate", "kind": args.kind, "author": args.author,
        "text": args.text, "subject": args.subject});
    send(&args.socket, &body)
}

/// `except`: grants an agent a time-bound exception to one rule over the running sensor's
/// control socket; prints its place in the chain and its end, failure when refused.
pub fn except(args: &crate::cli::ExceptArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"op": "except", "agent": args.agent, "rule": args.rule,
        "seconds": args.seconds, "author": args.author, "reason": args.reason});
    send(&args.socket, &body)
}

/// Sends one request to the control socket and prints the reply; failure unless `ok`.
fn send(socket: &Path, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let reply = crate::identity::registration::request(socket, body).with_context(|| {
        format!(
            "cannot reach the sensor at {} (is it running?)",
            socket.display()
        )
    })?;
    println!("{reply}");
    let ok = serde_json::from_str::<serde_json::Value>(&reply).is_ok_and(|v| v["ok"] == true);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `verify`: checks trails for completeness and alteration (and checkpoint signatures, given
/// the public key); the exit status is the verdict's (`audit::verdict`), and 2 when there is
/// none (an unreadable file or key).
pub fn verify(
    paths: &[std::path::PathBuf],
    key: Option<&Path>,
    json: bool,
    allow_open_end: bool,
) -> anyhow::Result<ExitCode> {
    use crate::audit::verdict::{Answer, EXIT_ERROR};
    let verified = || -> anyhow::Result<_> {
        let key = key
            .map(crate::evidence::signing::load_verifying_key)
            .transpose()?;
        Ok(crate::audit::verify::verify(paths, key.as_ref())?)
    };
    let report = match verified() {
        Ok(report) => report,
        Err(e) => {
            eprintln!("agent-sensor: error: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    let answer = Answer::new(&report, allow_open_end);
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", report.human_with(answer.verdict.describe()));
    }
    Ok(ExitCode::from(answer.exit_code))
}

/// `report`: the auditor's report of a trail in the form asked for; the exit status is the
/// verdict's, as `verify` gives it, and 2 when there is none (bad times, an unreadable trail).
pub fn report(args: &crate::cli::ReportArgs) -> anyhow::Result<ExitCode> {
    use crate::audit::{report, verdict::EXIT_ERROR};
    let made = || -> anyhow::Result<(String, u8)> {
        let time = |flag: &str, t: &Option<String>| {
            t.as_deref()
                .map(|t| {
                    report::when::parse_rfc3339(t).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{flag} {t:?} is not an RFC 3339 time in UTC (like 2026-12-07T02:50:29Z)"
                        )
                    })
                })
                .transpose()
        };
        let options = report::Options {
            paths: args.paths.clone(),
            key: args.key.clone(),
            since: time("--since", &args.since)?,
            until: time("--until", &args.until)?,
            agent: args.agent.clone(),
            allow_open_end: args.allow_open_end,
            manifest: args.identities.clone(),
        };
        let made = report::build(&options)?;
        let text = match args.format.as_str() {
            "html" => report::html::render(&made),
            "json" => serde_json::to_string_pretty(&made)? + "\n",
            _ => report::markdown::render(&made),
        };
        Ok((text, made.evidence.exit_code))
    };
    let (text, code) = match made() {
        Ok(made) => made,
        Err(e) => {
            eprintln!("agent-sensor: error: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("agent-sensor: error: cannot write {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_ERROR));
            }
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::from(code))
}

/// `keygen`: makes the sensor's signing key pair in `dir`, never overwriting one.
pub fn keygen(dir: &Path) -> anyhow::Result<ExitCode> {
    let (private, public) = crate::evidence::signing::keygen(dir)?;
    println!(
        "private key: {} (keep it on the host, 0600)\npublic key:  {} (give it to auditors)",
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
