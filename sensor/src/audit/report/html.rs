//! The report as one self-contained HTML page: styles, charts (inline SVG) and its little
//! script are in the page, so it opens with no network. At the top the verifier's answer,
//! a timeline with a lane per agent (activity over time, and marks for delegations, sensitive
//! files, refusals and other record kinds), and charts of destinations and file classes; then
//! each agent's section, as in the Markdown form. Every string from the trail is escaped.
use std::fmt::Write as _;

use crate::audit::report::{
    Agent, Counted, Kind, Listed, Report, Sample,
    tally::{Link, Rest},
    when::{self, Histogram},
};

/// Colours of the activity columns: process, file, network, other.
pub const ACTIVITY_COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];
/// The destinations chart's bars.
pub const DESTINATION_COLOUR: &str = "#76b7b2";
/// The file classes chart's bars.
pub const FILE_CLASS_COLOUR: &str = "#edc948";
/// Timeline marks.
pub const MARK_COLOUR: &str = "#e15759";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn link(l: &Link) -> String {
    let hash = l.hash_hex();
    format!(
        "<span class=\"link\" title=\"run {} sequence {} hash {}\">{} <code>{}</code></span>",
        esc(&l.run),
        l.sequence,
        hash,
        esc(&l.short()),
        &hash[..16]
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 2em 4em;color:#222;background:#fff}
h1{margin:.6em 0 .2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right}.link{font-size:12px;color:#555;white-space:nowrap}
.verdict{padding:.6em 1em;border-radius:6px;font-weight:600;font-size:16px}
.complete{background:#e3f4e1;border:2px solid #59a14f}.incomplete{background:#fff4d6;border:2px solid #edc948}
.altered{background:#fde2e1;border:2px solid #e15759}.missing{color:#b00}
.charts{display:flex;flex-wrap:wrap;gap:2em}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
section.agent{margin-top:2em}button.toggle{font-size:12px;margin-left:1em}.hidden{display:none}";

/// A tiny script: buttons that fold an agent's section; it marks the page as ready, so a test
/// can tell it ran without an error.
const SCRIPT: &str = "document.querySelectorAll('button.toggle').forEach(function(b){
b.addEventListener('click',function(){var s=document.getElementById(b.dataset.target);s.classList.toggle('hidden');});});
document.documentElement.dataset.ready='1';";

/// The report as an HTML page.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Agent evidence report</title><style>{STYLE}</style></head><body>\n<h1>Agent evidence report</h1>\n"
    );
    let s = &r.scope;
    let _ = writeln!(
        out,
        "<p>Made by {}. Trail: {}. Range: {} to {} (records from {} to {}). Agent: {}. {} records read, {} in range, {} not counted (they fail verification).</p>",
        esc(&r.made_by),
        esc(&s.paths.join(", ")),
        esc(s.since.as_deref().unwrap_or("the beginning")),
        esc(s.until.as_deref().unwrap_or("the end")),
        esc(s.first.as_deref().unwrap_or("-")),
        esc(s.last.as_deref().unwrap_or("-")),
        esc(s.agent.as_deref().unwrap_or("all")),
        s.records_read,
        s.records_in_range,
        s.records_not_counted
    );
    evidence(&mut out, r);
    timeline(&mut out, &r.agents);
    let _ = writeln!(out, "<div class=\"charts\">");
    let mut destinations: Vec<(String, u64)> = Vec::new();
    let mut classes: Vec<(String, u64)> = Vec::new();
    for a in &r.agents {
        for d in &a.network.destinations {
            let name = match &d.domain {
                Some(domain) => format!("{domain} ({})", d.address),
                None => d.address.clone(),
            };
            let label = match d.port {
                Some(p) => format!("{}: {name} port {p}", a.id),
                None => format!("{}: {name}", a.id),
            };
            destinations.push((label, d.records));
        }
        for c in &a.files.classes {
            classes.push((format!("{}: {}", a.id, c.class), c.records));
        }
    }
    bar_chart(
        &mut out,
        "chart-destinations",
        "Destinations (records)",
        &mut destinations,
        DESTINATION_COLOUR,
    );
    bar_chart(
        &mut out,
        "chart-file-classes",
        "Files by class (records)",
        &mut classes,
        FILE_CLASS_COLOUR,
    );
    let _ = writeln!(out, "</div>");
    for (i, a) in r.agents.iter().enumerate() {
        agent(&mut out, i, a);
    }
    let _ = writeln!(
        out,
        "<h2>Gaps</h2><p>{} gap record(s), {} event(s) lost.</p>",
        r.gaps.records.total, r.gaps.lost
    );
    listed(&mut out, &r.gaps.records);
    let _ = writeln!(
        out,
        "<h2>Annotations</h2><p>{} annotation(s).</p><table><tr><th>time</th><th>kind</th><th>author</th><th>uid</th><th>about</th><th>text</th><th>record</th></tr>",
        r.annotations.total
    );
    for a in &r.annotations.items {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.time),
            esc(&a.kind),
            esc(&a.author),
            a.peer_uid.map_or("?".into(), |u| u.to_string()),
            esc(a.about_agent.as_deref().unwrap_or("")),
            a.subject
                .as_deref()
                .map_or(String::new(), |s| format!(" <code>{}</code>", esc(s))),
            esc(&a.text),
            link(&a.link)
        );
    }
    let _ = writeln!(out, "</table>");
    let _ = writeln!(
        out,
        "<h2>Identity manifest reloads</h2><p>{} reload(s).</p>",
        r.manifest_reloads.total
    );
    listed(&mut out, &r.manifest_reloads);
    if !r.unattributed.is_empty() {
        let _ = writeln!(out, "<h2>Records of no agent</h2>");
        kinds_table(&mut out, &r.unattributed);
    }
    let _ = writeln!(out, "<script>{SCRIPT}</script>\n</body></html>");
    out
}

