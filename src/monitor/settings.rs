//! Monitor settings: windows, references, detectors, policy, and per-model / per-feature
//! overrides. Part of the service configuration (`[monitor]` in the TOML file); pure data with
//! defaults and validation, so the engine can be built from them without any I/O.
//!
//! Models and features are discovered from events (DESIGN §2): with no `[[monitor.models]]`
//! entry at all, every model gets the defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::adwin::AdwinParams;

/// What a breach leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The alert counts towards a retrain request.
    Retrain,
    /// The alert is published but never triggers retraining.
    AlertOnly,
}

/// A distance detector with a threshold (PSI, JS, Wasserstein).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistanceRule {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Breach when the statistic is ≥ this.
    pub threshold: f64,
    /// What a breach leads to.
    pub action: Action,
}

/// A test detector with a significance level (KS, chi²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRule {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Breach when the p-value (after Benjamini–Hochberg, if enabled) is < this.
    pub p_value: f64,
    /// What a breach leads to.
    pub action: Action,
}

/// Missing-rate check: breach when the window's missing rate exceeds the reference's by more
/// than `max_increase` (absolute).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRule {
    /// Whether the check runs.
    pub enabled: bool,
    /// Allowed absolute increase of the missing rate.
    pub max_increase: f64,
    /// What a breach leads to.
    pub action: Action,
}

/// A partial [`DistanceRule`]: the fields given replace the inherited ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistancePatch {
    /// Replaces `enabled`.
    pub enabled: Option<bool>,
    /// Replaces `threshold`.
    pub threshold: Option<f64>,
    /// Replaces `action`.
    pub action: Option<Action>,
}

/// A partial [`TestRule`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPatch {
    /// Replaces `enabled`.
    pub enabled: Option<bool>,
    /// Replaces `p_value`.
    pub p_value: Option<f64>,
    /// Replaces `action`.
    pub action: Option<Action>,
}

/// A partial [`MissingRule`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingPatch {
    /// Replaces `enabled`.
    pub enabled: Option<bool>,
    /// Replaces `max_increase`.
    pub max_increase: Option<f64>,
    /// Replaces `action`.
    pub action: Option<Action>,
}

impl DistanceRule {
    fn patched(self, patch: Option<&DistancePatch>) -> Self {
        let Some(patch) = patch else { return self };
        Self {
            enabled: patch.enabled.unwrap_or(self.enabled),
            threshold: patch.threshold.unwrap_or(self.threshold),
            action: patch.action.unwrap_or(self.action),
        }
    }
}

impl TestRule {
    fn patched(self, patch: Option<&TestPatch>) -> Self {
        let Some(patch) = patch else { return self };
        Self {
            enabled: patch.enabled.unwrap_or(self.enabled),
            p_value: patch.p_value.unwrap_or(self.p_value),
            action: patch.action.unwrap_or(self.action),
        }
    }
}

impl MissingRule {
    fn patched(self, patch: Option<&MissingPatch>) -> Self {
        let Some(patch) = patch else { return self };
        Self {
            enabled: patch.enabled.unwrap_or(self.enabled),
            max_increase: patch.max_increase.unwrap_or(self.max_increase),
            action: patch.action.unwrap_or(self.action),
        }
    }
}

/// The detectors run on each feature, with their thresholds.
///
/// In a configuration file every rule and every field is optional: what is given replaces the
/// built-in default (so `[monitor.detectors.js]` with only `enabled = true` keeps JS's default
/// threshold and action). Model and feature overrides patch the inherited rules the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DetectorOverrides")]
pub struct DetectorSettings {
    /// Population stability index on the reference bins (numeric and categorical).
    pub psi: DistanceRule,
    /// Jensen–Shannon distance (base 2) on the reference bins.
    pub js: DistanceRule,
    /// Two-sample KS from the window sketch (numeric).
    pub ks: TestRule,
    /// Wasserstein-1 from the window sketch, in units of the reference's standard deviation
    /// (numeric), so one threshold fits features of any scale.
    pub wasserstein: DistanceRule,
    /// Chi² test of homogeneity (categorical).
    pub chi2: TestRule,
    /// Missing-rate increase.
    pub missing_rate: MissingRule,
    /// Window observations needed before a feature is evaluated ("insufficient data" below).
    pub min_samples: u64,
}

