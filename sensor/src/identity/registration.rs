//! The registration socket: an orchestrator tells the sensor that a process (and its
//! descendants) is agent X doing task T in session S, ends a task, or lists attributions; an
//! operator appends an annotation (a review, an override, an acknowledgement) to the trail.
//! Who may ask is decided from the peer's kernel credentials (SO_PEERCRED), never from anything
//! the client says; every request, granted or refused, becomes a record.
//!
//! Protocol: one JSON object per line each way, e.g.
//! `{"op":"register","pid":123,"agent":"reviewer","task":"pr-42","session":"s1"}` →
//! `{"ok":true}`; `{"op":"end_task","pid":123}`; `{"op":"list"}` →
//! `{"ok":true,"attributions":[{"pid":123,"agent":"reviewer","task":"pr-42",...}]}`;
//! a register request may add `"override":true` (see `guard`, which decides what may be named);
//! `{"op":"annotate","kind":"review","author":"alice","text":"...","subject":"<record hash>"}`
//! → `{"ok":true,"sequence":N,"hash":"..."}` (the annotation's own place in the chain);
//! `{"op":"except","agent":"a","rule":"egress","seconds":600,"author":"alice","reason":"..."}`
//! → `{"ok":true,"sequence":N,"hash":"...","until":"<RFC 3339>"}` (in force once recorded).
use std::{os::unix::fs::PermissionsExt as _, path::Path, sync::Arc, time::SystemTime};

use sensor_common::{TrackedProcess, method};
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};

use crate::policy::{
    decide,
    exceptions::{self, Exception, Exceptions},
    form::Mode,
};
use crate::record::{
    policy::PolicyException,
    registration::{Annotation, RegistrationEvent},
    time::Timestamp,
};
use crate::{
    enrich::snapshot,
    identity::guard,
    identity::registry::{self, SharedRegistry, Tasks},
    identity::selectors::Tracked,
};

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send its request.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Register {
        pid: u32,
        agent: String,
        task: Option<String>,
        session: Option<String>,
        /// Take the process over from another agent that holds it by a strong attribution.
        #[serde(default, rename = "override")]
        overrides: bool,
    },
    EndTask {
        pid: u32,
    },
    List,
    Annotate {
        kind: String,
        author: String,
        text: String,
        /// The hash of the record it is about, if any.
        subject: Option<String>,
    },
    /// An operator's time-bound exception to one rule of one agent's policy.
    Except {
        agent: String,
        rule: String,
        seconds: u64,
        author: String,
        reason: String,
    },
}

/// The kinds of annotation an operator can append.
pub const ANNOTATION_KINDS: &[&str] = &["review", "override", "acknowledgement", "note"];
/// Longest annotation text and author accepted (bytes).
const MAX_TEXT: usize = 16 * 1024;
const MAX_AUTHOR: usize = 256;

/// An operator's exception on its way to the pipeline, which records it and answers with its
/// place in the chain; the server puts it in force then.
pub struct ExceptionRequest {
    /// What the operator grants, with the peer's credentials.
    pub exception: PolicyException,
    /// Where the pipeline answers, as for an annotation.
    pub placed: tokio::sync::oneshot::Sender<Result<Placed, NotRecorded>>,
}

/// An annotation on its way to the pipeline, which answers with its place in the chain.
pub struct AnnotationRequest {
    /// What the operator appends, with the peer's credentials.
    pub annotation: Annotation,
    /// Where the pipeline answers: the annotation record's place in the chain, which the
    /// operator gets back to cite it, or why it was not recorded.
    pub placed: tokio::sync::oneshot::Sender<Result<Placed, NotRecorded>>,
}

/// Where an annotation was sealed in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The annotation record's sequence number.
    pub sequence: u64,
    /// The annotation record's hash (hex), what later records and annotations cite.
    pub hash: String,
}

