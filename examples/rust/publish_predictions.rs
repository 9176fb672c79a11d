// Publishing predictions from a Rust inference service, the way driftwatch reads them with
// `[formats] predictions = "confluent"`: the PredictionEvent schema registered in a schema
// registry (Confluent API), each event Avro-encoded and framed with the registry's schema id
// (magic byte 0, 4-byte big-endian id), keyed by model_id so a model's events share a
// partition. Crates: rdkafka, apache-avro, ureq, serde_json. (The README shows this file; the
// schema registry test in tests/kafka_registry.rs runs it.)

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// One feature value: the branches of the schema's union {null, double, string, boolean}.
pub enum Feature {
    Missing,
    Number(f64),
    Category(String),
    Flag(bool),
}

/// What the model saw and said.
pub struct Prediction {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    /// Event time, ms since the Unix epoch.
    pub timestamp: i64,
    pub features: Vec<(String, Feature)>,
    pub score: Option<f64>,
    pub label: Option<String>,
}

/// A producer of Confluent-framed PredictionEvents.
pub struct PredictionPublisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    schema: Schema,
    schema_id: u32,
}

impl PredictionPublisher {
    /// Registers `schema_text` (schemas/prediction_event.avsc) under "<topic>-value", the
    /// subject Confluent's serializers use, and connects an idempotent producer.
    pub fn connect(
        bootstrap: &str,
        registry_url: &str,
        topic: &str,
        schema_text: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let schema = Schema::parse_str(schema_text)?;
        let body = serde_json::json!({ "schema": schema_text }).to_string();
        let answer: serde_json::Value = serde_json::from_str(
            &ureq::post(&format!("{registry_url}/subjects/{topic}-value/versions"))
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .send(body.as_str())?
                .body_mut()
                .read_to_string()?,
        )?;
        let schema_id = answer["id"].as_u64().ok_or("the registry returned no id")? as u32;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            schema,
            schema_id,
        })
    }

    /// The id the registry gave the schema.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Queues one event (the producer batches and retries in the background).
    pub fn publish(&self, event: &Prediction) -> Result<(), Box<dyn std::error::Error>> {
        let optional = |value: Option<Value>| match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(value) => Value::Union(1, Box::new(value)),
        };
        let features: HashMap<String, Value> = event
            .features
            .iter()
            .map(|(name, value)| {
                let branch = match value {
                    Feature::Missing => Value::Union(0, Box::new(Value::Null)),
                    Feature::Number(x) => Value::Union(1, Box::new(Value::Double(*x))),
                    Feature::Category(c) => Value::Union(2, Box::new(Value::String(c.clone()))),
                    Feature::Flag(b) => Value::Union(3, Box::new(Value::Boolean(*b))),
                };
                (name.clone(), branch)
            })
            .collect();
        let record = Value::Record(vec![
            ("event_id".into(), Value::String(event.event_id.clone())),
            ("model_id".into(), Value::String(event.model_id.clone())),
            (
                "model_version".into(),
                Value::String(event.model_version.clone()),
            ),
            ("timestamp".into(), Value::TimestampMillis(event.timestamp)),
            ("features".into(), Value::Map(features)),
            (
                "prediction".into(),
                Value::Record(vec![
                    ("score".into(), optional(event.score.map(Value::Double))),
                    (
                        "label".into(),
                        optional(event.label.clone().map(Value::String)),
                    ),
                    ("probabilities".into(), optional(None)),
                ]),
            ),
            ("attributes".into(), optional(None)),
        ]);
        let body = GenericDatumWriter::builder(&self.schema)
            .build()?
            .write_value_to_vec(record)?;
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&self.schema_id.to_be_bytes());
        framed.extend_from_slice(&body);
        let mut record = BaseRecord::to(&self.topic)
            .key(event.model_id.as_bytes())
            .payload(&framed);
        // A full local queue is back-pressure: let the producer drain, then retry.
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    returned,
                )) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }

    /// Waits until every queued event is acknowledged (call before shutting down).
    pub fn flush(&self) -> Result<(), Box<dyn std::error::Error>> {
        Ok(self.producer.flush(Duration::from_secs(30))?)
    }
}
