//! `llm_exchange` records: the exchanges the [`crate::llm`] assembler reassembled from an
//! opted-in agent's TLS plaintext, with the process, and the destination of the connect the
//! same thread made last before the connection's first captured call. Exchanges that are MCP's
//! streamable HTTP transport ([`crate::mcp::http`]) become `mcp_call` records instead.
use std::collections::HashMap;

use super::{Builder, NETWORK};
use crate::{
    decode::TlsEvent,
    llm::Finished,
    mcp::http::Seen,
    record::{Endpoint, Record},
};

const PROTOCOL: &[&str] = &["protocol"];
/// Most threads whose last connect is remembered; beyond it the memory starts over.
const MAX_CONNECTS: usize = 4096;

/// Where each connection went: the last connect of each thread, and what each TLS connection
/// took from it when first seen.
#[derive(Default)]
pub(super) struct Destinations {
    last_connect: HashMap<u32, Endpoint>,
    connections: HashMap<(u32, u64), Endpoint>,
}

impl Destinations {
    /// A thread connected to `to`.
    pub(super) fn connected(&mut self, pid: u32, to: &Endpoint) {
        if self.last_connect.len() >= MAX_CONNECTS {
            self.last_connect.clear();
        }
        self.last_connect.insert(pid, to.clone());
    }

    fn seen(&mut self, e: &TlsEvent) {
        if self.connections.contains_key(&(e.tgid, e.ssl)) {
            return;
        }
        if self.connections.len() >= MAX_CONNECTS {
            self.connections.clear();
        }
        if let Some(to) = self.last_connect.get(&e.pid) {
            self.connections.insert((e.tgid, e.ssl), to.clone());
        }
    }
}

impl Builder {
    /// Takes a captured TLS call; the exchanges it completes become records in `out`.
    /// The end of a connection (`SSL_free`, `SSL_clear`, `gnutls_deinit`) finishes what it had under way, and forgets its
    /// destination: the next connection at the same address has its own.
    pub(super) fn tls(&mut self, e: &TlsEvent, out: &mut Vec<Record>) {
        if !e.ended {
            self.destinations.seen(e);
        }
        let mut finished = Vec::new();
        self.llm.feed(e, &mut finished);
        for f in finished {
            self.finished_exchange(&f, Some(e.ssl), out);
        }
        if e.ended {
            self.destinations.connections.remove(&(e.tgid, e.ssl));
        }
    }

    /// An exchange's record: an MCP call over HTTP, MCP traffic of no record, or an LLM
    /// exchange.
    fn finished_exchange(&mut self, f: &Finished, ssl: Option<u64>, out: &mut Vec<Record>) {
        match self
            .mcp_http
            .read(f.tgid, &f.request, f.response.as_ref(), f.policy)
        {
            Seen::NotMcp => out.push(self.exchange_record(f, ssl)),
            Seen::Mcp(Some(call)) => {
                let destination = self.destination(f.tgid, ssl);
                let mut r = self.mcp_http_record(
                    *call,
                    f.tgid,
                    f.pid,
                    f.start_boottime,
                    &f.comm,
                    f.attribution,
                    (f.request.first_ns, f.ktime_ns),
                );
                r.destination = destination;
                out.push(r);
            }
            Seen::Mcp(None) => {}
        }
    }

    fn destination(&self, tgid: u32, ssl: Option<u64>) -> Option<Endpoint> {
        ssl.and_then(|ssl| self.destinations.connections.get(&(tgid, ssl)).cloned())
    }

    /// Ends every exchange under way (the sensor is stopping), each marked incomplete.
    pub(super) fn finish_exchanges(&mut self, out: &mut Vec<Record>) {
        let mut finished = Vec::new();
        self.llm.finish_idle(u64::MAX, 0, &mut finished);
        for f in finished {
            self.finished_exchange(&f, None, out);
        }
    }

    fn exchange_record(&mut self, f: &Finished, ssl: Option<u64>) -> Record {
        let exchange = f.exchange();
        let mut meta = self.meta("event", NETWORK, PROTOCOL, "llm_exchange");
        meta.outcome = Some(match exchange.response.as_ref().map(|r| r.status) {
            Some(200..=399) => "success",
            Some(_) => "failure",
            None => "unknown",
        });
        let mut r = self.record(self.clock.to_unix(f.ktime_ns), meta);
        r.process = Some(self.process_ref(f.tgid, f.pid, f.start_boottime, &f.comm));
        r.destination = self.destination(f.tgid, ssl);
        r.identity = self.identity(f.attribution, f.tgid);
        if let Some(c) = self.table.get(f.tgid).and_then(|k| k.container.as_deref()) {
            r.set_container(c);
        }
        r.llm = Some(Box::new(exchange));
        r
    }
}
