//! The report as Markdown: the verifier's answer first, then a section per agent, then the
//! trail's gaps, annotations and manifest reloads. Every string from the trail is escaped, so
//! a hostile path or annotation cannot add a row, a heading or a link.
use std::fmt::Write as _;

use crate::audit::report::{
    Agent, Counted, Kind, Listed, Report, Sample,
    tally::{Link, Rest},
};

/// Escapes text from the trail for a Markdown paragraph or table cell: Markdown's punctuation
/// is backslash-escaped, line breaks and other control characters shown as `\u{..}`.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            // A link needs `[`; a heading `#`; a row `|`; emphasis `*`, `_`, `~`; HTML `<`, `&`.
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '!' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A record's place, short: file, line, sequence and the hash's first 16 digits.
pub fn link(l: &Link) -> String {
    let hash = l.hash_hex();
    format!("{} h:{}", text(&l.short()), &hash[..16])
}

fn rest(out: &mut String, r: &Rest, what: &str) {
    if r.keys > 0 || r.records > 0 {
        let _ = writeln!(
            out,
            "\n_and {} more {what} ({} records){}_",
            r.keys,
            r.records,
            if r.capped {
                ", some beyond the report's bound, counted together"
            } else {
                ""
            }
        );
    }
}

fn counted(out: &mut String, title: &str, items: &[Counted]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| {title} | records | first | last |\n| --- | ---: | --- | --- |"
    );
    for c in items {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            text(&c.key),
            c.records,
            link(&c.first),
            link(&c.last)
        );
    }
}

fn samples(out: &mut String, items: &[Sample]) {
    for s in items {
        let _ = writeln!(
            out,
            "- {} {} ({})",
            text(&s.time),
            text(&s.what),
            link(&s.link)
        );
    }
}

fn listed(out: &mut String, l: &Listed<Sample>) {
    samples(out, &l.items);
    if l.total > l.items.len() as u64 {
        let _ = writeln!(out, "- _and {} more_", l.total - l.items.len() as u64);
    }
}

/// The report as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.scope;
    let _ = writeln!(out, "# Agent evidence report\n");
    let _ = writeln!(out, "Made by {}.", text(&r.made_by));
    let _ = writeln!(
        out,
        "Trail: {}. Range: {} to {} (records from {} to {}). Agent: {}.",
        s.paths
            .iter()
            .map(|p| text(p))
            .collect::<Vec<_>>()
            .join(", "),
        s.since.as_deref().map_or("the beginning".into(), text),
        s.until.as_deref().map_or("the end".into(), text),
        s.first.as_deref().map_or("-".into(), text),
        s.last.as_deref().map_or("-".into(), text),
        s.agent.as_deref().map_or("all".into(), text)
    );
    let _ = writeln!(
        out,
        "{} records read, {} in range, {} not counted (they fail verification).",
        s.records_read, s.records_in_range, s.records_not_counted
    );
    evidence(&mut out, r);
    for a in &r.agents {
        agent(&mut out, a);
    }
    let _ = writeln!(
        out,
        "\n## Gaps\n\n{} gap record(s), {} event(s) lost.",
        r.gaps.records.total, r.gaps.lost
    );
    listed(&mut out, &r.gaps.records);
    let _ = writeln!(
        out,
        "\n## Annotations\n\n{} annotation(s).",
        r.annotations.total
    );
    for a in &r.annotations.items {
        let _ = writeln!(
            out,
            "- {} {} by {} (uid {}){}: {} ({})",
            text(&a.time),
            text(&a.kind),
            text(&a.author),
            a.peer_uid.map_or("?".into(), |u| u.to_string()),
            match (&a.subject, &a.about_agent) {
                (Some(s), Some(agent)) => format!(
                    " about {}'s record h:{}",
                    text(agent),
                    text(&s[..s.len().min(16)])
                ),
                (Some(s), None) => format!(" about record h:{}", text(&s[..s.len().min(16)])),
                _ => String::new(),
            },
            text(&a.text),
            link(&a.link)
        );
    }
    let _ = writeln!(
        out,
        "\n## Identity manifest reloads\n\n{} reload(s).",
        r.manifest_reloads.total
    );
    listed(&mut out, &r.manifest_reloads);
    if !r.unattributed.is_empty() {
        let _ = writeln!(out, "\n## Records of no agent\n");
        kinds_table(&mut out, &r.unattributed);
    }
    out
}