impl From<DetectorOverrides> for DetectorSettings {
    fn from(patch: DetectorOverrides) -> Self {
        DetectorSettings::default().with(&patch)
    }
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            psi: DistanceRule {
                enabled: true,
                threshold: 0.2,
                action: Action::Retrain,
            },
            js: DistanceRule {
                enabled: false,
                threshold: 0.1,
                action: Action::AlertOnly,
            },
            ks: TestRule {
                enabled: true,
                p_value: 0.001,
                action: Action::Retrain,
            },
            wasserstein: DistanceRule {
                enabled: false,
                threshold: 0.25,
                action: Action::AlertOnly,
            },
            chi2: TestRule {
                enabled: true,
                p_value: 0.001,
                action: Action::Retrain,
            },
            missing_rate: MissingRule {
                enabled: true,
                max_increase: 0.1,
                action: Action::AlertOnly,
            },
            min_samples: 200,
        }
    }
}

/// Partial detector settings: every rule and field optional (see [`DetectorSettings`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorOverrides {
    /// Patches `psi`.
    pub psi: Option<DistancePatch>,
    /// Patches `js`.
    pub js: Option<DistancePatch>,
    /// Patches `ks`.
    pub ks: Option<TestPatch>,
    /// Patches `wasserstein`.
    pub wasserstein: Option<DistancePatch>,
    /// Patches `chi2`.
    pub chi2: Option<TestPatch>,
    /// Patches `missing_rate`.
    pub missing_rate: Option<MissingPatch>,
    /// Replaces `min_samples`.
    pub min_samples: Option<u64>,
}

impl From<&DetectorSettings> for DetectorOverrides {
    /// The complete patch: applied to any settings, it gives `settings` back.
    fn from(settings: &DetectorSettings) -> Self {
        let distance = |rule: DistanceRule| DistancePatch {
            enabled: Some(rule.enabled),
            threshold: Some(rule.threshold),
            action: Some(rule.action),
        };
        let test = |rule: TestRule| TestPatch {
            enabled: Some(rule.enabled),
            p_value: Some(rule.p_value),
            action: Some(rule.action),
        };
        Self {
            psi: Some(distance(settings.psi)),
            js: Some(distance(settings.js)),
            ks: Some(test(settings.ks)),
            wasserstein: Some(distance(settings.wasserstein)),
            chi2: Some(test(settings.chi2)),
            missing_rate: Some(MissingPatch {
                enabled: Some(settings.missing_rate.enabled),
                max_increase: Some(settings.missing_rate.max_increase),
                action: Some(settings.missing_rate.action),
            }),
            min_samples: Some(settings.min_samples),
        }
    }
}

/// Serde helper (`#[serde(with = "detectors_as_overrides")]`) writing [`DetectorSettings`]
/// as the complete [`DetectorOverrides`] it is read from, so that formats which are not
/// self-describing (the postcard state changelog) read back what they wrote.
pub mod detectors_as_overrides {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{DetectorOverrides, DetectorSettings};

    /// Writes the complete patch.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(
        value: &DetectorSettings,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        DetectorOverrides::from(value).serialize(serializer)
    }

    /// Reads a patch onto the defaults.
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DetectorSettings, D::Error> {
        DetectorOverrides::deserialize(deserializer).map(DetectorSettings::from)
    }
}

impl DetectorSettings {
    /// These settings with `overrides` applied field by field.
    pub fn with(&self, overrides: &DetectorOverrides) -> Self {
        Self {
            psi: self.psi.patched(overrides.psi.as_ref()),
            js: self.js.patched(overrides.js.as_ref()),
            ks: self.ks.patched(overrides.ks.as_ref()),
            wasserstein: self.wasserstein.patched(overrides.wasserstein.as_ref()),
            chi2: self.chi2.patched(overrides.chi2.as_ref()),
            missing_rate: self.missing_rate.patched(overrides.missing_rate.as_ref()),
            min_samples: overrides.min_samples.unwrap_or(self.min_samples),
        }
    }
}

