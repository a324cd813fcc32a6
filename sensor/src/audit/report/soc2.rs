//! The SOC 2 mapping of an agent's section: for each area an auditor walks through (identity
//! and ownership, access and least privilege, monitoring and anomalies, change and review),
//! what the report shows, and what is missing, said plainly. It only restates the section and
//! the verifier's findings; the links are there.
use serde::Serialize;

use crate::audit::{
    report::{Agent, Annotation, Evidence, Gaps, Listed, Sample},
    verdict::Verdict,
};

/// Classes of files that hold credentials or keys (`file.class` built-ins).
const SENSITIVE: &[&str] = &[
    "ssh_key",
    "ssh_authorized_keys",
    "shadow",
    "sudoers",
    "kubernetes_token",
    "kubernetes_secret",
    "kubeconfig",
    "cloud_credentials",
    "env_file",
    "gpg_private_key",
    "tls_private_key",
    "credentials",
];

/// One area of the mapping.
#[derive(Clone, Debug, Serialize)]
pub struct Criterion {
    /// `identity_and_ownership`, `access_and_least_privilege`, `monitoring_and_anomalies`,
    /// `change_and_review`.
    pub area: &'static str,
    /// Its title for people.
    pub title: &'static str,
    /// The SOC 2 common criteria it bears on.
    pub criteria: &'static str,
    /// What the report shows for it.
    pub shows: Vec<String>,
    /// What is missing for it.
    pub missing: Vec<String>,
}

/// The four areas for `agent`.
pub fn criteria(
    agent: &Agent,
    evidence: &Evidence,
    gaps: &Gaps,
    annotations: &Listed<Annotation>,
    reloads: &Listed<Sample>,
) -> Vec<Criterion> {
    vec![
        identity(agent),
        access(agent),
        monitoring(agent, evidence, gaps),
        change(agent, annotations, reloads),
    ]
}

fn identity(agent: &Agent) -> Criterion {
    let mut shows = Vec::new();
    let mut missing = Vec::new();
    if agent.records == 0 {
        shows.push("declared in the manifest, with no record in range".into());
    }
    if let (Some(m), Some(t)) = (&agent.manifest, &agent.declaration)
        && !m.same_as(t)
    {
        missing.push(format!(
            "the manifest ({}) declares it otherwise than its records in range do",
            m.origin.as_deref().unwrap_or("given")
        ));
    }
    match agent.declaration.as_ref().or(agent.manifest.as_ref()) {
        None => missing.push(
            "no declaration: none of the agent's records in range carries the manifest's block, and no manifest declares it"
                .into(),
        ),
        Some(d) => {
            let mut field = |value: &Option<String>, what: &str| match value {
                Some(v) => shows.push(format!("{what}: {v}")),
                None => missing.push(format!("no {what} declared")),
            };
            field(&d.business_owner, "business owner");
            field(&d.technical_owner, "technical owner");
            field(&d.purpose, "purpose");
            field(&d.data_sensitivity, "data sensitivity (tier)");
            if let Some(s) = &d.spiffe_id {
                shows.push(format!("SPIFFE id: {s}"));
            }
        }
    }
    for s in &agent.identity_sources {
        shows.push(format!(
            "{} record(s) attributed by {} (trust {}){}",
            s.records,
            s.method,
            s.trust,
            if s.inherited > 0 {
                format!(", {} through an ancestor", s.inherited)
            } else {
                String::new()
            }
        ));
    }
    let weak: u64 = agent
        .identity_sources
        .iter()
        .filter(|s| s.trust != "strong")
        .map(|s| s.records)
        .sum();
    if weak > 0 {
        missing.push(format!(
            "{weak} record(s) attributed with less than strong trust (by executable, argv, uid or environment): the agent's identity there rests on what a process claims"
        ));
    }
    Criterion {
        area: "identity_and_ownership",
        title: "Identity and ownership",
        criteria: "CC1.3, CC6.2",
        shows,
        missing,
    }
}

