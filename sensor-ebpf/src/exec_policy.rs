//! `executables` and `files` rules in `kill` mode: an agent's exec of a program its rule does
//! not allow is stopped with SIGKILL from `sched_process_exec`, and an agent's open of a file its
//! rule does not allow from the open syscall's exit (`file`). The exec or open has completed by
//! then (these are no LSM hooks: they cannot refuse it), but the signal is delivered before the
//! process returns to user space: none of the new program's instructions run, and the process
//! never gets the opened file's descriptor. The rules are in `EXEC_POLICY`, `FILE_READ_POLICY`
//! and `FILE_WRITE_POLICY`, LPM tries of the agents' allowed paths and directory prefixes (see
//! `sensor_common::exec_allow`).
use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_send_signal},
    maps::LpmTrie,
};
use sensor_common::{
    EXEC_PATH_KEY, ExecAllow, ExecKey, FILENAME_CAP, FileRecord, SCRATCH_SIZE, exec_allow,
    syscall as sc,
};

use crate::{
    bounds::{opaque, scratch_offset},
    globals::{config, offsets},
    kernel::{Chunk, KPtr},
    maps::{EXEC_KEY, EXEC_POLICY, FILE_READ_POLICY, FILE_WRITE_POLICY, PATHBUF, SCRATCH},
};

const SIGKILL: u32 = 9;

/// Set in `path_len` when the walk cut the path at the top: it is not the real path.
pub const PATH_CUT: u64 = 1 << 32;

/// What [`check_path`] found: no rule for the agent, allowed, or forbidden; with
/// [`verdict::ENFORCED`] when the agent's rule is in `enforce` mode.
pub mod verdict {
    pub const NO_RULE: u32 = 0;
    pub const ALLOWED: u32 = 1;
    pub const FORBIDDEN: u32 = 2;
    pub const ENFORCED: u32 = 4;
}

/// Checks the exec'd path (`path_len` bytes at `at` of this CPU's scratch buffer, with
/// [`PATH_CUT`]; `dentry` is its file's) of a process of `agent` against the agent's rule;
/// sends SIGKILL and returns 1 when the rule does not allow it, else 0. A global function,
/// verified once on its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kill_forbidden_exec(agent: u64, at: u64, path_len: u64, dentry: u64) -> u64 {
    if agent == 0 || config().exec_kill == 0 {
        return 0;
    }
    let Some(buf) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    let Some(at) = scratch_offset(at as usize, SCRATCH_SIZE - FILENAME_CAP as usize) else {
        return 0;
    };
    // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE.
    let src = unsafe { (buf as *const u8).add(at) };
    if check_path(&EXEC_POLICY, agent, src, path_len, dentry) & verdict::FORBIDDEN == 0 {
        return 0;
    }
    // SAFETY: a plain helper call; the signal goes to the current (exec'ing) process.
    unsafe { bpf_send_signal(SIGKILL) };
    1
}

/// `open` flags (include/uapi/asm-generic/fcntl.h; x86-64 and arm64 alike): the access mode
/// (read only, or some writing) and `O_PATH` (opens nothing to read or write).
const O_ACCMODE: u32 = 0o3;
const O_PATH: u32 = 0o10000000;

/// Checks the file a successful open of an agent's process opened against the agent's `files`
/// rule in kill mode: the record of the call is at the start of this CPU's scratch buffer (its
/// agent, syscall, flags and return), the file's resolved path is `path_len` bytes at `at`
/// (with [`PATH_CUT`]; `dentry` is the file's). An open for writing (or reading and writing) is
/// checked against the write set, any other but `O_PATH` against the read set, as the daemon's
/// audit does. Sends SIGKILL and returns 1 when the rule does not allow it, else 0. Rules in
/// `enforce` mode (entries marked [`exec_allow::ENFORCE`]) are the BPF LSM check's, not this
/// one's. A global function, verified once on its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kill_forbidden_open(at: u64, path_len: u64, dentry: u64) -> u64 {
    if config().file_kill == 0 {
        return 0;
    }
    let Some(buf) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch buffer (a map value, 8-byte aligned) starts with the record
    // `file` is filling; any bit pattern is a valid record.
    let record = unsafe { &*(buf as *const FileRecord) };
    let agent = record.header.attribution.agent;
    let opened = matches!(
        record.syscall,
        sc::OPEN | sc::OPENAT | sc::OPENAT2 | sc::CREAT
    ) && record.ret >= 0;
    let flags = record.flags;
    if agent == 0 || !opened || flags & O_PATH != 0 || record.tgid == config().sensor_tgid {
        return 0;
    }
    let write = flags & O_ACCMODE != 0;
    // One lookup before anything else: has the agent a kill rule for this access?
    let kill_rule = |kind: Option<u32>| kind.is_some_and(|k| k & exec_allow::ENFORCE == 0);
    let ruled = if write {
        kill_rule(rule_of(&FILE_WRITE_POLICY, agent))
    } else {
        kill_rule(rule_of(&FILE_READ_POLICY, agent))
    };
    if !ruled {
        return 0;
    }
    let Some(at) = scratch_offset(at as usize, SCRATCH_SIZE - FILENAME_CAP as usize) else {
        return 0;
    };
    // SAFETY: at + FILENAME_CAP <= SCRATCH_SIZE.
    let src = unsafe { (buf as *const u8).add(at) };
    let v = if write {
        check_path(&FILE_WRITE_POLICY, u64::from(agent), src, path_len, dentry)
    } else {
        check_path(&FILE_READ_POLICY, u64::from(agent), src, path_len, dentry)
    };
    if v & verdict::FORBIDDEN == 0 {
        return 0;
    }
    // SAFETY: a plain helper call; the signal goes to the current (opening) process, and is
    // delivered before the syscall returns to user space.
    unsafe { bpf_send_signal(SIGKILL) };
    1
}

