//! The small subcommands: `probe` and `check-config`.
use std::{path::Path, process::ExitCode};

use crate::{cli::ProbeArgs, config::Config, features};

pub fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let found = features::probe();
    let missing = features::missing_required(&found);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
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
    }
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<&str> = missing.iter().map(|f| f.name).collect();
        eprintln!(
            "agent-sensor: error: this kernel lacks what the sensor needs: {}",
            names.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(file)?;
    println!("{file}: ok\n{config:#?}", file = file.display());
    Ok(ExitCode::SUCCESS)
}

pub fn check_identities(path: &Path) -> anyhow::Result<ExitCode> {
    let agents = crate::manifest::load(path)?;
    println!("{}: ok, {} agent(s)", path.display(), agents.len());
    for a in &agents {
        let selectors: Vec<String> = a.selectors.iter().map(ToString::to_string).collect();
        println!("  {} ({}): {}", a.id, a.origin, selectors.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn register(args: &crate::cli::RegisterArgs) -> anyhow::Result<ExitCode> {
    let body = if args.list {
        serde_json::json!({"op": "list"})
    } else if args.end_task {
        serde_json::json!({"op": "end_task", "pid": args.pid})
    } else {
        serde_json::json!({"op": "register", "pid": args.pid, "agent": args.agent, "task": args.task, "session": args.session})
    };
    send(&args.socket, &body)
}

pub fn annotate(args: &crate::cli::AnnotateArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"op": "annotate", "kind": args.kind, "author": args.author,
        "text": args.text, "subject": args.subject});
    send(&args.socket, &body)
}

/// Sends one request to the control socket and prints the reply; failure unless `ok`.
fn send(socket: &Path, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let reply = crate::registration::request(socket, body).with_context(|| {
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

pub fn verify(
    paths: &[std::path::PathBuf],
    key: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = key.map(crate::signing::load_verifying_key).transpose()?;
    let report = crate::verify::verify(paths, key.as_ref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn keygen(dir: &Path) -> anyhow::Result<ExitCode> {
    let (private, public) = crate::signing::keygen(dir)?;
    println!(
        "private key: {} (keep it on the host, 0600)\npublic key:  {} (give it to auditors)",
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