fn evidence(out: &mut String, r: &Report) {
    let e = &r.evidence;
    let _ = writeln!(
        out,
        "\n## Evidence: {}\n\nVerdict `{}` (exit status {}).",
        text(&e.summary),
        serde_json::to_value(e.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        e.exit_code
    );
    if e.signing.keys.is_empty() {
        let _ = writeln!(out, "Signed: no (no checkpoints).");
    } else {
        for k in &e.signing.keys {
            let _ = writeln!(
                out,
                "Signed by key `{}` ({} checkpoints).",
                text(&k.public_key),
                k.checkpoints
            );
        }
    }
    match &e.signing.verified_with {
        Some(k) => {
            let _ = writeln!(
                out,
                "Signatures checked with key `{k}`: {} checkpoint(s) verified, {} record(s) after the last.",
                e.signing.checkpoints_verified, e.signing.unsigned_tail
            );
        }
        None => {
            let _ = writeln!(out, "Signatures not checked (no key given).");
        }
    }
    if e.missing.is_empty() {
        let _ = writeln!(out, "\nNothing is missing.");
    } else {
        let _ = writeln!(out, "\nWhat is missing:\n");
        for m in &e.missing {
            let _ = writeln!(out, "- {}", text(m));
        }
    }
    if e.findings.total > 0 {
        let _ = writeln!(
            out,
            "\n{} finding(s):\n\n| file | line | kind | detail |\n| --- | ---: | --- | --- |",
            e.findings.total
        );
        for f in &e.findings.items {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                text(&f.file.to_string_lossy()),
                f.line,
                f.kind,
                text(&f.detail)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| sensor run | records | from | to | stopped |\n| --- | ---: | --- | --- | --- |"
    );
    for run in &e.runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            text(&run.instance_id),
            run.records,
            run.first.as_deref().map_or("-".into(), text),
            run.last.as_deref().map_or("-".into(), text),
            if run.stopped {
                format!("yes ({})", text(run.stop_reason.as_deref().unwrap_or("-")))
            } else {
                "**no**".into()
            }
        );
    }
}

fn kinds_table(out: &mut String, kinds: &[Kind]) {
    let _ = writeln!(
        out,
        "| record kind | records | outcomes | first | last |\n| --- | ---: | --- | --- | --- |"
    );
    for k in kinds {
        let outcomes: Vec<String> = k
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", text(o)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            text(&k.action),
            k.records,
            outcomes.join(", "),
            link(&k.first),
            link(&k.last)
        );
    }
}

fn agent(out: &mut String, a: &Agent) {
    let name = a.declaration.as_ref().and_then(|d| d.name.as_deref());
    let _ = writeln!(
        out,
        "\n## Agent {}{}\n\n{} record(s), {} to {}.",
        text(&a.id),
        name.map_or(String::new(), |n| format!(" ({})", text(n))),
        a.records,
        a.first.as_deref().map_or("-".into(), text),
        a.last.as_deref().map_or("-".into(), text)
    );
    let _ = writeln!(out, "\n### Declaration\n");
    match a.declaration.as_ref().or(a.manifest.as_ref()) {
        None => {
            let _ = writeln!(out, "No record in range carries its declaration.");
        }
        Some(d) => {
            let _ = writeln!(out, "| field | value |\n| --- | --- |");
            let row = |out: &mut String, field: &str, v: Option<&str>| {
                let _ = writeln!(
                    out,
                    "| {field} | {} |",
                    v.map_or("**not declared**".into(), text)
                );
            };
            row(out, "name", d.name.as_deref());
            row(out, "purpose", d.purpose.as_deref());
            row(out, "business owner", d.business_owner.as_deref());
            row(out, "technical owner", d.technical_owner.as_deref());
            row(out, "team", d.team.as_deref());
            row(
                out,
                "data sensitivity (tier)",
                d.data_sensitivity.as_deref(),
            );
            row(out, "SPIFFE id", d.spiffe_id.as_deref());
            let tasks = d.allowed_tasks.join(", ");
            row(
                out,
                "allowed tasks",
                (!tasks.is_empty()).then_some(tasks.as_str()),
            );
            if let Some(l) = &d.first {
                let _ = writeln!(out, "| declared in | {} |", link(l));
            } else if let Some(o) = &d.origin {
                let _ = writeln!(out, "| declared in | the manifest, {} |", text(o));
            }
        }
    }
    if let Some(m) = &a.manifest {
        let _ = writeln!(
            out,
            "\nThe manifest ({}) selects it by {}{}.",
            text(m.origin.as_deref().unwrap_or("given")),
            if a.selectors.is_empty() {
                "registration only".to_owned()
            } else {
                text(&a.selectors.join("; "))
            },
            match &a.declaration {
                Some(d) if !d.same_as(m) => ", and **declares it otherwise than its records**",
                Some(_) => ", and declares it as its records do",
                None => ", and no record of it is in range",
            }
        );
    }
    for c in &a.declaration_changes {
        let _ = writeln!(
            out,
            "\nDeclared otherwise from {}: owners {} / {}, purpose {}.",
            c.first.as_ref().map_or("-".into(), link),
            text(c.business_owner.as_deref().unwrap_or("-")),
            text(c.technical_owner.as_deref().unwrap_or("-")),
            text(c.purpose.as_deref().unwrap_or("-"))
        );
    }
    let _ = writeln!(
        out,
        "\n### Identity sources\n\n| method | trust | records | through an ancestor | first |\n| --- | --- | ---: | ---: | --- |"
    );
    for s in &a.identity_sources {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            text(&s.method),
            text(&s.trust),
            s.records,
            s.inherited,
            link(&s.first)
        );
    }
    let _ = writeln!(out, "\n### Tasks and sessions");
    if a.tasks.is_empty() {
        let _ = writeln!(out, "\nNo task registered.");
    }
    counted(out, "task", &a.tasks);
    rest(out, &a.tasks_rest, "tasks");
    let p = &a.processes;
    let _ = writeln!(
        out,
        "\n### Processes\n\n{} exec(s), {} fork(s), {} exit(s), {} running at start.",
        p.execs, p.forks, p.exits, p.snapshots
    );
    counted(out, "executable", &p.executables);
    rest(out, &p.executables_rest, "executables");
    if !p.delegations.is_empty() {
        let _ = writeln!(out, "\nDelegation hops:");
        counted(out, "hop", &p.delegations);
    }
    files(out, a);
    network(out, a);
    let r = &a.registrations;
    if r.granted > 0 || r.refused.total > 0 {
        let _ = writeln!(
            out,
            "\n### Registrations\n\n{} granted, {} refused.",
            r.granted, r.refused.total
        );
        listed(out, &r.refused);
    }
    let _ = writeln!(out, "\n### Record kinds\n");
    kinds_table(out, &a.kinds);
    for k in a.kinds.iter().filter(|k| !k.samples.is_empty()) {
        let _ = writeln!(
            out,
            "\n#### {}\n\n{} record(s):\n",
            text(&k.action),
            k.records
        );
        samples(out, &k.samples);
    }
    if a.notable.total > 0 {
        let _ = writeln!(out, "\n### Timeline\n");
        listed(out, &a.notable);
    }
    let _ = writeln!(out, "\n### SOC 2");
    for c in &a.soc2 {
        let _ = writeln!(out, "\n**{}** ({})\n", c.title, c.criteria);
        for s in &c.shows {
            let _ = writeln!(out, "- {}", text(s));
        }
        for m in &c.missing {
            let _ = writeln!(out, "- missing: {}", text(m));
        }
    }
}

