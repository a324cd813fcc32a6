//! `mcp_call` records: the MCP requests the [`crate::mcp`] assembler matched with their
//! responses from an opted-in agent's pipe traffic, attributed to the client that sent the
//! request (the server when the client's write was not seen), and linked to the server
//! process by its entity id, with the window (`mcp.started` to `@timestamp`) in which the
//! server's own records served the call.
use super::{Builder, PROCESS};
use crate::{
    decode::PipeEvent,
    mcp::Finished,
    record::{Record, time::rfc3339},
};

const ACCESS: &[&str] = &["access"];

impl Builder {
    /// Takes a captured pipe call; the MCP calls it completes become records in `out`.
    pub(super) fn pipe(&mut self, e: &PipeEvent, out: &mut Vec<Record>) {
        let mut finished = Vec::new();
        self.mcp.feed(e, &mut finished);
        for f in finished {
            out.push(self.mcp_record(f));
        }
    }

    /// Ends every MCP call under way (the sensor is stopping), each marked incomplete.
    pub(super) fn finish_mcp_calls(&mut self, out: &mut Vec<Record>) {
        let mut finished = Vec::new();
        self.mcp.finish_idle(u64::MAX, 0, &mut finished);
        for f in finished {
            out.push(self.mcp_record(f));
        }
    }

    fn mcp_record(&mut self, f: Finished) -> Record {
        let Finished {
            mut call,
            server,
            client,
            started_ns,
            ktime_ns,
        } = f;
        let mut meta = self.meta("event", PROCESS, ACCESS, "mcp_call");
        meta.outcome = Some(if call.error.is_some() || call.is_error == Some(true) {
            "failure"
        } else if call.response_bytes.is_some() {
            "success"
        } else {
            "unknown"
        });
        let mut r = self.record(self.clock.to_unix(ktime_ns), meta);
        call.server.entity_id = self
            .entity_id(server.tgid, server.start_boottime)
            .to_string();
        call.started = Some(rfc3339(self.clock.to_unix(started_ns)));
        let who = client.unwrap_or(server);
        r.process = Some(self.process_ref(who.tgid, who.pid, who.start_boottime, &who.comm));
        r.identity = self.identity(who.attribution, who.tgid);
        if let Some(c) = self
            .table
            .get(who.tgid)
            .and_then(|k| k.container.as_deref())
        {
            r.set_container(c);
        }
        r.mcp = Some(Box::new(call));
        r
    }
}