/// Event-time windows (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSettings {
    /// Pane length P.
    pub pane_ms: i64,
    /// Window length W, in panes.
    pub panes: usize,
    /// How far behind the newest event time an event may arrive and still count.
    pub allowed_lateness_ms: i64,
    /// Largest forward jump of a partition's event time that one event may cause; an event
    /// further ahead is counted (`outcome="too_far_ahead"`) and dropped, unless
    /// `time_jump_confirmations` such events come in a row (traffic resuming after a long
    /// pause). An event this far ahead of its record's write time (Kafka's record
    /// timestamp) is refused too, confirmations or not: that guards a partition's first
    /// event. Guards against one bad timestamp making every later event late. 0: no guard.
    pub max_time_jump_ms: i64,
    /// Events in a row, all too far ahead, that make the jump the partition's real time.
    pub time_jump_confirmations: u32,
}

impl Default for WindowSettings {
    fn default() -> Self {
        Self {
            pane_ms: 60_000,
            panes: 60,
            allowed_lateness_ms: 5_000,
            max_time_jump_ms: 86_400_000,
            time_jump_confirmations: 10,
        }
    }
}

/// How references are built.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceSettings {
    /// Warm-up: the first N events of a model version form its reference, then it freezes.
    pub warmup_events: u64,
    /// Reference bins B for numeric features.
    pub bins: usize,
    /// Sketch cells per reference bin (window KS/Wasserstein resolution: the KS error bound is
    /// about 1 / (bins × sketch_refinement) when nothing drifted).
    pub sketch_refinement: usize,
    /// Categories kept per categorical feature (most frequent); the rest go to `__other__`.
    pub max_categories: usize,
}

impl Default for ReferenceSettings {
    fn default() -> Self {
        Self {
            warmup_events: 10_000,
            bins: 10,
            sketch_refinement: 16,
            max_categories: 50,
        }
    }
}

/// Alert and retrain policy (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// k: consecutive breaching evaluations to fire, consecutive clean ones to resolve.
    pub consecutive: u32,
    /// m: a feature counts as drifted when at least this many of its detectors fire.
    pub votes: u32,
    /// Apply Benjamini–Hochberg across the features of one evaluation to p-value detectors.
    pub benjamini_hochberg: bool,
    /// n: a data-drift retrain request needs this many drifted features (or the prediction
    /// drifting).
    pub drifted_features_for_retrain: usize,
    /// Minimum event time between two retrain requests of one model version.
    pub cooldown_ms: i64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            consecutive: 2,
            votes: 1,
            benjamini_hochberg: true,
            drifted_features_for_retrain: 2,
            cooldown_ms: 6 * 3_600_000,
        }
    }
}

/// Prediction monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionSettings {
    /// ADWIN on the score stream.
    pub adwin: AdwinParams,
    /// Whether ADWIN on the score runs.
    pub adwin_enabled: bool,
}

impl Default for PredictionSettings {
    fn default() -> Self {
        Self {
            adwin: AdwinParams::default(),
            adwin_enabled: true,
        }
    }
}

/// What kind of model a version is, for the quality metrics of its joined labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Decided by the first joined label: a text label, or a 0/1 label joined to a
    /// prediction with a class or a score in [0, 1], means classification; any other number
    /// means regression.
    #[default]
    Auto,
    /// Class labels; error = predicted class ≠ true class.
    Classification,
    /// Numeric targets; error = |score − target|.
    Regression,
}

/// A quality metric a performance rule watches (names as in `GET /v1/models`).
pub use super::quality::QualityMetric;

