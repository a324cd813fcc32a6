//! `mcp_call` records: the MCP requests the [`crate::mcp`] assembler matched with their
//! responses from an opted-in agent's pipe traffic, attributed to the client that sent the
//! request (the server when the client's write was not seen), and linked to the server
//! process by its entity id, with the window (`mcp.started` to `@timestamp`) in which the
//! server's own records served the call. Calls over HTTP ([`crate::mcp::http`]) are the
//! agent's process's, like its LLM exchanges.
use super::{Builder, PROCESS};
use crate::{
    decode::PipeEvent,
    mcp::Finished,
    record::{Record, mcp::McpCall, time::rfc3339},
};
use sensor_common::TrackedProcess;

const ACCESS: &[&str] = &["access"];

/// A call's `event.outcome`.
fn outcome(call: &McpCall) -> &'static str {
    if call.error.is_some()
        || call.is_error == Some(true)
        || call.http_status.is_some_and(|s| s >= 400)
    {
        "failure"
    } else if call.response_bytes.is_some() {
        "success"
    } else {
        "unknown"
    }
}

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

    /// The record of an MCP call over HTTP that process `tgid` made, from `window.0` (its
    /// request's first byte) to `window.1` (its end).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mcp_http_record(
        &mut self,
        mut call: McpCall,
        tgid: u32,
        pid: u32,
        start_boottime: u64,
        comm: &[u8; 16],
        attribution: TrackedProcess,
        window: (u64, u64),
    ) -> Record {
        let mut meta = self.meta("event", PROCESS, ACCESS, "mcp_call");
        meta.outcome = Some(outcome(&call));
        let mut r = self.record(self.clock.to_unix(window.1), meta);
        call.started = Some(rfc3339(self.clock.to_unix(window.0)));
        r.process = Some(self.process_ref(tgid, pid, start_boottime, comm));
        r.identity = self.identity(attribution, tgid);
        if let Some(c) = self.table.get(tgid).and_then(|k| k.container.as_deref()) {
            r.set_container(c);
        }
        r.mcp = Some(Box::new(call));
        r
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
        meta.outcome = Some(outcome(&call));
        let mut r = self.record(self.clock.to_unix(ktime_ns), meta);
        call.server.entity_id = Some(
            self.entity_id(server.tgid, server.start_boottime)
                .to_string(),
        );
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
