//! MCP tool calls over stdio, end to end: a real MCP client (the `mcp` SDK's `ClientSession`)
//! spawns a real MCP server (the SDK's `MCPServer`, `tests/mcp/server.py`) and talks JSON-RPC
//! with it over pipes; every `initialize`, `tools/list` and `tools/call` of an agent opted in
//! to stdio capture becomes one `mcp_call` record, checked against what the client logged:
//! attributed to the client, linked to the server process (whose own file activity falls in
//! the call's window), secrets masked, a result over the bound flagged incomplete. The same
//! client run by an agent that did not opt in, and by a process of no agent, leaves nothing.
//! A Node.js server of the npm SDK (`tests/mcp/server.cjs`) that batches its messages into
//! `writev` calls, and the Python one reading its requests with `readv`, are recorded as whole. Over the streamable HTTP transport (`tests/mcp/http_server.py` and `http_client.py`, over
//! HTTPS with a test CA), the agent's calls are read from its TLS capture: the same records,
//! and no `llm_exchange` for MCP's traffic.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sensor_tests::{Finished, Launch, Value, action, cgroup2_root, scratch_dir, tls_certificates};

/// Where `cargo xtask setup` installs what the tests run.
fn cache() -> PathBuf {
    std::env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    )
}

/// The Python of the environment `cargo xtask setup` makes (with the `mcp` SDK).
fn venv_python() -> PathBuf {
    let python = cache().join("ocsf-venv/bin/python3");
    assert!(
        python.is_file(),
        "no {}: run `cargo xtask setup` (it installs the mcp SDK there)",
        python.display()
    );
    python
}

const SECRET: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";

/// The npm packages `cargo xtask setup` installs (the MCP SDK for `tests/mcp/server.cjs`).
fn node_modules() -> PathBuf {
    let modules = cache().join("node/node_modules");
    assert!(
        modules.join("@modelcontextprotocol/sdk").is_dir(),
        "no {}: run `cargo xtask setup` (it installs the MCP SDK there)",
        modules.display()
    );
    modules
}

/// Which MCP server the client spawns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    /// `tests/mcp/server.py`: the PyPI SDK's, writing each message with `write`.
    Python,
    /// The same, reading its standard input with `readv` into two iovecs.
    PythonReadv,
    /// The same, reading its standard input with `preadv2` and writing its standard output
    /// with `pwritev2`, each with two iovecs.
    PythonV2,
    /// The same, reading its standard input and writing its standard output with `vmsplice`
    /// (two iovecs each).
    PythonVmsplice,
    /// The same, writing all but the first and last 64 bytes of each message over 4096 bytes
    /// with `sendfile`, `splice` and `tee`.
    PythonSplice,
    /// `tests/mcp/server.cjs`: the npm SDK's under Node.js, batching the messages of a turn of
    /// its event loop into one `writev`.
    Node,
}

/// Runs the MCP client in cgroup `cg` (none: where the test runs) against `server`; returns
/// what it logged.
fn client(cg: Option<&str>, note: &str, server: Server) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/client.py");
    let modules = match server {
        Server::Python => String::new(),
        Server::PythonReadv => "readv".to_owned(),
        Server::PythonV2 => "v2".to_owned(),
        Server::PythonVmsplice => "vmsplice".to_owned(),
        Server::PythonSplice => "splice".to_owned(),
        Server::Node => node_modules().display().to_string(),
    };
    // The secret goes by the environment: argv (the shell's too) is in the trail.
    let run = format!("exec {} {script} {note} {modules}", venv_python().display());
    let cmd = match cg {
        Some(cg) => {
            std::fs::create_dir_all(cg).unwrap();
            format!("echo $$ > {cg}/cgroup.procs || exit 1\n{run}")
        }
        None => run,
    };
    let out = Command::new("/bin/sh")
        .args(["-c", &cmd])
        .env("MCP_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "the MCP client failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("the client's JSON line")
}

fn agent_of(r: &Value) -> &str {
    r["identity"]["agent"]["id"].as_str().unwrap_or("")
}

