//! The Kafka side: the only module that imports rdkafka.
//!
//! Owns: turning configuration into librdkafka settings ([`settings`]), and the service loop
//! ([`service`]) — consume, decode, feed the per-partition engines, publish outputs and dead
//! letters, commit offsets only after the outputs they caused are acknowledged. The loop runs
//! on its own thread with librdkafka's blocking poll: batching happens inside librdkafka
//! (fetches of many messages), and the per-message path has no task switch, lock contention
//! or allocation beyond the decoded event's feature list.

pub mod align;
pub mod service;
pub mod settings;
