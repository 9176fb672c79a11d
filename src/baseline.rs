//! `driftwatch baseline`: a reference profile of a model built from its training data, so
//! monitoring compares production against what the model learnt from — from the first event,
//! without a warm-up (DESIGN §3).
//!
//! Owns: reading training data (JSON Lines in the event format, or CSV with one column per
//! feature), sampling it to a bounded size, the baseline file format (versioned JSON: a
//! human-readable profile plus the frozen reference the engine loads) and loading it back.
//! The reference itself is built by the same monitor code as a warm-up, so a baseline and a
//! warm-up over the same rows give the same bins.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::event::{Event, FeatureValue, Prediction, PredictionEvent};
use crate::monitor::feature::Reference;
use crate::monitor::join::{JoinedOutcome, LabelJoin, PredictionSummary, Truth};
use crate::monitor::model::{BaselineState, ModelMonitor, SourcePosition};
use crate::monitor::performance::PerformanceTracker;
use crate::monitor::settings::{FeatureKind, MonitorSettings};
use crate::tools::events::{self, EventsError, Position};

/// Name in every baseline file, so a wrong file is refused with a clear message.
pub const FORMAT: &str = "driftwatch-baseline";
/// Version of the file format; files of another version are refused, never misread.
pub const FORMAT_VERSION: u32 = 1;

/// Why a baseline could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line or row of the training data is unusable.
    #[error("{path}:{line}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line (JSONL) or record (CSV) number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A record of an Avro container file of training data is unusable.
    #[error("{path}: record {record}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based record number.
        record: u64,
        /// What is wrong.
        message: String,
    },
    /// The training data could not be read (an I/O error, or an Avro container file's
    /// header, schema or damaged block).
    #[error(transparent)]
    Events(#[from] EventsError),
    /// The data or options cannot make a baseline.
    #[error("{0}")]
    Invalid(String),
    /// A baseline file is not one this version can read.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Options of `driftwatch baseline`.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Training data: `.csv` (by extension), JSON Lines of events, or an Avro object
    /// container file of events.
    pub input: PathBuf,
    /// Model id (CSV: required; JSONL: taken from the events when absent).
    pub model_id: Option<String>,
    /// Model version recorded in the file (informational: a baseline serves every version).
    pub model_version: Option<String>,
    /// CSV column holding the model's score, if any.
    pub score_column: Option<String>,
    /// CSV column holding the model's predicted class, if any.
    pub prediction_column: Option<String>,
    /// CSV column holding the true label, if any (gives the reference quality).
    pub label_column: Option<String>,
    /// Rows kept for the reference (a uniform sample beyond this, seeded).
    pub max_rows: usize,
    /// Seed of that sample.
    pub seed: u64,
}

/// Per-feature profile, for people reading the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Numeric or categorical.
    pub kind: Option<FeatureKind>,
    /// Share of rows where it was missing or unusable.
    pub missing_rate: f64,
    /// Numeric: the bin edges (DESIGN §3 quantiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<f64>>,
    /// Categorical: frequency of each reference category (`__other__` last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<BTreeMap<String, f64>>,
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this release.
    pub format_version: u32,
    /// Model the baseline is for.
    pub model_id: String,
    /// Version it was built for, when known.
    pub model_version: Option<String>,
    /// Rows read.
    pub rows: u64,
    /// Rows in the reference (a uniform sample when `rows` is larger).
    pub sampled_rows: u64,
    /// Rows with a label (reference quality).
    pub labelled_rows: u64,
    /// Human-readable profile per feature (and `__prediction__` for the score).
    pub profile: BTreeMap<String, FeatureProfile>,
    /// The frozen reference the engine loads.
    pub state: BaselineState,
}

/// One training row, owned.
#[derive(Debug, Clone)]
struct Row {
    event: PredictionEvent<'static>,
    truth: Option<Truth>,
}