/// Why the pipeline did not record an annotation; the operator gets this as the error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotRecorded {
    /// A full output refused it (counted in the next gap record like any other record).
    #[error("the output is full; the annotation was not recorded")]
    OutputFull,
}

/// Why an annotation request is refused before it reaches the pipeline.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum InvalidAnnotation {
    #[error("annotation kind {0:?} must be one of {kinds}", kinds = ANNOTATION_KINDS.join(", "))]
    Kind(String),
    #[error("the author must be 1 to {MAX_AUTHOR} bytes")]
    Author,
    #[error("the text must be 1 to {MAX_TEXT} bytes")]
    Text,
    #[error("the subject must be a record's hash (64 hex digits)")]
    Subject,
}

/// What a refused request asked for, as far as it says (for the record of the refusal).
fn requested_op(line: &[u8]) -> &'static str {
    let op = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["op"].as_str().map(str::to_owned));
    match op.as_deref() {
        Some("register") => "register",
        Some("end_task") => "end_task",
        Some("list") => "list",
        Some("annotate") => "annotate",
        Some("except") => "except",
        _ => "invalid",
    }
}

fn check_annotation(
    kind: &str,
    author: &str,
    text: &str,
    subject: Option<&str>,
) -> Result<(), InvalidAnnotation> {
    if !ANNOTATION_KINDS.contains(&kind) {
        return Err(InvalidAnnotation::Kind(kind.to_owned()));
    }
    if author.is_empty() || author.len() > MAX_AUTHOR {
        return Err(InvalidAnnotation::Author);
    }
    if text.is_empty() || text.len() > MAX_TEXT {
        return Err(InvalidAnnotation::Text);
    }
    if let Some(h) = subject
        && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(InvalidAnnotation::Subject);
    }
    Ok(())
}

/// Who may use the socket besides root.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allowed {
    /// Uids that may, by the peer's credentials.
    pub(crate) uids: Vec<u32>,
    /// Gids that may, by the peer's primary group.
    pub(crate) gids: Vec<u32>,
}

/// The socket's request handler. `M` is the pipeline's inbox message: the server only needs
/// to make one from what it records.
pub(crate) struct Server<M> {
    /// The declared agents a registration must name.
    pub(crate) registry: SharedRegistry,
    /// Where registered task names get their numbers.
    pub(crate) tasks: Tasks,
    /// The kernel map registrations are entered in.
    pub(crate) tracked: Tracked,
    /// Who may ask besides root.
    pub(crate) allowed: Allowed,
    /// The pipeline's inbox: every request's record, and annotations to seal.
    pub(crate) events: mpsc::Sender<M>,
    /// Operators' exceptions in force (the pipeline decides under the same ones).
    pub(crate) exceptions: Exceptions,
}

