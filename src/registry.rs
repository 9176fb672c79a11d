//! The schema registry client: resolves the schema id of a Confluent-framed message to the
//! producer's writer schema through the registry's Confluent REST API
//! (`GET {url}/schemas/ids/{id}`), which Confluent Schema Registry, Apicurio Registry's
//! `ccompat` API and Redpanda all serve.
//!
//! Owns: the HTTP lookups, their cache and the retry policy. Must not touch: Kafka, or the
//! decoding itself ([`crate::codec::resolve`] decides how a schema is read).
//!
//! Why it never blocks: lookups are rare — once per schema id for the life of the process,
//! since a registered id never changes — but an outage can last minutes, and a loop that
//! waited in here would stop heartbeating, committing and handling the partitions whose
//! schemas it already knows (past `max.poll.interval.ms`, the group would evict it). So a
//! lookup is one attempt at most: while the registry is unreachable it answers
//! [`Lookup::Unavailable`] with the time of the next attempt (exponential backoff), and the
//! service holds that message back and goes on. Dead-lettering it would lose a good event to
//! an outage. Only an answer from the registry that the id does not exist sends messages to
//! the dead-letter topic; that answer is cached for [`NOT_FOUND_TTL`] so a stream of such
//! messages costs one request a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use prometheus::IntCounterVec;
use tracing::{info, warn};

use crate::codec::resolve::{writer_schema, WriterSchema};
use crate::codec::{DecodeError, EventKind};
use crate::config::SchemaRegistrySettings;

/// How long a "no such id" answer is trusted before the registry is asked again.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(60);

/// First wait after a failed attempt; doubled per attempt up to `max_backoff_ms`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// One answer of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The schema's text.
    Schema(String),
    /// The registry says the id does not exist (or is not an Avro schema), with its words.
    NotFound(String),
    /// No usable answer (connection refused, timeout, 5xx, unexpected body): try again.
    Unavailable(String),
}

/// A cached resolution of (schema id, event kind).
#[derive(Debug, Clone)]
enum Entry {
    Ready(Result<Arc<WriterSchema>, DecodeError>),
    /// A "not found" answer, until the instant it expires.
    Missing(DecodeError, Instant),
    /// The registry could not be asked: no new attempt before `retry_at`; the one after
    /// that waits `backoff` if it fails too.
    Unreachable {
        retry_at: Instant,
        backoff: Duration,
        attempts: u32,
    },
}

/// The outcome of one lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The registry's verdict: the writer schema, or why messages with this id cannot be
    /// read (unknown id, unreadable schema).
    Resolved(Result<Arc<WriterSchema>, DecodeError>),
    /// The registry could not be reached: the message must wait, at least until `retry_at`.
    Unavailable {
        /// When the next attempt will be made (earlier lookups answer at once, unasked).
        retry_at: Instant,
    },
}

/// The registry client with its cache.
pub struct SchemaRegistry {
    /// Base URL without a trailing slash.
    base: String,
    agent: ureq::Agent,
    /// `Authorization` header value, when basic auth is configured.
    authorization: Option<String>,
    max_backoff: Duration,
    cache: HashMap<(u32, EventKind), Entry>,
    requests: Option<IntCounterVec>,
}

