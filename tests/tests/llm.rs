//! TLS plaintext capture, end to end: real agents (the `openai` and `anthropic` Python SDKs,
//! over Debian's libssl.so.3) call a local HTTPS server speaking each provider's API shape
//! (`tests/llm/provider_server.py`, certificate signed by a CA made for the run), and every
//! exchange of an opted-in agent becomes one `llm_exchange` record, checked field by field
//! against what the client itself logged; credentials never appear; a 1 MiB prompt is cut and
//! flagged; a stream without its final event is marked incomplete; an agent that did not opt
//! in, and the server itself, produce nothing. Over HTTP/2 (`tests/llm/h2_server.js`, ALPN h2
//! only), the openai SDK on httpx with h2 and Node's http2 client: one record per stream; a
//! 1 MiB prompt over HTTP/2 cut, flagged, and the connection still read. A connection a client
//! closes mid-response is recorded when the client frees it (`SSL_free`). GnuTLS's
//! `gnutls-cli` (over libgnutls.so.30) sending OpenAI- and Anthropic-shaped requests from its
//! standard input: captured likewise, and nothing of the same client in an agent not opted in.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sensor_tests::{Launch, Value, action, cgroup2_root, scratch_dir};

/// The agents' Python, in the environment `cargo xtask setup` makes (with the SDKs).
fn venv_python() -> PathBuf {
    let cache = std::env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    );
    let python = cache.join("ocsf-venv/bin/python3");
    assert!(
        python.is_file(),
        "no {}: run `cargo xtask setup` (it installs openai and anthropic there)",
        python.display()
    );
    python
}

fn script(name: &str) -> String {
    format!("{}/llm/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A CA and a certificate for 127.0.0.1 it signed, in `dir` (the tests' shared ones).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    sensor_tests::tls_certificates(dir);
    let p = |n: &str| dir.join(n);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// The provider server, stopped on drop.
struct Provider {
    child: Child,
    port: u16,
}

impl Provider {
    /// The HTTP/1.1 server (`provider_server.py`).
    fn start(dir: &Path, cert: &Path, key: &Path) -> Provider {
        Self::start_program(dir, cert, key, "/usr/bin/python3", "provider_server.py")
    }

    /// The HTTP/2 server (`h2_server.js`, Node's http2 module).
    fn start_h2(dir: &Path, cert: &Path, key: &Path) -> Provider {
        Self::start_program(dir, cert, key, "/usr/bin/node", "h2_server.js")
    }

    fn start_program(dir: &Path, cert: &Path, key: &Path, program: &str, name: &str) -> Provider {
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        // Owned at once, so a failed start still stops it (on drop).
        let mut provider = Provider {
            child: Command::new(program)
                .arg(script(name))
                .args([cert, key, &port_file])
                .stdin(Stdio::null())
                .spawn()
                .expect("start the provider server"),
            port: 0,
        };
        let start = Instant::now();
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                provider.port = port;
                return provider;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the provider server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the agent client's `scenario` in cgroup `cg`; returns the lines it logged.
fn agent(cg: &str, provider: &Provider, ca: &Path, scenario: &str) -> Vec<Value> {
    agent_with(cg, provider, ca, scenario, &[])
}

/// [`agent`] with more environment variables.
fn agent_with(
    cg: &str,
    provider: &Provider,
    ca: &Path,
    scenario: &str,
    env: &[(&str, &Path)],
) -> Vec<Value> {
    std::fs::create_dir_all(cg).unwrap();
    let cmd = format!(
        "echo $$ > {cg}/cgroup.procs && exec {} {} https://127.0.0.1:{} {} {scenario}",
        venv_python().display(),
        script("agent_client.py"),
        provider.port,
        ca.display()
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &cmd])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "the agent client failed: {out:?}");
    json_lines(&String::from_utf8_lossy(&out.stdout))
}

fn agent_of(r: &Value) -> &str {
    r["identity"]["agent"]["id"].as_str().unwrap_or("")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The exchange of `agent` whose request named `model`.
fn exchange<'a>(records: &'a [Value], agent: &str, model: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| agent_of(r) == agent && r["llm"]["model"] == model)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one exchange of {agent} for {model}: {found:?}"
    );
    &found[0]["llm"]
}

