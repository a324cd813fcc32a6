//! The sensor's own records: its start and stop, what it lost, where the output rotated,
//! signed checkpoints, registration requests, operators' annotations, manifest reloads,
//! policy decisions and operators' exceptions to a policy, and agents' processes whose TLS it
//! cannot capture.
use super::{
    Builder, CHANGE, CONFIGURATION, END, FILE, IAM, INFO, NETWORK, PROCESS, START,
    process::self_process,
};
use crate::{
    enrich::clock::WallClock,
    record::{Lifecycle, Record, alert::Raised, llm::TlsNotCaptured},
    stage::SensorEvent,
};

/// ECS `event.category` of an alert and of a policy decision, and the type of a refusal.
const INTRUSION_DETECTION: &[&str] = &["intrusion_detection"];
const DENIED: &[&str] = &["denied"];
/// ECS `event.type` of a retention record (its category: `file`).
const DELETION: &[&str] = &["deletion"];

impl Builder {
    pub(super) fn sensor_record(&mut self, event: SensorEvent) -> Record {
        match event {
            SensorEvent::Start {
                programs,
                all_processes,
                previous,
            } => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("event", PROCESS, START, "sensor_start"),
                );
                r.process = Some(self_process(&self.entity_ids).into());
                r.sensor.lifecycle = Some(Lifecycle {
                    all_processes: Some(all_processes),
                    programs: Some(programs),
                    previous,
                    ..Lifecycle::default()
                });
                r
            }
            SensorEvent::Stop {
                reason,
                records_written,
                kernel_lost,
                decode_errors,
                output_lost,
            } => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("event", PROCESS, END, "sensor_stop"),
                );
                r.process = Some(self_process(&self.entity_ids).into());
                r.sensor.lifecycle = Some(Lifecycle {
                    reason: Some(reason),
                    records_written: Some(records_written),
                    kernel_lost: Some(kernel_lost),
                    decode_errors: Some(decode_errors),
                    output_lost: Some(output_lost),
                    ..Lifecycle::default()
                });
                r
            }
            SensorEvent::Gap(gap) => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("pipeline_error", &[], INFO, "gap"),
                );
                r.gap = Some(Box::new(gap));
                r
            }
            SensorEvent::Rotation(rotation) => {
                let mut r =
                    self.record(WallClock::now(), self.meta("event", &[], INFO, "rotation"));
                r.rotation = Some(Box::new(rotation));
                r
            }
            SensorEvent::Retention(retention) => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("event", FILE, DELETION, "trail_retention"),
                );
                r.retention = Some(Box::new(retention));
                r
            }
            SensorEvent::Checkpoint(checkpoint) => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("event", &[], INFO, "checkpoint"),
                );
                r.checkpoint = Some(Box::new(checkpoint));
                r
            }
            SensorEvent::Registration(event) => {
                let mut meta = self.meta("event", IAM, CHANGE, "agent_registration");
                meta.outcome = Some(if event.granted { "success" } else { "failure" });
                let mut r = self.record(WallClock::now(), meta);
                r.registration = Some(Box::new(event));
                r
            }
            SensorEvent::Annotation(annotation) => {
                let mut r = self.record(
                    WallClock::now(),
                    self.meta("event", CONFIGURATION, INFO, "annotation"),
                );
                r.annotation = Some(Box::new(annotation));
                r
            }
            SensorEvent::Alert(raised) => {
                let Raised {
                    alert,
                    timestamp,
                    identity,
                    process,
                } = *raised;
                let mut meta = self.meta("alert", INTRUSION_DETECTION, INFO, "alert");
                meta.dataset = "agent_sensor.rules";
                let mut r = self.record(WallClock::now(), meta);
                // When the event happened; `event.created` says when the rule fired.
                r.timestamp = timestamp;
                r.identity = identity;
                r.process = process;
                r.alert = Some(Box::new(alert));
                r
            }
            SensorEvent::RulesReloaded { trigger, result } => {
                let mut meta = self.meta("event", CONFIGURATION, CHANGE, "rules_reloaded");
                let reason = match result {
                    Ok(rules) => {
                        meta.outcome = Some("success");
                        format!("{trigger}: {rules} rules")
                    }
                    Err(e) => {
                        meta.outcome = Some("failure");
                        format!("{trigger}: {e}")
                    }
                };
                let mut r = self.record(WallClock::now(), meta);
                r.sensor.lifecycle = Some(Lifecycle {
                    reason: Some(reason),
                    ..Lifecycle::default()
                });
                r
            }
            SensorEvent::Decision { decision, identity } => {
                let kind_type = if decision.outcome == "denied" {
                    DENIED
                } else {
                    INFO
                };
                let meta = self.meta("event", INTRUSION_DETECTION, kind_type, "policy_decision");
                let mut r = self.record(WallClock::now(), meta);
                r.identity = identity;
                r.policy = Some(decision);
                r
            }
            SensorEvent::Exception(exception) => {
                let meta = self.meta("event", CONFIGURATION, CHANGE, "policy_exception");
                let mut r = self.record(WallClock::now(), meta);
                r.exception = Some(Box::new(exception));
                r
            }
            SensorEvent::TlsNotCaptured {
                tgid,
                attribution,
                reason,
            } => {
                let meta = self.meta("event", NETWORK, INFO, "tls_not_captured");
                let mut r = self.record(WallClock::now(), meta);
                r.process = Some(self.process_of_known(tgid));
                r.identity = self.identity(attribution, tgid);
                r.tls_capture = Some(TlsNotCaptured { reason });
                r
            }
            SensorEvent::Reloaded { trigger, error } => {
                let mut meta = self.meta("event", CONFIGURATION, CHANGE, "identities_reloaded");
                let reason = match error {
                    None => {
                        meta.outcome = Some("success");
                        trigger.to_owned()
                    }
                    Some(e) => {
                        meta.outcome = Some("failure");
                        format!("{trigger}: {e}")
                    }
                };
                let mut r = self.record(WallClock::now(), meta);
                r.sensor.lifecycle = Some(Lifecycle {
                    reason: Some(reason),
                    ..Lifecycle::default()
                });
                r
            }
        }
    }
}
