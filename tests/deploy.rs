//! The deployment files users drop into what they already run: the docker compose stack, the
//! Dockerfile, the Prometheus configuration and alert rules, and the Grafana dashboard.
//!
//! There is no Docker engine on the machines this suite runs on, so the compose file and the
//! Dockerfile are checked statically: they parse, every file they name exists, and the ports,
//! hosts and topics they wire together agree with each other and with driftwatch's own
//! configuration. Prometheus is real (Debian's package, installed by
//! `scripts/prometheus.sh`): `promtool` checks the shipped files and runs the rule unit
//! tests, and a Prometheus scrapes a running driftwatch on the real broker until the drift
//! alert rule fires.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use driftwatch::codec::encode_prediction_json;
use driftwatch::config::{self, Config};
use driftwatch::telemetry::Metrics;
use serde_norway::Value as Yaml;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The compose stack's driftwatch configuration, loaded and validated like `run` does.
fn compose_config() -> Config {
    config::load(&repo("config/driftwatch.compose.toml"))
        .unwrap_or_else(|e| panic!("config/driftwatch.compose.toml:\n{e}"))
}

#[test]
fn the_compose_stack_is_complete_and_wired_consistently() {
    let compose = yaml("docker-compose.yml");
    let services: BTreeSet<String> = compose["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for needed in [
        "kafka",
        "schema-registry",
        "driftwatch",
        "prometheus",
        "grafana",
        "traffic",
    ] {
        assert!(
            services.contains(needed),
            "no {needed} service: {services:?}"
        );
    }
    assert!(service(&compose, "kafka")["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    let declared_volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut host_ports = BTreeSet::new();
    for name in &services {
        let svc = service(&compose, name);
        // Every bind mount's host path exists; every named volume is declared.
        for volume in strings(&svc["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    repo(source).exists(),
                    "{name}: mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    declared_volumes.contains(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        // Published ports are on loopback and unique.
        for port in strings(&svc["ports"]) {
            let parts: Vec<&str> = port.split(':').collect();
            assert_eq!(parts.len(), 3, "{name}: {port} should be IP:HOST:CONTAINER");
            assert_eq!(parts[0], "127.0.0.1", "{name}: {port} is not loopback-only");
            assert!(
                host_ports.insert(parts[1].to_owned()),
                "host port {port} twice"
            );
        }
        // Dependencies exist.
        if let Some(depends) = svc["depends_on"].as_mapping() {
            for dependency in depends.keys().filter_map(|k| k.as_str()) {
                assert!(
                    services.contains(dependency),
                    "{name} depends on {dependency}"
                );
            }
        }
        for dependency in strings(&svc["depends_on"]) {
            assert!(
                services.contains(&dependency),
                "{name} depends on {dependency}"
            );
        }
    }

    // driftwatch: built here, configured by a file that `run` accepts.
    let driftwatch = service(&compose, "driftwatch");
    assert_eq!(driftwatch["build"]["context"].as_str(), Some("."));
    let dockerfile = driftwatch["build"]["dockerfile"]
        .as_str()
        .unwrap_or("Dockerfile");
    assert!(repo(dockerfile).exists());
    let mount = strings(&driftwatch["volumes"])
        .into_iter()
        .find(|v| v.starts_with("./config/driftwatch.compose.toml:"))
        .expect("driftwatch mounts its configuration");
    let config_path = mount.split(':').nth(1).unwrap();
    assert_eq!(config_path, "/etc/driftwatch/driftwatch.toml");
    let config = compose_config();
    // The HTTP port is reachable from other containers and published.
    assert!(
        config.http.listen.ip().is_unspecified(),
        "{}",
        config.http.listen
    );
    let http_port = config.http.listen.port();
    assert!(
        strings(&driftwatch["ports"])
            .iter()
            .any(|p| p.ends_with(&format!(":{http_port}"))),
        "driftwatch's port {http_port} is not published"
    );
    // Kafka: driftwatch's brokers are what the broker advertises inside the network.
    let advertised = service(&compose, "kafka")["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        advertised.contains(&format!("://{}", config.kafka.brokers)),
        "brokers {} not in {advertised}",
        config.kafka.brokers
    );
    // The topics driftwatch reads and writes are created by kafka-init (the state topic it
    // creates itself), inputs with the same partition count (co-partitioned).
    let init = strings(&service(&compose, "kafka-init")["command"]).join("\n");
    for topic in [
        &config.topics.predictions,
        &config.topics.labels,
        &config.topics.alerts,
        &config.topics.retrain,
        &config.topics.dlq,
    ] {
        assert!(
            init.contains(topic.as_str()),
            "kafka-init does not create {topic}"
        );
    }
    // The registry driftwatch asks is the compose registry, on its container port, and the
    // traffic generator registers its schema there too.
    let registry_url = config.schema_registry.url.clone().expect("registry url");
    let registry_port = service(&compose, "schema-registry")["environment"]["QUARKUS_HTTP_PORT"]
        .as_u64()
        .expect("registry port");
    assert!(
        registry_url.starts_with(&format!("http://schema-registry:{registry_port}/")),
        "{registry_url}"
    );
    let traffic = service(&compose, "traffic");
    assert_eq!(
        traffic["environment"]["REGISTRY"].as_str(),
        Some(registry_url.as_str())
    );
    assert_eq!(
        traffic["environment"]["TOPIC"].as_str(),
        Some(config.topics.predictions.as_str())
    );
    assert!(repo("examples/compose/traffic.sh").exists());
    assert!(repo("examples/python/produce_predictions.py").exists());

    // Prometheus scrapes driftwatch on that port and loads the rules; Grafana gets the
    // datasource and the dashboard from the mounted folders.
    let prometheus = yaml("config/prometheus/prometheus.yml");
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|job| job["job_name"].as_str() == Some("driftwatch"))
        .flat_map(|job| strings(&job["static_configs"][0]["targets"]))
        .collect();
    assert_eq!(targets, vec![format!("driftwatch:{http_port}")]);
    let datasource = yaml("config/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let provider = yaml("config/grafana/provisioning/dashboards/driftwatch.yml");
    let dashboards_dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(
        strings(&service(&compose, "grafana")["volumes"])
            .iter()
            .any(|v| v == &format!("./config/grafana/dashboards:{dashboards_dir}:ro")),
        "the dashboards folder Grafana reads is not mounted"
    );
}

#[test]
fn the_dockerfile_builds_a_small_image_that_runs_as_a_non_root_user() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let instructions: Vec<(String, String)> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
            (word.to_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (word, _))| word == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        stages.len() >= 2,
        "multi-stage: a build and a runtime stage"
    );
    let runtime = &instructions[*stages.last().unwrap()..];
    assert!(
        runtime[0].1.contains("-slim"),
        "the runtime stage is slim: {}",
        runtime[0].1
    );
    assert!(
        !runtime
            .iter()
            .any(|(w, a)| w == "RUN" && a.contains("cargo")),
        "no toolchain in the runtime stage"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(w, _)| w == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets a USER");
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "runs as root: {user}"
    );
    assert!(runtime
        .iter()
        .any(|(w, a)| w == "ENTRYPOINT" && a.contains("\"driftwatch\"")));
    let exposed: Vec<&str> = runtime
        .iter()
        .filter(|(w, _)| w == "EXPOSE")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(exposed, vec!["9464"], "the HTTP port");
    assert!(
        text.contains("listen = \"0.0.0.0:9464\""),
        "the image's default config listens on the exposed port"
    );
    // Every file the build copies from the context exists and is not excluded.
    let ignored: Vec<String> = std::fs::read_to_string(repo(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    assert!(
        ignored.iter().any(|l| l == "target"),
        "target/ stays out of the context"
    );
    for (_, args) in instructions
        .iter()
        .filter(|(w, a)| w == "COPY" && !a.starts_with("--from"))
    {
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: no such file");
            assert!(
                !ignored.contains(&source.to_string()),
                "COPY {source} is dockerignored"
            );
        }
    }
}

/// Metric names in a PromQL expression (histogram series mapped to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("driftwatch_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &expr[start..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| family.ends_with("_seconds"))
            .unwrap_or(name);
        names.insert(family.to_owned());
        i = end;
    }
    names
}

fn json_strings(value: &serde_json::Value, key: &str, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    if let Some(text) = v.as_str() {
                        into.push(text.to_owned());
                    }
                }
                json_strings(v, key, into);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, key, into)),
        _ => {}
    }
}

