//! Ground truth on a real Apache Kafka broker: labels on their own topic joined to the
//! predictions, concept drift and quality rules turned into retrain requests; the same events
//! through `driftwatch replay` give the same alert and request ids; the manual retrain trigger
//! of `driftwatch run` over HTTP.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use driftwatch::codec::{encode_label_json, encode_prediction_json};
use driftwatch::monitor::output::{AlertState, DriftAlert, RetrainRequest, RetrainTrigger};

const EVENTS: usize = 12_000;
const CHANGE_AT: usize = 6_000;
/// Event time of the first event whose label disagrees more often (`common::stream` timing).
const CHANGE_TIME: i64 = 1_767_225_600_000 + CHANGE_AT as i64 * 100;

#[test]
fn labels_reveal_concept_drift_and_replay_gives_the_same_ids() {
    let mut config = test_config("labels", 2);
    // Labels come 2 s after their prediction; the lateness bound absorbs how the two topics'
    // fetches interleave (small fetches keep that skew far below it).
    config.monitor.windows.allowed_lateness_ms = 120_000;
    config
        .kafka
        .extra
        .insert("max.partition.fetch.bytes".into(), "65536".into());
    let predictions = stream("fraud", EVENTS, usize::MAX, 11);
    let labels = labels_for(&predictions, CHANGE_AT, 0.92, 0.6, 2_000, 12);
    produce(
        &config.topics.predictions,
        &predictions
            .iter()
            .map(|e| (b"fraud".to_vec(), encode_prediction_json(e)))
            .collect::<Vec<_>>(),
    );
    produce(
        &config.topics.labels,
        &labels
            .iter()
            .map(|l| (b"fraud".to_vec(), encode_label_json(l)))
            .collect::<Vec<_>>(),
    );
    let instance = Instance::start(&config);
    instance.wait_handled(2 * EVENTS as u64, Duration::from_secs(90));
    let shared = instance.shared.clone();
    let summary = instance.stop();
    // The loop publishes a last status snapshot when it stops.
    let status = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(summary.dead_letters, 0);

    let alerts: Vec<DriftAlert> = read_all(
        &config.topics.alerts,
        summary.outputs as usize,
        Duration::from_secs(20),
    )
    .iter()
    .map(|r| serde_json::from_slice(&r.payload).expect("alert JSON"))
    .collect();
    let requests: Vec<RetrainRequest> =
        read_all(&config.topics.retrain, 1, Duration::from_secs(20))
            .iter()
            .map(|r| serde_json::from_slice(&r.payload).expect("request JSON"))
            .collect();
    let concept: Vec<_> = alerts
        .iter()
        .filter(|a| a.subject == "__performance__" && a.state == AlertState::Firing)
        .collect();
    assert!(
        concept.iter().any(|a| a.detector == "adwin_error"),
        "no concept drift alert: {alerts:#?}"
    );
    for alert in &concept {
        assert!(alert.detected_at > CHANGE_TIME, "{alert:#?}");
    }
    assert!(
        requests.iter().any(|r| matches!(
            r.trigger,
            RetrainTrigger::ConceptDrift | RetrainTrigger::Performance
        ) && r.created_at > CHANGE_TIME),
        "{requests:#?}"
    );
    // The model's quality is published with its status.
    let fraud = status
        .iter()
        .find(|s| s.model_id == "fraud")
        .expect("fraud in the status");
    let performance = fraud.performance.as_ref().expect("quality computed");
    assert!(performance.outcomes > 10_000, "{performance:#?}");
    // Event-time alignment kept every label on time, as in a replay.
    let metrics = shared.metrics.render();
    assert!(
        metrics.contains("driftwatch_label_join_total{outcome=\"joined\"} 12000"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("driftwatch_label_join_total{outcome=\"late\"}"),
        "labels were late: {metrics}"
    );

    // The same events, as one recorded JSON Lines file, through `driftwatch replay`.
    let mut merged: Vec<(i64, usize, Vec<u8>)> = predictions
        .iter()
        .enumerate()
        .map(|(i, e)| (e.timestamp, 2 * i, encode_prediction_json(e)))
        .chain(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.timestamp, 2 * i + 1, encode_label_json(l))),
        )
        .collect();
    merged.sort_by_key(|(time, order, _)| (*time, *order));
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("replay")));
    let mut text = Vec::new();
    for (_, _, line) in &merged {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let mut out = Vec::new();
    let replayed =
        driftwatch::replay::replay(config.monitor.clone(), &file, &mut out, true, false).unwrap();
    assert_eq!(replayed.counts.malformed, 0);
    let mut replay_alerts = BTreeSet::new();
    let mut replay_requests = BTreeSet::new();
    for line in String::from_utf8(out.clone()).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(id) = value["alert_id"].as_str() {
            replay_alerts.insert(id.to_owned());
        } else {
            replay_requests.insert(value["request_id"].as_str().unwrap().to_owned());
        }
    }
    let live_alerts: BTreeSet<_> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    let live_requests: BTreeSet<_> = requests.iter().map(|r| r.request_id.clone()).collect();
    let describe = |subject: &str, detector: &str, state: &str, end: i64| {
        format!("{subject}/{detector}/{state}@{end}")
    };
    let live_described: Vec<String> = alerts
        .iter()
        .map(|a| describe(&a.subject, &a.detector, a.state.as_str(), a.window_end))
        .collect();
    let replay_described: Vec<String> = String::from_utf8(out.clone())
        .unwrap()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(describe(
                v["subject"].as_str()?,
                v["detector"].as_str()?,
                v["state"].as_str()?,
                v["window_end"].as_i64()?,
            ))
        })
        .collect();
    assert_eq!(
        live_alerts, replay_alerts,
        "alert ids, live vs replay:\nlive {live_described:#?}\nreplay {replay_described:#?}\n{}\n{alerts:#?}\n{}",
        shared
            .metrics
            .render()
            .lines()
            .filter(|l| l.contains("label_join") || l.contains("late"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        live_requests, replay_requests,
        "request ids, live vs replay"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn manual_retrain_over_http_needs_the_token_and_reaches_the_topic() {
    let config = test_config("manual", 2);
    let events = stream("m", 3_000, usize::MAX, 6);
    produce(
        &config.topics.predictions,
        &events
            .iter()
            .map(|e| (b"m".to_vec(), encode_prediction_json(e)))
            .collect::<Vec<_>>(),
    );
    let mut service = RunningBinary::start(
        &config,
        "[http]\nbearer_token = \"s3cret\"\n[monitor.reference]\nwarmup_events = 1000\n",
    );
    service.wait_for("/v1/models", Duration::from_secs(60), |body| {
        body.contains("\"model_id\":\"m\"")
    });
    let auth = "Authorization: Bearer s3cret\r\n";
    let json = "Content-Type: application/json\r\n";
    let post = |headers: &str, model: &str, body: &str| {
        service
            .request(
                "POST",
                &format!("/v1/models/{model}/retrain"),
                headers,
                body,
            )
            .expect("HTTP answer")
    };
    assert_eq!(post("", "m", "").0, 401, "no token");
    assert_eq!(
        post("Authorization: Bearer wrong\r\n", "m", "").0,
        401,
        "wrong token"
    );
    let (status, body) = post(&format!("{auth}{json}"), "nope", "{\"reason\":\"x\"}");
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&format!("{auth}{json}"), "m", "{\"reason\": \"audit 42\"}");
    assert_eq!(status, 202, "{body}\n{}", service.log());
    let issued: RetrainRequest = serde_json::from_str(&body).expect("request JSON");
    assert_eq!(issued.trigger, RetrainTrigger::Manual);
    assert_eq!(issued.model_id, "m");
    assert!(issued.reasons.iter().any(|r| r.contains("audit 42")));
    // Within the cooldown a second request is refused unless forced.
    let (status, body) = post(&format!("{auth}{json}"), "m", "{\"reason\": \"again\"}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cooldown_until"), "{body}");
    let (status, body) = post(&format!("{auth}{json}"), "m", "{\"force\": 1}");
    assert_eq!(status, 400, "a malformed body is refused: {body}");

    let records = read_all(&config.topics.retrain, 1, Duration::from_secs(20));
    let published: Vec<RetrainRequest> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("request JSON"))
        .collect();
    assert_eq!(published.len(), 1, "{published:#?}");
    assert_eq!(published[0].request_id, issued.request_id);
    assert!(service.terminate(), "clean exit:\n{}", service.log());
}