/// Builds the baseline of `options.input` with the reference settings of `settings`.
/// `progress` is told the bytes read so far.
///
/// # Errors
/// Unreadable input, malformed rows (with file and line), or no usable row.
pub fn build(
    options: &BaselineOptions,
    settings: &MonitorSettings,
    progress: &mut dyn FnMut(u64),
) -> Result<BaselineFile, BaselineError> {
    let csv = options
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut sample = Reservoir::new(options.max_rows.max(1), options.seed);
    let mut labelled_rows = 0_u64;
    let mut model_id = options.model_id.clone();
    let mut version = options.model_version.clone();
    // Reference quality covers every labelled row, not just the sample: it is cheap.
    let mut quality: Option<PerformanceTracker> = None;
    let mut record_truth = |row: &Row, model_id: &str| {
        let Some(truth) = &row.truth else { return };
        labelled_rows += 1;
        let tracker = quality.get_or_insert_with(|| {
            let mut settings = settings.clone();
            settings.performance.reference_outcomes = u64::MAX;
            PerformanceTracker::new(model_id, &settings)
        });
        tracker.record_outcome(
            0,
            &JoinedOutcome {
                model_id: model_id.into(),
                event_id: String::new(),
                prediction: PredictionSummary::of(&row.event, None),
                truth: truth.clone(),
                label_timestamp: row.event.timestamp,
            },
        );
    };
    if csv {
        let model = model_id
            .clone()
            .ok_or_else(|| BaselineError::Invalid("--model-id is required for CSV input".into()))?;
        read_csv(options, &model, progress, &mut |row| {
            record_truth(&row, &model);
            sample.offer(row);
        })?;
    } else {
        read_events(options, progress, &mut |row| {
            let model = model_id
                .get_or_insert_with(|| row.event.model_id.to_string())
                .clone();
            if row.event.model_id != model {
                return Err(format!(
                    "event of model {:?} in a baseline for {model:?} (use one file per model, or --model-id)",
                    row.event.model_id
                ));
            }
            version.get_or_insert_with(|| row.event.model_version.to_string());
            record_truth(&row, &model);
            sample.offer(row);
            Ok(())
        })?;
    }
    let model_id = model_id.ok_or_else(|| {
        BaselineError::Invalid(format!("{}: no prediction event", options.input.display()))
    })?;
    let rows = sample.seen;
    let kept = sample.into_rows();
    if kept.is_empty() {
        return Err(BaselineError::Invalid(format!(
            "{}: no usable row",
            options.input.display()
        )));
    }
    let mut settings = settings.clone();
    settings.baselines.clear();
    settings.reference.warmup_events = u64::MAX;
    let mut monitor = ModelMonitor::new(&model_id, version.as_deref().unwrap_or(""), &settings);
    let source = SourcePosition {
        topic: "baseline",
        partition: 0,
        offset: 0,
        written_at: None,
    };
    for row in &kept {
        monitor.observe(&row.event, 0, source, &settings);
    }
    let mut state = monitor.into_baseline(&settings);
    state.reference_quality = quality.and_then(|q| q.reference_stats());
    let profile = profile(&state);
    Ok(BaselineFile {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        model_id,
        model_version: version,
        rows,
        sampled_rows: kept.len() as u64,
        labelled_rows,
        profile,
        state,
    })
}

fn profile(state: &BaselineState) -> BTreeMap<String, FeatureProfile> {
    let mut profile = BTreeMap::new();
    let trackers = state
        .features
        .iter()
        .map(|(name, tracker)| (name.as_str(), tracker))
        .chain(std::iter::once((
            crate::monitor::model::PREDICTION_SUBJECT,
            &state.score,
        )));
    for (name, tracker) in trackers {
        let (edges, categories) = match tracker.reference() {
            Some(Reference::Numeric { sample, .. }) => {
                // Fine edge j·r is the quantile (j·r)/(B·r) = j/B exactly (division is
                // correctly rounded), so these are the contract's coarse edges.
                let grid = sample.grid();
                let refinement = (grid.edges().len() - 1) / grid.coarse_bins().max(1);
                let edges = (1..grid.coarse_bins())
                    .filter_map(|k| grid.edges().get(k * refinement).copied())
                    .collect();
                (Some(edges), None)
            }
            Some(Reference::Categorical { bins, counts }) => {
                let total = counts.iter().sum::<u64>().max(1) as f64;
                let names = bins
                    .categories()
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(crate::detect::binning::OTHER_CATEGORY));
                let frequencies = names
                    .zip(counts)
                    .map(|(name, &count)| (name.to_owned(), count as f64 / total))
                    .collect();
                (None, Some(frequencies))
            }
            None => (None, None),
        };
        profile.insert(
            name.to_owned(),
            FeatureProfile {
                kind: tracker.kind(),
                missing_rate: tracker.reference_missing_rate(),
                edges,
                categories,
            },
        );
    }
    profile
}