/// The one `tools/call` record of `tool`.
fn call<'a>(records: &'a [&Value], tool: &str) -> &'a Value {
    let found: Vec<&&Value> = records
        .iter()
        .filter(|r| r["mcp"]["tool"] == tool)
        .collect();
    assert_eq!(found.len(), 1, "one call of {tool}: {records:#?}");
    found[0]
}

#[test]
fn an_opted_in_agents_mcp_calls_over_stdio_become_records_and_nobody_elses_do() {
    let dir = scratch_dir("mcp-stdio");
    let note = dir.join("note.txt");
    std::fs::write(&note, "the note's text\n").unwrap();
    let note = note.to_str().unwrap().to_owned();
    let root = cgroup2_root();
    let tag = std::process::id();
    let on_cg = format!("{root}/agent-sensor-mcp-on-{tag}");
    let off_cg = format!("{root}/agent-sensor-mcp-off-{tag}");
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: mcp-on\n    selectors: [{{cgroup: /agent-sensor-mcp-on-{tag}/**}}]\n    capture: {{stdio: true, content: redacted, max_bytes: 16384}}\n  - id: mcp-off\n    selectors: [{{cgroup: /agent-sensor-mcp-off-{tag}/**}}]\n    capture: {{tls: true}}\n"
        ),
    )
    .unwrap();
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let off = client(Some(&off_cg), &note, Server::Python);
    let nobody = client(None, &note, Server::Python);
    let log = client(Some(&on_cg), &note, Server::Python);
    // initialize, tools/list and four tools/call.
    sensor.wait_for_count("the MCP calls", 6, |r| action(r) == "mcp_call");
    let done = sensor.stop();
    for cg in [&on_cg, &off_cg] {
        let _ = std::fs::remove_dir(cg);
    }
    assert_eq!(off["add"], "42", "the bystanders did make their calls");
    assert_eq!(nobody["add"], "42");
    let calls: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "mcp_call")
        .collect();
    assert_eq!(
        calls.len(),
        6,
        "only the opted-in agent's calls, each once: {calls:#?}"
    );
    assert!(calls.iter().all(|r| agent_of(r) == "mcp-on"), "{calls:#?}");

    // Every record follows the record schema (an independent validator).
    let lines = dir.join("calls.jsonl");
    let owned: Vec<Value> = calls.iter().map(|r| (*r).clone()).collect();
    sensor_tests::write_json_lines(&lines, &owned);
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/record-0.2.json");
    let check = "import json, sys\nfrom jsonschema import Draft202012Validator\nv = Draft202012Validator(json.load(open(sys.argv[1])))\nfor n, line in enumerate(open(sys.argv[2]), 1):\n    for e in v.iter_errors(json.loads(line)):\n        print(f\"line {n}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}\")\n";
    let out = Command::new(venv_python())
        .args(["-c", check, schema])
        .arg(&lines)
        .output()
        .expect("python3 with jsonschema");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    check_calls(&done, &log, &note, &calls, "redacted", Server::Python);
}

/// An MCP server whose responses leave in `writev` calls (the npm SDK's, under Node.js, its
/// stdout corked for a turn of its event loop: each tool's log notification and its result go
/// out in one `writev` of two iovecs): every call is recorded whole, as from a server that
/// writes each message with `write`; the 40 000-byte result, its iovec over the bound, is
/// flagged incomplete and the calls after it are whole.
#[test]
fn an_mcp_servers_vectored_writes_are_captured_whole() {
    vectored(Server::Node, "writev", "node");
}

/// An MCP server that reads its requests with `readv` (the PyPI SDK's, its standard input read
/// into two iovecs, 64 bytes and the rest, so most requests span both): every call is
/// recorded whole.
#[test]
fn an_mcp_servers_vectored_reads_are_captured_whole() {
    vectored(Server::PythonReadv, "readv", "python3");
}

/// An MCP server that reads its requests with `preadv2` and writes its responses with
/// `pwritev2` (Python's `os.preadv`/`os.pwritev` with flags, at the pipe's current position,
/// two iovecs each): every call is recorded whole.
#[test]
fn an_mcp_servers_preadv2_and_pwritev2_are_captured_whole() {
    vectored(Server::PythonV2, "v2", "python3");
}

/// An MCP server that reads its requests and writes its responses with `vmsplice` (two
/// iovecs each: on its standard input's read end the kernel copies out of the pipe, on its
/// standard output's write end it takes the pages): every call is recorded whole.
#[test]
fn an_mcp_servers_vmsplice_reads_and_writes_are_captured_whole() {
    vectored(Server::PythonVmsplice, "vmsplice", "python3");
}

/// An MCP server that writes the 40 000-byte result's response (80 000 bytes of text) mostly
/// with `sendfile`, `splice` and `tee`, which the sensor cannot copy: the call is recorded,
/// matched by the id in the response's first bytes, flagged incomplete with the response's
/// exact size (the moved bytes are a hole in the stream, not missing from it); the calls
/// after it are whole.
#[test]
fn an_mcp_servers_spliced_bytes_leave_a_hole_that_flags_the_call() {
    vectored(Server::PythonSplice, "splice", "python3");
}

/// The client's calls to `server` (whose process is named `name`) by an opted-in agent, each
/// recorded once, field by field.
fn vectored(server: Server, tag: &str, name: &str) {
    let dir = scratch_dir(&format!("mcp-{tag}"));
    let note = dir.join("note.txt");
    std::fs::write(&note, "the vectored note's text\n").unwrap();
    let note = note.to_str().unwrap().to_owned();
    let cg_name = format!("agent-sensor-mcp-{tag}-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: mcp-on\n    selectors: [{{cgroup: /{cg_name}/**}}]\n    capture: {{stdio: true, content: redacted, max_bytes: 16384}}\n"
        ),
    )
    .unwrap();
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let log = client(Some(&cg), &note, server);
    sensor.wait_for_count("the MCP calls", 6, |r| action(r) == "mcp_call");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let calls: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "mcp_call")
        .collect();
    assert_eq!(calls.len(), 6, "each call once: {calls:#?}");
    let server_pid = calls[0]["mcp"]["server"]["pid"].as_u64().unwrap();
    let server_exec = done
        .records
        .iter()
        .find(|r| action(r) == "exec" && r["process"]["pid"] == server_pid)
        .expect("the server's exec record");
    assert_eq!(server_exec["process"]["name"], name, "{server_exec}");
    check_calls(&done, &log, &note, &calls, "redacted", server);
}

/// The checks of an opted-in agent's calls (`calls`) made by `client` (which logged `log`),
/// field by field against the client's log, for the content policy `policy`, from `server`.
fn check_calls(
    done: &Finished,
    log: &Value,
    note: &str,
    calls: &[&Value],
    policy: &str,
    server: Server,
) {
    // The secret passed as a tool argument never enters the trail.
    let all: String = done.records.iter().map(Value::to_string).collect();
    assert!(!all.contains(SECRET), "the token is in the trail");

    // Attributed to the client; linked to the server it spawned, by pid and entity id.
    let client_pid = log["client_pid"].as_u64().unwrap();
    let server_pid = calls[0]["mcp"]["server"]["pid"].as_u64().unwrap();
    let server_id = calls[0]["mcp"]["server"]["entity_id"].as_str().unwrap();
    assert_ne!(server_pid, client_pid);
    for r in calls {
        assert_eq!(r["process"]["pid"], client_pid, "{r}");
        assert_eq!(r["mcp"]["server"]["pid"], server_pid, "{r}");
        assert_eq!(r["mcp"]["server"]["entity_id"], server_id, "{r}");
        assert_eq!(r["mcp"]["transport"], "stdio");
        assert_eq!(r["mcp"]["content_policy"], policy);
        assert_eq!(r["mcp"]["server"]["name"], log["server_name"]);
        assert_eq!(r["mcp"]["server"]["version"], log["server_version"]);
    }
    let server_exec = done
        .records
        .iter()
        .find(|r| action(r) == "exec" && r["process"]["pid"] == server_pid)
        .expect("the server's exec record");
    assert_eq!(server_exec["process"]["entity_id"], server_id);
    assert_eq!(server_exec["process"]["parent"]["pid"], client_pid);

    // initialize and tools/list.
    let init = calls
        .iter()
        .find(|r| r["mcp"]["method"] == "initialize")
        .unwrap();
    assert_eq!(init["mcp"]["protocol_version"], log["protocol_version"]);
    assert_eq!(init["mcp"]["incomplete"], false);
    let list = calls
        .iter()
        .find(|r| r["mcp"]["method"] == "tools/list")
        .unwrap();
    let mut tools: Vec<Value> = list["mcp"]["tools"].as_array().unwrap().clone();
    tools.sort_by_key(ToString::to_string);
    assert_eq!(Value::Array(tools), log["tools"]);

    // Each call matched with its own response, by id.
    let tool_calls: Vec<&Value> = calls
        .iter()
        .copied()
        .filter(|r| r["mcp"]["method"] == "tools/call")
        .collect();
    let mut ids: Vec<String> = calls
        .iter()
        .map(|r| r["mcp"]["request_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "one id per call: {ids:?}");

    // read_note: its arguments (the token masked) and its result, field by field.
    let r = call(&tool_calls, "read_note");
    let x = &r["mcp"];
    let args: Value = serde_json::from_str(x["arguments"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(args["path"], note);
    assert_eq!(args["token"], "[REDACTED]");
    let sent = format!("{{\"path\":\"{note}\",\"token\":\"{SECRET}\"}}");
    assert_eq!(x["arguments"]["length"], sent.len(), "{x}");
    let result: Value = serde_json::from_str(x["result"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(result["content"][0]["text"], log["read_note"]);
    // (The npm SDK leaves `isError` out of a result that is not an error: false too.)
    assert_eq!(x["is_error"], false, "{x}");
    assert_eq!(x["incomplete"], false);
    assert_eq!(r["event"]["outcome"], "success");
    assert!(x["latency_ms"].as_f64().unwrap() > 0.0);
    // The server's own open of the note falls within the call's window.
    let (from, to) = (
        x["started"].as_str().unwrap(),
        r["@timestamp"].as_str().unwrap(),
    );
    let open = done
        .records
        .iter()
        .find(|o| {
            action(o) == "open"
                && o["process"]["entity_id"] == server_id
                && o["file"]["path"] == note
        })
        .expect("the server's open of the note");
    let at = open["@timestamp"].as_str().unwrap();
    assert!(from <= at && at <= to, "{from} <= {at} <= {to}");

    let x = &call(&tool_calls, "add")["mcp"];
    let result: Value = serde_json::from_str(x["result"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(result["content"][0]["text"], log["add"]);

    // A 40 000-byte result, over the 16 KiB bound: the call is recorded, incomplete, matched
    // with its response, and the calls after it are whole. The Python SDK puts the response's
    // id before its result, in the captured start; the npm SDK's comes after the result, in
    // the cut call's end, which the kernel copies too. Either way the response's size is
    // exact: from its first byte to its newline in the pipe's stream (the 40 000 bytes of
    // text and the JSON around them).
    let x = &call(&tool_calls, "big")["mcp"];
    assert_eq!(x["incomplete"], true, "{x}");
    assert!(x.get("result").is_none(), "{x}");
    assert_eq!(log["big_length"], 40_000);
    // (The captured start alone is 16 KiB: a size past the text's proves the end was seen.
    // The PyPI SDK gives a tool's `str` twice, as text content and as structured content.)
    let size = x["response_bytes"].as_u64().unwrap();
    let text = match server {
        Server::Python
        | Server::PythonReadv
        | Server::PythonV2
        | Server::PythonVmsplice
        | Server::PythonSplice => 80_000,
        Server::Node => 40_000,
    };
    assert!((text + 70..text + 400).contains(&size), "{x}");
    assert!(x["latency_ms"].as_f64().unwrap() > 0.0, "{x}");

    // A tool the server does not have: its error result.
    let r = call(&tool_calls, "no_such_tool");
    assert_eq!(r["mcp"]["is_error"], true);
    assert_eq!(r["mcp"]["incomplete"], false);
    assert_eq!(r["event"]["outcome"], "failure");
}

/// A hostile client writing JSON-RPC lines to a real server itself: lines that are not JSON
/// and a response-shaped line with a forged id make no record; a request with bytes that are
/// not UTF-8, which the server reads replaced and serves, is recorded as served; a request over
/// 1 MiB is recorded, incomplete; the calls after them are whole; a native rule matches on the
/// tool name.
#[test]
fn hostile_lines_forge_no_call_and_hide_none() {
    let dir = scratch_dir("mcp-hostile");
    let note = dir.join("note.txt");
    std::fs::write(&note, "hostile note\n").unwrap();
    let note = note.to_str().unwrap().to_owned();
    let tag = std::process::id();
    let cg = format!("{}/agent-sensor-mcp-raw-{tag}", cgroup2_root());
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: mcp-raw\n    selectors: [{{cgroup: /agent-sensor-mcp-raw-{tag}/**}}]\n    capture: {{stdio: true, content: full}}\n"
        ),
    )
    .unwrap();
    let rules = dir.join("mcp-rules.yml");
    std::fs::write(
        &rules,
        "rules:
  - id: note-read
    title: A note was read through MCP
    condition: event.action = mcp_call and mcp.method = tools/call and mcp.tool = read_note and mcp.arguments.text contains note.txt
    output: '%identity.agent.id called %mcp.tool'
",
    )
    .unwrap();
    let sensor = Launch::new()
        .arg("--identities")
        .arg(&manifest)
        .arg("--rules")
        .arg(&rules)
        .start();
    std::fs::create_dir_all(&cg).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/raw_client.py");
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {cg}/cgroup.procs || exit 1\nexec {} {script} {note}",
                venv_python().display()
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "the raw client failed: {out:?}");
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["answered"], serde_json::json!([1, 2, 3, 4]));
    sensor.wait_for_count("the MCP calls", 4, |r| action(r) == "mcp_call");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let calls: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "mcp_call")
        .collect();
    let mut ids: Vec<&str> = calls
        .iter()
        .map(|r| r["mcp"]["request_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["1", "2", "3", "4"], "{calls:#?}");
    let by_id = |id: &str| *calls.iter().find(|r| r["mcp"]["request_id"] == id).unwrap();
    // Served despite the bytes that are not UTF-8: recorded as the server read it.
    let x = &by_id("2")["mcp"];
    assert_eq!(x["tool"], "read_note");
    assert!(
        x["arguments"]["text"]
            .as_str()
            .unwrap()
            .contains('\u{fffd}'),
        "{x}"
    );
    let result: Value = serde_json::from_str(x["result"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(result["content"][0]["text"], "hostile note\n");
    assert_eq!(x["incomplete"], false);
    // Over 1 MiB: recorded by the id and method its start proves, incomplete, with its
    // response; the line's real length is counted.
    let x = &by_id("3")["mcp"];
    assert_eq!(x["method"], "tools/call");
    assert_eq!(x["incomplete"], true);
    assert!(x["request_bytes"].as_u64().unwrap() > 2 << 20, "{x}");
    assert!(x.get("arguments").is_none());
    assert!(
        x["result"]["text"]
            .as_str()
            .unwrap()
            .contains("hostile note")
    );
    // The call after them is whole.
    let x = &by_id("4")["mcp"];
    assert_eq!(x["tool"], "add");
    let result: Value = serde_json::from_str(x["result"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(result["content"][0]["text"], log["add"]);
    assert_eq!(x["incomplete"], false);
    // The rule fired on the one whole read_note call.
    let alerts: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "alert")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["alert"]["message"], "mcp-raw called read_note");
}

/// The MCP server over HTTPS, stopped on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port_file = dir.join("port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/http_server.py");
        let mut server = HttpServer {
            child: Command::new(venv_python())
                .arg(script)
                .args([
                    dir.join("server.pem"),
                    dir.join("server.key"),
                    port_file.clone(),
                ])
                .stdin(Stdio::null())
                .spawn()
                .expect("start the MCP HTTP server"),
            port: 0,
        };
        let start = Instant::now();
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                server.port = port;
                return server;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the MCP HTTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mcp_calls_over_streamable_http_become_records_from_the_tls_capture() {
    let dir = scratch_dir("mcp-http");
    tls_certificates(&dir);
    let server = HttpServer::start(&dir);
    let root = cgroup2_root();
    let tag = std::process::id();
    let cg = format!("{root}/agent-sensor-mcp-http-{tag}");
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: mcp-http-agent\n    selectors: [{{cgroup: /agent-sensor-mcp-http-{tag}/**}}]\n    capture: {{tls: true, content: redacted}}\n"
        ),
    )
    .unwrap();
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    std::fs::create_dir_all(&cg).unwrap();
    let url = format!("https://127.0.0.1:{}/mcp", server.port);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/http_client.py");
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {cg}/cgroup.procs || exit 1\nexec {} {script} {url} {}",
                venv_python().display(),
                dir.join("ca.pem").display()
            ),
        ])
        .env("MCP_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "the MCP HTTP client failed: {out:?}");
    let log: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON line");
    sensor.wait_for_count("the MCP calls", 5, |r| action(r) == "mcp_call");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);

    let calls: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "mcp_call")
        .collect();
    assert_eq!(calls.len(), 5, "{calls:#?}");
    // MCP's own traffic (the notification, the event stream's GET, the session's DELETE) is
    // no LLM exchange.
    assert!(
        !done.records.iter().any(|r| action(r) == "llm_exchange"),
        "no llm_exchange for MCP traffic"
    );
    let all = done
        .records
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!all.contains(SECRET), "the secret is in the trail");
    // The records follow the record schema (an independent validator).
    let lines = dir.join("calls.jsonl");
    let owned: Vec<Value> = calls.iter().map(|r| (*r).clone()).collect();
    sensor_tests::write_json_lines(&lines, &owned);
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/record-0.2.json");
    let check = "import json, sys\nfrom jsonschema import Draft202012Validator\nv = Draft202012Validator(json.load(open(sys.argv[1])))\nfor n, line in enumerate(open(sys.argv[2]), 1):\n    for e in v.iter_errors(json.loads(line)):\n        print(f\"line {n}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}\")\n";
    let out = Command::new("python3")
        .args(["-c", check, schema])
        .arg(&lines)
        .output()
        .expect("python3 with jsonschema");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let session = calls[0]["mcp"]["session"].clone();
    assert_eq!(session.as_str().map(str::len), Some(16));
    for r in &calls {
        assert_eq!(agent_of(r), "mcp-http-agent");
        assert_eq!(r["process"]["pid"], log["client_pid"]);
        assert_eq!(r["destination"]["port"], server.port);
        let m = &r["mcp"];
        assert_eq!(m["transport"], "http");
        assert_eq!(m["content_policy"], "redacted");
        assert_eq!(m["server"]["url"], url.as_str());
        assert_eq!(m["server"]["name"], log["server_name"], "{m}");
        assert_eq!(m["server"]["version"], log["server_version"]);
        assert!(m["server"].get("pid").is_none());
        assert_eq!(m["http_status"], 200);
        assert_eq!(m["session"], session, "one session");
        assert_eq!(m["incomplete"], false, "{m}");
        assert!(m["started"].is_string());
    }
    let by_method = |method: &str| -> Vec<&Value> {
        calls
            .iter()
            .map(|r| &r["mcp"])
            .filter(|m| m["method"] == method)
            .collect()
    };
    let init = by_method("initialize");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["protocol_version"], log["protocol_version"]);
    let list = by_method("tools/list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["tools"].as_array().map(Vec::len), Some(2));
    let mut tools: Vec<&str> = list[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(serde_json::json!(tools), log["tools"]);
    let tool_calls: Vec<&Value> = by_method("tools/call");
    let read = tool_calls
        .iter()
        .find(|m| m["tool"] == "read_note")
        .expect("read_note");
    let args: Value = serde_json::from_str(read["arguments"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(args["title"], "todo");
    assert_eq!(args["token"], "[REDACTED]");
    assert!(
        read["result"]["text"]
            .as_str()
            .unwrap()
            .contains(log["read_note"].as_str().unwrap())
    );
    assert_eq!(read["is_error"], false);
    let add = tool_calls.iter().find(|m| m["tool"] == "add").expect("add");
    assert!(add["result"]["text"].as_str().unwrap().contains("42"));
    let none = tool_calls
        .iter()
        .find(|m| m["tool"] == "no_such_tool")
        .expect("no_such_tool");
    assert_eq!(log["no_such_tool_error"], true);
    assert!(
        none["is_error"] == true || none["error"].is_object(),
        "{none}"
    );
}