fn access(agent: &Agent) -> Criterion {
    let mut shows = Vec::new();
    let mut missing = Vec::new();
    let allowed = agent
        .declaration
        .as_ref()
        .or(agent.manifest.as_ref())
        .map(|d| d.allowed_tasks.clone())
        .unwrap_or_default();
    if allowed.is_empty() {
        missing.push("no allowed tasks declared: any task may be registered for it".into());
    } else {
        shows.push(format!("allowed tasks: {}", allowed.join(", ")));
    }
    shows.push(format!(
        "{} task(s) in range; {} registration(s) granted, {} refused",
        agent.tasks.len() as u64 + agent.tasks_rest.keys,
        agent.registrations.granted,
        agent.registrations.refused.total
    ));
    let sensitive: Vec<String> = agent
        .files
        .classes
        .iter()
        .filter(|c| SENSITIVE.contains(&c.class.as_str()))
        .map(|c| format!("{} ({} read, {} written)", c.class, c.reads, c.writes))
        .collect();
    if sensitive.is_empty() {
        shows.push("no credential or key files touched".into());
    } else {
        shows.push(format!(
            "credential and key files touched: {}",
            sensitive.join(", ")
        ));
    }
    shows.push(format!(
        "{} file record(s): {} read(s), {} write(s), {} failed; {} destination(s)",
        agent.files.records,
        agent.files.reads,
        agent.files.writes,
        agent.files.failures,
        agent.network.destinations.len() as u64 + agent.network.destinations_rest.keys
    ));
    if let Some(p) = agent.kinds.iter().find(|k| k.action == "policy_decision") {
        shows.push(format!("{} policy decision(s)", p.records));
    } else {
        missing.push(
            "no policy decisions in range: nothing shows the agent's access checked against a policy at the time".into(),
        );
    }
    Criterion {
        area: "access_and_least_privilege",
        title: "Access and least privilege",
        criteria: "CC6.1, CC6.3",
        shows,
        missing,
    }
}

fn monitoring(agent: &Agent, evidence: &Evidence, gaps: &Gaps) -> Criterion {
    let mut shows = vec![format!(
        "the trail is {} ({} sensor run(s))",
        evidence.summary,
        evidence.runs.len()
    )];
    let mut missing = Vec::new();
    if evidence.verdict != Verdict::Complete {
        missing.push(format!(
            "the evidence is {}: see the verifier's findings at the top",
            evidence.summary
        ));
    }
    if evidence.signing.keys.is_empty() {
        missing.push("no signing key configured: no checkpoint signs the records".into());
    } else {
        let keys: Vec<&str> = evidence
            .signing
            .keys
            .iter()
            .map(|k| k.public_key.as_str())
            .collect();
        shows.push(format!("checkpoints signed by {}", keys.join(", ")));
    }
    if gaps.records.total > 0 {
        missing.push(format!(
            "gaps in the range: the sensor recorded {} loss(es), {} event(s) not delivered",
            gaps.records.total, gaps.lost
        ));
    } else {
        shows.push("no recorded losses in range".into());
    }
    let alerts: u64 = agent
        .kinds
        .iter()
        .filter(|k| k.action.contains("alert") || k.action.contains("detection"))
        .map(|k| k.records)
        .sum();
    if alerts > 0 {
        shows.push(format!("{alerts} alert(s)"));
    } else {
        missing.push("no alerts in range (no detection rules ran, or none fired)".into());
    }
    if agent.records > 0 {
        shows.push(format!(
            "{} record(s) of its activity, {} to {}",
            agent.records,
            agent.first.as_deref().unwrap_or("?"),
            agent.last.as_deref().unwrap_or("?")
        ));
    }
    Criterion {
        area: "monitoring_and_anomalies",
        title: "Monitoring and anomalies",
        criteria: "CC7.2, CC7.3",
        shows,
        missing,
    }
}

fn change(agent: &Agent, annotations: &Listed<Annotation>, reloads: &Listed<Sample>) -> Criterion {
    let mut shows = Vec::new();
    let mut missing = Vec::new();
    if agent.declaration_changes.is_empty() {
        shows.push("its declaration did not change in range".into());
    } else {
        shows.push(format!(
            "its declaration changed {} time(s) in range",
            agent.declaration_changes.len()
        ));
    }
    shows.push(format!(
        "{} identity manifest reload(s) in range",
        reloads.total
    ));
    let about: Vec<&Annotation> = annotations
        .items
        .iter()
        .filter(|a| a.about_agent.as_deref() == Some(&agent.id))
        .collect();
    let reviews = about
        .iter()
        .filter(|a| a.kind == "review" || a.kind == "acknowledgement")
        .count();
    let overrides = about.iter().filter(|a| a.kind == "override").count();
    if about.is_empty() {
        missing.push(
            "no human review: no annotation in range is about one of this agent's records".into(),
        );
    } else {
        shows.push(format!(
            "{} annotation(s) about its records: {reviews} review(s) or acknowledgement(s), {overrides} override(s)",
            about.len()
        ));
    }
    Criterion {
        area: "change_and_review",
        title: "Change and review",
        criteria: "CC8.1, CC4.1",
        shows,
        missing,
    }
}
