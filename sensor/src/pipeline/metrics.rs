//! The pipeline's metrics: what came in from the kernel (by record kind), what could not be
//! decoded (by fault), what the kernel lost (by kind), what was sealed, and the output's
//! state. Counted where it happens with one relaxed atomic add (kernel records, decode
//! errors) or copied from the stages' own totals once per flush (the rest), so the hot path
//! takes no lock and allocates nothing.
use std::{collections::BTreeMap, sync::Mutex};

use sensor_common::kind;

use crate::operate::metrics::{Collect, Counter, Exposition, Gauge, Kind};

/// The name a kernel record kind is reported under (`kind` label).
fn kind_name(k: usize) -> &'static str {
    match u16::try_from(k).unwrap_or(u16::MAX) {
        kind::EXEC => "exec",
        kind::FORK => "fork",
        kind::EXIT => "exit",
        kind::FILE => "file",
        kind::NET => "net",
        kind::CGROUP => "cgroup",
        _ => "other",
    }
}

/// The decode faults, as [`crate::decode::DecodeError::kind`] names them.
const DECODE_FAULTS: [&str; 5] = [
    "short_header",
    "unknown_kind",
    "version",
    "size_mismatch",
    "truncated",
];

/// Slots of the by-kind counters: the kernel's kinds, and one for any other number.
const KINDS: usize = kind::COUNT as usize + 1;

