//! Model quality of one (model, version) from its joined labels: windowed metrics, the
//! reference quality, performance rules, concept drift (ADWIN on the error stream) and
//! fairness across the groups of a sensitive attribute.
//!
//! Owns: per-pane outcome statistics (a window is the sum of its last `W` panes, so memory is
//! O(W) whatever the label rate), the frozen reference quality and the task kind once known.
//! Pure and deterministic; outcomes are applied in the order the engine hands them over.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::detect::adwin::Adwin;

use super::fairness::{FairnessCheck, FairnessStats};
use super::feature::DetectorResult;
use super::join::{JoinedOutcome, Truth};
use super::quality::{ClassificationOutcome, OutcomeStats, QualityMetric, QualityReport};
use super::settings::{Action, FairnessSettings, MonitorSettings, PerformanceRule, TaskKind};

/// Detector name of ADWIN on the error stream.
pub const CONCEPT_DRIFT_DETECTOR: &str = "adwin_error";
/// Detector name of the demographic parity rule.
pub const DEMOGRAPHIC_PARITY_DETECTOR: &str = "demographic_parity";
/// Detector name of the equalized odds rule.
pub const EQUALIZED_ODDS_DETECTOR: &str = "equalized_odds";

/// Statistics of one pane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaneOutcomes {
    pane: i64,
    outcomes: OutcomeStats,
    fairness: FairnessStats,
}

/// A rule outcome: the detector result and whether it breached.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    /// Result (statistic = the window's value, or its degradation from the reference).
    pub result: DetectorResult,
    /// Whether it breached.
    pub breach: bool,
}

/// One evaluation of a version's quality.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceEvaluation {
    /// Window metrics.
    pub quality: QualityReport,
    /// Reference metrics, once the reference is complete.
    pub reference: Option<QualityReport>,
    /// Performance rules (`__performance__` subject).
    pub rules: Vec<RuleOutcome>,
    /// Fairness rules (`__fairness__` subject).
    pub fairness_rules: Vec<RuleOutcome>,
    /// The fairness report, or why it was skipped.
    pub fairness: FairnessCheck,
    /// ADWIN detections on the error stream since the last evaluation.
    pub concept_drift_detections: u64,
}

/// Quality tracker of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceTracker {
    task: TaskKind,
    positive_class: String,
    decision_threshold: f64,
    rules: Vec<PerformanceRule>,
    sensitive_attribute: Option<String>,
    fairness: FairnessSettings,
    max_panes: usize,
    min_outcomes: u64,
    panes: VecDeque<PaneOutcomes>,
    reference: OutcomeStats,
    reference_target: u64,
    /// A baseline file gave the reference: it is complete from the start.
    reference_fixed: bool,
    adwin: Option<Adwin>,
    adwin_detections: u64,
    outcomes: u64,
    /// Outcomes that could not be scored (a regression label that is not a number, a
    /// prediction without a score or class).
    unscorable: u64,
}

impl PerformanceTracker {
    /// The tracker of a version of `model_id`, with the model's overrides applied.
    pub fn new(model_id: &str, settings: &MonitorSettings) -> Self {
        let performance = &settings.performance;
        let model = settings.model(model_id);
        Self {
            task: model.and_then(|m| m.task).unwrap_or(performance.task),
            positive_class: model
                .and_then(|m| m.positive_class.clone())
                .unwrap_or_else(|| performance.positive_class.clone()),
            decision_threshold: performance.decision_threshold,
            rules: model
                .and_then(|m| m.performance_rules.clone())
                .unwrap_or_else(|| performance.rules.clone()),
            sensitive_attribute: model
                .and_then(|m| m.sensitive_attribute.clone())
                .or_else(|| settings.fairness.sensitive_attribute.clone()),
            fairness: settings.fairness.clone(),
            max_panes: settings.windows.panes,
            min_outcomes: performance.min_outcomes,
            panes: VecDeque::new(),
            reference: OutcomeStats::default(),
            reference_target: performance.reference_outcomes,
            reference_fixed: false,
            adwin: performance
                .adwin_enabled
                .then(|| Adwin::new(performance.adwin).ok())
                .flatten(),
            adwin_detections: 0,
            outcomes: 0,
            unscorable: 0,
        }
    }

    /// Uses `reference` (from a baseline file) as the reference quality.
    pub fn set_reference(&mut self, reference: OutcomeStats) {
        self.reference = reference;
        self.reference_fixed = true;
    }

    /// The reference quality so far, when any outcome was recorded (for baselines).
    pub fn reference_stats(&self) -> Option<OutcomeStats> {
        (self.reference.count() > 0).then(|| self.reference.clone())
    }

    /// The configured sensitive attribute.
    pub fn sensitive_attribute(&self) -> Option<&str> {
        self.sensitive_attribute.as_deref()
    }

    /// Task kind (Auto until the first outcome decides it).
    pub fn task(&self) -> TaskKind {
        self.task
    }

    /// Joined outcomes recorded.
    pub fn outcomes(&self) -> u64 {
        self.outcomes
    }

    /// Outcomes that could not be scored.
    pub fn unscorable(&self) -> u64 {
        self.unscorable
    }