/// A performance rule: a floor or ceiling on a windowed quality metric, or a limit on how much
/// it may degrade from the reference window. Fires like the drift detectors (k consecutive
/// breaching evaluations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceRule {
    /// The metric.
    pub metric: QualityMetric,
    /// Breach when the window's value is below this (e.g. `accuracy` 0.85).
    #[serde(default)]
    pub min: Option<f64>,
    /// Breach when the window's value is above this (e.g. `rmse` 12.0).
    #[serde(default)]
    pub max: Option<f64>,
    /// Breach when the window is worse than the reference by more than this: a drop for
    /// metrics where higher is better, a rise for the others (log loss, MAE, RMSE, FPR).
    #[serde(default)]
    pub max_degradation: Option<f64>,
    /// What a breach leads to.
    #[serde(default = "retrain_action")]
    pub action: Action,
}

fn retrain_action() -> Action {
    Action::Retrain
}

/// Label join, model quality and concept drift (DESIGN §1 PerformanceTracker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceSettings {
    /// Keep predictions for the label join. Each waiting prediction costs 90–180 bytes and
    /// ~0.2 µs (its key's slot in a large index is prefetched while the features are counted);
    /// without a labels stream, `false` saves both.
    pub join_predictions: bool,
    /// How long (event time) a prediction waits for its label, or a label for its prediction,
    /// before it is counted as unmatched and forgotten.
    pub join_ttl_ms: i64,
    /// At most this many predictions and labels wait for their match per partition; beyond
    /// it the oldest are evicted (counted). Bounds the join's memory.
    pub join_max_entries: usize,
    /// Task kind of every model (per-model override: `[[monitor.models]] task`).
    pub task: TaskKind,
    /// The positive class for precision, recall, F1, ROC AUC, log loss and fairness.
    pub positive_class: String,
    /// A prediction without a class is positive when its score is ≥ this.
    pub decision_threshold: f64,
    /// The first this-many joined outcomes of a version form its reference quality (unless
    /// a baseline file gives one).
    pub reference_outcomes: u64,
    /// Rules are evaluated only on windows with at least this many joined outcomes.
    pub min_outcomes: u64,
    /// ADWIN on the error stream (0/1 misclassification, or absolute error): concept drift.
    pub adwin: AdwinParams,
    /// Whether ADWIN on the error stream runs.
    pub adwin_enabled: bool,
    /// Quality rules (per-model override: `[[monitor.models]] performance_rules`).
    pub rules: Vec<PerformanceRule>,
}

impl Default for PerformanceSettings {
    fn default() -> Self {
        Self {
            join_predictions: true,
            join_ttl_ms: 7 * 24 * 3_600_000,
            join_max_entries: 1_000_000,
            task: TaskKind::Auto,
            positive_class: "1".to_owned(),
            decision_threshold: 0.5,
            reference_outcomes: 1_000,
            min_outcomes: 200,
            adwin: AdwinParams::default(),
            adwin_enabled: true,
            rules: vec![
                PerformanceRule {
                    metric: QualityMetric::Accuracy,
                    min: None,
                    max: None,
                    max_degradation: Some(0.05),
                    action: Action::Retrain,
                },
                // A rise in false positives pages people but is not by itself a reason to
                // retrain: thresholds are often re-tuned instead.
                PerformanceRule {
                    metric: QualityMetric::FalsePositiveRate,
                    min: None,
                    max: None,
                    max_degradation: Some(0.05),
                    action: Action::AlertOnly,
                },
            ],
        }
    }
}

/// Fairness across the groups of a sensitive attribute (from the event's `attributes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairnessSettings {
    /// The attribute whose values form the groups (per-model override:
    /// `[[monitor.models]] sensitive_attribute`). None: fairness is skipped.
    pub sensitive_attribute: Option<String>,
    /// Distinct groups tracked; further values are pooled into `__other__`.
    pub max_groups: usize,
    /// A group needs this many predictions in the window to take part.
    pub min_group_count: u64,
    /// Breach when the demographic parity difference exceeds this.
    pub demographic_parity_max: f64,
    /// Breach when the equalized odds difference exceeds this.
    pub equalized_odds_max: f64,
    /// What a breach leads to (fairness usually needs a person, not a retrain).
    pub action: Action,
}

