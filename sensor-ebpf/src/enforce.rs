//! Egress enforcement: cgroup `connect4`/`connect6`/`sendmsg4`/`sendmsg6` programs, attached at
//! the cgroup v2 root, that deny an agent's connect or UDP send to a destination its enforced
//! egress rule does not allow (the caller gets `EPERM`, and no packet leaves). A process that
//! is not an agent's, and the daemon itself, pay one map lookup and are never denied; an
//! agent's allowed destination pays one more (the policy trie).
use aya_ebpf::{
    bindings::bpf_sock_addr, helpers::bpf_get_current_pid_tgid, macros::cgroup_sock_addr,
    maps::lpm_trie::Key, programs::SockAddrContext,
};
use sensor_common::{EGRESS_PORTS, EgressAllow, EgressKey};

use crate::{
    globals::config,
    maps::{EGRESS_POLICY, TRACKED},
};

/// A cgroup sock_addr program's verdicts.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn enforce_connect4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn enforce_connect6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn enforce_sendmsg4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn enforce_sendmsg6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, true)
}

/// Whether the calling process may reach the context's destination.
#[inline(always)]
fn verdict(ctx: &SockAddrContext, v6: bool) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == config().sensor_tgid {
        return ALLOW;
    }
    // SAFETY: copied out at once.
    let agent = match unsafe { TRACKED.get(tgid) } {
        Some(t) if t.agent != 0 => t.agent,
        _ => return ALLOW,
    };
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    let mut addr = [0u8; 16];
    // SAFETY (all reads): the context's fields, read whole (4 bytes) as the verifier wants.
    if v6 {
        for i in 0..4 {
            let word = unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip6[i]) };
            addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    } else {
        let ip4 = unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip4) };
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&ip4.to_ne_bytes());
    }
    let port_word = unsafe { core::ptr::read_volatile(&raw const (*sa).user_port) };
    // The port is in network order in the field's first two bytes.
    let port = u16::from_be(port_word as u16);
    let key = Key::new(
        32 + 128,
        EgressKey {
            agent_be: agent.to_be(),
            addr,
        },
    );
    // No entry: the agent's egress is not enforced.
    match EGRESS_POLICY.get(&key) {
        Some(allow) if !allows(allow, port) => DENY,
        _ => ALLOW,
    }
}

#[inline(always)]
fn allows(allow: &EgressAllow, port: u16) -> bool {
    if allow.any_port != 0 {
        return true;
    }
    let mut i = 0;
    while i < EGRESS_PORTS {
        if i as u32 >= allow.count {
            return false;
        }
        if allow.ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}
