//! Which processes a registration may name. A registration attributes a process and every
//! descendant it starts, so naming pid 1 would make every process the host starts the agent's;
//! a kernel thread is not an agent; the sensor never observes itself; and a process another
//! agent holds by an attribution as strong as a registration (its own registration, cgroup or
//! container match, not one inherited from a parent) is only taken over when the request says
//! it overrides, which the registration record then names.
use sensor_common::{TrackedProcess, method, tracked_flags};

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the guard knows about the process a registration names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// The process the request names.
    pub(crate) pid: u32,
    /// Whether it is a kernel thread.
    pub(crate) kernel_thread: bool,
    /// Its entry in the kernel's attribution map, if any.
    pub(crate) current: Option<TrackedProcess>,
}

/// Why a registration is refused; the text is what the client and the record read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// pid 1 would make every process the host starts the agent's.
    #[error("pid 1 may not be registered: every process the host starts would become the agent's")]
    Init,
    /// Kernel threads run no agent.
    #[error("process {0} is a kernel thread")]
    KernelThread(u32),
    /// The sensor never observes itself.
    #[error("process {0} is the sensor itself")]
    Sensor(u32),
    /// Another agent holds the process by a strong attribution of its own.
    #[error(
        "process {pid} is attributed to agent {holder:?} by {method} (strong trust); say override to take it over"
    )]
    Held {
        /// The process the request names.
        pid: u32,
        /// The agent that holds it.
        holder: String,
        /// How it holds it.
        method: &'static str,
    },
}

/// Decides a registration of `target` for agent number `agent`: `Ok` with the agent number it
/// takes the process from by override (if it does), or why it is refused. `name_of` names an
/// agent number for the refusal.
pub(crate) fn check(
    target: Target,
    sensor_pid: u32,
    agent: u32,
    overrides: bool,
    name_of: impl Fn(u32) -> String,
) -> Result<Option<u32>, Refusal> {
    if target.pid == 1 {
        return Err(Refusal::Init);
    }
    if target.kernel_thread {
        return Err(Refusal::KernelThread(target.pid));
    }
    if target.pid == sensor_pid {
        return Err(Refusal::Sensor(target.pid));
    }
    let Some(current) = target.current.filter(|c| c.agent != 0 && c.agent != agent) else {
        return Ok(None);
    };
    let strong = current.flags & tracked_flags::INHERITED == 0
        && method::trust(current.method) >= method::trust(method::REGISTRATION);
    match (strong, overrides) {
        (false, _) => Ok(None),
        (true, true) => Ok(Some(current.agent)),
        (true, false) => Err(Refusal::Held {
            pid: target.pid,
            holder: name_of(current.agent),
            method: method::name(current.method),
        }),
    }
}

/// Whether `pid` is a kernel thread (`PF_KTHREAD` in its stat flags); a process that is gone
/// is not (the caller refuses it as missing).
pub(crate) fn is_kernel_thread(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_flags(&stat))
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// The flags field of a `/proc/<pid>/stat` line: the sixth after the command, which is in
/// parentheses and may itself contain spaces and parentheses.
fn stat_flags(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(6)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(agent: u32, m: u8, flags: u8) -> TrackedProcess {
        TrackedProcess {
            agent,
            method: m,
            flags,
            ..Default::default()
        }
    }

    fn decide(pid: u32, kthread: bool, current: Option<TrackedProcess>, o: bool) -> String {
        let target = Target {
            pid,
            kernel_thread: kthread,
            current,
        };
        match check(target, 77, 5, o, |n| format!("agent-{n}")) {
            Ok(None) => "granted".to_owned(),
            Ok(Some(n)) => format!("granted over {n}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn init_kernel_threads_and_the_sensor_are_refused_even_with_override() {
        for o in [false, true] {
            assert_eq!(
                decide(1, false, None, o),
                "pid 1 may not be registered: every process the host starts would become the agent's"
            );
            assert_eq!(decide(2, true, None, o), "process 2 is a kernel thread");
            assert_eq!(
                decide(77, false, None, o),
                "process 77 is the sensor itself"
            );
        }
    }

    #[test]
    fn a_strong_attribution_of_another_agent_needs_override() {
        for m in [method::REGISTRATION, method::CGROUP, method::CONTAINER] {
            assert_eq!(
                decide(10, false, Some(entry(3, m, 0)), false),
                format!(
                    "process 10 is attributed to agent \"agent-3\" by {} (strong trust); say override to take it over",
                    method::name(m)
                )
            );
            assert_eq!(
                decide(10, false, Some(entry(3, m, 0)), true),
                "granted over 3"
            );
        }
    }

    #[test]
    fn weaker_inherited_and_same_agent_attributions_are_replaced_freely() {
        for m in [
            method::EXECUTABLE,
            method::UID,
            method::ARGV,
            method::ENVIRONMENT,
        ] {
            assert_eq!(decide(10, false, Some(entry(3, m, 0)), false), "granted");
        }
        // Inherited from a registered parent: registering the child is a delegation.
        let inherited = Some(entry(3, method::REGISTRATION, tracked_flags::INHERITED));
        assert_eq!(decide(10, false, inherited, false), "granted");
        // The same agent again (a new task), or nobody's.
        assert_eq!(
            decide(10, false, Some(entry(5, method::CGROUP, 0)), false),
            "granted"
        );
        assert_eq!(decide(10, false, Some(entry(0, 0, 0)), false), "granted");
        assert_eq!(decide(10, false, None, true), "granted");
    }

    #[test]
    fn stat_flags_are_read_past_a_hostile_command_name() {
        let stat = "42 (a) b) S 1 2 3 4 5 2097216 0 0";
        assert_eq!(stat_flags(stat), Some(2_097_216));
        assert_eq!(stat_flags("42 (x"), None);
        assert!(is_kernel_thread(2), "kthreadd is pid 2");
        assert!(!is_kernel_thread(std::process::id()));
    }
}