fn evidence(out: &mut String, r: &Report) {
    let e = &r.evidence;
    let class = match e.exit_code {
        0 => "complete",
        3 => "incomplete",
        _ => "altered",
    };
    let _ = writeln!(
        out,
        "<h2>Evidence</h2><div class=\"verdict {class}\" id=\"verdict\">{} (exit status {})</div>",
        esc(&e.summary),
        e.exit_code
    );
    let _ = write!(out, "<p>");
    if e.signing.keys.is_empty() {
        let _ = write!(out, "Signed: no (no checkpoints). ");
    }
    for k in &e.signing.keys {
        let _ = write!(
            out,
            "Signed by key <code>{}</code> ({} checkpoints). ",
            esc(&k.public_key),
            k.checkpoints
        );
    }
    match &e.signing.verified_with {
        Some(k) => {
            let _ = write!(
                out,
                "Signatures checked with key <code>{}</code>: {} verified, {} record(s) after the last.",
                esc(k),
                e.signing.checkpoints_verified,
                e.signing.unsigned_tail
            );
        }
        None => {
            let _ = write!(out, "Signatures not checked (no key given).");
        }
    }
    let _ = writeln!(out, "</p>");
    if e.missing.is_empty() {
        let _ = writeln!(out, "<p>Nothing is missing.</p>");
    } else {
        let _ = writeln!(out, "<p>What is missing:</p><ul class=\"missing\">");
        for m in &e.missing {
            let _ = writeln!(out, "<li>{}</li>", esc(m));
        }
        let _ = writeln!(out, "</ul>");
    }
    if e.findings.total > 0 {
        let _ = writeln!(
            out,
            "<p>{} finding(s):</p><table><tr><th>file</th><th>line</th><th>kind</th><th>detail</th></tr>",
            e.findings.total
        );
        for f in &e.findings.items {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.file.to_string_lossy()),
                f.line,
                f.kind,
                esc(&f.detail)
            );
        }
        let _ = writeln!(out, "</table>");
    }
    let _ = writeln!(
        out,
        "<table><tr><th>sensor run</th><th>records</th><th>from</th><th>to</th><th>stopped</th></tr>"
    );
    for run in &e.runs {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.instance_id),
            run.records,
            esc(run.first.as_deref().unwrap_or("-")),
            esc(run.last.as_deref().unwrap_or("-")),
            if run.stopped {
                format!("yes ({})", esc(run.stop_reason.as_deref().unwrap_or("-")))
            } else {
                "<b class=\"missing\">no</b>".into()
            }
        );
    }
    let _ = writeln!(out, "</table>");
}

/// The time span the agents' histograms cover, in seconds.
fn span(agents: &[Agent]) -> Option<(i64, i64)> {
    let ends = agents
        .iter()
        .filter(|a| !a.activity.buckets.is_empty())
        .map(|a| {
            let h = &a.activity;
            (h.start, h.start + h.bucket_seconds * h.buckets.len() as i64)
        });
    ends.fold(None, |acc, (s, e)| match acc {
        None => Some((s, e)),
        Some((s0, e0)) => Some((s0.min(s), e0.max(e))),
    })
}