#[test]
fn the_dashboard_and_the_rules_use_only_metrics_driftwatch_exports() {
    let exported: BTreeSet<String> = Metrics::new(true, 10)
        .unwrap()
        .names()
        .iter()
        .cloned()
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("config/grafana/dashboards/driftwatch.json")).unwrap(),
    )
    .expect("dashboard JSON");
    let mut expressions = Vec::new();
    json_strings(&dashboard, "expr", &mut expressions);
    // Template variables query metrics too (label_values(...)).
    json_strings(&dashboard["templating"], "query", &mut expressions);
    assert!(expressions.len() >= 15, "{} expressions", expressions.len());
    let rules = yaml("config/prometheus/rules/driftwatch.rules.yml");
    let rule_expressions: Vec<String> = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["expr"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        rule_expressions.len(),
        5,
        "drift, retrain storm, lag, DLQ rate, down"
    );
    let mut used = BTreeMap::new();
    for expr in expressions.iter().chain(&rule_expressions) {
        for name in metric_names(expr) {
            used.entry(name).or_insert_with(|| expr.clone());
        }
    }
    let unknown: Vec<_> = used
        .iter()
        .filter(|(name, _)| !exported.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by driftwatch: {unknown:#?}"
    );
    // The panels the dashboard promises.
    for needed in [
        "driftwatch_events_total",
        "driftwatch_consumer_lag",
        "driftwatch_dlq_total",
        "driftwatch_drift_score",
        "driftwatch_alert_firing",
        "driftwatch_model_quality",
        "driftwatch_retrain_requests_total",
    ] {
        assert!(used.contains_key(needed), "the dashboard shows no {needed}");
    }
    let heatmaps = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "heatmap")
        .count();
    assert!(heatmaps >= 1, "drift scores as a heatmap");
}