/// A seeded uniform sample of at most `capacity` rows (Algorithm R), kept in input order.
struct Reservoir {
    capacity: usize,
    rng: StdRng,
    rows: Vec<(u64, Row)>,
    seen: u64,
}

impl Reservoir {
    fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity,
            rng: StdRng::seed_from_u64(seed),
            rows: Vec::new(),
            seen: 0,
        }
    }

    fn offer(&mut self, row: Row) {
        let index = self.seen;
        self.seen += 1;
        if self.rows.len() < self.capacity {
            self.rows.push((index, row));
        } else {
            let slot = self.rng.random_range(0..self.seen);
            if (slot as usize) < self.capacity {
                self.rows[slot as usize] = (index, row);
            }
        }
    }

    fn into_rows(mut self) -> Vec<Row> {
        self.rows.sort_by_key(|(index, _)| *index);
        self.rows.into_iter().map(|(_, row)| row).collect()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BaselineError + '_ {
    move |source| BaselineError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads recorded events (JSON Lines, with or without `"kind"`, or an Avro object container
/// file; see [`events`]): prediction events, and label events joined to them by event id for
/// the reference quality.
fn read_events(
    options: &BaselineOptions,
    progress: &mut dyn FnMut(u64),
    row_sink: &mut dyn FnMut(Row) -> Result<(), String>,
) -> Result<(), BaselineError> {
    let path = &options.input;
    // Predictions wait here for their label; a training file is finite, so everything is
    // settled at the end of the file.
    let mut join = LabelJoin::new(i64::MAX, usize::MAX);
    let mut pending: BTreeMap<String, (u64, PredictionEvent<'static>)> = BTreeMap::new();
    let mut truths: BTreeMap<String, Truth> = BTreeMap::new();
    let mut order = 0_u64;
    let (mut items, mut last_bytes) = (0_u64, 0_u64);
    events::for_each_event(path, |position, bytes, event| {
        if items % 4096 == 0 {
            progress(bytes);
        }
        items += 1;
        last_bytes = bytes;
        let event = event.map_err(|error| match position {
            Position::Line(line) => BaselineError::Input {
                path: path.clone(),
                line,
                message: error.to_string(),
            },
            Position::Record(record) => BaselineError::Record {
                path: path.clone(),
                record,
                message: error.to_string(),
            },
        })?;
        match event {
            Event::Prediction(prediction) => {
                let owned = owned_prediction(&prediction);
                let _ = join.offer_prediction(&prediction, None);
                pending.insert(owned.event_id.to_string(), (order, owned));
                order += 1;
            }
            Event::Label(label) => {
                if let Some(outcome) = join.offer_label(&label) {
                    truths.insert(outcome.event_id, outcome.truth);
                } else {
                    truths.insert(label.event_id.to_string(), Truth::from(&label.label));
                }
            }
        }
        Ok::<(), BaselineError>(())
    })?;
    progress(last_bytes);
    let mut rows: Vec<(u64, Row)> = pending
        .into_iter()
        .map(|(id, (order, event))| {
            let truth = truths.remove(&id);
            (order, Row { event, truth })
        })
        .collect();
    rows.sort_by_key(|(order, _)| *order);
    for (_, row) in rows {
        row_sink(row).map_err(BaselineError::Invalid)?;
    }
    Ok(())
}

fn owned_prediction(event: &PredictionEvent<'_>) -> PredictionEvent<'static> {
    let owned = |c: &Cow<'_, str>| Cow::Owned(c.to_string());
    PredictionEvent {
        event_id: owned(&event.event_id),
        model_id: owned(&event.model_id),
        model_version: owned(&event.model_version),
        timestamp: event.timestamp,
        features: event
            .features
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    FeatureValue::Null => FeatureValue::Null,
                    FeatureValue::Number(x) => FeatureValue::Number(*x),
                    FeatureValue::Text(t) => FeatureValue::Text(owned(t)),
                    FeatureValue::Bool(b) => FeatureValue::Bool(*b),
                };
                (owned(name), value)
            })
            .collect(),
        prediction: Prediction {
            score: event.prediction.score,
            label: event.prediction.label.as_ref().map(owned),
            probabilities: event
                .prediction
                .probabilities
                .as_ref()
                .map(|p| p.iter().map(|(k, v)| (owned(k), *v)).collect()),
        },
        attributes: event
            .attributes
            .iter()
            .map(|(k, v)| (owned(k), owned(v)))
            .collect(),
    }
}

/// Reads CSV with a header: every column is a feature except the score, prediction and
/// label columns. A cell that parses as a number is numeric, `true`/`false` boolean, an
/// empty cell missing, anything else a category.
fn read_csv(
    options: &BaselineOptions,
    model_id: &str,
    progress: &mut dyn FnMut(u64),
    row_sink: &mut dyn FnMut(Row),
) -> Result<(), BaselineError> {
    let path = &options.input;
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|e| BaselineError::Input {
            path: path.clone(),
            line: 1,
            message: e.to_string(),
        })?
        .clone();
    let find = |name: &Option<String>, what: &str| -> Result<Option<usize>, BaselineError> {
        match name {
            None => Ok(None),
            Some(name) => headers
                .iter()
                .position(|h| h == name)
                .map(Some)
                .ok_or_else(|| {
                    BaselineError::Invalid(format!(
                        "{}: no {what} column {name:?} (columns: {})",
                        path.display(),
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ))
                }),
        }
    };
    let score = find(&options.score_column, "score")?;
    let prediction = find(&options.prediction_column, "prediction")?;
    let label = find(&options.label_column, "label")?;
    let special = [score, prediction, label];
    let version = options.model_version.clone().unwrap_or_default();
    let mut record = csv::StringRecord::new();
    let mut number = 1_u64;
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| BaselineError::Input {
                path: path.clone(),
                line: number + 1,
                message: e.to_string(),
            })?;
        if !more {
            break;
        }
        number += 1;
        if number % 4096 == 0 {
            progress(reader.position().byte());
        }
        let features = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, _)| !special.contains(&Some(*i)))
            .map(|(_, (name, cell))| (Cow::Owned(name.to_owned()), cell_value(cell)))
            .collect();
        let score = match score.and_then(|i| record.get(i)).map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<f64>().map_err(|_| BaselineError::Input {
                path: path.clone(),
                line: number,
                message: format!("score is not a number: {text:?}"),
            })?),
        };
        let predicted = prediction
            .and_then(|i| record.get(i))
            .filter(|c| !c.trim().is_empty())
            .map(|c| Cow::Owned(c.trim().to_owned()));
        let truth = label
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| match c.parse::<f64>() {
                Ok(x) => Truth::Number(x),
                Err(_) => Truth::Class(c.into()),
            });
        row_sink(Row {
            event: PredictionEvent {
                event_id: Cow::Owned(format!("row{number}")),
                model_id: Cow::Owned(model_id.to_owned()),
                model_version: Cow::Owned(version.clone()),
                timestamp: 0,
                features,
                prediction: Prediction {
                    score,
                    label: predicted,
                    probabilities: None,
                },
                attributes: Vec::new(),
            },
            truth,
        });
    }
    progress(reader.position().byte());
    Ok(())
}