/// One SVG: a lane per agent, its activity as stacked bars over time and its notable records
/// as marks (each with a tooltip naming the record).
fn timeline(out: &mut String, agents: &[Agent]) {
    const LABEL: f64 = 180.0;
    const WIDTH: f64 = 960.0;
    const LANE: f64 = 60.0;
    let _ = writeln!(out, "<h2>Timeline</h2>");
    let Some((t0, t1)) = span(agents) else {
        let _ = writeln!(out, "<p id=\"timeline\">No agent activity in range.</p>");
        return;
    };
    let seconds = (t1 - t0).max(1) as f64;
    let x = |t: i64| LABEL + (t - t0) as f64 / seconds * WIDTH;
    let height = LANE * agents.len() as f64 + 30.0;
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span style=\"background:{}\"></span>processes<span style=\"background:{}\"></span>files<span style=\"background:{}\"></span>network<span style=\"background:{}\"></span>other<span style=\"background:{MARK_COLOUR}\"></span>notable record</p>",
        ACTIVITY_COLOURS[0], ACTIVITY_COLOURS[1], ACTIVITY_COLOURS[2], ACTIVITY_COLOURS[3]
    );
    let _ = writeln!(
        out,
        "<svg id=\"timeline\" width=\"{}\" height=\"{height}\" shape-rendering=\"crispEdges\" font-size=\"12\">",
        LABEL + WIDTH + 10.0
    );
    for (i, a) in agents.iter().enumerate() {
        let top = LANE * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><line x1=\"{LABEL}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#ccc\"/>",
            top + LANE / 2.0,
            esc(&a.id),
            LABEL + WIDTH,
            top + LANE - 4.0,
            top + LANE - 4.0
        );
        lane(out, &a.activity, top, LANE - 16.0, &x, seconds / WIDTH);
        for s in &a.notable.items {
            let Some(t) = when::parse_rfc3339(&s.time) else {
                continue;
            };
            let secs = t.div_euclid(1_000_000_000) as i64;
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{}\" width=\"4\" height=\"10\" fill=\"{MARK_COLOUR}\"><title>{} {} ({})</title></rect>",
                x(secs) - 2.0,
                top + LANE - 14.0,
                esc(&s.time),
                esc(&s.what),
                esc(&s.link.short())
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"{LABEL}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height - 8.0,
        when::seconds_rfc3339(t0),
        LABEL + WIDTH,
        height - 8.0,
        when::seconds_rfc3339(t1)
    );
}

/// An agent's activity bars: each bucket stacked by column, scaled to the busiest bucket.
fn lane(
    out: &mut String,
    h: &Histogram,
    top: f64,
    height: f64,
    x: &dyn Fn(i64) -> f64,
    seconds_per_px: f64,
) {
    let busiest = h
        .buckets
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let width = (h.bucket_seconds as f64 / seconds_per_px).max(3.0);
    for (i, b) in h.buckets.iter().enumerate() {
        let left = x(h.start + h.bucket_seconds * i as i64);
        let mut bottom = top + height;
        for (column, n) in b.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let bar = (*n as f64 / busiest * height).max(2.0);
            bottom -= bar;
            let _ = writeln!(
                out,
                "<rect x=\"{left:.1}\" y=\"{bottom:.1}\" width=\"{width:.1}\" height=\"{bar:.1}\" fill=\"{}\"><title>{n}</title></rect>",
                ACTIVITY_COLOURS[column]
            );
        }
    }
}

/// A horizontal bar chart of the biggest items.
fn bar_chart(out: &mut String, id: &str, title: &str, items: &mut [(String, u64)], colour: &str) {
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let items = &items[..items.len().min(12)];
    let _ = writeln!(out, "<figure><figcaption>{}</figcaption>", esc(title));
    if items.is_empty() {
        let _ = writeln!(out, "<p id=\"{id}\">None in range.</p></figure>");
        return;
    }
    let most = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64;
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" width=\"560\" height=\"{}\" shape-rendering=\"crispEdges\" font-size=\"12\">",
        items.len() * 22 + 4
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i * 22 + 2;
        let w = (*n as f64 / most * 260.0).max(3.0);
        let short: String = label.chars().take(38).collect();
        let _ = writeln!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"250\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"{colour}\"><title>{}: {n}</title></rect><text x=\"{:.1}\" y=\"{}\">{n}</text>",
            y + 13,
            esc(&short),
            esc(label),
            250.0 + w + 4.0,
            y + 13
        );
    }
    let _ = writeln!(out, "</svg></figure>");
}

