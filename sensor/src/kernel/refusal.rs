//! Why the verifier refused a program, from the end of its log, in one line an operator can
//! act on.
use crate::kernel::program_budget;

/// The helpers the programs call that are newer than the ring buffer (Linux 5.8): number, name,
/// and the release that added it.
const NEWER_HELPERS: &[(u32, &str, &str)] = &[
    (158, "bpf_get_current_task_btf", "5.11"),
    (175, "bpf_task_pt_regs", "5.15"),
];

/// Why the verifier refused a program, and what an operator can do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The reason, in words.
    pub(crate) why: String,
    /// What to do about it.
    pub(crate) action: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; what to do: {}", self.why, self.action)
    }
}

/// Why the verifier refused a program, from its log (or, without one, the load's `error`), and
/// what an operator can do about it.
pub(crate) fn diagnose(log: &str, error: &std::io::Error) -> Refusal {
    let (why, action) = why_and_action(log, error);
    Refusal { why, action }
}

fn why_and_action(log: &str, error: &std::io::Error) -> (String, String) {
    let report = "report `uname -r` and this message to the agent-sensor maintainers".to_owned();
    if let Some(line) = log.lines().find(|l| l.contains("combined stack size")) {
        let bytes = line
            .rsplit("is ")
            .next()
            .unwrap_or("")
            .trim_end_matches(". Too large");
        return (
            format!(
                "its deepest call chain needs {bytes} bytes of stack, more than the \
                 {STACK_LIMIT} this kernel allows (it gives BPF programs no private stack)",
                STACK_LIMIT = program_budget::STACK_LIMIT
            ),
            report,
        );
    }
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("unknown func") || l.contains("invalid func"))
    {
        let helper = line
            .split_whitespace()
            .find(|w| w.starts_with("bpf_") || w.contains('#'))
            .unwrap_or(line);
        // A kernel names only the helpers it knows: name the newer ones the programs use.
        let named = helper
            .rsplit('#')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(|id| NEWER_HELPERS.iter().find(|h| h.0 == id))
            .map_or_else(
                || helper.to_owned(),
                |(_, name, since)| format!("{name} (Linux {since}, helper {helper})"),
            );
        return (
            format!("this kernel lacks the BPF helper {named}"),
            "run the sensor on a kernel the README lists as supported".to_owned(),
        );
    }
    if log.contains("BPF program is too large") || log.contains("too many states") {
        return (
            "the verifier gave up: the program needs more than the 1,000,000 instructions it \
             checks at most"
                .to_owned(),
            report,
        );
    }
    let last = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .map(str::to_owned);
    match last {
        Some(line) => (format!("the verifier says: {line}"), report),
        None if error.raw_os_error() == Some(libc::EPERM) => (
            "permission denied with no verifier output: the kernel refuses this program type \
             (kernel lockdown, missing CAP_BPF/CAP_PERFMON, or a kernel built without it)"
                .to_owned(),
            "run `agent-sensor probe` to see which program types this kernel allows".to_owned(),
        ),
        None => (format!("{error}"), report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_why_in_words() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let Refusal { why, .. } = diagnose(
            "Func#1 ('walk_path') is safe\ncombined stack size of 2 calls is 608. Too large\n",
            &eperm,
        );
        assert!(why.contains("608 bytes of stack"), "{why}");
        let Refusal { why, action } = diagnose(
            "10: (85) call unknown#158\ninvalid func unknown#158\n",
            &eperm,
        );
        assert!(
            why.contains("bpf_get_current_task_btf (Linux 5.11"),
            "{why}"
        );
        assert!(action.contains("README"), "{action}");
        let Refusal { why, .. } = diagnose("", &eperm);
        assert!(why.contains("refuses this program type"), "{why}");
    }
}
