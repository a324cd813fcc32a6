//! Operators' time-bound exceptions: for one agent and one rule, until a time, granted over
//! the control socket (who, why, until when) and recorded before they take effect. While one
//! is in force, an action its rule does not allow goes ahead: the decision says `allowed` and
//! names the exception; a registration it covers is granted.
use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime},
};

/// The rules an exception can name.
pub const RULES: &[&str] = &[
    "egress",
    "files.read",
    "files.write",
    "executables",
    "tasks",
];
/// The longest exception (a week): a standing exception belongs in the manifest.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;

/// One exception in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The agent it is for.
    pub agent: String,
    /// The rule it suspends.
    pub rule: String,
    /// Who granted it, as they say.
    pub author: String,
    /// When it ends.
    pub until: SystemTime,
    /// The `chain.sequence` of the record that granted it.
    pub sequence: Option<u64>,
}

/// What runs when an exception is granted (the kernel's egress policy is updated before the
/// requester hears it is in force).
type OnGrant = Box<dyn Fn(&Exceptions) + Send + Sync>;

/// The exceptions in force, shared by the control socket (which grants them and consults them
/// for registrations) and the pipeline (which consults them for decisions).
#[derive(Clone, Default)]
pub struct Exceptions {
    all: Arc<Mutex<Vec<Exception>>>,
    on_grant: Arc<OnceLock<OnGrant>>,
}

impl std::fmt::Debug for Exceptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Exceptions").field(&self.all).finish()
    }
}

impl Exceptions {
    /// Runs `hook` after every grant (set once; later calls are ignored).
    pub fn on_grant(&self, hook: impl Fn(&Self) + Send + Sync + 'static) {
        let _ = self.on_grant.set(Box::new(hook));
    }

    /// Puts `exception` in force (and forgets the expired ones).
    pub fn grant(&self, exception: Exception) {
        let now = SystemTime::now();
        {
            let mut all = self.all.lock().expect("no poisoned lock");
            all.retain(|e| e.until > now);
            all.push(exception);
        }
        if let Some(hook) = self.on_grant.get() {
            hook(self);
        }
    }

    /// The exception for `agent` and `rule` in force at `now` (the one that lasts longest).
    pub fn in_force(&self, agent: &str, rule: &str, now: SystemTime) -> Option<Exception> {
        let all = self.all.lock().expect("no poisoned lock");
        all.iter()
            .filter(|e| e.agent == agent && e.rule == rule && e.until > now)
            .max_by_key(|e| e.until)
            .cloned()
    }
}

/// Why a request for an exception is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidException {
    /// Not a rule.
    #[error("rule {0:?} must be one of {rules}", rules = RULES.join(", "))]
    Rule(String),
    /// No time, or too long.
    #[error("seconds must be 1 to {MAX_SECONDS}")]
    Seconds,
    /// An empty or overlong author.
    #[error("the author must be 1 to 256 bytes")]
    Author,
    /// An empty or overlong reason.
    #[error("the reason must be 1 to 16384 bytes")]
    Reason,
}

/// Checks a request for an exception; `Ok` with its end.
pub fn check(
    rule: &str,
    seconds: u64,
    author: &str,
    reason: &str,
    now: SystemTime,
) -> Result<SystemTime, InvalidException> {
    if !RULES.contains(&rule) {
        return Err(InvalidException::Rule(rule.to_owned()));
    }
    if seconds == 0 || seconds > MAX_SECONDS {
        return Err(InvalidException::Seconds);
    }
    if author.is_empty() || author.len() > 256 {
        return Err(InvalidException::Author);
    }
    if reason.is_empty() || reason.len() > 16 * 1024 {
        return Err(InvalidException::Reason);
    }
    Ok(now + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exception_covers_its_agent_and_rule_until_it_ends() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        let exceptions = Exceptions::default();
        let until = check("egress", 60, "alice", "incident 7", t0).unwrap();
        exceptions.grant(Exception {
            agent: "a".into(),
            rule: "egress".into(),
            author: "alice".into(),
            until,
            sequence: Some(9),
        });
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            exceptions
                .in_force("a", "egress", at(59))
                .map(|e| e.sequence),
            Some(Some(9))
        );
        assert_eq!(exceptions.in_force("a", "egress", at(60)), None, "ended");
        assert_eq!(exceptions.in_force("a", "files.read", at(1)), None);
        assert_eq!(exceptions.in_force("b", "egress", at(1)), None);
    }

    #[test]
    fn requests_are_checked() {
        let now = SystemTime::now();
        let why = |rule, secs, author, reason| {
            check(rule, secs, author, reason, now)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            why("files", 1, "a", "r"),
            "rule \"files\" must be one of egress, files.read, files.write, executables, tasks"
        );
        assert_eq!(why("tasks", 0, "a", "r"), "seconds must be 1 to 604800");
        assert_eq!(
            why("tasks", 604_801, "a", "r"),
            "seconds must be 1 to 604800"
        );
        assert_eq!(
            why("tasks", 1, "", "r"),
            "the author must be 1 to 256 bytes"
        );
        assert_eq!(
            why("tasks", 1, "a", ""),
            "the reason must be 1 to 16384 bytes"
        );
    }
}