fn cell_value(cell: &str) -> FeatureValue<'static> {
    let cell = cell.trim();
    if cell.is_empty() {
        return FeatureValue::Null;
    }
    if let Ok(x) = cell.parse::<f64>() {
        return FeatureValue::Number(x);
    }
    match cell {
        "true" | "True" | "TRUE" => FeatureValue::Bool(true),
        "false" | "False" | "FALSE" => FeatureValue::Bool(false),
        _ => FeatureValue::Text(Cow::Owned(cell.to_owned())),
    }
}

/// Writes `baseline` as JSON to `path`.
///
/// # Errors
/// I/O errors.
pub fn write(baseline: &BaselineFile, path: &Path) -> Result<(), BaselineError> {
    let json = serde_json::to_vec(baseline).map_err(|e| BaselineError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, json).map_err(io_error(path))
}

/// Reads a baseline file, refusing other formats and versions with a message that says so.
///
/// # Errors
/// Unreadable, not a baseline, or a format version this release cannot read.
pub fn read(path: &Path) -> Result<BaselineFile, BaselineError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let format_error = |message: String| BaselineError::Format {
        path: path.to_owned(),
        message,
    };
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        format_version: Option<u32>,
    }
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| format_error(format!("not a baseline file: {e}")))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(format_error(format!(
            "not a baseline file (format {:?}, expected {FORMAT:?})",
            header.format
        )));
    }
    if header.format_version != Some(FORMAT_VERSION) {
        return Err(format_error(format!(
            "baseline format version {:?} is not supported by this release (it reads version {FORMAT_VERSION}); rebuild it with `driftwatch baseline`",
            header.format_version
        )));
    }
    let file: BaselineFile = serde_json::from_slice(&bytes)
        .map_err(|e| format_error(format!("corrupt baseline: {e}")))?;
    // A hand-edited or damaged file could hold references whose counts do not match their
    // bins: refused here, at start, rather than misread by every evaluation.
    let state = &file.state;
    let series = state
        .features
        .iter()
        .map(|(name, tracker)| (format!("feature {name}"), tracker))
        .chain([
            ("the score".to_owned(), &state.score),
            ("the predicted class".to_owned(), &state.class),
        ]);
    let problems: Vec<String> = series
        .filter_map(|(name, tracker)| {
            let error = tracker.reference()?.check().err()?;
            Some(format!("{name}: {error}"))
        })
        .collect();
    if !problems.is_empty() {
        return Err(format_error(format!(
            "corrupt baseline: {}",
            problems.join("; ")
        )));
    }
    Ok(file)
}