impl Default for FairnessSettings {
    fn default() -> Self {
        Self {
            sensitive_attribute: None,
            max_groups: 20,
            min_group_count: 30,
            demographic_parity_max: 0.1,
            equalized_odds_max: 0.1,
            action: Action::AlertOnly,
        }
    }
}

/// A feature's declared type, overriding discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Numbers.
    Numeric,
    /// Labels (strings, booleans).
    Categorical,
    /// Not monitored.
    Ignore,
}

/// Per-feature overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureOverrides {
    /// Declared type (otherwise taken from the first non-null value).
    #[serde(rename = "type")]
    pub kind: Option<FeatureKind>,
    /// Detector overrides for this feature.
    pub detectors: DetectorOverrides,
}

/// Per-model overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelOverrides {
    /// Model id these apply to.
    pub id: String,
    /// Warm-up length for this model.
    pub warmup_events: Option<u64>,
    /// Baseline profile file (from `driftwatch baseline`) used as the reference instead of a
    /// warm-up.
    pub baseline: Option<String>,
    /// Detector overrides for every feature of this model.
    pub detectors: DetectorOverrides,
    /// Per-feature overrides, by feature name.
    pub features: BTreeMap<String, FeatureOverrides>,
    /// Task kind of this model.
    pub task: Option<TaskKind>,
    /// Positive class of this model.
    pub positive_class: Option<String>,
    /// Quality rules of this model (replace the defaults).
    pub performance_rules: Option<Vec<PerformanceRule>>,
    /// Sensitive attribute of this model (fairness).
    pub sensitive_attribute: Option<String>,
    /// Cron expression (seconds minutes hours day-of-month month day-of-week \[year\]),
    /// evaluated on event time in UTC: a SCHEDULED retrain request each time it passes.
    pub retrain_schedule: Option<String>,
}

/// Everything the monitor needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    /// Windows.
    pub windows: WindowSettings,
    /// References.
    pub reference: ReferenceSettings,
    /// Default detectors for every feature.
    pub detectors: DetectorSettings,
    /// Alert and retrain policy.
    pub policy: PolicySettings,
    /// Prediction monitoring.
    pub prediction: PredictionSettings,
    /// Label join, model quality and concept drift.
    pub performance: PerformanceSettings,
    /// Fairness across groups of a sensitive attribute.
    pub fairness: FairnessSettings,
    /// Per-model overrides.
    pub models: Vec<ModelOverrides>,
    /// Baselines loaded from the files named by `models[].baseline`, by model id (filled
    /// in when the configuration file is loaded; never written in TOML).
    #[serde(skip)]
    pub baselines: BTreeMap<String, std::sync::Arc<super::model::BaselineState>>,
}

