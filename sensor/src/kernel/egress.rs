//! Egress enforcement's userspace half: attaches the cgroup `connect4`/`connect6`/`sendmsg4`/
//! `sendmsg6` programs (`sensor-ebpf/src/enforce.rs`) at the cgroup v2 root, and keeps their
//! policy trie (`EGRESS_POLICY`) in step with the agents' enforced egress rules and the
//! operators' exceptions. The root, not the agents' cgroups: agents are attributed by
//! executable, uid and registration too, wherever they run, and the programs decide by the
//! process's attribution (one lookup for a process that is no agent's). The attachments are
//! BPF links owned by the daemon: when it stops, however it stops, nothing denies (fail-open),
//! unless an agent's rule is fail-closed: then they are pinned (`fail_closed`).
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use aya::{
    Ebpf,
    maps::{
        MapData,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use sensor_common::{EGRESS_PORTS, EgressAllow, EgressKey};

use crate::{
    kernel::{fail_closed::Pins, loader::LoadError, programs::EGRESS_PROGRAMS},
    policy::form::{Cidr, Destination, Mode, Policy},
};

/// One agent's egress rule as the kernel is to enforce it now.
pub(crate) struct AgentEgress {
    /// The agent's number.
    pub(crate) agent: u32,
    /// Its policy (only an enforced egress rule goes in the kernel).
    pub(crate) policy: Arc<Policy>,
    /// An operator's exception suspends the rule now: nothing of it goes in the kernel.
    pub(crate) excepted: bool,
    /// Addresses the agent looked up for the rule's `dns` entries, with their ports.
    pub(crate) learned: Vec<(IpAddr, Vec<u16>)>,
}

/// One trie entry: prefix length (agent bits included) and key.
type Entry = (u32, EgressKey);

/// The attached programs' policy trie and what is in it.
pub(crate) struct EgressEnforcer {
    trie: LpmTrie<MapData, EgressKey, EgressAllow>,
    current: HashMap<Entry, EgressAllow>,
}

impl EgressEnforcer {
    /// Attaches the loaded egress programs at the cgroup v2 root and takes the policy trie;
    /// with `pins` (fail-closed), pins the links and the maps they read there, so they outlive
    /// the daemon.
    pub(crate) fn attach(ebpf: &mut Ebpf, pins: Option<&Pins>) -> Result<Self, LoadError> {
        let root = crate::enrich::snapshot::cgroup2_root().ok_or(LoadError::NoCgroup2)?;
        let cgroup = std::fs::File::open(&root).map_err(|_| LoadError::NoCgroup2)?;
        if let Some(pins) = pins {
            pins.pin_maps(ebpf)?;
        }
        for &(name, hook) in EGRESS_PROGRAMS {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(LoadError::MissingMap(name))?
                .try_into()
                .map_err(|source| LoadError::Program { name, source })?;
            // A BPF link (Linux >= 5.7; the sensor needs 5.8) shares the cgroup with any other
            // programs there by itself: the kernel refuses link flags, so `Single` (no flags).
            let link = program
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|source| LoadError::Program { name, source })?;
            if let Some(pins) = pins {
                pins.pin_cgroup_link(ebpf, name, link, hook)?;
            }
        }
        let name = "EGRESS_POLICY";
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let trie = LpmTrie::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        Ok(Self {
            trie,
            current: HashMap::new(),
        })
    }

    /// Makes the trie hold exactly `wanted`'s enforced egress rules.
    pub(crate) fn sync(&mut self, wanted: &[AgentEgress]) {
        let mut next = HashMap::new();
        for a in wanted.iter().filter(|a| !a.excepted) {
            if let Some(rule) = a.policy.egress.as_ref().filter(|r| r.mode == Mode::Enforce) {
                next.extend(entries(a.agent, &rule.allow, &a.learned));
            }
        }
        // New and changed entries first, so a rule being replaced never passes through empty
        // (which would allow everything); then the ones no longer wanted.
        for (&(prefix, key), value) in &next {
            if self.current.get(&(prefix, key)) != Some(value)
                && let Err(e) = self.trie.insert(&Key::new(prefix, key), value, 0)
            {
                tracing::warn!(
                    agent = u32::from_be(key.agent_be),
                    "cannot enforce an egress rule: {e}"
                );
            }
        }
        for &(prefix, key) in self.current.keys() {
            if !next.contains_key(&(prefix, key)) {
                let _ = self.trie.remove(&Key::new(prefix, key));
            }
        }
        self.current = next;
    }
}

/// The trie entries of one agent's enforced egress rule: a catch-all that allows nothing, and
/// each allowed range (a `cidr` entry, or an address the agent looked up for a `dns` entry)
/// with its ports and the ports of every allowed range containing it (the trie answers with
/// the longest match only).
fn entries(
    agent: u32,
    allow: &[Destination],
    learned: &[(IpAddr, Vec<u16>)],
) -> Vec<(Entry, EgressAllow)> {
    let agent_be = agent.to_be();
    let hosts: Vec<([u8; 16], u32)> = learned
        .iter()
        .map(|(ip, _)| {
            let cidr = Cidr::parse(&ip.to_string()).expect("an address is a range of one");
            cidr.mapped()
        })
        .collect();
    let ranges: Vec<(u32, [u8; 16], &[u16])> = allow
        .iter()
        .filter(|d| d.dns.is_none())
        .filter_map(|d| {
            let (addr, bits) = d.cidr?.mapped();
            Some((bits, addr, d.ports.as_slice()))
        })
        .chain(
            hosts
                .iter()
                .zip(learned)
                .map(|((addr, bits), (_, ports))| (*bits, *addr, ports.as_slice())),
        )
        .collect();
    let mut out = vec![(
        (
            32,
            EgressKey {
                agent_be,
                addr: [0; 16],
            },
        ),
        EgressAllow::default(),
    )];
    let mut seen: HashMap<(u32, [u8; 16]), EgressAllow> = HashMap::new();
    for &(bits, addr, _) in &ranges {
        let mut value = EgressAllow::default();
        let mut ports: Vec<u16> = Vec::new();
        for &(outer_bits, outer, outer_ports) in &ranges {
            if outer_bits <= bits && prefix_eq(&outer, &addr, outer_bits) {
                if outer_ports.is_empty() {
                    value.any_port = 1;
                }
                ports.extend_from_slice(outer_ports);
            }
        }
        ports.sort_unstable();
        ports.dedup();
        if value.any_port == 0 {
            // The form refuses more than EGRESS_PORTS ports in an enforced rule.
            for (slot, port) in value.ports.iter_mut().zip(&ports) {
                *slot = *port;
            }
            value.count = ports.len().min(EGRESS_PORTS) as u32;
        }
        seen.insert((bits, addr), value);
    }
    out.extend(
        seen.into_iter()
            .map(|((bits, addr), value)| ((32 + bits, EgressKey { agent_be, addr }), value)),
    );
    out
}

/// Whether `a` and `b` agree in their first `bits` bits.
fn prefix_eq(a: &[u8; 16], b: &[u8; 16], bits: u32) -> bool {
    let (a, b) = (u128::from_be_bytes(*a), u128::from_be_bytes(*b));
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(cidr: &str, ports: &[u16]) -> Destination {
        Destination {
            cidr: Cidr::parse(cidr),
            dns: None,
            ports: ports.to_vec(),
        }
    }

    /// What the trie answers for `ip:port` of agent 7 (longest prefix match, as the kernel).
    fn allowed(entries: &[(Entry, EgressAllow)], ip: &str, port: u16) -> Option<bool> {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let addr = match ip {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        let mut full = [0u8; 20];
        full[..4].copy_from_slice(&7u32.to_be_bytes());
        full[4..].copy_from_slice(&addr);
        let (_, value) = entries
            .iter()
            .filter(|((bits, key), _)| {
                let mut k = [0u8; 20];
                k[..4].copy_from_slice(&key.agent_be.to_ne_bytes());
                k[4..].copy_from_slice(&key.addr);
                let whole = (*bits / 8) as usize;
                let rest = bits % 8;
                k[..whole] == full[..whole]
                    && (rest == 0 || (k[whole] ^ full[whole]) >> (8 - rest) == 0)
            })
            .max_by_key(|((bits, _), _)| *bits)?;
        Some(value.any_port != 0 || value.ports[..value.count as usize].contains(&port))
    }

    #[test]
    fn the_trie_allows_exactly_what_the_rule_does() {
        let rule = [
            dest("10.0.0.0/8", &[80]),
            dest("10.1.0.0/16", &[443]),
            dest("192.0.2.7", &[]),
            dest("2001:db8::/32", &[53, 443]),
        ];
        let e = entries(7, &rule, &[]);
        assert_eq!(e.len(), 5);
        // The narrower range keeps the wider range's ports.
        assert_eq!(allowed(&e, "10.1.2.3", 80), Some(true));
        assert_eq!(allowed(&e, "10.1.2.3", 443), Some(true));
        assert_eq!(allowed(&e, "10.2.0.1", 443), Some(false));
        assert_eq!(allowed(&e, "10.2.0.1", 80), Some(true));
        assert_eq!(allowed(&e, "192.0.2.7", 9), Some(true));
        assert_eq!(allowed(&e, "192.0.2.8", 9), Some(false), "the catch-all");
        assert_eq!(allowed(&e, "2001:db8:1::5", 53), Some(true));
        assert_eq!(allowed(&e, "2001:db8:1::5", 80), Some(false));
        assert_eq!(allowed(&e, "::ffff:10.0.0.1", 80), Some(true), "mapped");
        // Nothing allowed: only the catch-all.
        assert_eq!(entries(7, &[], &[]).len(), 1);
        assert_eq!(allowed(&entries(7, &[], &[]), "127.0.0.1", 80), Some(false));
        // A dns entry allows only the addresses the agent looked up, with its ports.
        let named = [Destination {
            cidr: None,
            dns: crate::glob::NameGlob::new("*.example.org").ok(),
            ports: vec![443],
        }];
        assert_eq!(entries(7, &named, &[]).len(), 1, "nothing looked up yet");
        let looked_up = [("198.51.100.9".parse().unwrap(), vec![443])];
        let e = entries(7, &named, &looked_up);
        assert_eq!(allowed(&e, "198.51.100.9", 443), Some(true));
        assert_eq!(allowed(&e, "198.51.100.9", 80), Some(false));
        assert_eq!(allowed(&e, "198.51.100.10", 443), Some(false));
    }
}