/// Looks a path (`path_len` bytes at `src`, with [`PATH_CUT`]; `dentry` is its file's) of a
/// process of `agent` up in a policy trie keyed as `EXEC_POLICY` is: a [`verdict`].
#[inline(always)]
pub fn check_path(
    trie: &LpmTrie<ExecKey, ExecAllow>,
    agent: u64,
    src: *const u8,
    path_len: u64,
    dentry: u64,
) -> u32 {
    let Some(key) = EXEC_KEY.get_ptr_mut(0) else {
        return verdict::NO_RULE;
    };
    let len = (path_len as u32) & (FILENAME_CAP - 1);
    let whole = len < EXEC_PATH_KEY as u32;
    let n = if whole { len } else { EXEC_PATH_KEY as u32 };
    // SAFETY: the key is this CPU's map value; src holds at least n <= 252 bytes.
    let key = unsafe { &mut *key };
    key.data.agent_be = (agent as u32).to_be();
    unsafe { bpf_probe_read_kernel(key.data.path.as_mut_ptr().cast(), n, src.cast()) };
    // An exact entry's prefix ends with the NUL: it matches only a path that ends there.
    let end = opaque(n as usize);
    if end < EXEC_PATH_KEY {
        key.data.path[end] = 0;
    }
    key.prefix_len = 32 + 8 * (n + u32::from(whole));
    let Some(allow) = trie.get(&*key) else {
        return verdict::NO_RULE; // the agent's rule is not in this trie
    };
    let enforced = if allow.kind & exec_allow::ENFORCE != 0 {
        verdict::ENFORCED
    } else {
        0
    };
    let allowed = path_len & PATH_CUT == 0
        && match allow.kind & exec_allow::KIND_MASK {
            exec_allow::EXACT | exec_allow::SUBTREE => true,
            exec_allow::ONE_LEVEL => whole && one_level(allow.prefix, n, dentry),
            _ => false,
        };
    enforced
        | if allowed {
            verdict::ALLOWED
        } else {
            verdict::FORBIDDEN
        }
}

/// The kind of `agent`'s catch-all entry in `trie` (found by the agent's 32 bits alone), if the
/// agent has entries there: one lookup, before any path is walked.
#[inline(always)]
pub fn rule_of(trie: &LpmTrie<ExecKey, ExecAllow>, agent: u32) -> Option<u32> {
    let key = EXEC_KEY.get_ptr_mut(0)?;
    // SAFETY: this CPU's map value.
    let key = unsafe { &mut *key };
    key.data.agent_be = agent.to_be();
    key.prefix_len = 32;
    trie.get(&*key).map(|allow| allow.kind)
}

/// Whether the last `n - prefix` bytes of an `n`-byte path lie within its file name (the
/// `dentry`'s): then they hold no `/`. The name's length, not a scan of the path: a loop over
/// the path's bytes made the verifier explore a state per byte.
#[inline(always)]
fn one_level(prefix: u32, n: u32, dentry: u64) -> bool {
    let Some(object) = PATHBUF.get_ptr_mut(0) else {
        return false;
    };
    let plan = &offsets().dentry_read;
    // SAFETY: this CPU's path scratch, not in use during this call.
    let Some(d) = Chunk::read(
        unsafe { &raw mut (*object).object },
        KPtr(dentry as *const u8),
        &plan.gather,
    ) else {
        return false;
    };
    let name = d.u32_at(plan.name_len);
    name < n && prefix + name >= n
}
