//! Which processes are observed and as which agent: every process, or the tracked ones (agents
//! and `--pid` trees); never the daemon itself. One map lookup for a process that is neither.
//! At exec, a process's own selectors (cgroup, executable, uid) are matched here.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns};
use sensor_common::{ExeKey, TrackedProcess, method, tracked_flags};

use crate::{
    globals::config,
    maps::{CGROUP_AGENTS, EXE_AGENTS, HELD_CGROUPS, HOLDING_UNTIL, TRACKED, UID_AGENTS},
};

/// The attribution of an observed process, `None` when it is not observed.
#[inline(always)]
pub fn observed(tgid: u32) -> Option<TrackedProcess> {
    let cfg = config();
    if tgid == cfg.sensor_tgid {
        return None;
    }
    // SAFETY: copied out at once.
    match unsafe { TRACKED.get(tgid) } {
        Some(t) => Some(*t),
        None => match held_cgroup(cfg.hold_new_cgroups) {
            Some(cgroup) => Some(TrackedProcess::held(cgroup)),
            None if cfg.all_processes != 0 => Some(TrackedProcess::default()),
            None => None,
        },
    }
}

/// The current task's cgroup, if it is one the daemon has not decided on yet. Only for the
/// current task: the hooks that call `observed` run in the context of the process observed.
#[inline(always)]
fn held_cgroup(holding: u32) -> Option<u64> {
    if holding == 0 {
        return None;
    }
    let until = HOLDING_UNTIL.get(0).copied().unwrap_or(0);
    // SAFETY (both): plain helper calls.
    if until == 0 || unsafe { bpf_ktime_get_boot_ns() } > until {
        return None;
    }
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    is_held(cgroup).then_some(cgroup)
}

/// Whether the daemon has yet to decide on `cgroup`.
#[inline(always)]
pub fn is_held(cgroup: u64) -> bool {
    // SAFETY: only tested for presence.
    unsafe { HELD_CGROUPS.get(cgroup) }.is_some()
}

/// The attribution of a process that may not be the current one (softirq context).
#[inline(always)]
pub fn attribution_of(tgid: u32) -> TrackedProcess {
    // SAFETY: copied out at once.
    unsafe { TRACKED.get(tgid) }.copied().unwrap_or_default()
}

/// The strongest selector this exec matches: cgroup, then executable, then uid.
#[inline(always)]
fn matched(cgroup_id: u64, exe: Option<ExeKey>, uid: u32) -> Option<(u32, u8)> {
    // SAFETY (all three): values copied out at once.
    if let Some(c) = unsafe { CGROUP_AGENTS.get(cgroup_id) } {
        return Some((c.agent, c.method));
    }
    if let Some(key) = exe
        && let Some(agent) = unsafe { EXE_AGENTS.get(key) }
    {
        return Some((*agent, method::EXECUTABLE));
    }
    unsafe { UID_AGENTS.get(uid) }.map(|agent| (*agent, method::UID))
}

/// Whether the daemon's own checks at exec (argv selectors, the marker) may still change an
/// attribution: none yet, or only inherited or image-based (never a held cgroup's, which the
/// daemon decides by its cgroup).
#[inline(always)]
pub fn daemon_may_change(a: TrackedProcess) -> bool {
    a.flags & tracked_flags::HELD == 0
        && (a.agent == 0
            || a.flags & tracked_flags::INHERITED != 0
            || !matches!(
                a.method,
                method::REGISTRATION | method::CGROUP | method::CONTAINER
            ))
}

/// Re-decides a process's attribution at exec and stores it. A match of at least medium trust
/// replaces an inherited or image-based attribution (a delegation hop when the agent changes);
/// it replaces a registration or cgroup attribution of the process itself only if more trusted.
/// A weak source (the environment marker) never overrides anything.
#[inline(always)]
pub fn attribute_exec(
    tgid: u32,
    cgroup_id: u64,
    exe: Option<ExeKey>,
    uid: u32,
) -> Option<TrackedProcess> {
    // SAFETY: copied out at once.
    let current = unsafe { TRACKED.get(tgid) }.copied();
    store(tgid, current, decide(current, matched(cgroup_id, exe, uid)))
}

/// Re-decides a process's attribution when it is moved into another cgroup (a write to
/// `cgroup.procs`, not a fork or exec): moved into an agent's cgroup, it is that agent's from
/// now on, by the same rule as at exec. Without this a process that moves itself into an
/// agent's cgroup would stay unattributed until it next execs.
#[inline(always)]
pub fn attribute_migration(tgid: u32, cgroup_id: u64) {
    if tgid == config().sensor_tgid {
        return;
    }
    // SAFETY (both): copied out at once.
    let Some(found) = (unsafe { CGROUP_AGENTS.get(cgroup_id) }).map(|c| (c.agent, c.method)) else {
        return;
    };
    let current = unsafe { TRACKED.get(tgid) }.copied();
    store(tgid, current, decide(current, Some(found)));
}

/// The attribution a process gets from what it had (`current`) and the selector it now matches
/// (`found`: agent and method).
#[inline(always)]
fn decide(current: Option<TrackedProcess>, found: Option<(u32, u8)>) -> Option<TrackedProcess> {
    match (current, found) {
        (current, None) => current,
        (None, Some((agent, m))) => Some(TrackedProcess {
            agent,
            method: m,
            ..Default::default()
        }),
        (Some(c), Some((agent, m))) => {
            // Registration and cgroup attributions are about the process wherever it goes;
            // executable, uid and marker matches are about the image it ran, which exec replaces.
            let sticks = c.flags & tracked_flags::INHERITED == 0
                && matches!(
                    c.method,
                    method::REGISTRATION | method::CGROUP | method::CONTAINER
                );
            let replaces = if c.agent == 0 {
                true
            } else if sticks {
                method::trust(m) > method::trust(c.method)
            } else {
                method::trust(m) >= 2
            };
            if !replaces {
                Some(c)
            } else if agent == c.agent {
                // The process confirms its agent directly: no longer merely inherited.
                Some(TrackedProcess {
                    method: m,
                    flags: 0,
                    ..c
                })
            } else {
                Some(TrackedProcess {
                    agent,
                    task: 0,
                    delegated_from: c.agent,
                    method: m,
                    flags: 0,
                    _pad: 0,
                })
            }
        }
    }
}

/// Stores a changed attribution; returns it.
#[inline(always)]
fn store(
    tgid: u32,
    current: Option<TrackedProcess>,
    decided: Option<TrackedProcess>,
) -> Option<TrackedProcess> {
    if let Some(d) = decided
        && Some(d) != current
    {
        // A full map leaves the process unattributed: counted, and reported as a gap.
        if TRACKED.insert(tgid, d, 0).is_err() {
            crate::output::count_lost(sensor_common::kind::TRACKING);
        }
    }
    decided
}