fn rest(out: &mut String, r: &Rest, what: &str) {
    if r.keys > 0 || r.records > 0 {
        let _ = writeln!(
            out,
            "<p><i>and {} more {what} ({} records){}</i></p>",
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
        "<table><tr><th>{title}</th><th>records</th><th>first</th><th>last</th></tr>"
    );
    for c in items {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.key),
            c.records,
            link(&c.first),
            link(&c.last)
        );
    }
    let _ = writeln!(out, "</table>");
}

fn listed(out: &mut String, l: &Listed<Sample>) {
    if l.items.is_empty() {
        return;
    }
    let _ = writeln!(out, "<ul>");
    for s in &l.items {
        let _ = writeln!(
            out,
            "<li>{} {} {}</li>",
            esc(&s.time),
            esc(&s.what),
            link(&s.link)
        );
    }
    if l.total > l.items.len() as u64 {
        let _ = writeln!(
            out,
            "<li><i>and {} more</i></li>",
            l.total - l.items.len() as u64
        );
    }
    let _ = writeln!(out, "</ul>");
}

fn kinds_table(out: &mut String, kinds: &[Kind]) {
    let _ = writeln!(
        out,
        "<table><tr><th>record kind</th><th>records</th><th>outcomes</th><th>first</th><th>last</th></tr>"
    );
    for k in kinds {
        let outcomes: Vec<String> = k
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", esc(o)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.action),
            k.records,
            outcomes.join(", "),
            link(&k.first),
            link(&k.last)
        );
    }
    let _ = writeln!(out, "</table>");
}

