//! What the monitor emits (DESIGN §2, contract): drift alerts and retrain requests. Field
//! names are the Avro schemas' (`schemas/*.avsc`); the JSON mirror serialises these structs.
//!
//! Ids are deterministic hashes of what identifies a record, so replays and retries produce
//! the same ids and consumers can de-duplicate.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Alert state: only transitions are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    /// The detector breached its threshold `k` evaluations in a row.
    Firing,
    /// The detector was clean `k` evaluations in a row after firing.
    Resolved,
}

impl AlertState {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "FIRING",
            AlertState::Resolved => "RESOLVED",
        }
    }
}

/// A drift alert (topic `drift.alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlert {
    /// Hash of (model, version, subject, detector, state, window_end).
    pub alert_id: String,
    /// Model identifier.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Feature name, `__prediction__` or `__performance__`.
    pub subject: String,
    /// Detector name (`psi`, `ks`, `adwin`, ...).
    pub detector: String,
    /// The statistic at the evaluation that caused the transition.
    pub statistic: f64,
    /// The threshold it was compared with (a p-value threshold for test-based detectors).
    pub threshold: f64,
    /// The p-value, for test-based detectors.
    pub p_value: Option<f64>,
    /// FIRING or RESOLVED.
    pub state: AlertState,
    /// Event-time start of the evaluated window (ms).
    pub window_start: i64,
    /// Event-time end of the evaluated window (ms, exclusive).
    pub window_end: i64,
    /// Reference observations.
    pub reference_count: u64,
    /// Window observations.
    pub window_count: u64,
    /// SHA-256 of the evidence (the histograms compared), hex.
    pub evidence_sha256: String,
    /// Event time of the evaluation (ms).
    pub detected_at: i64,
    /// Wall-clock time of publication (ms); set by the sink, part of no id.
    pub emitted_at: i64,
}

/// Why a retrain is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetrainTrigger {
    /// Input features (or the prediction distribution) drifted.
    DataDrift,
    /// The relation between inputs and labels changed (ADWIN on the error stream).
    ConceptDrift,
    /// A quality metric fell below its floor or dropped too far.
    Performance,
    /// A schedule fired.
    Scheduled,
    /// A person asked.
    Manual,
}

impl RetrainTrigger {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RetrainTrigger::DataDrift => "DATA_DRIFT",
            RetrainTrigger::ConceptDrift => "CONCEPT_DRIFT",
            RetrainTrigger::Performance => "PERFORMANCE",
            RetrainTrigger::Scheduled => "SCHEDULED",
            RetrainTrigger::Manual => "MANUAL",
        }
    }
}

/// A range of source offsets the retraining job should read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset (inclusive).
    pub from_offset: i64,
    /// Last offset (inclusive).
    pub to_offset: i64,
}

/// A retrain request (topic `model.retrain.requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// Deterministic idempotency key: hash of (model, version, trigger, created_at).
    pub request_id: String,
    /// Model identifier.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Why.
    pub trigger: RetrainTrigger,
    /// Alert ids and explanations that led here.
    pub reasons: Vec<String>,
    /// Event-time start of the data to retrain on (ms).
    pub data_from: i64,
    /// Event-time end of the data to retrain on (ms).
    pub data_to: i64,
    /// Where that data sits in the source topics.
    pub source_offsets: Vec<OffsetRange>,
    /// Event time of the evaluation that produced the request (ms).
    pub created_at: i64,
}

/// Anything the engine emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An alert transition.
    Alert(DriftAlert),
    /// A retrain request.
    Retrain(RetrainRequest),
}

/// Hex SHA-256 of the parts, each length-prefixed so that ("ab","c") ≠ ("a","bc").
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

impl DriftAlert {
    /// The deterministic id of an alert transition.
    pub fn id_for(
        model_id: &str,
        model_version: &str,
        subject: &str,
        detector: &str,
        state: AlertState,
        window_end: i64,
    ) -> String {
        stable_id(&[
            b"alert",
            model_id.as_bytes(),
            model_version.as_bytes(),
            subject.as_bytes(),
            detector.as_bytes(),
            state.as_str().as_bytes(),
            &window_end.to_le_bytes(),
        ])
    }
}

impl RetrainRequest {
    /// The deterministic id of a retrain request.
    pub fn id_for(
        model_id: &str,
        model_version: &str,
        trigger: RetrainTrigger,
        created_at: i64,
    ) -> String {
        stable_id(&[
            b"retrain",
            model_id.as_bytes(),
            model_version.as_bytes(),
            trigger.as_str().as_bytes(),
            &created_at.to_le_bytes(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_separate_fields() {
        let a = DriftAlert::id_for("m", "1", "x", "psi", AlertState::Firing, 60_000);
        assert_eq!(
            a,
            DriftAlert::id_for("m", "1", "x", "psi", AlertState::Firing, 60_000)
        );
        assert_ne!(
            a,
            DriftAlert::id_for("m", "1", "x", "psi", AlertState::Resolved, 60_000)
        );
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn states_and_triggers_serialise_like_the_schema() {
        assert_eq!(
            serde_json::to_string(&AlertState::Firing).unwrap(),
            "\"FIRING\""
        );
        assert_eq!(
            serde_json::to_string(&RetrainTrigger::ConceptDrift).unwrap(),
            "\"CONCEPT_DRIFT\""
        );
    }
}