/// The pipeline's counters and gauges; see the module doc.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    kernel_records: [Counter; KINDS],
    decode_errors: [Counter; DECODE_FAULTS.len()],
    /// Rare (one report a second at most), so a map under a lock.
    kernel_lost: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) records_sealed: Counter,
    pub(super) output_refused: Counter,
    pub(super) rules_evicted: Counter,
    pub(super) rules_suppressed: Counter,
    pub(super) rules_correlation_dropped: Counter,
    pub(super) output_held_bytes: Gauge,
    pub(super) output_admits: Gauge,
    pub(super) processes: Gauge,
    pub(super) agents: Gauge,
    pub(super) programs: Gauge,
    pub(super) started: Gauge,
    /// Captured TLS connections whose HTTP decoding ended, by reason (copied once per flush).
    pub(super) llm_unparsed: Mutex<Vec<(&'static str, u64)>>,
    /// Per rule engine: records evaluated and nanoseconds spent (copied once per flush).
    pub(super) rule_time: Mutex<Vec<(&'static str, u64, u64)>>,
}

impl PipelineMetrics {
    /// A kernel record arrived, of the kind in its first two bytes.
    #[inline]
    pub(super) fn kernel_record(&self, bytes: &[u8]) {
        let k = bytes
            .first_chunk::<2>()
            .map_or(KINDS - 1, |b| usize::from(u16::from_ne_bytes(*b)));
        self.kernel_records[k.min(KINDS - 1)].inc();
    }

    /// A kernel record could not be decoded, for this fault.
    pub(super) fn decode_error(&self, fault: &str) {
        let slot = DECODE_FAULTS
            .iter()
            .position(|f| *f == fault)
            .unwrap_or(DECODE_FAULTS.len() - 1);
        self.decode_errors[slot].inc();
    }

    /// The kernel reported these losses.
    pub(super) fn kernel_lost(&self, by_kind: &[(&'static str, u64)]) {
        let mut lost = self.kernel_lost.lock().expect("no poisoned lock");
        for (kind, n) in by_kind {
            *lost.entry(kind).or_default() += n;
        }
    }

    /// Whether the pipeline has written its start record and the output takes records: what
    /// `/readyz` answers.
    pub fn ready(&self) -> Result<(), String> {
        if self.started.get() == 0 {
            return Err("the start record is not written yet".into());
        }
        if self.output_admits.get() == 0 {
            return Err(format!(
                "the output is not taking records ({} bytes held)",
                self.output_held_bytes.get()
            ));
        }
        Ok(())
    }
}

impl Collect for PipelineMetrics {
    fn collect(&self, out: &mut Exposition) {
        out.family(
            "kernel_records_total",
            Kind::Counter,
            "Records read from the kernel's ring buffer, by record kind.",
        );
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        for (k, counter) in self.kernel_records.iter().enumerate() {
            *by_name.entry(kind_name(k)).or_default() += counter.get();
        }
        for (name, n) in by_name {
            out.sample("kernel_records_total", &[("kind", name)], n);
        }
        out.family(
            "kernel_lost_total",
            Kind::Counter,
            "Records the kernel could not write (a full ring buffer, a full tracked-process map), by kind.",
        );
        for (name, n) in self.kernel_lost.lock().expect("no poisoned lock").iter() {
            out.sample("kernel_lost_total", &[("kind", name)], *n);
        }
        out.family(
            "decode_errors_total",
            Kind::Counter,
            "Kernel records that could not be decoded, by fault.",
        );
        for (fault, counter) in DECODE_FAULTS.iter().zip(&self.decode_errors) {
            out.sample("decode_errors_total", &[("fault", fault)], counter.get());
        }
        out.family(
            "records_sealed_total",
            Kind::Counter,
            "Records sealed into the chain and handed to the output.",
        );
        out.sample("records_sealed_total", &[], self.records_sealed.get());
        out.family(
            "output_refused_total",
            Kind::Counter,
            "Records the output had no room for (reported in gap records).",
        );
        out.sample("output_refused_total", &[], self.output_refused.get());
        out.family(
            "rules_state_evicted_total",
            Kind::Counter,
            "Native rules' remembered state (sequences' partial matches, rate-limit windows) dropped for room while it could still matter.",
        );
        out.sample("rules_state_evicted_total", &[], self.rules_evicted.get());
        out.family(
            "rules_alerts_suppressed_total",
            Kind::Counter,
            "Alerts native rules' rate limits held back.",
        );
        out.sample(
            "rules_alerts_suppressed_total",
            &[],
            self.rules_suppressed.get(),
        );
        out.family(
            "rules_correlation_dropped_total",
            Kind::Counter,
            "Records whose Sigma matches went to no correlation: the correlations' state was full of live groups.",
        );
        out.sample(
            "rules_correlation_dropped_total",
            &[],
            self.rules_correlation_dropped.get(),
        );
        out.family(
            "output_held_bytes",
            Kind::Gauge,
            "Sealed bytes held in memory because the output could not take them (a full disk).",
        );
        out.sample("output_held_bytes", &[], self.output_held_bytes.get());
        out.family(
            "output_admitting",
            Kind::Gauge,
            "1 while the output takes new records, 0 while it refuses them.",
        );
        out.sample("output_admitting", &[], self.output_admits.get());
        out.family(
            "tracked_processes",
            Kind::Gauge,
            "Processes in the daemon's process table.",
        );
        out.sample("tracked_processes", &[], self.processes.get());
        out.family(
            "agents",
            Kind::Gauge,
            "Agents declared in the identity manifest in force.",
        );
        out.sample("agents", &[], self.agents.get());
        out.family(
            "programs_attached",
            Kind::Gauge,
            "Kernel programs the run attached.",
        );
        out.sample("programs_attached", &[], self.programs.get());
        out.family(
            "llm_connections_unparsed_total",
            Kind::Counter,
            "Captured TLS connections whose HTTP/1.1 or HTTP/2 decoding ended (not HTTP, a malformed head or frame, an HPACK fault, framing not captured), by reason; their exchanges under way were recorded incomplete.",
        );
        for (reason, n) in self.llm_unparsed.lock().expect("no poisoned lock").iter() {
            out.sample("llm_connections_unparsed_total", &[("reason", reason)], *n);
        }
        let rule_time = self.rule_time.lock().expect("no poisoned lock");
        if !rule_time.is_empty() {
            out.family(
                "rule_evaluations_total",
                Kind::Counter,
                "Records the detection rules were evaluated on, by engine.",
            );
            for (engine, n, _) in rule_time.iter() {
                out.sample("rule_evaluations_total", &[("engine", engine)], *n);
            }
            out.family(
                "rule_evaluation_seconds_total",
                Kind::Counter,
                "Time spent evaluating the detection rules, by engine (divide by rule_evaluations_total for the mean per record).",
            );
            for (engine, _, nanos) in rule_time.iter() {
                out.sample_seconds(
                    "rule_evaluation_seconds_total",
                    &[("engine", engine)],
                    *nanos,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operate::metrics::Registry;
    use std::sync::Arc;

    #[test]
    fn counts_by_kind_and_fault() {
        let m = Arc::new(PipelineMetrics::default());
        m.kernel_record(&kind::EXEC.to_ne_bytes());
        m.kernel_record(&kind::EXEC.to_ne_bytes());
        m.kernel_record(&kind::FILE.to_ne_bytes());
        m.kernel_record(&999u16.to_ne_bytes());
        m.kernel_record(&[1]);
        m.decode_error("truncated");
        m.kernel_lost(&[("file", 3)]);
        m.kernel_lost(&[("file", 2), ("exec", 1)]);
        *m.rule_time.lock().unwrap() = vec![("sigma", 7, 1_500_000_123), ("native", 0, 0)];
        m.rules_suppressed.raise_to(4);
        m.rules_correlation_dropped.raise_to(2);
        *m.llm_unparsed.lock().unwrap() = vec![("h2_frame", 3), ("hpack_huffman", 1)];
        let registry = Registry::default();
        registry.register(m);
        let text = registry.render();
        for line in [
            "agent_sensor_kernel_records_total{kind=\"exec\"} 2\n",
            "agent_sensor_kernel_records_total{kind=\"file\"} 1\n",
            "agent_sensor_kernel_records_total{kind=\"other\"} 2\n",
            "agent_sensor_decode_errors_total{fault=\"truncated\"} 1\n",
            "agent_sensor_rules_alerts_suppressed_total 4\n",
            "agent_sensor_rules_state_evicted_total 0\n",
            "agent_sensor_rules_correlation_dropped_total 2\n",
            "agent_sensor_decode_errors_total{fault=\"version\"} 0\n",
            "agent_sensor_kernel_lost_total{kind=\"file\"} 5\n",
            "agent_sensor_kernel_lost_total{kind=\"exec\"} 1\n",
            "agent_sensor_rule_evaluations_total{engine=\"sigma\"} 7\n",
            "agent_sensor_rule_evaluation_seconds_total{engine=\"sigma\"} 1.500000123\n",
            "agent_sensor_rule_evaluation_seconds_total{engine=\"native\"} 0.000000000\n",
            "agent_sensor_llm_connections_unparsed_total{reason=\"h2_frame\"} 3\n",
            "agent_sensor_llm_connections_unparsed_total{reason=\"hpack_huffman\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn every_decode_fault_has_a_slot() {
        use crate::decode::DecodeError;
        for e in [
            DecodeError::ShortHeader { len: 0 },
            DecodeError::UnknownKind(0),
            DecodeError::Version {
                found: 0,
                expected: 1,
            },
            DecodeError::SizeMismatch { claimed: 0, len: 0 },
            DecodeError::Truncated { what: "x", len: 0 },
        ] {
            assert!(DECODE_FAULTS.contains(&e.kind()), "{}", e.kind());
        }
    }

    #[test]
    fn ready_once_started_with_an_output_that_takes_records() {
        let m = PipelineMetrics::default();
        assert!(m.ready().unwrap_err().contains("start record"));
        m.started.set(1);
        m.output_held_bytes.set(42);
        assert!(m.ready().unwrap_err().contains("42 bytes held"));
        m.output_admits.set(1);
        assert_eq!(m.ready(), Ok(()));
    }
}
