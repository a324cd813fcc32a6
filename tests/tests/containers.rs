//! Agents in real containers: a private containerd (with a Kubernetes-shaped pod in its
//! `k8s.io` namespace), podman and plain runc, all from a busybox rootfs built here. Each
//! container's very first process must already be attributed (new cgroups are held in the
//! kernel until the sensor has read the container's metadata), with the container's and pod's
//! metadata on every record, and containers no selector names must stay out of the records.
//! (busybox's shell runs most applets without an exec; `cat`, `sleep` and `env CMD` do exec.)
use std::path::Path;

use sensor_tests::{
    Sensor, Value, action,
    containers::{Containerd, Podman, Runc, busybox_rootfs, container_id},
    scratch_dir,
};

fn agent_of(r: &Value) -> &str {
    r["identity"]["agent"]["id"].as_str().unwrap_or("")
}

/// What a container's processes ran (argv[0]), without the runtime's own `runc init`.
fn commands<'a>(execs: &[&'a Value]) -> Vec<&'a str> {
    execs
        .iter()
        .filter_map(|r| r["process"]["args"][0].as_str())
        .filter(|a| !a.ends_with("runc"))
        .collect()
}

/// The exec records of container `id`.
fn execs_in<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| action(r) == "exec" && r["container"]["id"] == id)
        .collect()
}

