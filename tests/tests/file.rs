//! File activity, end to end: a helper performs known file operations; every field the sensor
//! reports is compared with what it did.
use std::{io::Write as _, os::unix::fs::MetadataExt as _, process::Command};

use sensor_tests::{Sensor, Value, action, of_process, scratch_dir};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

fn find<'a>(records: &[&'a Value], act: &str, path: &str) -> &'a Value {
    records
        .iter()
        .copied()
        .find(|r| action(r) == act && r["file"]["path"] == path)
        .unwrap_or_else(|| {
            let seen: Vec<String> = records
                .iter()
                .map(|r| format!("{} {}", action(r), r["file"]["path"]))
                .collect();
            panic!("no {act} of {path}; saw:\n{}", seen.join("\n"))
        })
}

#[test]
fn every_file_operation_is_reported_with_absolute_paths_and_outcomes() {
    let dir = scratch_dir("files");
    let d = dir.to_str().unwrap().to_owned();
    let sensor = Sensor::start(&["--all-processes"]);
    let mut child = Command::new(HELPER).args(["files", &d]).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    sensor.wait_for("the helper's exit", |r| sensor_tests::is(r, "exit", pid));
    let done = sensor.stop();
    let files = of_process(&done.records, "file", pid);
    let p = |rel: &str| format!("{d}/{rel}");

    let create = find(&files, "open", &p("rel.txt"));
    assert_eq!(create["event"]["outcome"], "success");
    assert_eq!(create["event"]["type"][0], "access");
    assert_eq!(create["file"]["open"]["access"], "write");
    assert_eq!(
        create["file"]["open"]["flags"],
        serde_json::json!(["create", "truncate"])
    );
    assert_eq!(create["file"]["mode"], "0640");
    assert_eq!(create["file"]["name"], "rel.txt");
    assert_eq!(create["file"]["directory"], d.as_str());
    assert!(create["file"]["fd"].as_i64().unwrap() >= 3);
    assert_eq!(create["syscall"]["name"], "openat");
    assert_eq!(create["process"]["executable"], HELPER);
    assert_eq!(create["process"]["user"]["id"], "0");

    let mkdir = find(&files, "mkdir", &p("sub"));
    assert_eq!(mkdir["file"]["mode"], "0750");
    assert_eq!(mkdir["event"]["type"][0], "creation");

    let opendir = find(&files, "open", &p("sub"));
    assert!(
        opendir["file"]["open"]["flags"]
            .as_array()
            .unwrap()
            .contains(&"directory".into())
    );
    assert_eq!(
        opendir["file"]["inode"],
        dir.join("sub").metadata().unwrap().ino().to_string()
    );

    // openat(dirfd of sub, "../rel.txt"): relative to the dirfd, `..` resolved.
    let via_dirfd: Vec<&&Value> = files
        .iter()
        .filter(|r| {
            action(r) == "open"
                && r["file"]["path"] == p("rel.txt")
                && r["file"]["open"]["access"] == "read"
        })
        .collect();
    assert_eq!(
        via_dirfd.len(),
        1,
        "one read-only open of rel.txt through the dirfd"
    );
    assert!(
        via_dirfd[0]["file"].get("target_path").is_none(),
        "no symlink on that path"
    );

    let symlink = find(&files, "symlink", &p("link"));
    assert_eq!(
        symlink["file"]["target_path"], "rel.txt",
        "a symlink's target is its text"
    );

    // Opening through the symlink: the path as named, and where it led.
    let through = find(&files, "open", &p("link"));
    assert_eq!(through["file"]["target_path"], p("rel.txt"));
    assert_eq!(
        through["file"]["open"]["flags"],
        serde_json::json!(["cloexec"])
    );

    let missing = find(&files, "open", &p("missing.txt"));
    assert_eq!(missing["event"]["outcome"], "failure");
    assert_eq!(missing["error"]["code"], "ENOENT");
    assert_eq!(missing["syscall"]["return"], -2);
    assert!(missing["file"].get("fd").is_none());

    let rename = find(&files, "rename", &p("rel.txt"));
    assert_eq!(rename["file"]["destination_path"], p("sub/moved.txt"));
    assert_eq!(rename["syscall"]["name"], "renameat");

    let chmod = find(&files, "chmod", &p("sub/moved.txt"));
    assert_eq!(chmod["file"]["mode"], "0600");
    let chown = find(&files, "chown", &p("sub/moved.txt"));
    assert_eq!(
        (chown["file"]["uid"].as_str(), chown["file"]["gid"].as_str()),
        (Some("1234"), Some("5678"))
    );
    let truncate = find(&files, "truncate", &p("sub/moved.txt"));
    assert_eq!(truncate["file"]["size"], 2);
    let link = find(&files, "link", &p("hard.txt"));
    assert_eq!(link["file"]["target_path"], p("sub/moved.txt"));
    find(&files, "unlink", &p("hard.txt"));
    let unlinkat = find(&files, "unlink", &p("sub/moved.txt"));
    assert_eq!(unlinkat["syscall"]["name"], "unlinkat");
    let rmdir = find(&files, "rmdir", &p("gone"));
    assert_eq!(rmdir["event"]["type"][0], "deletion");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn permission_denied_for_an_unprivileged_uid() {
    let dir = scratch_dir("eacces");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sensor = Sensor::start(&["--all-processes"]);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            HELPER,
            "open",
        ])
        .arg(&secret)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "13", "{out:?}");
    let path = secret.to_str().unwrap();
    let record = sensor.wait_for("the refused open", |r| {
        action(r) == "open" && r["file"]["path"] == path
    });
    sensor.stop();
    assert_eq!(record["event"]["outcome"], "failure");
    assert_eq!(record["error"]["code"], "EACCES");
    assert_eq!(record["process"]["user"]["id"], "65534");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sensitive_locations_are_classified() {
    let dir = scratch_dir("classes");
    let ssh = dir.join("home/alice/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(ssh.join("id_ed25519"), "key").unwrap();
    std::fs::write(dir.join(".env"), "TOKEN=1").unwrap();
    std::fs::create_dir_all(dir.join("payroll")).unwrap();
    std::fs::write(dir.join("payroll/2026.csv"), "x").unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[[file.classes]]\nclass = \"payroll\"\npatterns = [\"{}/payroll/**\"]\n",
            dir.display()
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--all-processes", "--config", config.to_str().unwrap()]);
    for path in [
        ssh.join("id_ed25519"),
        dir.join(".env"),
        dir.join("payroll/2026.csv"),
        "/etc/shadow".into(),
    ] {
        assert_eq!(
            Command::new(HELPER)
                .arg("open")
                .arg(&path)
                .output()
                .unwrap()
                .stdout,
            b"0\n"
        );
    }
    let class_of = |path: String| {
        sensor.wait_for(&format!("the open of {path}"), |r| {
            action(r) == "open" && r["file"]["path"] == path.as_str()
        })["file"]["class"]
            .clone()
    };
    assert_eq!(
        class_of(ssh.join("id_ed25519").display().to_string()),
        "ssh_key"
    );
    assert_eq!(class_of(dir.join(".env").display().to_string()), "env_file");
    assert_eq!(
        class_of(dir.join("payroll/2026.csv").display().to_string()),
        "payroll"
    );
    assert_eq!(class_of("/etc/shadow".to_owned()), "shadow");
    sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_burst_of_100000_opens_is_all_accounted_for() {
    const N: u64 = 100_000;
    let dir = scratch_dir("burst");
    let target = dir.join("burst.txt");
    std::fs::write(&target, "x").unwrap();
    let mut shell = Command::new("/bin/sh")
        .args([
            "-c",
            "read x; exec \"$0\" open-loop \"$1\" \"$2\"",
            HELPER,
            &N.to_string(),
            target.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = shell.id();
    let sensor = Sensor::start(&["--pid", &pid.to_string()]);
    writeln!(shell.stdin.take().unwrap(), "go").unwrap();
    assert!(shell.wait().unwrap().success());
    sensor.wait_for("the helper's exit", |r| sensor_tests::is(r, "exit", pid));
    let done = sensor.stop();
    let path = target.to_str().unwrap();
    let delivered = done
        .records
        .iter()
        .filter(|r| action(r) == "open" && r["file"]["path"] == path)
        .count() as u64;
    let lost: u64 = done
        .records
        .iter()
        .filter(|r| action(r) == "gap")
        .map(|r| {
            r["gap"]["by_kind"]["file"].as_u64().unwrap_or(0)
                + r["gap"]["by_kind"]["inflight"].as_u64().unwrap_or(0)
        })
        .sum();
    eprintln!("{delivered} delivered, {lost} counted as lost");
    // The loader's own opens (ld.so.cache, libc) are opens of other paths, so this is exact.
    assert_eq!(delivered + lost, N, "every open is delivered or counted");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exact_repeats_are_folded_into_a_counted_record() {
    let dir = scratch_dir("repeats");
    let target = dir.join("hot.txt");
    std::fs::write(&target, "x").unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(&config, "[file]\nrepeat_window_ms = 2000\n").unwrap();
    let sensor = Sensor::start(&["--all-processes", "--config", config.to_str().unwrap()]);
    let mut child = Command::new(HELPER)
        .args(["open-loop", "50"])
        .arg(&target)
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let path = target.to_str().unwrap();
    let folded = sensor.wait_for("the folded repeats", |r| {
        action(r) == "open" && r["file"]["path"] == path && r["event"]["repeat_count"].is_u64()
    });
    let done = sensor.stop();
    let opens: Vec<&Value> = of_process(&done.records, "file", pid)
        .into_iter()
        .filter(|r| action(r) == "open" && r["file"]["path"] == path)
        .collect();
    assert_eq!(
        opens.len(),
        2,
        "the first open, then one record for the repeats"
    );
    assert!(opens[0]["event"].get("repeat_count").is_none());
    assert_eq!(
        folded["event"]["repeat_count"], 49,
        "50 opens in all: nothing is lost"
    );
    assert_eq!(
        folded["process"]["entity_id"],
        opens[0]["process"]["entity_id"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