    fn pane_mut(&mut self, pane: i64) -> &mut PaneOutcomes {
        // Panes arrive in order almost always; a late outcome for an older open pane is
        // searched from the back.
        let position = self.panes.iter().rposition(|p| p.pane <= pane);
        match position {
            Some(i) if self.panes[i].pane == pane => &mut self.panes[i],
            _ => {
                let at = position.map_or(0, |i| i + 1);
                self.panes.insert(
                    at,
                    PaneOutcomes {
                        pane,
                        outcomes: OutcomeStats::default(),
                        fairness: FairnessStats::new(self.fairness.max_groups),
                    },
                );
                &mut self.panes[at]
            }
        }
    }

    /// Records a prediction's group and decision (selection rate needs no label).
    pub fn record_prediction(
        &mut self,
        pane: i64,
        group: &str,
        score: Option<f64>,
        class: Option<&str>,
    ) {
        let Some(selected) = self.predicted_positive(score, class) else {
            return;
        };
        self.pane_mut(pane)
            .fairness
            .record_prediction(group, selected);
    }

    fn predicted_positive(&self, score: Option<f64>, class: Option<&str>) -> Option<bool> {
        match class {
            Some(class) => Some(class == self.positive_class),
            None => score
                .filter(|s| s.is_finite())
                .map(|s| s >= self.decision_threshold),
        }
    }

    /// Records a joined outcome in pane `pane`.
    pub fn record_outcome(&mut self, pane: i64, outcome: &JoinedOutcome) {
        if self.task == TaskKind::Auto {
            self.task = infer_task(outcome);
        }
        let prediction = &outcome.prediction;
        let error = match self.task {
            TaskKind::Regression => {
                let truth = match &outcome.truth {
                    Truth::Number(x) => Some(*x),
                    Truth::Class(text) => text.trim().parse::<f64>().ok(),
                };
                match (prediction.score, truth) {
                    (Some(score), Some(truth)) if score.is_finite() && truth.is_finite() => {
                        self.pane_mut(pane).outcomes.record_regression(score, truth);
                        if self.reference_open() {
                            self.reference.record_regression(score, truth);
                        }
                        Some((score - truth).abs())
                    }
                    _ => None,
                }
            }
            TaskKind::Classification | TaskKind::Auto => {
                let truth = truth_class(&outcome.truth);
                let predicted_positive =
                    self.predicted_positive(prediction.score, prediction.class.as_deref());
                if predicted_positive.is_none() {
                    None
                } else {
                    let actual_positive = truth == self.positive_class;
                    let correct = match &prediction.class {
                        Some(class) => **class == *truth,
                        None => predicted_positive == Some(actual_positive),
                    };
                    let positive_score = prediction
                        .probabilities
                        .iter()
                        .find(|(class, _)| **class == *self.positive_class)
                        .map(|(_, p)| *p)
                        .or(prediction.score);
                    let true_class_probability = prediction
                        .probabilities
                        .iter()
                        .find(|(class, _)| **class == *truth)
                        .map(|(_, p)| *p)
                        .or_else(|| {
                            positive_score.map(|p| if actual_positive { p } else { 1.0 - p })
                        });
                    // Taken out for the calls below, which borrow `self` mutably, and put back:
                    // a clone would cost an allocation per label.
                    let positive_class = std::mem::take(&mut self.positive_class);
                    let classified = ClassificationOutcome {
                        predicted_positive,
                        predicted_class: prediction.class.as_deref(),
                        true_class: &truth,
                        positive_class: &positive_class,
                        score: positive_score,
                        probability_of_true_class: true_class_probability,
                    };
                    self.pane_mut(pane)
                        .outcomes
                        .record_classification(classified);
                    if self.reference_open() {
                        self.reference.record_classification(classified);
                    }
                    self.positive_class = positive_class;
                    if let (Some(group), Some(selected)) =
                        (prediction.group.as_deref(), predicted_positive)
                    {
                        if self.sensitive_attribute.is_some() {
                            self.pane_mut(pane).fairness.record_outcome(
                                group,
                                selected,
                                actual_positive,
                            );
                        }
                    }
                    Some(if correct { 0.0 } else { 1.0 })
                }
            }
        };
        match error {
            Some(error) => {
                self.outcomes += 1;
                if let Some(adwin) = self.adwin.as_mut() {
                    if adwin.update(error) {
                        self.adwin_detections += 1;
                    }
                }
            }
            None => self.unscorable += 1,
        }
    }

    fn reference_open(&self) -> bool {
        !self.reference_fixed && self.reference.count() < self.reference_target
    }

    fn reference_complete(&self) -> bool {
        self.reference_fixed || self.reference.count() >= self.reference_target
    }

    /// Drops panes that slid out of a window ending with pane `through`.
    pub fn close_through(&mut self, through: i64) {
        let oldest = through.saturating_sub(self.max_panes as i64 - 1);
        while self.panes.front().is_some_and(|p| p.pane < oldest) {
            self.panes.pop_front();
        }
    }