impl SchemaRegistry {
    /// A client for the registry at `settings.url`; `None` when no URL is configured.
    /// `requests` (the `driftwatch_schema_registry_requests_total` counter) counts lookups.
    pub fn new(settings: &SchemaRegistrySettings, requests: Option<IntCounterVec>) -> Option<Self> {
        let url = settings.url.as_deref()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(settings.request_timeout_ms)))
            // 4xx/5xx are answers to classify, not transport errors.
            .http_status_as_error(false)
            .build()
            .into();
        let authorization = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            _ => None,
        };
        Some(Self {
            base: url.trim_end_matches('/').to_owned(),
            agent,
            authorization,
            max_backoff: Duration::from_millis(settings.max_backoff_ms).max(FIRST_BACKOFF),
            cache: HashMap::new(),
            requests,
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// One lookup of schema `id`, no retry.
    pub fn fetch(&self, id: u32) -> Fetched {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut request = self.agent.get(&url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        let fetched = match request.call() {
            Err(error) => Fetched::Unavailable(format!("GET {url}: {error}")),
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(16 * 1024 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                classify(status, &body, &url)
            }
        };
        if let Some(requests) = &self.requests {
            let outcome = match fetched {
                Fetched::Schema(_) => "ok",
                Fetched::NotFound(_) => "not_found",
                Fetched::Unavailable(_) => "error",
            };
            requests.with_label_values(&[outcome]).inc();
        }
        fetched
    }

    /// The writer schema of `id` for events of `kind`: from the cache, or with at most one
    /// request to the registry (none while an earlier failure's backoff runs).
    pub fn lookup(&mut self, id: u32, kind: EventKind) -> Lookup {
        let now = Instant::now();
        let (backoff, attempts) = match self.cache.get(&(id, kind)) {
            Some(Entry::Ready(ready)) => return Lookup::Resolved(ready.clone()),
            Some(Entry::Missing(error, until)) if now < *until => {
                return Lookup::Resolved(Err(error.clone()))
            }
            Some(Entry::Unreachable { retry_at, .. }) if now < *retry_at => {
                return Lookup::Unavailable {
                    retry_at: *retry_at,
                }
            }
            Some(Entry::Unreachable {
                backoff, attempts, ..
            }) => (*backoff, *attempts),
            _ => (FIRST_BACKOFF, 0),
        };
        match self.fetch(id) {
            Fetched::Schema(text) => {
                let ready = writer_schema(&text, kind)
                    .map(Arc::new)
                    .map_err(|detail| DecodeError::IncompatibleSchema { id, detail });
                info!(
                    message = "Schema resolved.",
                    id,
                    kind = kind.as_str(),
                    native = matches!(ready.as_deref(), Ok(WriterSchema::Native)),
                    compatible = ready.is_ok()
                );
                self.cache.insert((id, kind), Entry::Ready(ready.clone()));
                Lookup::Resolved(ready)
            }
            Fetched::NotFound(detail) => {
                let error = DecodeError::UnregisteredSchemaId { id, detail };
                self.cache.insert(
                    (id, kind),
                    Entry::Missing(error.clone(), Instant::now() + NOT_FOUND_TTL),
                );
                Lookup::Resolved(Err(error))
            }
            Fetched::Unavailable(error) => {
                let attempts = attempts + 1;
                warn!(
                    message = "Schema registry unavailable; messages with this id wait.",
                    %error,
                    id,
                    attempts,
                    retry_in_ms = backoff.as_millis() as u64
                );
                let retry_at = Instant::now() + backoff;
                self.cache.insert(
                    (id, kind),
                    Entry::Unreachable {
                        retry_at,
                        backoff: (backoff * 2).min(self.max_backoff),
                        attempts,
                    },
                );
                Lookup::Unavailable { retry_at }
            }
        }
    }
}

/// Reads a registry answer: 200 with `{"schema": "..."}` (and, for non-Avro schemas, a
/// `schemaType`), 404 for an unknown id; anything else is not an answer about the id.
fn classify(status: u16, body: &str, url: &str) -> Fetched {
    match status {
        200 => {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(body);
            let Ok(value) = parsed else {
                return Fetched::Unavailable(format!(
                    "GET {url}: 200 with a body that is not JSON"
                ));
            };
            match value.get("schemaType").and_then(|t| t.as_str()) {
                Some(kind) if !kind.eq_ignore_ascii_case("AVRO") => {
                    return Fetched::NotFound(format!("the schema is {kind}, not Avro"));
                }
                _ => {}
            }
            match value.get("schema").and_then(|s| s.as_str()) {
                Some(schema) => Fetched::Schema(schema.to_owned()),
                None => Fetched::Unavailable(format!(
                    "GET {url}: 200 without a \"schema\" string in the body"
                )),
            }
        }
        404 => Fetched::NotFound(format!("GET {url}: 404 {}", first_line(body))),
        _ => Fetched::Unavailable(format!("GET {url}: HTTP {status} {}", first_line(body))),
    }
}

/// A bounded excerpt of a body for an error message.
fn first_line(body: &str) -> String {
    body.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn answers_are_classified() {
        let ok = classify(200, r#"{"schema": "\"string\""}"#, "u");
        assert_eq!(ok, Fetched::Schema("\"string\"".to_owned()));
        assert!(matches!(
            classify(200, r#"{"schema": "x", "schemaType": "PROTOBUF"}"#, "u"),
            Fetched::NotFound(d) if d.contains("PROTOBUF")
        ));
        assert!(matches!(
            classify(200, r#"{"schema": "x", "schemaType": "AVRO"}"#, "u"),
            Fetched::Schema(_)
        ));
        assert!(matches!(
            classify(404, r#"{"error_code":40403,"message":"Schema not found"}"#, "u"),
            Fetched::NotFound(d) if d.contains("40403")
        ));
        for status in [500, 503, 401, 429] {
            assert!(matches!(classify(status, "", "u"), Fetched::Unavailable(_)));
        }
        assert!(matches!(
            classify(200, "<html>", "u"),
            Fetched::Unavailable(_)
        ));
        assert!(matches!(classify(200, "{}", "u"), Fetched::Unavailable(_)));
    }

    /// A loopback HTTP server answering each connection with the next of `responses`
    /// (status, body); counts the requests.
    fn serve(responses: Vec<(u16, String)>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for (stream, (status, body)) in listener.incoming().zip(responses) {
                let Ok(mut stream) = stream else { return };
                let mut request = [0_u8; 4096];
                let _ = stream.read(&mut request);
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    fn settings(url: &str) -> SchemaRegistrySettings {
        SchemaRegistrySettings {
            url: Some(url.to_owned()),
            max_backoff_ms: 200,
            ..SchemaRegistrySettings::default()
        }
    }

    /// Looks `id` up until the registry gives a verdict, as the service does: each
    /// `Unavailable` is waited out to its retry time. Returns the verdict and the number of
    /// lookups it took.
    fn resolve(
        registry: &mut SchemaRegistry,
        id: u32,
        kind: EventKind,
    ) -> (Result<Arc<WriterSchema>, DecodeError>, usize) {
        for lookups in 1..100 {
            match registry.lookup(id, kind) {
                Lookup::Resolved(verdict) => return (verdict, lookups),
                Lookup::Unavailable { retry_at } => {
                    std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
                }
            }
        }
        panic!("no verdict after 100 lookups");
    }

    #[test]
    fn an_outage_is_waited_out_without_blocking_and_the_schema_cached() {
        let schema = serde_json::json!({ "schema": crate::codec::avro::LABEL_EVENT_AVSC });
        let (url, count) = serve(vec![
            (503, "down".into()),
            (500, "still down".into()),
            (200, schema.to_string()),
        ]);
        let mut registry = SchemaRegistry::new(&settings(&url), None).unwrap();
        // The first failure answers at once, with the time of the next attempt; asking again
        // before then costs no request.
        let started = Instant::now();
        let Lookup::Unavailable { retry_at } = registry.lookup(7, EventKind::Label) else {
            panic!("the registry is down");
        };
        assert!(retry_at > started && retry_at <= Instant::now() + FIRST_BACKOFF);
        assert!(matches!(
            registry.lookup(7, EventKind::Label),
            Lookup::Unavailable { retry_at: again } if again == retry_at
        ));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let (writer, _) = resolve(&mut registry, 7, EventKind::Label);
        assert!(matches!(*writer.expect("resolved"), WriterSchema::Native));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // Cached: no fourth request (the server would not answer one).
        assert!(matches!(
            registry.lookup(7, EventKind::Label),
            Lookup::Resolved(Ok(_))
        ));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_unknown_id_is_a_verdict_and_cached_for_a_while() {
        let (url, count) = serve(vec![(404, r#"{"error_code":40403}"#.into())]);
        let mut registry = SchemaRegistry::new(&settings(&url), None).unwrap();
        for _ in 0..3 {
            let (verdict, lookups) = resolve(&mut registry, 42, EventKind::Prediction);
            assert_eq!(lookups, 1);
            let error = verdict.unwrap_err();
            assert_eq!(error.reason(), "unknown_schema_id");
            assert!(error.to_string().contains("42"), "{error}");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unreadable_schema_is_a_verdict() {
        let schema = serde_json::json!({ "schema": "\"string\"" });
        let (url, _) = serve(vec![(200, schema.to_string())]);
        let mut registry = SchemaRegistry::new(&settings(&url), None).unwrap();
        let (verdict, _) = resolve(&mut registry, 3, EventKind::Prediction);
        assert_eq!(verdict.unwrap_err().reason(), "incompatible_schema");
    }

    #[test]
    fn an_unreachable_registry_is_retried_with_a_growing_backoff() {
        // Nothing listens on a port just released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut registry = SchemaRegistry::new(
            &SchemaRegistrySettings {
                max_backoff_ms: 700,
                ..settings(&format!("http://127.0.0.1:{port}"))
            },
            None,
        )
        .unwrap();
        // Waits between attempts: 200, 400, then 700 (the maximum) from there on.
        let mut waits = Vec::new();
        for _ in 0..4 {
            let asked = Instant::now();
            let Lookup::Unavailable { retry_at } = registry.lookup(1, EventKind::Label) else {
                panic!("nothing listens");
            };
            waits.push(retry_at.duration_since(asked));
            std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
        }
        let expected = [200, 400, 700, 700].map(Duration::from_millis);
        for (wait, expected) in waits.iter().zip(expected) {
            // Counted from the failed attempt's end: a refused connection takes little.
            assert!(
                *wait >= expected && *wait < expected + Duration::from_millis(100),
                "{waits:?}"
            );
        }
    }

    #[test]
    fn basic_auth_and_the_url_are_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/apis/ccompat/v7/", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0_u8; 4096];
            let n = stream.read(&mut request).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n");
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let registry = SchemaRegistry::new(
            &SchemaRegistrySettings {
                username: Some("key".into()),
                password: Some("secret".into()),
                ..settings(&url)
            },
            None,
        )
        .unwrap();
        assert!(matches!(registry.fetch(9), Fetched::NotFound(_)));
        let request = handle.join().unwrap();
        assert!(
            request.starts_with("GET /apis/ccompat/v7/schemas/ids/9 "),
            "{request}"
        );
        // base64("key:secret")
        assert!(request.contains("a2V5OnNlY3JldA=="), "{request}");
    }
}