#[test]
fn an_opted_in_agents_llm_calls_become_exchange_records_and_nobody_elses_do() {
    let dir = scratch_dir("llm-capture");
    let (ca, cert, key) = test_ca(&dir);
    let provider = Provider::start(&dir, &cert, &key);
    let root = cgroup2_root();
    let tag = std::process::id();
    let cgroup = |name: &str| format!("{root}/agent-sensor-llm-{name}-{tag}");
    let (full_cg, digest_cg, off_cg) = (cgroup("full"), cgroup("digest"), cgroup("off"));
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: llm-full\n    selectors: [{{cgroup: /agent-sensor-llm-full-{tag}/**}}]\n    capture: {{tls: true, content: full, max_bytes: 16384}}\n  - id: llm-digest\n    selectors: [{{cgroup: /agent-sensor-llm-digest-{tag}/**}}]\n    capture: {{tls: true, content: digest}}\n  - id: llm-off\n    selectors: [{{cgroup: /agent-sensor-llm-off-{tag}/**}}]\n"
        ),
    )
    .unwrap();
    // A native rule over the exchanges: one model of one provider, from the loopback server.
    let rules = dir.join("llm-rules.yml");
    std::fs::write(
        &rules,
        "rules:
  - id: claude-tool-model
    title: The tool-use model was called
    condition: event.action = llm_exchange and llm.provider = anthropic and llm.model = claude-test-1 and llm.request.host startswith 127.0.0.1
    output: '%identity.agent.id called %llm.model'
  - id: weather-tool
    title: The model asked for a get_ tool
    condition: event.action = llm_exchange and llm.response.tool_calls.name glob 'get_*'
    output: '%identity.agent.id %llm.model asked for %llm.response.tool_calls.name'
  - id: other-tool
    title: The model asked for a tool other than get_weather
    condition: llm.response.tool_calls.name != get_weather
",
    )
    .unwrap();
    let sensor = Launch::new()
        .arg("--identities")
        .arg(&manifest)
        .arg("--rules")
        .arg(&rules)
        .start();
    let full = agent(&full_cg, &provider, &ca, "all");
    let big = agent(&full_cg, &provider, &ca, "big");
    let cut = agent(&full_cg, &provider, &ca, "cut");
    let digest = agent(&digest_cg, &provider, &ca, "one");
    let off = agent(&off_cg, &provider, &ca, "one");
    sensor.wait_for_count("the exchanges", 7, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    for cg in [&full_cg, &digest_cg, &off_cg] {
        let _ = std::fs::remove_dir(cg);
    }
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    let alerts = |id: &str| -> Vec<&str> {
        let mut messages: Vec<&str> = done
            .records
            .iter()
            .filter(|r| action(r) == "alert" && r["alert"]["rule"]["id"] == id)
            .map(|r| r["alert"]["message"].as_str().unwrap())
            .collect();
        messages.sort_unstable();
        messages
    };
    assert_eq!(
        alerts("claude-tool-model"),
        ["llm-full called claude-test-1"]
    );
    // The tool calls as a list field: each exchange whose response asked for get_weather
    // (the digest policy keeps the tools' names), none of those that asked for no tool, and
    // `!=` holds on none (every list holds only get_weather).
    assert_eq!(
        alerts("weather-tool"),
        [
            "llm-digest gpt-test-1 asked for get_weather",
            "llm-full claude-test-1 asked for get_weather",
            "llm-full gpt-test-1 asked for get_weather",
        ]
    );
    assert_eq!(alerts("other-tool"), [""; 0]);

    // Every exchange record follows the record schema (an independent validator).
    let lines = dir.join("exchanges.jsonl");
    sensor_tests::write_json_lines(&lines, &records);
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

    // Only the opted-in agents' calls, each once; never the server's side, nor anyone else's.
    let per_agent = |a: &str| records.iter().filter(|r| agent_of(r) == a).count();
    assert_eq!(per_agent("llm-full"), 6, "{records:#?}");
    assert_eq!(per_agent("llm-digest"), 1);
    assert_eq!(
        records.len(),
        7,
        "nothing from llm-off or the server: {records:#?}"
    );
    assert_eq!(off.len(), 1, "the bystander did make its call");

    // Credentials never enter the trail: not the API keys the SDKs sent in their headers,
    // nor the token in the prompt.
    let all = done
        .records
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [
        "sk-proj-T3stK3y",
        "sk-ant-api03-T3stK3y",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ] {
        assert!(!all.contains(secret), "{secret} is in the trail");
    }

    // OpenAI, a tool call: field by field against the client's own log.
    let log = &full[0];
    let x = exchange(&records, "llm-full", "gpt-test-1");
    assert_eq!(x["provider"], "openai");
    assert_eq!(x["operation"], "chat.completions");
    assert_eq!(x["content_policy"], "full");
    assert_eq!(x["request"]["method"], "POST");
    assert_eq!(x["request"]["path"], "/v1/chat/completions");
    assert_eq!(x["request"]["truncated"], false);
    assert_eq!(x["incomplete"], false);
    assert_eq!(x["prompt"][0]["role"], "system");
    assert_eq!(x["prompt"][0]["content"]["text"], log["system"]);
    assert_eq!(x["prompt"][1]["role"], "user");
    let user = log["user"].as_str().unwrap();
    assert_eq!(
        x["prompt"][1]["content"]["text"],
        "What is the weather in Paris? (my token is [REDACTED])"
    );
    // The digest is of what was sent, before masking.
    assert_eq!(x["prompt"][1]["content"]["sha256"], sha256_hex(user));
    assert_eq!(x["prompt"][1]["content"]["length"], user.len());
    let r = &x["response"];
    assert_eq!(r["status"], 200);
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(r["tool_calls"][0]["name"], log["tool"]);
    assert_eq!(r["tool_calls"][0]["arguments"]["text"], log["arguments"]);
    assert_eq!(x["usage"]["input_tokens"], log["input_tokens"]);
    assert_eq!(x["usage"]["output_tokens"], log["output_tokens"]);
    assert!(x["latency_ms"].as_f64().unwrap() > 0.0);
    let record = records
        .iter()
        .find(|r| r["llm"]["model"] == "gpt-test-1")
        .unwrap();
    assert_eq!(record["process"]["pid"], log["pid"]);
    assert_eq!(record["destination"]["ip"], "127.0.0.1");
    assert_eq!(record["destination"]["port"], provider.port);
    assert_eq!(record["event"]["outcome"], "success");

    // OpenAI, streamed: the deltas joined, whole at [DONE].
    let x = exchange(&records, "llm-full", "gpt-test-stream");
    assert_eq!(x["request"]["stream"], true);
    assert_eq!(x["response"]["stream"], true);
    assert_eq!(x["response"]["text"]["text"], full[1]["text"]);
    assert_eq!(x["incomplete"], false);
    assert_eq!(x["usage"]["output_tokens"], 3);

    // Anthropic, a tool use, then streamed.
    let log = &full[2];
    let x = exchange(&records, "llm-full", "claude-test-1");
    assert_eq!(x["provider"], "anthropic");
    assert_eq!(x["operation"], "messages");
    assert_eq!(x["prompt"][0]["role"], "system");
    assert_eq!(x["response"]["text"]["text"], log["text"]);
    assert_eq!(x["response"]["finish_reason"], "tool_use");
    assert_eq!(x["response"]["tool_calls"][0]["id"], log["tool_id"]);
    assert_eq!(x["response"]["tool_calls"][0]["name"], log["tool"]);
    let args: Value = serde_json::from_str(
        x["response"]["tool_calls"][0]["arguments"]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let logged: Value = serde_json::from_str(log["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, logged);
    assert_eq!(x["usage"]["input_tokens"], log["input_tokens"]);
    assert_eq!(x["usage"]["output_tokens"], log["output_tokens"]);
    let x = exchange(&records, "llm-full", "claude-test-stream");
    assert_eq!(x["response"]["text"]["text"], full[3]["text"]);
    assert_eq!(x["response"]["finish_reason"], "end_turn");
    assert_eq!(x["incomplete"], false);

    // A 1 MiB prompt: its length on the wire, cut at the agent's bound and flagged; the
    // response after it is still read.
    let x = records
        .iter()
        .map(|r| &r["llm"])
        .find(|x| x["request"]["truncated"] == true)
        .expect("the truncated request");
    assert!(
        x["request"]["body_bytes"].as_u64().unwrap() > 1 << 20,
        "{x}"
    );
    assert_eq!(x["incomplete"], true);
    assert_eq!(x["response"]["text"]["text"], big[0]["text"]);

    // A stream that ends without its final event: recorded, marked incomplete.
    let x = exchange(&records, "llm-full", "cut-stream");
    assert_eq!(x["incomplete"], true);
    assert_eq!(x["response"]["text"]["text"], cut[0]["text"]);

    // The digest policy keeps no content, only what proves it.
    let x = exchange(&records, "llm-digest", "gpt-test-1");
    assert_eq!(x["content_policy"], "digest");
    let user = digest[0]["user"].as_str().unwrap();
    assert!(x["prompt"][1]["content"].get("text").is_none(), "{x}");
    assert_eq!(x["prompt"][1]["content"]["sha256"], sha256_hex(user));
    assert!(
        x["response"]["tool_calls"][0]["arguments"]
            .get("text")
            .is_none()
    );
}

/// A TLS library first mapped after the daemon dropped its capabilities (a copy of libssl in a
/// directory of the agent's own, on a kernel that opens uprobes only for `CAP_SYS_ADMIN`) is
/// probed through the uprobe opener, and the call through it captured.
#[test]
fn a_tls_library_first_mapped_after_the_capability_drop_is_probed() {
    let dir = scratch_dir("llm-late-library");
    let (ca, cert, key) = test_ca(&dir);
    let provider = Provider::start(&dir, &cert, &key);
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let system = Path::new("/usr/lib").join(format!("{}-linux-gnu", std::env::consts::ARCH));
    for name in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(system.join(name), lib.join(name)).unwrap();
    }
    let (cg, manifest) = full_capture_agent(&dir, "late", "llm-late");
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let logged = agent_with(
        &cg,
        &provider,
        &ca,
        "one",
        &[
            ("LD_LIBRARY_PATH", lib.as_path()),
            ("AGENT_CLIENT_WAIT", Path::new("2")),
        ],
    );
    assert_eq!(logged.len(), 1, "{logged:?}");
    sensor.wait_for_count("the exchange", 1, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let x = exchange(&done.records, "llm-late", "gpt-test-1");
    assert_eq!(x["incomplete"], false);
    assert_eq!(x["response"]["tool_calls"][0]["name"], logged[0]["tool"]);
    assert_eq!(
        x["response"]["tool_calls"][0]["arguments"]["text"],
        logged[0]["arguments"]
    );
    // Found in the agent's mappings after start, not among the system's libraries.
    let copy = lib.join("libssl.so.3");
    assert!(
        done.stderr
            .lines()
            .any(|l| l.contains("TLS capture attached") && l.contains(&*copy.to_string_lossy())),
        "the copy was attached: {}",
        done.stderr
    );
}

/// A scratch cgroup (`agent-sensor-llm-<name>-<pid>`) whose processes are one agent, `id`,
/// with TLS capture on and content in full, and the manifest in `dir` that declares it: the
/// cgroup's path and the manifest's.
fn full_capture_agent(dir: &Path, name: &str, id: &str) -> (String, PathBuf) {
    let tag = std::process::id();
    let cg = format!("{}/agent-sensor-llm-{name}-{tag}", cgroup2_root());
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: {id}\n    selectors: [{{cgroup: /agent-sensor-llm-{name}-{tag}/**}}]\n    capture: {{tls: true, content: full}}\n"
        ),
    )
    .unwrap();
    (cg, manifest)
}

/// Each line a client printed, as JSON.
fn json_lines(printed: &str) -> Vec<Value> {
    printed
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `command` (a shell command line) in cgroup `cg`; returns its standard output.
fn in_cgroup(cg: &str, command: &str) -> String {
    std::fs::create_dir_all(cg).unwrap();
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("echo $$ > {cg}/cgroup.procs || exit 1\n{command}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_node_client_is_captured_and_programs_whose_tls_cannot_be_probed_are_named() {
    let node = "/usr/bin/node";
    assert!(
        Path::new(node).is_file(),
        "no {node}: this machine kind has Node.js"
    );
    let dir = scratch_dir("llm-node");
    let (ca, cert, key) = test_ca(&dir);
    let provider = Provider::start(&dir, &cert, &key);
    let root = cgroup2_root();
    let tag = std::process::id();
    let on_cg = format!("{root}/agent-sensor-llm-node-{tag}");
    let off_cg = format!("{root}/agent-sensor-llm-node-off-{tag}");
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: node-agent\n    selectors: [{{cgroup: /agent-sensor-llm-node-{tag}/**}}]\n    capture: {{tls: true, content: redacted}}\n  - id: not-opted-in\n    selectors: [{{cgroup: /agent-sensor-llm-node-off-{tag}/**}}]\n"
        ),
    )
    .unwrap();
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let log: Value = serde_json::from_str(&in_cgroup(
        &on_cg,
        &format!(
            "exec {node} {} https://127.0.0.1:{} {} gpt-node-1",
            script("node_client.js"),
            provider.port,
            ca.display()
        ),
    ))
    .expect("the node client's log line");
    // Programs whose TLS stack has nothing to probe, each alive long enough to be scanned:
    // a stripped static program (busybox-static) and a Go program (Debian's nats-server).
    let busybox = in_cgroup(&on_cg, "/bin/busybox sleep 1 & pid=$!; wait; echo $pid");
    let go = in_cgroup(
        &on_cg,
        "/usr/sbin/nats-server -a 127.0.0.1 -p -1 >/dev/null 2>&1 & pid=$!; sleep 1; kill $pid; wait; echo $pid",
    );
    // Python's ssl module loading a copy of libssl that was not there when the sensor started:
    // this kernel opens uprobes only for CAP_SYS_ADMIN, which the daemon dropped after loading;
    // the uprobe opener probes the copy, so nothing is said of the process that maps it.
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        lib.join("libssl.so.3"),
    )
    .unwrap();
    let copied = in_cgroup(
        &on_cg,
        &format!(
            "LD_LIBRARY_PATH={} /usr/bin/python3 -c 'import ssl, time; time.sleep(1)' & pid=$!; wait; echo $pid",
            lib.display()
        ),
    );
    // The same static program in an agent that did not opt in: nothing said.
    in_cgroup(&off_cg, "/bin/busybox sleep 1");
    sensor.wait_for("the Go program named", |r| {
        action(r) == "tls_not_captured"
            && r["tls_capture"]["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("Go program")
    });
    let done = sensor.stop();
    for cg in [&on_cg, &off_cg] {
        let _ = std::fs::remove_dir(cg);
    }

    // The Node client's call, captured through the OpenSSL inside the node binary.
    let x = exchange(&done.records, "node-agent", "gpt-node-1");
    assert_eq!(x["provider"], "openai");
    assert_eq!(x["content_policy"], "redacted");
    assert_eq!(x["response"]["status"], log["status"]);
    assert_eq!(x["response"]["text"]["text"], log["text"]);
    assert_eq!(x["usage"]["input_tokens"], log["input_tokens"]);
    assert_eq!(
        x["prompt"][0]["content"]["sha256"],
        sha256_hex(log["user"].as_str().unwrap())
    );
    let all = done
        .records
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(
        !all.contains("sk-proj-T3stK3yN0de"),
        "the key is in the trail"
    );

    // Each program whose TLS cannot be probed is named once, with why, as the agent's.
    let said: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "tls_not_captured")
        .collect();
    let of = |pid: &str| {
        let pid: u64 = pid.trim().parse().unwrap();
        let found: Vec<&&Value> = said.iter().filter(|r| r["process"]["pid"] == pid).collect();
        assert_eq!(found.len(), 1, "one record for pid {pid}: {said:#?}");
        assert_eq!(agent_of(found[0]), "node-agent");
        found[0]["tls_capture"]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(of(&busybox).starts_with("statically linked, stripped program"));
    assert!(of(&go).starts_with("Go program"));
    let copied: u64 = copied.trim().parse().unwrap();
    assert!(
        said.iter().all(|r| r["process"]["pid"] != copied),
        "the copy of libssl was probed: {said:#?}"
    );
    assert!(
        done.stderr
            .lines()
            .any(|l| l.contains("TLS capture attached")
                && l.contains(&*lib.join("libssl.so.3").to_string_lossy())),
        "the copy was attached: {}",
        done.stderr
    );
    assert_eq!(
        said.len(),
        2,
        "nothing for node, sh, the copied libssl or the agent that did not opt in: {said:#?}"
    );
}

#[test]
fn http2_streams_become_exchange_records_one_per_stream() {
    let dir = scratch_dir("llm-h2");
    let (ca, cert, key) = test_ca(&dir);
    let server = Provider::start_h2(&dir, &cert, &key);
    let (cg, manifest) = full_capture_agent(&dir, "h2", "h2-agent");
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    // The openai SDK on httpx with h2 (ALPN h2): a tool call, a stream, a stream the server
    // resets after its first event.
    let py = agent(&cg, &server, &ca, "h2");
    // Node's http2 client: two calls at once on one connection, their streams interleaved.
    let node = json_lines(&in_cgroup(
        &cg,
        &format!(
            "exec /usr/bin/node {} https://127.0.0.1:{} {}",
            script("node_h2_client.js"),
            server.port,
            ca.display()
        ),
    ));
    sensor.wait_for_count("the HTTP/2 exchanges", 5, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    assert_eq!(records.len(), 5, "one per stream: {records:#?}");
    assert!(records.iter().all(|r| agent_of(r) == "h2-agent"));
    let all = done
        .records
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [
        "sk-proj-T3stK3y",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ] {
        assert!(!all.contains(secret), "{secret} is in the trail");
    }
    let host = format!("127.0.0.1:{}", server.port);

    // A tool call, field by field against the client's log.
    let log = &py[0];
    assert_eq!(log["http_version"], "HTTP/2", "the client negotiated h2");
    let x = exchange(&records, "h2-agent", "gpt-h2-tools");
    assert_eq!(x["provider"], "openai");
    assert_eq!(x["operation"], "chat.completions");
    assert_eq!(x["request"]["http_version"], "2");
    assert_eq!(x["request"]["method"], "POST");
    assert_eq!(x["request"]["path"], "/v1/chat/completions");
    assert_eq!(x["request"]["host"], host.as_str());
    assert_eq!(x["request"]["stream"], false);
    assert_eq!(x["incomplete"], false);
    let user = log["user"].as_str().unwrap();
    assert_eq!(
        x["prompt"][0]["content"]["text"],
        "Weather in Lyon over HTTP/2? (my token is [REDACTED])"
    );
    assert_eq!(x["prompt"][0]["content"]["sha256"], sha256_hex(user));
    let r = &x["response"];
    assert_eq!(r["status"], 200);
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(r["tool_calls"][0]["id"], "call_h2");
    assert_eq!(r["tool_calls"][0]["name"], log["tool"]);
    assert_eq!(r["tool_calls"][0]["arguments"]["text"], log["arguments"]);
    assert_eq!(x["usage"]["input_tokens"], log["input_tokens"]);
    assert_eq!(x["usage"]["output_tokens"], log["output_tokens"]);
    assert!(x["latency_ms"].as_f64().unwrap() > 0.0);
    let record = records
        .iter()
        .find(|r| r["llm"]["model"] == "gpt-h2-tools")
        .unwrap();
    assert_eq!(record["process"]["pid"], log["pid"]);
    assert_eq!(record["destination"]["ip"], "127.0.0.1");
    assert_eq!(record["destination"]["port"], server.port);

    // Streamed (server-sent events on DATA frames): whole at [DONE].
    let x = exchange(&records, "h2-agent", "gpt-h2-stream");
    assert_eq!(x["request"]["stream"], true);
    assert_eq!(x["response"]["stream"], true);
    assert_eq!(x["response"]["text"]["text"], py[1]["text"]);
    assert_eq!(x["usage"]["output_tokens"], 3);
    assert_eq!(x["incomplete"], false);
    // The same connection (one httpx client) for all three of the SDK's calls.
    let conn = x["connection"].clone();
    assert_eq!(
        exchange(&records, "h2-agent", "gpt-h2-tools")["connection"],
        conn
    );

    // Reset by the server after its first event: what came, marked incomplete.
    let x = exchange(&records, "h2-agent", "reset-stream");
    assert_eq!(x["incomplete"], true);
    assert_eq!(x["response"]["text"]["text"], py[2]["text"]);
    assert_eq!(x["connection"], conn);

    // Node: two streams interleaved on one connection, each its own exchange.
    assert_eq!(node.len(), 2);
    let mut node_conns = Vec::new();
    for log in &node {
        let x = exchange(&records, "h2-agent", log["model"].as_str().unwrap());
        assert_eq!(x["request"]["http_version"], "2");
        assert_eq!(x["request"]["host"], host.as_str());
        assert_eq!(x["response"]["status"], log["status"]);
        assert_eq!(x["response"]["text"]["text"], log["text"]);
        assert_eq!(x["usage"]["input_tokens"], log["input_tokens"]);
        assert_eq!(
            x["prompt"][0]["content"]["sha256"],
            sha256_hex(log["user"].as_str().unwrap())
        );
        assert_eq!(x["incomplete"], false);
        node_conns.push(x["connection"].clone());
    }
    assert_eq!(node_conns[0], node_conns[1]);
    assert_ne!(node_conns[0], conn);
}

/// A client that closes its connection in the middle of a streamed response (the openai SDK's
/// `Stream.close()`) frees the connection object: the exchange is recorded at once, marked
/// incomplete with what came, while the client still runs (not 30 s later when the connection
/// would have gone quiet, nor at the sensor's stop); the next connection, to another server,
/// which OpenSSL may give the freed object's address, is its own exchange with its own
/// destination.
#[test]
fn a_connection_closed_mid_response_is_recorded_when_freed_and_the_next_one_stands_alone() {
    let dir = scratch_dir("llm-closed");
    let (ca, cert, key) = test_ca(&dir);
    let first = Provider::start(&dir, &cert, &key);
    let second_dir = dir.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = Provider::start(&second_dir, &cert, &key);
    let (cg, manifest) = full_capture_agent(&dir, "closed", "closing-agent");
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    std::fs::create_dir_all(&cg).unwrap();
    let cmd = format!(
        "echo $$ > {cg}/cgroup.procs && exec {} {} https://127.0.0.1:{} {} close",
        venv_python().display(),
        script("agent_client.py"),
        first.port,
        ca.display()
    );
    let mut client = Command::new("/bin/sh")
        .args(["-c", &cmd])
        .env(
            "AGENT_CLIENT_SECOND",
            format!("https://127.0.0.1:{}", second.port),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the agent client");
    // Both exchanges while the client is still running (it waits on its stdin).
    let seen = sensor.wait_for_count("both exchanges, the client still running", 2, |r| {
        action(r) == "llm_exchange"
    });
    assert_eq!(
        client.try_wait().unwrap(),
        None,
        "the client is still running: {seen:#?}"
    );
    drop(client.stdin.take());
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "the agent client failed: {out:?}");
    let log = json_lines(&String::from_utf8_lossy(&out.stdout));
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    let record = |model: &str| {
        records
            .iter()
            .find(|r| r["llm"]["model"] == model)
            .unwrap_or_else(|| panic!("no exchange of {model}: {records:#?}"))
    };

    // Closed mid-stream: what came before the close, incomplete.
    let closed = record("slow-stream");
    assert_eq!(log[0]["text"], "Hello from");
    let x = &closed["llm"];
    assert_eq!(x["incomplete"], true);
    assert_eq!(x["request"]["stream"], true);
    assert_eq!(x["response"]["status"], 200);
    assert_eq!(x["response"]["stream"], true);
    assert_eq!(x["response"]["text"]["text"], log[0]["text"]);
    assert!(x["response"].get("finish_reason").is_none(), "{x}");
    assert_eq!(closed["destination"]["port"], first.port);
    assert_eq!(closed["process"]["pid"], log[0]["pid"]);
    assert_eq!(agent_of(closed), "closing-agent");

    // The next connection: whole, to the second server, a connection of its own.
    let after = record("after-close");
    let x = &after["llm"];
    assert_eq!(x["incomplete"], false);
    assert_eq!(x["response"]["status"], 200);
    assert_eq!(x["response"]["text"]["text"], log[1]["text"]);
    assert_eq!(after["destination"]["port"], second.port);
    assert_ne!(x["connection"], closed["llm"]["connection"]);
    assert_eq!(
        done.records.iter().filter(|r| action(r) == "gap").count(),
        0,
        "no end event was lost"
    );
}

/// A 1 MiB prompt over HTTP/2. The openai SDK on httpx with h2 writes one DATA frame per
/// SSL_write: the bytes the capture bound did not copy fall inside frames whose headers were
/// captured, so the exchange is recorded, its request flagged truncated with its length on the
/// wire, and the next request on the same connection is decoded whole. Node's client writes
/// several frames at once: the cut request is recorded, flagged, and the connection ends there.
#[test]
fn a_1_mib_prompt_over_http2_is_cut_and_flagged_and_the_next_request_is_read() {
    let dir = scratch_dir("llm-h2-big");
    let (ca, cert, key) = test_ca(&dir);
    let server = Provider::start_h2(&dir, &cert, &key);
    let (cg, manifest) = full_capture_agent(&dir, "h2-big", "h2-big-agent");
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let log = agent(&cg, &server, &ca, "h2-big");
    // Node's http2 client (nghttp2) writes several frames per SSL_write.
    let node = json_lines(&in_cgroup(
        &cg,
        &format!(
            "exec /usr/bin/node {} https://127.0.0.1:{} {} big",
            script("node_h2_client.js"),
            server.port,
            ca.display()
        ),
    ));
    assert_eq!(node.len(), 2, "the Node client made both calls");
    sensor.wait_for_count("four exchanges", 4, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_eq!(log[0]["http_version"], "HTTP/2", "the client negotiated h2");
    let big = exchange(&records, "h2-big-agent", "gpt-h2-big");
    assert_eq!(big["request"]["http_version"], "2");
    assert_eq!(big["request"]["truncated"], true);
    assert!(
        big["request"]["body_bytes"].as_u64().unwrap() > 1 << 20,
        "{big}"
    );
    assert_eq!(big["incomplete"], true, "a part was not captured");
    assert_eq!(big["response"]["status"], 200);
    assert_eq!(big["response"]["text"]["text"], log[0]["text"]);
    let after = exchange(&records, "h2-big-agent", "gpt-h2-after-big");
    assert_eq!(after["incomplete"], false);
    assert_eq!(after["request"]["truncated"], false);
    assert_eq!(after["prompt"][0]["content"]["text"], "and a small one");
    assert_eq!(after["response"]["text"]["text"], log[1]["text"]);
    assert_eq!(after["connection"], big["connection"], "one connection");

    // Node: the bytes the bound cut run past the DATA frame under way into frame heads that
    // were not captured, so the client's framing is lost, and found again at its next write,
    // which starts with a frame head: the cut request is recorded, named, truncated, with its
    // response; the next request on that connection is read whole.
    let x = exchange(&records, "h2-big-agent", "gpt-node-big");
    assert_eq!(x["request"]["truncated"], true);
    assert_eq!(x["incomplete"], true);
    assert_eq!(x["response"]["status"], 200, "{x}");
    assert_eq!(x["response"]["text"]["text"], node[0]["text"], "{x}");
    let after = exchange(&records, "h2-big-agent", "gpt-node-after-big");
    assert_eq!(after["incomplete"], false, "{after}");
    assert_eq!(after["request"]["truncated"], false);
    assert_eq!(after["prompt"][0]["content"]["text"], "small");
    assert_eq!(after["response"]["text"]["text"], node[1]["text"]);
    assert_eq!(after["connection"], x["connection"], "one connection");
    let all: String = done.records.iter().map(Value::to_string).collect();
    assert!(
        !all.contains("sk-proj-T3stK3yN0deH2000000000000"),
        "the key is in the trail"
    );
}

/// An HTTP/1.1 request to the provider server, closing the connection after its response.
fn http_request(path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    let _ = write!(
        request,
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    request
}

/// The body of the HTTP/1.1 response `gnutls-cli` printed.
fn response_body(printed: &str) -> &str {
    let start = printed.find("HTTP/1.1 ").expect("a response");
    let response = &printed[start..];
    let end = response.find("\r\n\r\n").expect("the end of the head") + 4;
    &response[end..]
}

#[test]
fn a_gnutls_client_is_captured_through_libgnutls() {
    let cli = "/usr/bin/gnutls-cli";
    assert!(
        Path::new(cli).is_file(),
        "no {cli}: `cargo xtask setup` installs Debian's gnutls-bin"
    );
    let dir = scratch_dir("llm-gnutls");
    let (ca, cert, key) = test_ca(&dir);
    let provider = Provider::start(&dir, &cert, &key);
    let root = cgroup2_root();
    let tag = std::process::id();
    let on_cg = format!("{root}/agent-sensor-llm-gnutls-{tag}");
    let off_cg = format!("{root}/agent-sensor-llm-gnutls-off-{tag}");
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: gnutls-agent\n    selectors: [{{cgroup: /agent-sensor-llm-gnutls-{tag}/**}}]\n    capture: {{tls: true, content: full}}\n  - id: gnutls-off\n    selectors: [{{cgroup: /agent-sensor-llm-gnutls-off-{tag}/**}}]\n"
        ),
    )
    .unwrap();
    // What gnutls-cli sends from its standard input: an OpenAI chat completion, and a
    // streamed Anthropic message, each on a connection of its own, with the providers' keys.
    let openai_key = "sk-proj-T3stK3yGnuTLS0penAI";
    let anthropic_key = "sk-ant-api03-T3stK3yGnuTLS";
    let user = "What is the capital of France?";
    let openai_request = |model: &str| {
        http_request(
            "/v1/chat/completions",
            &[("Authorization", &format!("Bearer {openai_key}"))],
            &serde_json::json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": user},
                ],
            })
            .to_string(),
        )
    };
    let openai = openai_request("gpt-gnutls-1");
    let anthropic = http_request(
        "/v1/messages",
        &[
            ("x-api-key", anthropic_key),
            ("anthropic-version", "2023-06-01"),
        ],
        &serde_json::json!({
            "model": "claude-gnutls-stream",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "Say hello in French."}],
        })
        .to_string(),
    );
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    // A copy of libgnutls that was not there when the sensor started, for the third call:
    // found in that process's mappings, attached (through the uprobe opener on this kernel).
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let system = Path::new("/usr/lib").join(format!("{}-linux-gnu", std::env::consts::ARCH));
    let copy = lib.join("libgnutls.so.30");
    std::fs::copy(system.join("libgnutls.so.30"), &copy).unwrap();
    // One gnutls-cli run: its pid, and what it printed (its exit status says nothing here: it
    // is 1 when the server closes without a TLS close_notify after the response, as Python's
    // server does, depending on when gnutls-cli saw the end of its input; the response it
    // printed is checked instead). Over the copy, its request comes a second after the
    // handshake, once the sensor's scan (every 100 ms) has found the copy.
    let run = |cg: &str, name: &str, request: &str, over_copy: bool| -> (u64, String) {
        let input = dir.join(format!("{name}.http"));
        let output = dir.join(format!("{name}.out"));
        std::fs::write(&input, request).unwrap();
        let (feed, env) = if over_copy {
            (
                format!("(sleep 1; cat {}) |", input.display()),
                format!("LD_LIBRARY_PATH={}", lib.display()),
            )
        } else {
            (String::new(), String::new())
        };
        let redirect = if over_copy {
            String::new()
        } else {
            format!("< {}", input.display())
        };
        let pid = in_cgroup(
            cg,
            &format!(
                "{feed} {env} {cli} --x509cafile {} -p {} 127.0.0.1 {redirect} > {} 2>{}.err & pid=$!; wait $pid; echo $pid",
                ca.display(),
                provider.port,
                output.display(),
                output.display()
            ),
        );
        (
            pid.trim().parse().unwrap(),
            std::fs::read_to_string(&output).unwrap(),
        )
    };
    let (openai_pid, openai_out) = run(&on_cg, "openai", &openai, false);
    let (anthropic_pid, anthropic_out) = run(&on_cg, "anthropic", &anthropic, false);
    let late = openai_request("gpt-gnutls-copy");
    let (late_pid, late_out) = run(&on_cg, "late", &late, true);
    let (_, off_out) = run(&off_cg, "off", &openai, false);
    assert!(
        off_out.contains("HTTP/1.1 200"),
        "the bystander did make its call: {off_out}"
    );
    sensor.wait_for_count("the exchanges", 3, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    for cg in [&on_cg, &off_cg] {
        let _ = std::fs::remove_dir(cg);
    }
    let records: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .collect();
    assert_eq!(
        records.len(),
        3,
        "the three calls of the opted-in agent, nothing of gnutls-off or the server: {records:#?}"
    );
    assert!(records.iter().all(|r| agent_of(r) == "gnutls-agent"));
    let attached = |path: &str| {
        done.stderr
            .lines()
            .any(|l| l.contains("TLS capture attached") && l.contains("GnuTLS") && l.contains(path))
    };
    assert!(
        attached(&system.join("libgnutls.so.30").to_string_lossy()),
        "the system's libgnutls was attached: {}",
        done.stderr
    );
    assert!(
        attached(&copy.to_string_lossy()),
        "the copy was attached: {}",
        done.stderr
    );

    // OpenAI, field by field against what gnutls-cli received.
    // (The JSON body, then gnutls-cli's own note that the server closed the connection.)
    let got: Value = serde_json::Deserializer::from_str(response_body(&openai_out))
        .into_iter()
        .next()
        .expect("a response body")
        .expect("the JSON response");
    let record = records
        .iter()
        .find(|r| r["llm"]["model"] == "gpt-gnutls-1")
        .expect("the OpenAI exchange");
    assert_eq!(record["process"]["pid"], openai_pid);
    assert_eq!(record["process"]["name"], "gnutls-cli");
    assert_eq!(record["destination"]["ip"], "127.0.0.1");
    assert_eq!(record["destination"]["port"], provider.port);
    assert_eq!(record["event"]["outcome"], "success");
    let x = &record["llm"];
    assert_eq!(x["provider"], "openai");
    assert_eq!(x["operation"], "chat.completions");
    assert_eq!(x["content_policy"], "full");
    assert_eq!(x["request"]["method"], "POST");
    assert_eq!(x["request"]["host"], "127.0.0.1");
    assert_eq!(x["request"]["path"], "/v1/chat/completions");
    assert_eq!(x["request"]["http_version"], "1.1");
    assert_eq!(x["request"]["stream"], false);
    assert_eq!(x["request"]["truncated"], false);
    let body = &openai[openai.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(x["request"]["body_bytes"], body.len());
    assert_eq!(x["request"]["body_sha256"], sha256_hex(body));
    assert_eq!(x["prompt"][0]["role"], "system");
    assert_eq!(x["prompt"][0]["content"]["text"], "Answer briefly.");
    assert_eq!(x["prompt"][1]["role"], "user");
    assert_eq!(x["prompt"][1]["content"]["text"], user);
    assert_eq!(x["prompt"][1]["content"]["sha256"], sha256_hex(user));
    assert_eq!(x["response"]["status"], 200);
    assert_eq!(x["response"]["stream"], false);
    assert_eq!(
        x["response"]["text"]["text"],
        got["choices"][0]["message"]["content"]
    );
    assert_eq!(
        x["response"]["finish_reason"],
        got["choices"][0]["finish_reason"]
    );
    assert_eq!(x["usage"]["input_tokens"], got["usage"]["prompt_tokens"]);
    assert_eq!(
        x["usage"]["output_tokens"],
        got["usage"]["completion_tokens"]
    );
    assert_eq!(x["incomplete"], false);
    assert!(x["latency_ms"].as_f64().unwrap() > 0.0);

    // Anthropic, streamed: the deltas gnutls-cli received, joined.
    let text: String = response_body(&anthropic_out)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(!text.is_empty(), "{anthropic_out}");
    let record = records
        .iter()
        .find(|r| r["llm"]["model"] == "claude-gnutls-stream")
        .expect("the Anthropic exchange");
    assert_eq!(record["process"]["pid"], anthropic_pid);
    let x = &record["llm"];
    assert_eq!(x["provider"], "anthropic");
    assert_eq!(x["operation"], "messages");
    assert_eq!(x["request"]["stream"], true);
    assert_eq!(x["response"]["stream"], true);
    assert_eq!(x["response"]["text"]["text"], text);
    assert_eq!(x["response"]["finish_reason"], "end_turn");
    assert_eq!(x["incomplete"], false);
    assert_ne!(
        records[0]["llm"]["connection"], records[1]["llm"]["connection"],
        "a connection each"
    );

    // The call over the copy of libgnutls.
    let got: Value = serde_json::Deserializer::from_str(response_body(&late_out))
        .into_iter()
        .next()
        .expect("a response body")
        .expect("the JSON response");
    let record = records
        .iter()
        .find(|r| r["llm"]["model"] == "gpt-gnutls-copy")
        .expect("the exchange over the copy");
    assert_eq!(record["process"]["pid"], late_pid);
    assert_eq!(
        record["llm"]["response"]["text"]["text"],
        got["choices"][0]["message"]["content"]
    );
    assert_eq!(record["llm"]["incomplete"], false);

    // The keys gnutls-cli sent in its headers never enter the trail.
    let all = done
        .records
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [openai_key, anthropic_key] {
        assert!(!all.contains(secret), "{secret} is in the trail");
    }
}

/// The JSON body of an HTTP/1.1 response a ctypes client read whole.
fn json_body(response: &Value) -> Value {
    let text = response["response"].as_str().expect("the response as read");
    let start = text.find("\r\n\r\n").expect("the end of the head") + 4;
    serde_json::from_str(&text[start..]).expect("the JSON response")
}

/// GnuTLS's other entry points, called by a real program over the system's libgnutls
/// (`tests/llm/gnutls_client.py`, through ctypes): a request sent with `gnutls_record_send2`,
/// one with `gnutls_record_send_range`, one corked (handed over in pieces with
/// `gnutls_record_send` between `gnutls_record_cork` and `gnutls_record_uncork`, which sends
/// them again through `gnutls_record_send`), each response read with `gnutls_record_recv_seq`.
/// Each exchange is recorded once and whole, field by field against what the client read: the
/// corked request's bytes once, not again when the cork is flushed.
#[test]
fn gnutls_send2_send_range_recv_seq_and_corked_sends_are_captured_once() {
    let dir = scratch_dir("llm-gnutls-entries");
    let (ca, cert, key) = test_ca(&dir);
    let provider = Provider::start(&dir, &cert, &key);
    let (cg, manifest) = full_capture_agent(&dir, "gnutls-entries", "gnutls-entries-agent");
    let user = "Which entry point carried this?";
    let request = |model: &str| {
        http_request(
            "/v1/chat/completions",
            &[("Authorization", "Bearer sk-proj-T3stK3yGnuTLSEntr1es")],
            &serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": user}],
            })
            .to_string(),
        )
    };
    let mut args = String::new();
    let mut sent = Vec::new();
    for (entry, model) in [
        ("send2", "gpt-send2"),
        ("send_range", "gpt-send-range"),
        ("cork", "gpt-corked"),
    ] {
        let path = dir.join(format!("{entry}.http"));
        let r = request(model);
        std::fs::write(&path, &r).unwrap();
        let _ = write!(args, " {entry}={}", path.display());
        sent.push((model, r));
    }
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let printed = in_cgroup(
        &cg,
        &format!(
            "exec /usr/bin/python3 {} {} {}{args}",
            script("gnutls_client.py"),
            provider.port,
            ca.display()
        ),
    );
    let log = json_lines(&printed);
    assert_eq!(log.len(), 3, "{printed}");
    sensor.wait_for_count("the exchanges", 3, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    assert_eq!(records.len(), 3, "each exchange once: {records:#?}");
    for ((model, request), log) in sent.iter().zip(&log) {
        let got = json_body(log);
        let record = records
            .iter()
            .find(|r| r["llm"]["model"] == *model)
            .unwrap_or_else(|| panic!("no exchange of {model}: {records:#?}"));
        assert_eq!(record["process"]["pid"], log["pid"]);
        assert_eq!(agent_of(record), "gnutls-entries-agent");
        assert_eq!(record["destination"]["port"], provider.port);
        let x = &record["llm"];
        assert_eq!(x["provider"], "openai");
        assert_eq!(x["request"]["path"], "/v1/chat/completions");
        assert_eq!(x["request"]["truncated"], false);
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(x["request"]["body_bytes"], body.len());
        assert_eq!(x["request"]["body_sha256"], sha256_hex(body));
        assert_eq!(x["prompt"][0]["content"]["text"], user);
        assert_eq!(x["response"]["status"], 200);
        assert_eq!(
            x["response"]["text"]["text"],
            got["choices"][0]["message"]["content"]
        );
        assert_eq!(x["usage"]["input_tokens"], got["usage"]["prompt_tokens"]);
        assert_eq!(x["incomplete"], false, "{x}");
    }
    let connections: std::collections::HashSet<String> = records
        .iter()
        .map(|r| r["llm"]["connection"].to_string())
        .collect();
    assert_eq!(connections.len(), 3, "{records:#?}");
    let all: String = done.records.iter().map(Value::to_string).collect();
    assert!(
        !all.contains("sk-proj-T3stK3yGnuTLSEntr1es"),
        "the key is in the trail"
    );
}

/// One `SSL` object reused for two connections, reset with `SSL_clear` in between
/// (`tests/llm/openssl_reuse.py`, ctypes over the system's libssl.so.3), to two servers: the
/// reset ends the first connection, so the second exchange is a connection of its own, to
/// the second server, though the object (its address) is the same.
#[test]
fn an_ssl_object_reset_with_ssl_clear_starts_a_connection_of_its_own() {
    let dir = scratch_dir("llm-ssl-clear");
    let (ca, cert, key) = test_ca(&dir);
    let first = Provider::start(&dir, &cert, &key);
    let second_dir = dir.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = Provider::start(&second_dir, &cert, &key);
    let (cg, manifest) = full_capture_agent(&dir, "ssl-clear", "ssl-clear-agent");
    let mut args = String::new();
    for (provider, model) in [(&first, "gpt-before-clear"), (&second, "gpt-after-clear")] {
        let path = dir.join(format!("{model}.http"));
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": format!("a question for {model}")}],
        });
        std::fs::write(
            &path,
            http_request("/v1/chat/completions", &[], &body.to_string()),
        )
        .unwrap();
        let _ = write!(args, " {}={}", provider.port, path.display());
    }
    let sensor = Launch::new().arg("--identities").arg(&manifest).start();
    let printed = in_cgroup(
        &cg,
        &format!(
            "exec /usr/bin/python3 {} {}{args}",
            script("openssl_reuse.py"),
            ca.display()
        ),
    );
    let log = json_lines(&printed);
    assert_eq!(log.len(), 2, "{printed}");
    assert_eq!(log[0]["ssl"], log[1]["ssl"], "one SSL object");
    sensor.wait_for_count("the exchanges", 2, |r| action(r) == "llm_exchange");
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records: Vec<Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "llm_exchange")
        .cloned()
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    let mut connections = Vec::new();
    for ((provider, model), log) in [(&first, "gpt-before-clear"), (&second, "gpt-after-clear")]
        .into_iter()
        .zip(&log)
    {
        let got = json_body(log);
        let record = records
            .iter()
            .find(|r| r["llm"]["model"] == model)
            .unwrap_or_else(|| panic!("no exchange of {model}: {records:#?}"));
        assert_eq!(record["process"]["pid"], log["pid"]);
        assert_eq!(record["destination"]["port"], provider.port, "{record}");
        let x = &record["llm"];
        assert_eq!(
            x["prompt"][0]["content"]["text"],
            format!("a question for {model}")
        );
        assert_eq!(
            x["response"]["text"]["text"],
            got["choices"][0]["message"]["content"]
        );
        assert_eq!(x["incomplete"], false, "{x}");
        connections.push(x["connection"].clone());
    }
    assert_ne!(connections[0], connections[1], "a connection each");
}
