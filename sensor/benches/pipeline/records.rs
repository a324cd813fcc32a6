//! Synthesised kernel records (forged by `agent_sensor::source::forge`), shaped like what the
//! overhead benchmark's workload makes the kernel report: one process opening a file over and
//! over, fork+exec of `/bin/true` (whose loader opens two files), TCP connect+accept on
//! loopback, and a mixed agent session.
use sensor_common::{TrackedProcess, method, syscall};

use agent_sensor::{
    pipeline::inbox::RawBatch,
    source::forge::{Forge, Proc},
};

#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// openat+close of one file by one process: one `open` record per operation.
    Open,
    /// fork, exec of /bin/true, its loader's two opens, exit: five records per operation.
    Exec,
    /// connect and accept on loopback: two records per operation.
    Connect,
    /// An agent session: fork+exec of a tool with arguments, its loader's opens, ten data
    /// files, two HTTPS connects, exit.
    Mixed,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Open, Shape::Exec, Shape::Connect, Shape::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Open => "open",
            Shape::Exec => "exec",
            Shape::Connect => "connect",
            Shape::Mixed => "mixed",
        }
    }
}

/// At least `events` records of `shape`, in batches; the number of records made.
pub fn batches(shape: Shape, events: usize) -> (Vec<RawBatch>, usize) {
    let mut s = Forge::new(agent_sensor::enrich::clock::boottime_ns());
    let root = spawn_root(&mut s);
    while s.records() < events {
        match shape {
            Shape::Open => s.open(root, b"/work/main/target/bench/open-target"),
            Shape::Exec => {
                let child = s.fork(root);
                s.exec(child, b"/bin/true", b"/usr/bin/true", &[b"true"]);
                s.loader_opens(child);
                s.exit(child);
            }
            Shape::Connect => {
                s.net(root, syscall::CONNECT, [10, 0, 0, 1], 443);
                s.net(root, syscall::ACCEPT4, [127, 0, 0, 1], 8080);
            }
            Shape::Mixed => {
                let child = s.fork(root);
                let input = format!("/srv/agent/data/input-{}.json", s.records());
                s.exec(
                    child,
                    b"/usr/bin/python3",
                    b"/usr/bin/python3.11",
                    &[
                        b"python3",
                        b"-m",
                        b"agent.tools.summarise",
                        input.as_bytes(),
                    ],
                );
                s.loader_opens(child);
                for i in 0..10 {
                    let path = format!("/srv/agent/data/chunk-{i:02}.parquet");
                    s.open(child, path.as_bytes());
                }
                s.net(child, syscall::CONNECT, [10, 0, 0, 7], 443);
                s.net(child, syscall::CONNECT, [10, 0, 0, 8], 443);
                s.exit(child);
            }
        }
    }
    s.finish()
}

/// The agent's long-lived process (its own exec record first, as the kernel would send),
/// attributed to agent 1 by its cgroup.
fn spawn_root(s: &mut Forge) -> Proc {
    let root = s.process(
        None,
        TrackedProcess {
            agent: 1,
            method: method::CGROUP,
            ..Default::default()
        },
    );
    s.exec(
        root,
        b"/opt/agent/bin/agent",
        b"/opt/agent/bin/agent",
        &[b"agent", b"--serve"],
    );
    root
}