#[test]
fn promtool_accepts_the_configuration_and_the_rule_unit_tests_pass() {
    let output = Command::new("bash")
        .arg(repo("scripts/prometheus.sh"))
        .arg("check")
        .output()
        .expect("scripts/prometheus.sh");
    assert!(
        output.status.success(),
        "scripts/prometheus.sh check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("SUCCESS"), "{log}");
}

/// A Prometheus started by `scripts/prometheus.sh` in a run folder of its own; stopped on drop.
struct Prometheus {
    url: String,
    run: PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let run = std::env::temp_dir().join(unique("driftwatch-prometheus"));
        let output = Command::new("bash")
            .arg(repo("scripts/prometheus.sh"))
            .args(["start", target])
            .env("DRIFTWATCH_PROMETHEUS_RUN", &run)
            .output()
            .expect("scripts/prometheus.sh");
        assert!(
            output.status.success(),
            "scripts/prometheus.sh start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            url: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            run,
        }
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let body = ureq::get(&format!("{}{path}", self.url))
            .call()
            .expect("Prometheus answers")
            .body_mut()
            .read_to_string()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["status"], "success", "{body}");
        value["data"].clone()
    }

    /// The instant vector of `query`.
    fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("/api/v1/query?query={encoded}"))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo("scripts/prometheus.sh"))
            .arg("stop")
            .env("DRIFTWATCH_PROMETHEUS_RUN", &self.run)
            .output();
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

#[test]
fn prometheus_scrapes_driftwatch_and_the_drift_rule_fires_after_injected_drift() {
    const EVENTS: usize = 12_000;
    const DRIFT_AT: usize = 6_000;
    let config = test_config("prometheus", 1);
    let mut instance = RunningBinary::start(
        &config,
        "[monitor.reference]\nwarmup_events = 2000\n\
         [monitor.windows]\npanes = 3\nallowed_lateness_ms = 1000\n",
    );
    instance.wait_for("/readyz", Duration::from_secs(60), |_| true);
    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", instance.port));
    // Up, and nothing firing before any event.
    let up = prometheus.query("up{job=\"driftwatch\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1");
    assert!(prometheus
        .query("ALERTS{alertname=\"DriftwatchDriftFiring\"}")
        .is_empty());

    let events = stream("fraud", EVENTS, DRIFT_AT, 5);
    let messages: Vec<_> = events
        .iter()
        .map(|e| (e.model_id.as_bytes().to_vec(), encode_prediction_json(e)))
        .collect();
    produce(&config.topics.predictions, &messages);

    // The rule fires, naming the drifted feature (the alert state comes from
    // driftwatch_alert_firing, scraped every second).
    let deadline = Instant::now() + Duration::from_secs(120);
    let firing = loop {
        let alerts = prometheus.api("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let drift: Vec<_> = alerts
            .into_iter()
            .filter(|a| {
                a["labels"]["alertname"] == "DriftwatchDriftFiring" && a["state"] == "firing"
            })
            .collect();
        if drift.iter().any(|a| a["labels"]["subject"] == "amount") {
            break drift;
        }
        assert!(
            Instant::now() < deadline,
            "the drift rule did not fire; driftwatch log:\n{}",
            instance.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for alert in &firing {
        assert_eq!(alert["labels"]["model"], "fraud");
        assert!(
            ["amount", "__prediction__"].contains(&alert["labels"]["subject"].as_str().unwrap()),
            "false alarm: {alert}"
        );
    }
    // Our metrics are there, with the numbers of the run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let accepted = prometheus
            .query("sum(driftwatch_events_total{topic!~\".*labels.*\"})")
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        let lag = prometheus.query("driftwatch_consumer_lag");
        if accepted >= EVENTS as f64 && !lag.is_empty() {
            // Exactly-once mode, all consumed: the lag is known and zero.
            assert_eq!(lag[0]["value"][1], "0", "{lag:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted {accepted}, lag {lag:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for metric in [
        "driftwatch_drift_score",
        "driftwatch_alerts_total",
        "driftwatch_process_seconds_bucket",
        "driftwatch_transactions_total",
    ] {
        assert!(!prometheus.query(metric).is_empty(), "{metric} not scraped");
    }
    assert!(instance.terminate(), "clean exit:\n{}", instance.log());
}