/// A projected service-account token as the kubelet writes it on the host (only its
/// payload matters to the sensor).
fn service_account_token(dir: &Path, namespace: &str, name: &str) {
    use std::io::Write as _;
    let b64 = |s: &str| {
        let out = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(s.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    std::fs::create_dir_all(dir).unwrap();
    let claims = format!(r#"{{"sub":"system:serviceaccount:{namespace}:{name}"}}"#);
    std::fs::write(
        dir.join("token"),
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(&claims)),
    )
    .unwrap();
}

#[test]
fn containerd_containers_and_pods_are_attributed_from_their_first_process() {
    let dir = scratch_dir("containerd");
    let mut containerd = Containerd::start(&dir.join("containerd"));
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        "agents:
  - id: reviewer
    selectors:
      - kubernetes: {namespace: agents, pod: 'reviewer-*', labels: {app: reviewer}, service_account: reviewer-bot}
  - id: builder
    selectors:
      - container: {image: 'localhost/agent-sensor-test:*', runtime: containerd, labels: {role: builder}}
",
    )
    .unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[containers]\ncontainerd_socket = \"{}\"\n",
            containerd.socket.display()
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&[
        "--config",
        config.to_str().unwrap(),
        "--identities",
        manifest.to_str().unwrap(),
    ]);

    // A pod as the CRI plugin makes one: a sandbox container carrying the pod's labels, and
    // the app container, both in the pod's cgroup.
    let pod_uid = format!(
        "5e1f{:0>4x}-1a2b-4c3d-8e4f-a1b2c3d4e5f6",
        std::process::id() & 0xffff
    );
    let pod_cgroup = format!("/kubepods/besteffort/pod{pod_uid}");
    let (sandbox, app, builder, other) = (
        container_id(1),
        container_id(2),
        container_id(3),
        container_id(4),
    );
    let pod_labels = [
        ("io.kubernetes.pod.namespace", "agents"),
        ("io.kubernetes.pod.name", "reviewer-0"),
        ("io.kubernetes.pod.uid", pod_uid.as_str()),
    ];
    let mut sandbox_labels = pod_labels.to_vec();
    sandbox_labels.extend([("io.cri-containerd.kind", "sandbox"), ("app", "reviewer")]);
    containerd.run(
        "k8s.io",
        &sandbox,
        &format!("{pod_cgroup}/{sandbox}"),
        &sandbox_labels,
        &[],
        &["sleep", "30"],
    );
    let token = dir.join("kubelet/pods").join(&pod_uid).join("token");
    service_account_token(&token, "agents", "reviewer-bot");
    let mut app_labels = pod_labels.to_vec();
    app_labels.extend([
        ("io.cri-containerd.kind", "container"),
        ("io.kubernetes.container.name", "main"),
    ]);
    let mount = format!(
        "type=bind,src={},dst=/var/run/secrets/kubernetes.io/serviceaccount,options=rbind:ro",
        token.display()
    );
    containerd.run(
        "k8s.io",
        &app,
        &format!("{pod_cgroup}/{app}"),
        &app_labels,
        &["--mount", &mount],
        &["sh", "-c", "cat /etc/hostname; env ls /; sleep 1"],
    );
    // Plain containerd (ctr's own default namespace), chosen by image and label.
    containerd.run(
        "default",
        &builder,
        &format!("/agent-sensor-test/{builder}"),
        &[("role", "builder")],
        &[],
        &["sh", "-c", "cat /etc/hostname"],
    );
    // Nobody's: same image, no matching label.
    containerd.run(
        "default",
        &other,
        &format!("/agent-sensor-test/{other}"),
        &[("role", "bystander")],
        &[],
        &["sh", "-c", "cat /etc/hostname; ls /"],
    );

    sensor.wait_for("the exec of ls in the app container", |r| {
        action(r) == "exec"
            && r["container"]["id"] == app.as_str()
            && r["process"]["args"][0] == "ls"
    });
    sensor.wait_for("the exec of cat in the builder", |r| {
        action(r) == "exec"
            && r["container"]["id"] == builder.as_str()
            && r["process"]["args"][0] == "cat"
    });
    // The bystander ran by now too (it was started after the builder).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let records = sensor.stop().records;
    drop(containerd);
    let _ = std::fs::remove_dir_all(&dir);

    // The app container: its first process (the container's init, `sh`) and its children.
    let app_execs = execs_in(&records, &app);
    assert_eq!(
        commands(&app_execs),
        ["sh", "cat", "ls", "sleep"],
        "{app_execs:#?}"
    );
    for r in &app_execs {
        assert_eq!(agent_of(r), "reviewer", "{r}");
        assert_eq!(r["identity"]["attribution"]["method"], "container", "{r}");
        assert_eq!(r["identity"]["attribution"]["trust"], "strong", "{r}");
        assert_eq!(r["container"]["runtime"], "containerd");
        assert_eq!(r["container"]["name"], "main");
        assert_eq!(
            r["container"]["image"]["name"],
            sensor_tests::containers::IMAGE
        );
        let o = &r["orchestrator"];
        assert_eq!(o["type"], "kubernetes");
        assert_eq!(o["namespace"], "agents");
        assert_eq!(o["resource"]["type"], "pod");
        assert_eq!(o["resource"]["name"], "reviewer-0");
        assert_eq!(o["resource"]["id"], pod_uid.as_str());
        assert_eq!(o["resource"]["labels"]["app"], "reviewer", "{r}");
        assert_eq!(o["service_account"], "reviewer-bot", "{r}");
    }
    // Every record of the pod's processes is the reviewer's: file activity too.
    let app_pids: Vec<&Value> = app_execs.iter().map(|r| &r["process"]["pid"]).collect();
    let of_app: Vec<&Value> = records
        .iter()
        .filter(|r| app_pids.contains(&&r["process"]["pid"]))
        .collect();
    assert!(of_app.iter().any(|r| r["event"]["category"][0] == "file"));
    for r in &of_app {
        assert_eq!(agent_of(r), "reviewer", "{r}");
    }
    // The pod's sandbox (its pause container) has the pod's labels but no service-account
    // token mounted: the selector asks for one, so it is nobody's.
    assert!(execs_in(&records, &sandbox).is_empty());

    let builder_execs = execs_in(&records, &builder);
    assert_eq!(
        commands(&builder_execs),
        ["sh", "cat"],
        "{builder_execs:#?}"
    );
    for r in &builder_execs {
        assert_eq!(agent_of(r), "builder", "{r}");
        assert_eq!(r["container"]["labels"]["role"], "builder");
        assert!(r.get("orchestrator").is_none(), "{r}");
    }
    assert!(
        execs_in(&records, &other).is_empty(),
        "a container no selector names is not reported"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["container"]["id"] == other.as_str()),
        "nothing of the bystander is reported"
    );
    // The container cgroups, as they appeared, decided for their agents.
    let created: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "cgroup_created")
        .collect();
    let app_cgroup = created
        .iter()
        .find(|r| r["container"]["id"] == app.as_str())
        .unwrap_or_else(|| panic!("no cgroup_created for the app: {created:#?}"));
    assert_eq!(agent_of(app_cgroup), "reviewer");
    assert_eq!(
        app_cgroup["cgroup"]["path"],
        format!("{pod_cgroup}/{app}").as_str()
    );
}

