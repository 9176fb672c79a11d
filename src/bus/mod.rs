//! The Kafka side: the only module that imports rdkafka.
//!
//! Owns: turning configuration into librdkafka settings ([`settings`]), the state changelog
//! topic and restores ([`changelog`]), and the service loop ([`service`]) — consume, decode,
//! feed the per-partition engines, publish outputs, dead letters and state, and commit them
//! with the consumed offsets in one transaction (or, at least once, commit offsets only after
//! everything they caused is acknowledged). The loop runs
//! on its own thread with librdkafka's blocking poll: batching happens inside librdkafka
//! (fetches of many messages), and the per-message path has no task switch, lock contention
//! or allocation beyond the decoded event's feature list.

pub mod align;
pub mod changelog;
pub mod service;
pub mod settings;
