//! # driftwatch
//!
//! Streaming drift detection for machine-learning models on a Kafka event bus: per-event,
//! exact statistics (checked against SciPy, NumPy and River), bounded sliding windows in event
//! time, drift alerts and retrain requests.
//!
//! ## Layout
//! - [`detect`]: pure math — ADWIN, reference binning, PSI, Jensen–Shannon, KS, Wasserstein,
//!   chi², event-time pane windows and window sketches. No clocks, no I/O, no async.
//! - [`cli`]: the command-line surface (clap).
//! - [`config`]: the service configuration (TOML file, `DRIFTWATCH_*` environment overrides,
//!   validation that reports every problem at once).
//! - [`tools`]: the offline commands `eval` and `compare` over files, and the reader of
//!   recorded events (JSON Lines, Avro container files) that `replay` and `baseline` share.
//!
//! `main.rs` only parses the command line and dispatches.

#![deny(missing_docs)]

pub mod baseline;
pub mod bus;
pub mod cli;
pub mod codec;
pub mod config;
pub mod demo;
pub mod detect;
pub mod event;
mod hint;
pub mod http;
pub mod monitor;
pub mod registry;
pub mod replay;
pub mod report;
pub mod telemetry;
pub mod tools;