/// Loads the baselines named by `settings.models[].baseline` (paths relative to `base_dir`)
/// into `settings.baselines`; returns every problem.
pub fn load_into(settings: &mut MonitorSettings, base_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut loaded = BTreeMap::new();
    for (i, model) in settings.models.iter().enumerate() {
        let Some(file) = &model.baseline else {
            continue;
        };
        let path = base_dir.join(file);
        match read(&path) {
            Ok(baseline) if baseline.model_id != model.id => problems.push(format!(
                "monitor.models[{i}].baseline: {} is the baseline of model {:?}, not {:?}",
                path.display(),
                baseline.model_id,
                model.id
            )),
            Ok(baseline) => {
                loaded.insert(model.id.clone(), std::sync::Arc::new(baseline.state));
            }
            Err(error) => problems.push(format!("monitor.models[{i}].baseline: {error}")),
        }
    }
    settings.baselines = loaded;
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(input: &Path) -> BaselineOptions {
        BaselineOptions {
            input: input.to_owned(),
            model_id: Some("m".into()),
            model_version: Some("7".into()),
            score_column: Some("score".into()),
            prediction_column: None,
            label_column: Some("label".into()),
            max_rows: 100_000,
            seed: 1,
        }
    }

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("driftwatch-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_baseline_profiles_every_column_and_the_label_quality() {
        let mut text = String::from("amount,country,score,label\n");
        for i in 0..1_000 {
            let country = ["fr", "de", "us", ""][i % 4];
            let label = i % 2;
            let score = if i % 10 == 0 { 1 - label } else { label } as f64 * 0.8 + 0.1;
            text.push_str(&format!("{},{country},{score},{label}\n", i as f64 / 10.0));
        }
        let path = temp("train.csv", &text);
        let baseline = build(&options(&path), &MonitorSettings::default(), &mut |_| {}).unwrap();
        assert_eq!(baseline.rows, 1_000);
        assert_eq!(baseline.labelled_rows, 1_000);
        let amount = &baseline.profile["amount"];
        assert_eq!(amount.kind, Some(FeatureKind::Numeric));
        assert_eq!(amount.edges.as_ref().unwrap().len(), 9);
        // The deciles of 0.0, 0.1, …, 99.9 (NumPy linear): 9.99, 19.98, …
        assert!((amount.edges.as_ref().unwrap()[0] - 9.99).abs() < 1e-9);
        let country = &baseline.profile["country"];
        assert!((country.missing_rate - 0.25).abs() < 1e-12);
        let frequencies = country.categories.as_ref().unwrap();
        assert!((frequencies["fr"] - 1.0 / 3.0).abs() < 1e-12);
        let quality = baseline.state.reference_quality.as_ref().unwrap();
        assert!((quality.accuracy().unwrap() - 0.9).abs() < 1e-12);

        // Written, read back, and loaded by a model's settings.
        let out = path.with_extension("json");
        write(&baseline, &out).unwrap();
        assert_eq!(read(&out).unwrap(), baseline);
        let mut settings = MonitorSettings::default();
        settings
            .models
            .push(crate::monitor::settings::ModelOverrides {
                id: "m".into(),
                baseline: Some(out.file_name().unwrap().to_string_lossy().into_owned()),
                ..Default::default()
            });
        assert!(load_into(&mut settings, out.parent().unwrap()).is_empty());
        let monitor = ModelMonitor::new("m", "8", &settings);
        assert_eq!(monitor.phase(), crate::monitor::model::Phase::Monitoring);
    }

    #[test]
    fn a_baseline_whose_reference_counts_do_not_match_its_bins_is_refused() {
        let mut text = String::from("amount,country,score,label\n");
        for i in 0..400 {
            let country = ["fr", "de", "us"][i % 3];
            text.push_str(&format!("{i},{country},0.5,{}\n", i % 2));
        }
        let path = temp("counts.csv", &text);
        let baseline = build(&options(&path), &MonitorSettings::default(), &mut |_| {}).unwrap();
        let out = path.with_extension("json");
        write(&baseline, &out).unwrap();
        // Drop one count of the first categorical reference, as a bad hand edit would.
        fn drop_a_count(value: &mut serde_json::Value) -> bool {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Array(counts)) =
                        map.get_mut("Categorical").and_then(|c| c.get_mut("counts"))
                    {
                        return counts.pop().is_some();
                    }
                    map.values_mut().any(drop_a_count)
                }
                serde_json::Value::Array(items) => items.iter_mut().any(drop_a_count),
                _ => false,
            }
        }
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert!(
            drop_a_count(&mut json),
            "a categorical reference in the file"
        );
        std::fs::write(&out, serde_json::to_vec(&json).unwrap()).unwrap();
        let error = read(&out).unwrap_err().to_string();
        assert!(
            error.contains("feature country: a categorical reference with 3 counts for 4 bins"),
            "{error}"
        );
    }

    #[test]
    fn a_baseline_of_another_model_or_version_is_refused_clearly() {
        let path = temp(
            "other.json",
            "{\"format\":\"driftwatch-baseline\",\"format_version\":99}",
        );
        let error = read(&path).unwrap_err().to_string();
        assert!(
            error.contains("version Some(99) is not supported"),
            "{error}"
        );
        let path = temp("notes.json", "{\"hello\": 1}");
        assert!(read(&path)
            .unwrap_err()
            .to_string()
            .contains("not a baseline file"));
    }

    #[test]
    fn bad_rows_name_their_line() {
        let path = temp("bad.csv", "amount,score,label\n1.0,0.5,1\n2.0,high,0\n");
        let error = build(&options(&path), &MonitorSettings::default(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("bad.csv:3") && error.contains("high"),
            "{error}"
        );
        let path = temp("nolabel.csv", "amount,score\n1.0,0.5\n");
        let error = build(&options(&path), &MonitorSettings::default(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(error.contains("no label column \"label\""), "{error}");
    }

    #[test]
    fn large_inputs_are_sampled_to_the_cap_deterministically() {
        let mut text = String::from("x\n");
        for i in 0..5_000 {
            text.push_str(&format!("{i}\n"));
        }
        let path = temp("big.csv", &text);
        let mut opts = options(&path);
        opts.score_column = None;
        opts.label_column = None;
        opts.max_rows = 500;
        let a = build(&opts, &MonitorSettings::default(), &mut |_| {}).unwrap();
        let b = build(&opts, &MonitorSettings::default(), &mut |_| {}).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rows, 5_000);
        assert_eq!(a.sampled_rows, 500);
        // A uniform sample of 0..5000: its median edge is near 2500.
        let median = a.profile["x"].edges.as_ref().unwrap()[4];
        assert!((2_000.0..3_000.0).contains(&median), "{median}");
    }

    #[test]
    fn jsonl_baselines_join_labels_by_event_id() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!(
                "{{\"kind\":\"prediction\",\"event_id\":\"e{i}\",\"model_id\":\"m\",\"model_version\":\"3\",\"timestamp\":{i},\"features\":{{\"x\":{i}}},\"prediction\":{{\"score\":0.9}}}}\n"
            ));
            text.push_str(&format!(
                "{{\"kind\":\"label\",\"event_id\":\"e{i}\",\"model_id\":\"m\",\"timestamp\":{i},\"label\":\"{}\"}}\n",
                if i % 3 == 0 { "0" } else { "1" }
            ));
        }
        let path = temp("train.jsonl", &text);
        let mut opts = options(&path);
        opts.model_id = None;
        opts.model_version = None;
        let baseline = build(&opts, &MonitorSettings::default(), &mut |_| {}).unwrap();
        assert_eq!(baseline.model_id, "m");
        assert_eq!(baseline.model_version.as_deref(), Some("3"));
        assert_eq!(baseline.labelled_rows, 300);
        let accuracy = baseline
            .state
            .reference_quality
            .as_ref()
            .unwrap()
            .accuracy()
            .unwrap();
        assert!((accuracy - 2.0 / 3.0).abs() < 1e-12, "{accuracy}");

        // The same events in an Avro object container file (a union of our two schemas, as a
        // mixed export is written) make the same baseline.
        let union = apache_avro::Schema::parse_str(&format!(
            "[{}, {}]",
            crate::codec::avro::prediction_event_schema().canonical_form(),
            crate::codec::avro::label_event_schema().canonical_form()
        ))
        .unwrap();
        let apache_avro::Schema::Union(branches) = &union else {
            unreachable!("a union")
        };
        let branches = branches.variants().to_vec();
        let mut writer =
            apache_avro::Writer::with_codec(&union, Vec::new(), apache_avro::Codec::Snappy)
                .unwrap();
        for line in text.lines() {
            let event = crate::codec::json::decode_event(
                line.as_bytes(),
                crate::codec::EventKind::Prediction,
            )
            .unwrap();
            let (branch, datum) = match &event {
                Event::Prediction(p) => (0, crate::codec::encode_prediction_avro(p)),
                Event::Label(l) => (1, crate::codec::encode_label_avro(l)),
            };
            let value = apache_avro::reader::datum::GenericDatumReader::builder(&branches[branch])
                .build()
                .and_then(|reader| reader.read_value(&mut datum.as_slice()))
                .unwrap();
            writer
                .append_value(apache_avro::types::Value::Union(
                    branch as u32,
                    Box::new(value),
                ))
                .unwrap();
        }
        let container = path.with_file_name("train.avro");
        std::fs::write(&container, writer.into_inner().unwrap()).unwrap();
        opts.input = container;
        let from_container = build(&opts, &MonitorSettings::default(), &mut |_| {}).unwrap();
        assert_eq!(from_container, baseline);
    }
}
