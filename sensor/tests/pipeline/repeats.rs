//! Folding exact repeats: the first occurrence is written at once, the repeats within the
//! window become one record carrying `event.repeat_count`, written when the window closes (by
//! a later occurrence, or at stop). Time is the records' own (`ktime_ns`).
use crate::support::*;

const WINDOW_MS: u32 = 10_000;

fn agents() -> String {
    manifest(&[agent("reviewer", &["{cgroup: /agents/reviewer/**}"])])
}

fn folding(window_ms: u32) -> Config {
    Config {
        repeat_window_ms: window_ms,
        ..Config::default()
    }
}

/// (path, repeat_count) of the `open` records, in order.
fn opens(out: &Outcome) -> Vec<(String, Option<u64>)> {
    out.with_action("open")
        .into_iter()
        .map(|r| {
            (
                r["file"]["path"].as_str().unwrap_or_default().to_owned(),
                r["event"]["repeat_count"].as_u64(),
            )
        })
        .collect()
}

fn opened(path: &str, repeats: Option<u64>) -> (String, Option<u64>) {
    (path.to_owned(), repeats)
}

#[test]
fn repeats_within_the_window_fold_into_one_record_written_at_stop() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    let other = f.process(None, attributed(1, method::CGROUP));
    for _ in 0..5 {
        f.open(p, b"/srv/data/a.json");
    }
    f.open(p, b"/srv/data/b.json");
    // The same path by another process is another operation.
    f.open(other, b"/srv/data/a.json");
    f.open(other, b"/srv/data/a.json");
    let (batches, _) = f.finish();
    let out = run(&agents(), folding(WINDOW_MS), records(batches));
    assert_eq!(
        opens(&out),
        [
            opened("/srv/data/a.json", None),
            opened("/srv/data/b.json", None),
            opened("/srv/data/a.json", None),
            // At stop, in the order their windows opened.
            opened("/srv/data/a.json", Some(4)),
            opened("/srv/data/a.json", Some(1)),
        ]
    );
    let folded = &out.with_action("open")[3];
    assert_eq!(folded["process"]["pid"], p.tgid);
    // The folded record is the latest occurrence: its time is the fifth open's.
    let first = &out.with_action("open")[0];
    assert!(folded["@timestamp"].as_str() > first["@timestamp"].as_str());
    assert_eq!(out.stop()["sensor"]["lifecycle"]["records_written"], 7);
    assert!(out.verify().intact());
}

#[test]
fn a_later_occurrence_past_the_window_closes_it_and_opens_the_next() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    for _ in 0..3 {
        f.open(p, b"/srv/data/a.json");
    }
    f.advance(u64::from(WINDOW_MS) * 1_000_000);
    f.open(p, b"/srv/data/a.json");
    // Alone in its window: no folded record for it.
    f.open(p, b"/srv/data/c.json");
    let (batches, _) = f.finish();
    let out = run(&agents(), folding(WINDOW_MS), records(batches));
    assert_eq!(
        opens(&out),
        [
            opened("/srv/data/a.json", None),
            opened("/srv/data/a.json", Some(2)),
            opened("/srv/data/a.json", None),
            opened("/srv/data/c.json", None),
        ]
    );
}

#[test]
fn without_a_window_every_occurrence_is_written() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    for _ in 0..4 {
        f.open(p, b"/srv/data/a.json");
    }
    let (batches, _) = f.finish();
    let out = run(&agents(), folding(0), records(batches));
    assert_eq!(opens(&out), vec![opened("/srv/data/a.json", None); 4]);
}

/// Folding must not change what a record says beyond `repeat_count`: file records keep their
/// agent. Today they lose it — with a repeat window, file records are built without the
/// identity (and container) blocks (`handle_event` calls `file`, not `build`, for them).
#[test]
fn folded_and_unfolded_file_records_keep_their_identity() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    for _ in 0..3 {
        f.open(p, b"/srv/data/a.json");
    }
    let (batches, _) = f.finish();
    let out = run(&agents(), folding(WINDOW_MS), records(batches));
    let opens = out.with_action("open");
    assert_eq!(opens.len(), 2);
    for r in opens {
        assert_eq!(identity(r), Some(("reviewer", "cgroup", "strong")), "{r}");
    }
}