fn files(out: &mut String, a: &Agent) {
    let f = &a.files;
    let _ = writeln!(
        out,
        "\n### Files\n\n{} record(s): {} read(s), {} write(s), {} failed.",
        f.records, f.reads, f.writes, f.failures
    );
    for c in &f.classes {
        let _ = writeln!(
            out,
            "\n#### {}: {} record(s), {} read(s), {} write(s), {} failed\n\n| path | records | reads | writes | actions | first | last |\n| --- | ---: | ---: | ---: | --- | --- | --- |",
            text(&c.class),
            c.records,
            c.reads,
            c.writes,
            c.failures
        );
        for p in &c.paths {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                text(&p.path),
                p.records,
                p.reads,
                p.writes,
                text(&p.actions.join(" ")),
                link(&p.first),
                link(&p.last)
            );
        }
        rest(out, &c.paths_rest, "paths");
    }
}

fn network(out: &mut String, a: &Agent) {
    let n = &a.network;
    let _ = writeln!(out, "\n### Network\n\n{} record(s).", n.records);
    if !n.destinations.is_empty() {
        let _ = writeln!(
            out,
            "\n| direction | address | port | transport | DNS name | records | failed | actions | first | last |\n| --- | --- | ---: | --- | --- | ---: | ---: | --- | --- | --- |"
        );
        for d in &n.destinations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                d.direction,
                text(&d.address),
                d.port.map_or("-".into(), |p| p.to_string()),
                text(d.transport.as_deref().unwrap_or("-")),
                text(d.domain.as_deref().unwrap_or("-")),
                d.records,
                d.failures,
                text(&d.actions.join(" ")),
                link(&d.first),
                link(&d.last)
            );
        }
    }
    rest(out, &n.destinations_rest, "destinations");
    counted(out, "DNS question", &n.dns_questions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_make_a_row_a_heading_or_a_link() {
        let t = text("a|b\n# heading\r[x](http://evil)<script>`");
        assert!(!t.contains('\n') && !t.contains('\r'));
        assert_eq!(
            t,
            "a\\|b\\u{a}\\# heading\\u{d}\\[x\\](http://evil)\\<script\\>\\`"
        );
    }
}