    /// First pane of the current window, if any outcome is in it.
    pub fn first_pane(&self) -> Option<i64> {
        self.panes.front().map(|p| p.pane)
    }

    /// The window's statistics through pane `through` (inclusive).
    fn window(&self, through: i64) -> (OutcomeStats, FairnessStats) {
        let mut outcomes = OutcomeStats::default();
        let mut fairness = FairnessStats::new(self.fairness.max_groups);
        for pane in self.panes.iter().filter(|p| p.pane <= through) {
            outcomes.merge(&pane.outcomes);
            fairness.merge(&pane.fairness);
        }
        (outcomes, fairness)
    }

    /// Evaluates the window ending with pane `through`.
    pub fn evaluate(&mut self, through: i64) -> PerformanceEvaluation {
        let (window, fairness_window) = self.window(through);
        let quality = window.report();
        let reference = self.reference_complete().then(|| self.reference.report());
        let mut rules = Vec::new();
        if window.count() >= self.min_outcomes {
            for rule in &self.rules {
                let Some(value) = window.metric(rule.metric) else {
                    continue;
                };
                let name = rule.metric.name();
                let retrain = rule.action == Action::Retrain;
                if let Some(min) = rule.min {
                    rules.push(outcome(
                        format!("{name}_min"),
                        value,
                        min,
                        value < min,
                        retrain,
                    ));
                }
                if let Some(max) = rule.max {
                    rules.push(outcome(
                        format!("{name}_max"),
                        value,
                        max,
                        value > max,
                        retrain,
                    ));
                }
                if let (Some(limit), Some(base)) = (
                    rule.max_degradation,
                    reference
                        .as_ref()
                        .and_then(|_| self.reference.metric(rule.metric)),
                ) {
                    let degradation = if rule.metric.higher_is_better() {
                        base - value
                    } else {
                        value - base
                    };
                    rules.push(outcome(
                        format!("{name}_degradation"),
                        degradation,
                        limit,
                        degradation > limit,
                        retrain,
                    ));
                }
            }
        }
        let (fairness, fairness_rules) = self.fairness_rules(&fairness_window);
        PerformanceEvaluation {
            quality,
            reference,
            rules,
            fairness_rules,
            fairness,
            concept_drift_detections: std::mem::take(&mut self.adwin_detections),
        }
    }

    fn fairness_rules(&self, window: &FairnessStats) -> (FairnessCheck, Vec<RuleOutcome>) {
        if self.sensitive_attribute.is_none() || window.is_empty() {
            return (FairnessCheck::no_sensitive_attribute(), Vec::new());
        }
        let report = window.report(self.fairness.min_group_count);
        let retrain = self.fairness.action == Action::Retrain;
        let mut rules = Vec::new();
        if let Some(dp) = report.demographic_parity_difference {
            rules.push(outcome(
                DEMOGRAPHIC_PARITY_DETECTOR.to_owned(),
                dp,
                self.fairness.demographic_parity_max,
                dp > self.fairness.demographic_parity_max,
                retrain,
            ));
        }
        if let Some(eo) = report.equalized_odds_difference {
            rules.push(outcome(
                EQUALIZED_ODDS_DETECTOR.to_owned(),
                eo,
                self.fairness.equalized_odds_max,
                eo > self.fairness.equalized_odds_max,
                retrain,
            ));
        }
        (FairnessCheck::Computed(report), rules)
    }

    /// The ADWIN's current estimate of the error rate (or mean absolute error) and width.
    pub fn concept_drift_state(&self) -> Option<(f64, u64)> {
        self.adwin.as_ref().map(|a| (a.estimation(), a.width()))
    }

    /// The rule of metric `metric`, if configured (for status pages).
    pub fn watches(&self, metric: QualityMetric) -> bool {
        self.rules.iter().any(|r| r.metric == metric)
    }
}

fn outcome(
    detector: String,
    statistic: f64,
    threshold: f64,
    breach: bool,
    retrain: bool,
) -> RuleOutcome {
    RuleOutcome {
        result: DetectorResult {
            detector: Cow::Owned(detector),
            statistic,
            p_value: None,
            threshold,
            error_bound: None,
            retrain,
        },
        breach,
    }
}

/// The true class as text: a class label as it is (borrowed, so a label costs no
/// allocation), a number (a 0/1 target sent as a number) written as a class would be.
fn truth_class(truth: &Truth) -> Cow<'_, str> {
    match truth {
        Truth::Class(class) => Cow::Borrowed(&**class),
        Truth::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
            Cow::Owned(format!("{}", *x as i64))
        }
        Truth::Number(x) => Cow::Owned(x.to_string()),
    }
}

fn infer_task(outcome: &JoinedOutcome) -> TaskKind {
    match outcome.truth {
        Truth::Class(_) => TaskKind::Classification,
        Truth::Number(x) => {
            let binary = x == 0.0 || x == 1.0;
            let probability_like = outcome
                .prediction
                .score
                .is_some_and(|s| (0.0..=1.0).contains(&s));
            if binary && (outcome.prediction.class.is_some() || probability_like) {
                TaskKind::Classification
            } else {
                TaskKind::Regression
            }
        }
    }
}