fn agent(out: &mut String, i: usize, a: &Agent) {
    let name = a.declaration.as_ref().and_then(|d| d.name.as_deref());
    let _ = writeln!(
        out,
        "<section class=\"agent\"><h2>Agent {}{}<button class=\"toggle\" data-target=\"agent-{i}\">fold</button></h2><div id=\"agent-{i}\"><p>{} record(s), {} to {}.</p>",
        esc(&a.id),
        name.map_or(String::new(), |n| format!(" ({})", esc(n))),
        a.records,
        esc(a.first.as_deref().unwrap_or("-")),
        esc(a.last.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(out, "<h3>Declaration</h3>");
    match a.declaration.as_ref().or(a.manifest.as_ref()) {
        None => {
            let _ = writeln!(
                out,
                "<p class=\"missing\">No record in range carries its declaration.</p>"
            );
        }
        Some(d) => {
            let _ = writeln!(out, "<table>");
            let row = |out: &mut String, field: &str, v: Option<&str>| {
                let _ = writeln!(
                    out,
                    "<tr><th>{field}</th><td>{}</td></tr>",
                    v.map_or("<b class=\"missing\">not declared</b>".into(), esc)
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
                let _ = writeln!(out, "<tr><th>declared in</th><td>{}</td></tr>", link(l));
            } else if let Some(o) = &d.origin {
                let _ = writeln!(
                    out,
                    "<tr><th>declared in</th><td>the manifest, {}</td></tr>",
                    esc(o)
                );
            }
            let _ = writeln!(out, "</table>");
        }
    }
    if let Some(m) = &a.manifest {
        let _ = writeln!(
            out,
            "<p>The manifest ({}) selects it by {}{}.</p>",
            esc(m.origin.as_deref().unwrap_or("given")),
            if a.selectors.is_empty() {
                "registration only".to_owned()
            } else {
                esc(&a.selectors.join("; "))
            },
            match &a.declaration {
                Some(d) if !d.same_as(m) => {
                    ", and <b class=\"missing\">declares it otherwise than its records</b>"
                }
                Some(_) => ", and declares it as its records do",
                None => ", and no record of it is in range",
            }
        );
    }
    for c in &a.declaration_changes {
        let _ = writeln!(
            out,
            "<p>Declared otherwise from {}: owners {} / {}, purpose {}.</p>",
            c.first.as_ref().map_or("-".into(), link),
            esc(c.business_owner.as_deref().unwrap_or("-")),
            esc(c.technical_owner.as_deref().unwrap_or("-")),
            esc(c.purpose.as_deref().unwrap_or("-"))
        );
    }
    let _ = writeln!(
        out,
        "<h3>Identity sources</h3><table><tr><th>method</th><th>trust</th><th>records</th><th>through an ancestor</th><th>first</th></tr>"
    );
    for s in &a.identity_sources {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.method),
            esc(&s.trust),
            s.records,
            s.inherited,
            link(&s.first)
        );
    }
    let _ = writeln!(out, "</table><h3>Tasks and sessions</h3>");
    if a.tasks.is_empty() {
        let _ = writeln!(out, "<p>No task registered.</p>");
    }
    counted(out, "task", &a.tasks);
    rest(out, &a.tasks_rest, "tasks");
    let procs = &a.processes;
    let _ = writeln!(
        out,
        "<h3>Processes</h3><p>{} exec(s), {} fork(s), {} exit(s), {} running at start.</p>",
        procs.execs, procs.forks, procs.exits, procs.snapshots
    );
    counted(out, "executable", &procs.executables);
    rest(out, &procs.executables_rest, "executables");
    if !procs.delegations.is_empty() {
        let _ = writeln!(out, "<p>Delegation hops:</p>");
        counted(out, "hop", &procs.delegations);
    }
    let files = &a.files;
    let _ = writeln!(
        out,
        "<h3>Files</h3><p>{} record(s): {} read(s), {} write(s), {} failed.</p>",
        files.records, files.reads, files.writes, files.failures
    );
    for c in &files.classes {
        let _ = writeln!(
            out,
            "<h4>{}: {} record(s), {} read(s), {} write(s), {} failed</h4><table><tr><th>path</th><th>records</th><th>reads</th><th>writes</th><th>actions</th><th>first</th><th>last</th></tr>",
            esc(&c.class),
            c.records,
            c.reads,
            c.writes,
            c.failures
        );
        for p in &c.paths {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.path),
                p.records,
                p.reads,
                p.writes,
                esc(&p.actions.join(" ")),
                link(&p.first),
                link(&p.last)
            );
        }
        let _ = writeln!(out, "</table>");
        rest(out, &c.paths_rest, "paths");
    }
    let net = &a.network;
    let _ = writeln!(out, "<h3>Network</h3><p>{} record(s).</p>", net.records);
    if !net.destinations.is_empty() {
        let _ = writeln!(
            out,
            "<table><tr><th>direction</th><th>address</th><th>port</th><th>transport</th><th>DNS name</th><th>records</th><th>failed</th><th>actions</th><th>first</th><th>last</th></tr>"
        );
        for d in &net.destinations {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.direction),
                esc(&d.address),
                d.port.map_or("-".into(), |p| p.to_string()),
                esc(d.transport.as_deref().unwrap_or("-")),
                esc(d.domain.as_deref().unwrap_or("-")),
                d.records,
                d.failures,
                esc(&d.actions.join(" ")),
                link(&d.first),
                link(&d.last)
            );
        }
        let _ = writeln!(out, "</table>");
    }
    rest(out, &net.destinations_rest, "destinations");
    counted(out, "DNS question", &net.dns_questions);
    let regs = &a.registrations;
    if regs.granted > 0 || regs.refused.total > 0 {
        let _ = writeln!(
            out,
            "<h3>Registrations</h3><p>{} granted, {} refused.</p>",
            regs.granted, regs.refused.total
        );
        listed(out, &regs.refused);
    }
    let _ = writeln!(out, "<h3>Record kinds</h3>");
    kinds_table(out, &a.kinds);
    for k in a.kinds.iter().filter(|k| !k.samples.is_empty()) {
        let _ = writeln!(
            out,
            "<h4>{}</h4><p>{} record(s):</p>",
            esc(&k.action),
            k.records
        );
        let l = Listed {
            total: k.samples.len() as u64,
            items: k.samples.clone(),
        };
        listed(out, &l);
    }
    if a.notable.total > 0 {
        let _ = writeln!(out, "<h3>Notable records</h3>");
        listed(out, &a.notable);
    }
    let _ = writeln!(out, "<h3>SOC 2</h3>");
    for c in &a.soc2 {
        let _ = writeln!(out, "<h4>{} ({})</h4><ul>", c.title, c.criteria);
        for s in &c.shows {
            let _ = writeln!(out, "<li>{}</li>", esc(s));
        }
        for m in &c.missing {
            let _ = writeln!(out, "<li class=\"missing\">missing: {}</li>", esc(m));
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "</div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_open_a_tag_or_leave_an_attribute() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>' &"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp;"
        );
    }
}
