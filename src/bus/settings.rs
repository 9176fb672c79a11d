//! Pure builders of librdkafka settings from the configuration (no broker needed to test).
//!
//! driftwatch owns the settings its guarantees rest on (manual commits, idempotence,
//! isolation); users add the rest (security, tuning) through `kafka.extra`, which config
//! validation already stops from overriding the owned keys.

use crate::config::{Config, DeliveryMode};

use super::changelog::MAX_STATE_RECORD_BYTES;

/// Settings of the input consumer.
pub fn consumer_settings(config: &Config) -> Vec<(String, String)> {
    let kafka = &config.kafka;
    let mut settings = vec![
        ("bootstrap.servers", kafka.brokers.clone()),
        ("group.id", kafka.group_id.clone()),
        ("client.id", kafka.client_id.clone()),
        // Offsets are committed by the service only after the outputs they caused are acked.
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        ("auto.offset.reset", "earliest".to_owned()),
        ("session.timeout.ms", kafka.session_timeout_ms.to_string()),
        (
            "max.poll.interval.ms",
            kafka.max_poll_interval_ms.to_string(),
        ),
        // Co-partitioning: the range assignor gives partition p of every subscribed topic
        // with the same partition count to the same member, so a prediction and its label
        // (both keyed by model_id) meet in one engine. The sticky assignors do not promise
        // that. Its rebalances are eager; the loop parks revoked engines and resumes those
        // that come back, so staying partitions keep their windows.
        ("partition.assignment.strategy", "range".to_owned()),
        // Only committed transactional records are inputs (producers may be transactional).
        ("isolation.level", "read_committed".to_owned()),
        // librdkafka postpones a partition's next fetch by this much when its local queue is
        // full (default 1000 ms): a consumer that processes slower than it fetches would sit
        // idle most of the time. Measured: 2.9x end-to-end throughput (BENCHMARKS.md).
        ("fetch.queue.backoff.ms", "10".to_owned()),
        // Statistics feed the consumer-lag gauge without extra broker requests.
        ("statistics.interval.ms", "5000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect::<Vec<_>>();
    append_extra(config, &mut settings);
    settings
}

/// Settings of the output producer (alerts, retrain requests, dead letters).
pub fn producer_settings(config: &Config) -> Vec<(String, String)> {
    let kafka = &config.kafka;
    let mut settings = vec![
        ("bootstrap.servers", kafka.brokers.clone()),
        ("client.id", format!("{}-producer", kafka.client_id)),
        // Retries never duplicate or reorder outputs.
        ("enable.idempotence", "true".to_owned()),
        ("acks", "all".to_owned()),
        ("linger.ms", "5".to_owned()),
        ("compression.type", "lz4".to_owned()),
        // Dead letters carry the original message, which may be as large as the input limit;
        // state records hold a model version's whole state.
        (
            "message.max.bytes",
            (config.formats.max_message_bytes.max(MAX_STATE_RECORD_BYTES) + 64 * 1024).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect::<Vec<_>>();
    if config.delivery.mode == DeliveryMode::ExactlyOnce {
        settings.push(("transactional.id".to_owned(), transactional_id(config)));
        settings.push((
            "transaction.timeout.ms".to_owned(),
            config.delivery.transaction_timeout_ms.to_string(),
        ));
    }
    append_extra(config, &mut settings);
    settings
}

/// This instance's transactional id: configured, or `driftwatch-{group}-{hostname}` (stable
/// across restarts of one host or pod, distinct between them).
pub fn transactional_id(config: &Config) -> String {
    if let Some(id) = &config.delivery.transactional_id {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("driftwatch-{}-{host}", config.kafka.group_id)
}

fn append_extra(config: &Config, settings: &mut Vec<(String, String)>) {
    for (key, value) in &config.kafka.extra {
        settings.retain(|(k, _)| k != key);
        settings.push((key.clone(), value.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn owned_settings_table() {
        let mut config = Config::default();
        config.kafka.brokers = "k1:9092,k2:9092".into();
        config
            .kafka
            .extra
            .insert("security.protocol".into(), "SASL_SSL".into());
        config.kafka.extra.insert("linger.ms".into(), "20".into());
        let consumer = consumer_settings(&config);
        let producer = producer_settings(&config);
        type Case<'a> = (&'a [(String, String)], &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&consumer, "bootstrap.servers", Some("k1:9092,k2:9092")),
            (&consumer, "enable.auto.commit", Some("false")),
            (&consumer, "enable.auto.offset.store", Some("false")),
            (&consumer, "isolation.level", Some("read_committed")),
            (&consumer, "partition.assignment.strategy", Some("range")),
            (&consumer, "group.id", Some("driftwatch")),
            (&consumer, "security.protocol", Some("SASL_SSL")),
            (&producer, "enable.idempotence", Some("true")),
            (&producer, "acks", Some("all")),
            (&producer, "security.protocol", Some("SASL_SSL")),
            (&producer, "linger.ms", Some("20")),
            (&producer, "group.id", None),
            (&producer, "transaction.timeout.ms", Some("10000")),
        ];
        for (settings, key, expected) in cases {
            assert_eq!(lookup(settings, key), *expected, "{key}");
        }
        // A user tuning key replaces ours instead of being listed twice.
        assert_eq!(producer.iter().filter(|(k, _)| k == "linger.ms").count(), 1);
        // Exactly-once by default, with a per-host transactional id.
        let id = lookup(&producer, "transactional.id").unwrap();
        assert!(id.starts_with("driftwatch-driftwatch-"), "{id}");
        config.delivery.transactional_id = Some("dw-0".into());
        assert_eq!(
            lookup(&producer_settings(&config), "transactional.id"),
            Some("dw-0")
        );
        config.delivery.mode = DeliveryMode::AtLeastOnce;
        assert_eq!(
            lookup(&producer_settings(&config), "transactional.id"),
            None
        );
    }
}