/// Binds the socket (replacing a stale one), owner-only unless other uids are allowed.
pub(crate) fn bind(path: &Path, allowed: &Allowed) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Permissions are a first fence; the peer credential check is the real one.
    let mode = if allowed.uids.is_empty() && allowed.gids.is_empty() {
        0o600
    } else {
        0o666
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

impl<M> Server<M>
where
    M: From<RegistrationEvent> + From<AnnotationRequest> + From<ExceptionRequest> + Send + 'static,
{
    /// Answers connections until the task is aborted, each in a task of its own.
    pub(crate) async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.handle(stream).await });
                }
                Err(e) => tracing::warn!("registration socket accept failed: {e}"),
            }
        }
    }

    async fn handle(&self, stream: UnixStream) {
        let Ok(cred) = stream.peer_cred() else { return };
        let (uid, gid, peer_pid) = (cred.uid(), cred.gid(), cred.pid());
        let (read, mut write) = stream.into_split();
        let mut line = Vec::new();
        let mut reader = BufReader::new(read.take(MAX_REQUEST as u64 + 1));
        // A client that sends nothing must not hold a task and a socket forever.
        let read = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        if read.is_err() {
            line.clear();
        }
        let mut event = RegistrationEvent {
            op: "invalid",
            granted: false,
            reason: None,
            peer_pid,
            peer_uid: uid,
            peer_gid: gid,
            pid: None,
            agent: None,
            task: None,
            session: None,
            overrode: None,
        };
        let reply = if uid != 0
            && !self.allowed.uids.contains(&uid)
            && !self.allowed.gids.contains(&gid)
        {
            event.op = requested_op(&line);
            event.reason = Some(format!(
                "uid {uid} (gid {gid}) may not use the control socket"
            ));
            serde_json::json!({"ok": false, "error": event.reason})
        } else if line.len() > MAX_REQUEST {
            event.reason = Some("request too long".to_owned());
            serde_json::json!({"ok": false, "error": event.reason})
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Annotate {
                    kind,
                    author,
                    text,
                    subject,
                }) => {
                    event.op = "annotate";
                    if let Err(why) = check_annotation(&kind, &author, &text, subject.as_deref()) {
                        event.reason = Some(why.to_string());
                        serde_json::json!({"ok": false, "error": event.reason})
                    } else {
                        let annotation = Annotation {
                            kind,
                            author,
                            text,
                            subject,
                            peer_pid,
                            peer_uid: uid,
                            peer_gid: gid,
                        };
                        let reply = self.annotate(annotation).await;
                        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                        out.push(b'\n');
                        let _ = write.write_all(&out).await;
                        // The annotation record itself is the record of the request.
                        return;
                    }
                }
                Ok(Request::Except {
                    agent,
                    rule,
                    seconds,
                    author,
                    reason,
                }) => {
                    event.op = "except";
                    event.agent = Some(agent.clone());
                    let registry = registry::current(&self.registry);
                    let declared = registry
                        .number_of(&agent)
                        .is_some_and(|n| registry.is_declared(n));
                    let until =
                        exceptions::check(&rule, seconds, &author, &reason, SystemTime::now());
                    match (declared, until) {
                        (false, _) => {
                            event.reason = Some(format!("no agent {agent:?} is declared"));
                            serde_json::json!({"ok": false, "error": event.reason})
                        }
                        (true, Err(why)) => {
                            event.reason = Some(why.to_string());
                            serde_json::json!({"ok": false, "error": event.reason})
                        }
                        (true, Ok(until)) => {
                            let exception = PolicyException {
                                agent,
                                rule,
                                author,
                                reason,
                                until: Timestamp::of(crate::policy::unix_nanos(until)),
                                peer_pid,
                                peer_uid: uid,
                                peer_gid: gid,
                            };
                            let reply = self.except(exception, until).await;
                            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                            out.push(b'\n');
                            let _ = write.write_all(&out).await;
                            // The exception record itself is the record of the request.
                            return;
                        }
                    }
                }
                Ok(request) => self.apply(request, &mut event),
                Err(e) => {
                    event.reason = Some(format!("malformed request: {e}"));
                    serde_json::json!({"ok": false, "error": event.reason})
                }
            }
        };
        if event.granted {
            tracing::info!(op = event.op, uid, pid = ?event.pid, agent = ?event.agent, "registration granted");
        } else {
            tracing::warn!(op = event.op, uid, reason = ?event.reason, "registration refused");
        }
        let _ = self.events.send(M::from(event)).await;
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        let _ = write.write_all(&out).await;
    }

    /// Hands an exception to the pipeline, waits for its place in the chain, and puts it in
    /// force: only a recorded exception lets anything through.
    async fn except(&self, exception: PolicyException, until: SystemTime) -> serde_json::Value {
        tracing::info!(
            agent = exception.agent,
            rule = exception.rule,
            uid = exception.peer_uid,
            "policy exception"
        );
        let in_force = Exception {
            agent: exception.agent.clone(),
            rule: exception.rule.clone(),
            author: exception.author.clone(),
            until,
            sequence: None,
        };
        let until_text = exception.until.as_str().to_owned();
        let (placed, answer) = tokio::sync::oneshot::channel();
        let request = ExceptionRequest { exception, placed };
        if self.events.send(M::from(request)).await.is_err() {
            return serde_json::json!({"ok": false, "error": "the sensor is stopping"});
        }
        match answer.await {
            Ok(Ok(Placed { sequence, hash })) => {
                self.exceptions.grant(Exception {
                    sequence: Some(sequence),
                    ..in_force
                });
                serde_json::json!({"ok": true, "sequence": sequence, "hash": hash, "until": until_text})
            }
            Ok(Err(e)) => serde_json::json!({"ok": false, "error": e.to_string()}),
            Err(_) => serde_json::json!({"ok": false, "error": "the sensor is stopping"}),
        }
    }

    /// Hands an annotation to the pipeline and waits for its place in the chain.
    async fn annotate(&self, annotation: Annotation) -> serde_json::Value {
        tracing::info!(
            kind = annotation.kind,
            uid = annotation.peer_uid,
            "annotation"
        );
        let (placed, answer) = tokio::sync::oneshot::channel();
        let request = AnnotationRequest { annotation, placed };
        if self.events.send(M::from(request)).await.is_err() {
            return serde_json::json!({"ok": false, "error": "the sensor is stopping"});
        }
        match answer.await {
            Ok(Ok(Placed { sequence, hash })) => {
                serde_json::json!({"ok": true, "sequence": sequence, "hash": hash})
            }
            Ok(Err(e)) => serde_json::json!({"ok": false, "error": e.to_string()}),
            Err(_) => serde_json::json!({"ok": false, "error": "the sensor is stopping"}),
        }
    }

    fn apply(&self, request: Request, event: &mut RegistrationEvent) -> serde_json::Value {
        let refuse = |event: &mut RegistrationEvent, why: String| {
            event.reason = Some(why);
            serde_json::json!({"ok": false, "error": event.reason})
        };
        match request {
            Request::Register {
                pid,
                agent,
                task,
                session,
                overrides,
            } => {
                let registry = registry::current(&self.registry);
                event.op = "register";
                event.pid = Some(pid);
                event.agent = Some(agent.clone());
                event.task.clone_from(&task);
                event.session.clone_from(&session);
                let Some(number) = registry
                    .number_of(&agent)
                    .filter(|n| registry.is_declared(*n))
                else {
                    return refuse(event, format!("no agent {agent:?} is declared"));
                };
                // Outside `allowed_tasks`: refused in enforce mode (the default); in audit
                // mode granted, and the pipeline records the violation after this request.
                if let (Some(t), Some(decl)) = (&task, registry.get(number))
                    && decide::task(&decl.policy, &decl.allowed_tasks, t)
                        .is_some_and(|v| v.mode == Mode::Enforce)
                    && self
                        .exceptions
                        .in_force(&agent, "tasks", SystemTime::now())
                        .is_none()
                {
                    return refuse(
                        event,
                        format!("task {t:?} is not among agent {agent:?}'s allowed tasks"),
                    );
                }
                let task_number = task
                    .as_deref()
                    .map_or(0, |t| self.tasks.intern(t, session.as_deref()));
                let procs = snapshot::read_all();
                if !procs.contains_key(&pid) {
                    return refuse(event, format!("no process {pid}"));
                }
                let mut map = self.tracked.lock().expect("no poisoned lock");
                let current = map.get(&pid, 0).ok();
                let target = guard::Target {
                    pid,
                    kernel_thread: guard::is_kernel_thread(pid),
                    current,
                };
                let name_of = |n| {
                    registry
                        .get(n)
                        .map_or_else(|| format!("#{n}"), |a| a.id.clone())
                };
                let overridden =
                    match guard::check(target, std::process::id(), number, overrides, name_of) {
                        Ok(overridden) => overridden,
                        Err(why) => return refuse(event, why.to_string()),
                    };
                event.overrode = overridden.map(name_of);
                let previous = current.map(|p| p.agent).filter(|a| *a != 0 && *a != number);
                let direct = TrackedProcess {
                    agent: number,
                    task: task_number,
                    delegated_from: previous.unwrap_or(0),
                    method: method::REGISTRATION,
                    flags: 0,
                    _pad: 0,
                };
                // The process, then its descendants (parents first: a fork racing with this
                // is inherited in the kernel).
                let sensor = std::process::id();
                for (i, tgid) in snapshot::descendants(&procs, &[pid])
                    .into_iter()
                    .filter(|tgid| *tgid != sensor)
                    .enumerate()
                {
                    let value = if i == 0 {
                        direct
                    } else {
                        TrackedProcess {
                            flags: sensor_common::tracked_flags::INHERITED,
                            ..direct
                        }
                    };
                    if let Err(e) = map.insert(tgid, value, 0) {
                        return refuse(
                            event,
                            format!("the kernel map refused process {tgid}: {e}"),
                        );
                    }
                }
                event.granted = true;
                serde_json::json!({"ok": true})
            }
            Request::EndTask { pid } => {
                event.op = "end_task";
                event.pid = Some(pid);
                let mut map = self.tracked.lock().expect("no poisoned lock");
                let procs = snapshot::read_all();
                for tgid in snapshot::descendants(&procs, &[pid]) {
                    if let Ok(mut v) = map.get(&tgid, 0) {
                        v.task = 0;
                        let _ = map.insert(tgid, v, 0);
                    }
                }
                event.granted = true;
                serde_json::json!({"ok": true})
            }
            Request::Annotate { .. } | Request::Except { .. } => {
                unreachable!("annotations and exceptions are handled by `handle`")
            }
            Request::List => {
                let registry = registry::current(&self.registry);
                event.op = "list";
                event.granted = true;
                let map = self.tracked.lock().expect("no poisoned lock");
                let list: Vec<serde_json::Value> = map
                    .entries()
                    .into_iter()
                    .filter(|(_, v)| v.agent != 0)
                    .map(|(pid, v)| {
                        let task = self.tasks.get(v.task);
                        serde_json::json!({
                            "pid": pid,
                            "agent": registry.get(v.agent).map(|a| a.id.clone()),
                            "task": task.as_ref().map(|t| t.0.clone()),
                            "session": task.and_then(|t| t.1),
                            "method": sensor_common::method::name(v.method),
                            "inherited": v.flags & sensor_common::tracked_flags::INHERITED != 0,
                        })
                    })
                    .collect();
                serde_json::json!({"ok": true, "attributions": list})
            }
        }
    }
}

/// The client side, for `agent-sensor register`: sends one request, returns the reply line.
pub(crate) fn request(socket: &Path, body: &serde_json::Value) -> std::io::Result<String> {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals are what the client reads and what the refusal record says: their text
    /// is part of the interface.
    #[test]
    fn annotation_refusals_say_why() {
        let why = |kind, author: &str, text: &str, subject| {
            check_annotation(kind, author, text, subject)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            why("praise", "a", "t", None),
            "annotation kind \"praise\" must be one of review, override, acknowledgement, note"
        );
        assert_eq!(
            why("note", "", "t", None),
            "the author must be 1 to 256 bytes"
        );
        assert_eq!(
            why("note", "a", "", None),
            "the text must be 1 to 16384 bytes"
        );
        assert_eq!(
            why("note", "a", "t", Some("abc")),
            "the subject must be a record's hash (64 hex digits)"
        );
        assert_eq!(
            check_annotation("note", "a", "t", Some(&"0f".repeat(32))),
            Ok(())
        );
        assert_eq!(
            NotRecorded::OutputFull.to_string(),
            "the output is full; the annotation was not recorded"
        );
    }
}