impl MonitorSettings {
    /// Every problem with these settings, each prefixed by its key path.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let w = &self.windows;
        if w.pane_ms <= 0 {
            problems.push(format!(
                "monitor.windows.pane_ms: must be > 0, got {}",
                w.pane_ms
            ));
        }
        if w.panes == 0 {
            problems.push("monitor.windows.panes: must be >= 1".to_owned());
        }
        if w.max_time_jump_ms < 0 {
            problems.push(format!(
                "monitor.windows.max_time_jump_ms: must be >= 0 (0 turns the guard off), got {}",
                w.max_time_jump_ms
            ));
        }
        if w.max_time_jump_ms > 0 && w.max_time_jump_ms <= w.allowed_lateness_ms {
            problems.push(format!(
                "monitor.windows.max_time_jump_ms: must exceed monitor.windows.allowed_lateness_ms ({}), got {}",
                w.allowed_lateness_ms, w.max_time_jump_ms
            ));
        }
        if w.time_jump_confirmations == 0 {
            problems.push("monitor.windows.time_jump_confirmations: must be >= 1".to_owned());
        }
        if w.allowed_lateness_ms < 0 {
            problems.push(format!(
                "monitor.windows.allowed_lateness_ms: must be >= 0, got {}",
                w.allowed_lateness_ms
            ));
        }
        let r = &self.reference;
        if r.warmup_events == 0 {
            problems.push("monitor.reference.warmup_events: must be >= 1".to_owned());
        }
        if !(2..=1000).contains(&r.bins) {
            problems.push(format!(
                "monitor.reference.bins: must be in 2..=1000, got {}",
                r.bins
            ));
        }
        if !(1..=256).contains(&r.sketch_refinement) {
            problems.push(format!(
                "monitor.reference.sketch_refinement: must be in 1..=256, got {}",
                r.sketch_refinement
            ));
        }
        if r.max_categories == 0 {
            problems.push("monitor.reference.max_categories: must be >= 1".to_owned());
        }
        validate_detectors("monitor.detectors", &self.detectors, &mut problems);
        let p = &self.policy;
        if p.consecutive == 0 {
            problems.push("monitor.policy.consecutive: must be >= 1".to_owned());
        }
        if p.votes == 0 {
            problems.push("monitor.policy.votes: must be >= 1".to_owned());
        }
        if p.drifted_features_for_retrain == 0 {
            problems.push("monitor.policy.drifted_features_for_retrain: must be >= 1".to_owned());
        }
        if p.cooldown_ms < 0 {
            problems.push("monitor.policy.cooldown_ms: must be >= 0".to_owned());
        }
        for problem in self.prediction.adwin.validate() {
            problems.push(format!("monitor.prediction.adwin: {problem}"));
        }
        validate_performance(&self.performance, &mut problems);
        let f = &self.fairness;
        if f.max_groups < 2 {
            problems.push("monitor.fairness.max_groups: must be >= 2".to_owned());
        }
        for (name, value) in [
            ("demographic_parity_max", f.demographic_parity_max),
            ("equalized_odds_max", f.equalized_odds_max),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                problems.push(format!(
                    "monitor.fairness.{name}: must be in (0, 1], got {value}"
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let path = format!("monitor.models[{i}]");
            if model.id.is_empty() {
                problems.push(format!("{path}.id: must not be empty"));
            } else if !seen.insert(model.id.as_str()) {
                problems.push(format!("{path}.id: duplicate model id {:?}", model.id));
            }
            if model.warmup_events == Some(0) {
                problems.push(format!("{path}.warmup_events: must be >= 1"));
            }
            if let Some(rules) = &model.performance_rules {
                validate_rules(&format!("{path}.performance_rules"), rules, &mut problems);
            }
            if let Some(expression) = &model.retrain_schedule {
                if let Err(error) = super::schedule::CronSchedule::parse(expression) {
                    problems.push(format!("{path}.retrain_schedule: {error}"));
                }
            }
            let detectors = self.detectors.with(&model.detectors);
            if model.detectors != DetectorOverrides::default() {
                validate_detectors(&format!("{path}.detectors"), &detectors, &mut problems);
            }
            for (name, feature) in &model.features {
                if feature.detectors == DetectorOverrides::default() {
                    continue;
                }
                validate_detectors(
                    &format!("{path}.features.{name}.detectors"),
                    &detectors.with(&feature.detectors),
                    &mut problems,
                );
            }
        }
        problems
    }

    /// Overrides for a model, if configured.
    pub fn model(&self, model_id: &str) -> Option<&ModelOverrides> {
        self.models.iter().find(|m| m.id == model_id)
    }
}

fn validate_performance(p: &PerformanceSettings, problems: &mut Vec<String>) {
    let path = "monitor.performance";
    if p.join_ttl_ms <= 0 {
        problems.push(format!(
            "{path}.join_ttl_ms: must be > 0, got {}",
            p.join_ttl_ms
        ));
    }
    if p.join_max_entries == 0 {
        problems.push(format!("{path}.join_max_entries: must be >= 1"));
    }
    if p.positive_class.is_empty() {
        problems.push(format!("{path}.positive_class: must not be empty"));
    }
    if !p.decision_threshold.is_finite() {
        problems.push(format!(
            "{path}.decision_threshold: must be a finite number"
        ));
    }
    if p.reference_outcomes == 0 {
        problems.push(format!("{path}.reference_outcomes: must be >= 1"));
    }
    if p.min_outcomes == 0 {
        problems.push(format!("{path}.min_outcomes: must be >= 1"));
    }
    for problem in p.adwin.validate() {
        problems.push(format!("{path}.adwin: {problem}"));
    }
    validate_rules(&format!("{path}.rules"), &p.rules, problems);
}

fn validate_rules(path: &str, rules: &[PerformanceRule], problems: &mut Vec<String>) {
    for (i, rule) in rules.iter().enumerate() {
        for (name, value) in [
            ("min", rule.min),
            ("max", rule.max),
            ("max_degradation", rule.max_degradation),
        ] {
            if value.is_some_and(|v| !v.is_finite()) {
                problems.push(format!("{path}[{i}].{name}: must be a finite number"));
            }
        }
        if rule.min.is_none() && rule.max.is_none() && rule.max_degradation.is_none() {
            problems.push(format!(
                "{path}[{i}]: needs at least one of min, max, max_degradation"
            ));
        }
        if rule.max_degradation.is_some_and(|v| v < 0.0) {
            problems.push(format!("{path}[{i}].max_degradation: must be >= 0"));
        }
    }
}

fn validate_detectors(path: &str, d: &DetectorSettings, problems: &mut Vec<String>) {
    for (name, rule) in [
        ("psi", &d.psi),
        ("js", &d.js),
        ("wasserstein", &d.wasserstein),
    ] {
        if !(rule.threshold.is_finite() && rule.threshold > 0.0) {
            problems.push(format!(
                "{path}.{name}.threshold: must be a positive number, got {}",
                rule.threshold
            ));
        }
    }
    for (name, rule) in [("ks", &d.ks), ("chi2", &d.chi2)] {
        if !(rule.p_value > 0.0 && rule.p_value < 1.0) {
            problems.push(format!(
                "{path}.{name}.p_value: must be in (0, 1), got {}",
                rule.p_value
            ));
        }
    }
    if !(d.missing_rate.max_increase > 0.0 && d.missing_rate.max_increase <= 1.0) {
        problems.push(format!(
            "{path}.missing_rate.max_increase: must be in (0, 1], got {}",
            d.missing_rate.max_increase
        ));
    }
    if d.min_samples == 0 {
        problems.push(format!("{path}.min_samples: must be >= 1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(MonitorSettings::default().validate(), Vec::<String>::new());
    }

    #[test]
    fn partial_rules_keep_inherited_fields() {
        let settings: MonitorSettings = toml::from_str(
            "[detectors.psi]\nenabled = false\n[detectors.js]\nenabled = true\n\n\
             [[models]]\nid = \"m\"\n[models.features.amount.detectors.ks]\np_value = 0.01\n",
        )
        .unwrap();
        let defaults = DetectorSettings::default();
        assert!(!settings.detectors.psi.enabled);
        assert_eq!(settings.detectors.psi.threshold, defaults.psi.threshold);
        assert!(settings.detectors.js.enabled);
        assert_eq!(settings.detectors.js.action, defaults.js.action);
        let model = settings.model("m").unwrap();
        let feature = settings
            .detectors
            .with(&model.detectors)
            .with(&model.features["amount"].detectors);
        assert_eq!(feature.ks.p_value, 0.01);
        assert!(feature.ks.enabled);
        assert!(
            !feature.psi.enabled,
            "model overrides inherit the file's defaults"
        );
        assert!(toml::from_str::<MonitorSettings>("[detectors.psi]\np_value = 0.1\n").is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut settings = MonitorSettings::default();
        settings.windows.pane_ms = 0;
        settings.reference.bins = 1;
        settings.detectors.ks.p_value = 2.0;
        settings.models.push(ModelOverrides {
            id: "a".into(),
            ..Default::default()
        });
        settings.models.push(ModelOverrides {
            id: "a".into(),
            ..Default::default()
        });
        let problems = settings.validate();
        assert!(problems.len() >= 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("duplicate model id")));
    }
}
