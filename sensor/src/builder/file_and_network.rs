//! Records of file and network activity.
use super::{Builder, FILE, NETWORK, activity};
use crate::{
    decode::{FileEvent, NetEvent},
    record::{self, Record},
};

impl Builder {
    pub(super) fn file(&mut self, e: &FileEvent) -> Record {
        let kind = activity::file_kind(e.syscall, e.flags);
        let (outcome, error) = activity::outcome(e.ret);
        let mut meta = self.meta("event", FILE, kind.types, kind.action);
        meta.outcome = Some(outcome);
        let mut r = self.record(self.clock.to_unix(e.ktime_ns), meta);
        r.process = Some(self.process_ref(e.tgid, e.pid, e.start_boottime, &e.comm));
        r.file = Some(activity::file_block(e, &self.classifier));
        r.syscall = Some(activity::syscall_block(e.syscall, e.ret));
        r.error = error;
        r
    }

    pub(super) fn net(&mut self, e: &NetEvent) -> Record {
        let (action, types) = activity::net_kind(e);
        let (outcome, error) = activity::net_outcome(e);
        let socket_id = (e.sock_id != 0).then(|| self.socket_id(e.sock_id));
        let (source, mut destination, network) = activity::net_blocks(e, socket_id);
        let dns = (!e.payload.is_empty())
            .then(|| activity::dns_block(&e.payload))
            .flatten();
        if let Some(d) = dns.as_ref().filter(|d| d.r#type == "answer")
            && let Some(q) = &d.question
        {
            for ip in &d.resolved_ip {
                if let Ok(ip) = ip.parse() {
                    self.dns.insert(ip, &q.name);
                }
            }
        }
        if let Some(dest) = destination.as_mut() {
            let ip = dest.ip.as_deref().and_then(|ip| ip.parse().ok());
            dest.domain = ip.and_then(|ip| self.dns.get(&ip)).map(str::to_owned);
        }
        if action == "connect"
            && let Some(to) = &destination
        {
            self.destinations.connected(e.pid, to);
        }
        let mut meta = self.meta("event", NETWORK, types, action);
        meta.outcome = Some(outcome);
        let mut r = self.record(self.clock.to_unix(e.ktime_ns), meta);
        r.process = Some(self.process_ref(e.tgid, e.pid, e.start_boottime, &e.comm));
        r.source = source;
        r.destination = destination;
        r.network = Some(network);
        r.dns = dns.map(Box::new);
        r.syscall = Some(activity::syscall_block(e.syscall, e.ret));
        r.error = error;
        r
    }

    /// A per-run name for a kernel socket: the kernel address itself must not leak (KASLR).
    pub(super) fn socket_id(&self, sock: u64) -> String {
        use sha2::{Digest as _, Sha256};
        let digest = Sha256::new()
            .chain_update(self.instance_id.as_bytes())
            .chain_update(sock.to_le_bytes())
            .finalize();
        record::hex(&digest[..8])
    }
}
