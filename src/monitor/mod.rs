//! The monitor: pure, deterministic, event-time driven drift monitoring (DESIGN §1).
//!
//! Owns: per (model, version) state — references, pane windows, detectors, alert policy —
//! and the outputs they produce. Must not touch: clocks, I/O, tokio, rdkafka. The same input
//! sequence gives the same outputs, byte for byte, whether it comes from Kafka, a replay file
//! or a test.

pub mod chunked_queue;
pub mod engine;
pub mod fairness;
pub mod feature;
pub mod join;
pub mod key_index;
pub mod model;
pub mod output;
pub mod performance;
pub mod policy;
pub mod quality;
pub mod schedule;
pub mod settings;
pub mod state;