#[test]
fn podman_and_runc_containers_are_attributed_from_their_first_process() {
    let dir = scratch_dir("podman-runc");
    let runc_cgroup_parent = format!("/agent-sensor-runc-{}", std::process::id());
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:
  - id: podman-agent
    selectors:
      - container: {{runtime: podman, name: 'agent-sensor-podman-*', image: 'localhost/agent-sensor-test-podman:*'}}
  - id: runc-agent
    selectors:
      - cgroup: {runc_cgroup_parent}/**
"
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    let rootfs = busybox_rootfs(&dir.join("image"));
    let name = format!("agent-sensor-podman-{}", std::process::id());
    let podman = Podman::run(&name, &rootfs, &["sh", "-c", "cat /etc/hostname; sleep 1"]);
    let bystander = Podman::run(
        &format!("bystander-{}", std::process::id()),
        &rootfs,
        &["sh", "-c", "cat /etc/hostname"],
    );
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let runc_id = format!("agent-sensor-runc-{}", std::process::id());
    let runc = Runc::run(
        &bundle,
        &runc_id,
        &format!("{runc_cgroup_parent}/{runc_id}"),
        &["sh", "-c", "cat /etc/hostname; env ls /"],
    );
    sensor.wait_for("podman's sleep", |r| {
        action(r) == "exec"
            && r["container"]["id"] == podman.id.as_str()
            && r["process"]["args"][0] == "sleep"
    });
    let ls = sensor.wait_for("runc's ls", |r| {
        action(r) == "exec" && r["process"]["args"][0] == "ls" && agent_of(r) == "runc-agent"
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let records = sensor.stop().records;
    drop(runc);
    let (podman_id, bystander_id) = (podman.id.clone(), bystander.id.clone());
    drop(podman);
    drop(bystander);
    let _ = std::fs::remove_dir_all(&dir);

    let execs = execs_in(&records, &podman_id);
    assert_eq!(commands(&execs), ["sh", "cat", "sleep"], "{execs:#?}");
    for r in &execs {
        assert_eq!(agent_of(r), "podman-agent", "{r}");
        assert_eq!(r["identity"]["attribution"]["method"], "container");
        assert_eq!(r["container"]["runtime"], "podman");
        assert_eq!(r["container"]["name"], name.as_str());
    }
    assert!(execs_in(&records, &bystander_id).is_empty());

    // runc alone: no runtime metadata, the cgroup path decides; the first process too.
    let runc_execs: Vec<&Value> = records
        .iter()
        .filter(|r| {
            action(r) == "exec" && r["process"]["cgroup"]["id"] == ls["process"]["cgroup"]["id"]
        })
        .collect();
    assert_eq!(
        commands(&runc_execs),
        ["sh", "cat", "ls"],
        "{runc_execs:#?}"
    );
    for r in &runc_execs {
        assert_eq!(agent_of(r), "runc-agent", "{r}");
        assert_eq!(r["identity"]["attribution"]["method"], "cgroup", "{r}");
    }
}
