//! Model quality over joined (prediction, label) outcomes: the mergeable sufficient statistics
//! of a pane and the metrics computed from them.
//!
//! Owns: [`OutcomeStats`] (confusion counts, accuracy counts, log-loss and regression sums, a
//! sparse score histogram for ROC AUC), [`QualityReport`] and [`QualityMetric`]. Must not touch:
//! clocks, I/O, tokio, rdkafka — the label join and the windows live in the engine, which only
//! records outcomes here and merges panes.
//!
//! Every metric is checked against scikit-learn 1.9.1 (`tests/vectors/quality.json`, written by
//! `tests/vectors/gen_quality.py`). Where scikit-learn returns a number for an undefined metric
//! (precision with no predicted positive is 0.0 under its default `zero_division="warn"`), we
//! return `None`: an alert policy must not read "no data" as "quality collapsed to 0". Our
//! `None` is exactly where scikit-learn returns NaN with `zero_division=np.nan`.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Number of uniform bins over [0, 1] in the ROC AUC score histogram.
///
/// 1024 bins cost at most 24 KiB per pane (24 bytes per non-empty bin), while the binned
/// AUC's error bound ([`OutcomeStats::roc_auc_error_bound`]) stays small for any score
/// distribution that is not concentrated in a few bins.
pub const AUC_BINS: usize = 1024;

/// Probabilities are clipped to [ε, 1 − ε] before the logarithm in log loss.
///
/// scikit-learn 1.9.1 `sklearn/metrics/_classification.py` (`_log_loss`) uses
/// `eps = xp.finfo(y_proba.dtype).eps`, i.e. `f64::EPSILON` for float64 input, and clips every
/// column of the (n, classes) probability matrix with it. It does not renormalise rows (it
/// only warns when they do not sum to one), so only the true class's probability matters.
pub const LOG_LOSS_EPSILON: f64 = f64::EPSILON;

/// One joined classification outcome, the argument of [`OutcomeStats::record_classification`].
///
/// A struct rather than six positional arguments: three of them are optional and two are
/// class names that are easy to swap by accident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassificationOutcome<'a> {
    /// The binary decision "predicted the positive class", when the model made one (e.g. a
    /// score above its threshold). When `None`, it is derived from `predicted_class`.
    pub predicted_positive: Option<bool>,
    /// The predicted class, when the model emits one.
    pub predicted_class: Option<&'a str>,
    /// The label: the true class.
    pub true_class: &'a str,
    /// The class whose precision, recall, F1, false positive rate and ROC AUC are measured.
    pub positive_class: &'a str,
    /// The model's score for the positive class, read as P(positive class) ∈ [0, 1]. Feeds ROC
    /// AUC, and log loss when `probability_of_true_class` is absent.
    pub score: Option<f64>,
    /// The probability the model gave the true class (multiclass log loss).
    pub probability_of_true_class: Option<f64>,
}

/// Sufficient statistics of a set of joined outcomes.
///
/// Mergeable: the statistics of a sliding window are the [`merge`](Self::merge) of its panes',
/// so a window never keeps individual outcomes. Integer counts merge exactly; the floating
/// sums (log loss, regression errors) merge up to rounding, so a metric of merged panes may
/// differ from one computed on the concatenated stream in the last bits.
///
/// Counters saturate at `u64::MAX` instead of overflowing, so no input sequence can panic.
/// The floating sums cannot overflow through recording (see
/// [`record_regression`](Self::record_regression)); merging panes whose sums of squared errors
/// together exceed `f64::MAX` (errors near 1e154) gives +∞, and then an RMSE of +∞.
/// Non-finite or out-of-range inputs are not counted in the metric they would corrupt; each
/// such skip increments a `*_skipped` counter so data problems stay visible.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeStats {
    outcomes: u64,
    true_positives: u64,
    false_positives: u64,
    true_negatives: u64,
    false_negatives: u64,
    correct: u64,
    classified: u64,
    log_loss_sum: f64,
    log_loss_count: u64,
    log_loss_skipped: u64,
    regression_count: u64,
    absolute_error_sum: f64,
    squared_error_sum: f64,
    regression_skipped: u64,
    scores: ScoreHistogram,
    auc_skipped: u64,
}

impl OutcomeStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one classification outcome.
    ///
    /// - Confusion counts: from `predicted_positive`, or else from `predicted_class ==
    ///   positive_class`; the label is positive when `true_class == positive_class`. Without
    ///   either prediction field, the outcome has no confusion entry.
    /// - Accuracy: `predicted_class == true_class`. Without `predicted_class`, a binary
    ///   decision counts as correct when it agrees with the label's positivity — right for a
    ///   binary task, but for multiclass a negative prediction of a negative label would be
    ///   counted correct whatever the classes, so multiclass callers pass `predicted_class`.
    /// - ROC AUC: `score` in [0, 1] goes to the positive or negative histogram; a score that is
    ///   non-finite or outside [0, 1] is counted in `auc_skipped` (scikit-learn would accept
    ///   any real score, but the histogram's bins cover [0, 1] only).
    /// - Log loss: −ln(clip(q)) where q = `probability_of_true_class`, or, when that is absent,
    ///   q = `score` for a positive label and 1 − `score` for a negative one (the binary case,
    ///   as scikit-learn's `log_loss(y_true, y_score)` with a 1-D score). For a multiclass task
    ///   pass `probability_of_true_class`: from the score alone this would be the one-vs-rest
    ///   log loss of the positive class. A q that is non-finite or outside [0, 1] — where
    ///   scikit-learn raises — is counted in `log_loss_skipped`.
    pub fn record_classification(&mut self, outcome: ClassificationOutcome<'_>) {
        let ClassificationOutcome {
            predicted_positive,
            predicted_class,
            true_class,
            positive_class,
            score,
            probability_of_true_class,
        } = outcome;
        add(&mut self.outcomes, 1);
        let actually_positive = true_class == positive_class;

        let predicted_positive =
            predicted_positive.or_else(|| predicted_class.map(|c| c == positive_class));
        if let Some(predicted) = predicted_positive {
            let cell = match (predicted, actually_positive) {
                (true, true) => &mut self.true_positives,
                (true, false) => &mut self.false_positives,
                (false, false) => &mut self.true_negatives,
                (false, true) => &mut self.false_negatives,
            };
            add(cell, 1);
        }

        let correct = match (predicted_class, predicted_positive) {
            (Some(class), _) => Some(class == true_class),
            (None, Some(predicted)) => Some(predicted == actually_positive),
            (None, None) => None,
        };
        if let Some(correct) = correct {
            add(&mut self.classified, 1);
            add(&mut self.correct, u64::from(correct));
        }

        if let Some(score) = score {
            if !self.scores.record(score, actually_positive) {
                add(&mut self.auc_skipped, 1);
            }
        }

        // sklearn computes 1 − p before clipping (it builds the [1 − p, p] matrix, then clips
        // it); so do we, which matters only for p within an ulp of the clip points.
        let probability = match (probability_of_true_class, score) {
            (Some(q), _) => Some(q),
            (None, Some(p)) if actually_positive => Some(p),
            (None, Some(p)) => Some(1.0 - p),
            (None, None) => None,
        };
        if let Some(q) = probability {
            if (0.0..=1.0).contains(&q) {
                let q = q.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
                self.log_loss_sum -= q.ln();
                add(&mut self.log_loss_count, 1);
            } else {
                add(&mut self.log_loss_skipped, 1);
            }
        }
    }

    /// Records one regression outcome.
    ///
    /// An outcome whose prediction, truth or squared error is not finite, or that would push
    /// the running sum of squared errors past `f64::MAX`, is counted in `regression_skipped`
    /// instead: one such value would turn the window's MAE and RMSE into ∞ or NaN until it
    /// leaves the window, and a non-finite sum would not survive a JSON checkpoint.
    pub fn record_regression(&mut self, prediction: f64, truth: f64) {
        add(&mut self.outcomes, 1);
        let error = prediction - truth;
        let squared_sum = self.squared_error_sum + error * error;
        // Σ|e| ≤ √(n·Σe²) (Cauchy–Schwarz), so a finite squared sum keeps the absolute sum
        // finite too.
        if squared_sum.is_finite() {
            self.absolute_error_sum += error.abs();
            self.squared_error_sum = squared_sum;
            add(&mut self.regression_count, 1);
        } else {
            add(&mut self.regression_skipped, 1);
        }
    }

    /// Adds `other`'s outcomes to these (pane → window).
    pub fn merge(&mut self, other: &OutcomeStats) {
        add(&mut self.outcomes, other.outcomes);
        add(&mut self.true_positives, other.true_positives);
        add(&mut self.false_positives, other.false_positives);
        add(&mut self.true_negatives, other.true_negatives);
        add(&mut self.false_negatives, other.false_negatives);
        add(&mut self.correct, other.correct);
        add(&mut self.classified, other.classified);
        self.log_loss_sum += other.log_loss_sum;
        add(&mut self.log_loss_count, other.log_loss_count);
        add(&mut self.log_loss_skipped, other.log_loss_skipped);
        add(&mut self.regression_count, other.regression_count);
        self.absolute_error_sum += other.absolute_error_sum;
        self.squared_error_sum += other.squared_error_sum;
        add(&mut self.regression_skipped, other.regression_skipped);
        self.scores.merge(&other.scores);
        add(&mut self.auc_skipped, other.auc_skipped);
    }

    /// Outcomes recorded (classification and regression, skipped parts included).
    pub fn count(&self) -> u64 {
        self.outcomes
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.outcomes == 0
    }

    /// Predicted positive, labelled positive.
    pub fn true_positives(&self) -> u64 {
        self.true_positives
    }

    /// Predicted positive, labelled negative.
    pub fn false_positives(&self) -> u64 {
        self.false_positives
    }

    /// Predicted negative, labelled negative.
    pub fn true_negatives(&self) -> u64 {
        self.true_negatives
    }

    /// Predicted negative, labelled positive.
    pub fn false_negatives(&self) -> u64 {
        self.false_negatives
    }

    /// Outcomes whose prediction matched the label (accuracy's numerator).
    pub fn correct(&self) -> u64 {
        self.correct
    }

    /// Outcomes with a prediction to compare with the label (accuracy's denominator).
    pub fn classified(&self) -> u64 {
        self.classified
    }

    /// Outcomes contributing to log loss.
    pub fn log_loss_count(&self) -> u64 {
        self.log_loss_count
    }

    /// Outcomes whose probability was non-finite or outside [0, 1].
    pub fn log_loss_skipped(&self) -> u64 {
        self.log_loss_skipped
    }

    /// Regression outcomes contributing to MAE and RMSE.
    pub fn regression_count(&self) -> u64 {
        self.regression_count
    }

    /// Regression outcomes skipped for a non-finite value or error.
    pub fn regression_skipped(&self) -> u64 {
        self.regression_skipped
    }

    /// Scores in the AUC histogram with a positive label.
    pub fn auc_positives(&self) -> u64 {
        self.scores.totals().0
    }

    /// Scores in the AUC histogram with a negative label.
    pub fn auc_negatives(&self) -> u64 {
        self.scores.totals().1
    }

    /// Scores left out of the AUC histogram (non-finite or outside [0, 1]).
    pub fn auc_skipped(&self) -> u64 {
        self.auc_skipped
    }

    /// Non-empty histogram bins: what the sparse histogram costs (at most [`AUC_BINS`]).
    pub fn auc_bins_used(&self) -> usize {
        self.scores.bins.len()
    }

    /// (TP + TN) / classified, the share of correct predictions; `None` without predictions.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.correct, self.classified)
    }

    /// TP / (TP + FP); `None` when nothing was predicted positive (sklearn: 0.0 with a warning).
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives.saturating_add(self.false_positives),
        )
    }

    /// TP / (TP + FN), the true positive rate; `None` without positive labels (sklearn: 0.0
    /// with a warning).
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives.saturating_add(self.false_negatives),
        )
    }

    /// 2·TP / (2·TP + FP + FN): the harmonic mean of precision and recall where both are
    /// defined, and 0 when TP = 0 but there were errors (as scikit-learn 1.9). `None` only
    /// when there were no positive predictions and no positive labels.
    pub fn f1(&self) -> Option<f64> {
        let tp = self.true_positives as f64;
        let denominator = 2.0 * tp + self.false_positives as f64 + self.false_negatives as f64;
        (denominator > 0.0).then(|| 2.0 * tp / denominator)
    }

    /// FP / (FP + TN); `None` without negative labels.
    pub fn false_positive_rate(&self) -> Option<f64> {
        ratio(
            self.false_positives,
            self.false_positives.saturating_add(self.true_negatives),
        )
    }

    /// ROC AUC from the score histogram: the Mann–Whitney statistic over bins, a (positive,
    /// negative) pair in different bins ordered by bin, a pair sharing a bin scored ½ as a tie.
    /// Within [`roc_auc_error_bound`](Self::roc_auc_error_bound) of the exact AUC on the raw
    /// scores. `None` unless both classes have a score (scikit-learn 1.9 warns and returns NaN).
    pub fn roc_auc(&self) -> Option<f64> {
        self.scores.auc().map(|(auc, _)| auc)
    }

    /// The largest possible |binned AUC − exact AUC|: ½ · Σ_b pos_b·neg_b / (P·N).
    ///
    /// Why it holds: a pair in different bins is ordered the same way by bin as by score, so it
    /// is scored exactly. A pair sharing a bin is scored ½; its exact score is 0, ½ or 1, off
    /// by at most ½. Summing over same-bin pairs and dividing by the P·N pairs gives the bound.
    /// It is 0 when no bin holds both classes and ½ when every score shares a single bin.
    /// `None` exactly when [`roc_auc`](Self::roc_auc) is.
    pub fn roc_auc_error_bound(&self) -> Option<f64> {
        self.scores.auc().map(|(_, bound)| bound)
    }

    /// Mean of −ln(clip(q)) over outcomes with a probability; `None` without any.
    pub fn log_loss(&self) -> Option<f64> {
        (self.log_loss_count > 0).then(|| self.log_loss_sum / self.log_loss_count as f64)
    }

    /// Mean absolute error; `None` without regression outcomes.
    pub fn mae(&self) -> Option<f64> {
        (self.regression_count > 0).then(|| self.absolute_error_sum / self.regression_count as f64)
    }

    /// Root mean squared error; `None` without regression outcomes.
    pub fn rmse(&self) -> Option<f64> {
        (self.regression_count > 0)
            .then(|| (self.squared_error_sum / self.regression_count as f64).sqrt())
    }

    /// The value of one metric (as the named getter).
    pub fn metric(&self, metric: QualityMetric) -> Option<f64> {
        match metric {
            QualityMetric::Accuracy => self.accuracy(),
            QualityMetric::Precision => self.precision(),
            QualityMetric::Recall => self.recall(),
            QualityMetric::F1 => self.f1(),
            QualityMetric::RocAuc => self.roc_auc(),
            QualityMetric::LogLoss => self.log_loss(),
            QualityMetric::Mae => self.mae(),
            QualityMetric::Rmse => self.rmse(),
            QualityMetric::FalsePositiveRate => self.false_positive_rate(),
        }
    }

    /// All metrics and the counts behind them.
    pub fn report(&self) -> QualityReport {
        let (auc_positives, auc_negatives) = self.scores.totals();
        let auc = self.scores.auc();
        QualityReport {
            count: self.outcomes,
            classified: self.classified,
            true_positives: self.true_positives,
            false_positives: self.false_positives,
            true_negatives: self.true_negatives,
            false_negatives: self.false_negatives,
            auc_positives,
            auc_negatives,
            auc_skipped: self.auc_skipped,
            log_loss_count: self.log_loss_count,
            log_loss_skipped: self.log_loss_skipped,
            regression_count: self.regression_count,
            regression_skipped: self.regression_skipped,
            accuracy: self.accuracy(),
            precision: self.precision(),
            recall: self.recall(),
            f1: self.f1(),
            false_positive_rate: self.false_positive_rate(),
            roc_auc: auc.map(|(auc, _)| auc),
            roc_auc_error_bound: auc.map(|(_, bound)| bound),
            log_loss: self.log_loss(),
            mae: self.mae(),
            rmse: self.rmse(),
        }
    }
}

/// Saturating `+=`: a counter that reaches `u64::MAX` stays there rather than panicking (tests
/// build with overflow checks) or wrapping to a small number.
#[inline]
fn add(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

/// `numerator / denominator`, `None` for 0/0 — the "undefined" every getter documents.
#[inline]
fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Metrics and counts of a set of outcomes, for the HTTP API and the metrics exporter.
///
/// `None` (JSON `null`) marks a metric that is undefined on this data, see each
/// [`OutcomeStats`] getter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Outcomes recorded (classification and regression), as [`OutcomeStats::count`].
    pub count: u64,
    /// Outcomes with a prediction to compare with the label (accuracy's denominator).
    pub classified: u64,
    /// Predicted positive, labelled positive.
    pub true_positives: u64,
    /// Predicted positive, labelled negative.
    pub false_positives: u64,
    /// Predicted negative, labelled negative.
    pub true_negatives: u64,
    /// Predicted negative, labelled positive.
    pub false_negatives: u64,
    /// Positive-label scores in the AUC histogram.
    pub auc_positives: u64,
    /// Negative-label scores in the AUC histogram.
    pub auc_negatives: u64,
    /// Scores left out of AUC (non-finite or outside [0, 1]).
    pub auc_skipped: u64,
    /// Outcomes contributing to log loss.
    pub log_loss_count: u64,
    /// Probabilities left out of log loss (non-finite or outside [0, 1]).
    pub log_loss_skipped: u64,
    /// Regression outcomes contributing to MAE and RMSE.
    pub regression_count: u64,
    /// Regression outcomes skipped for a non-finite value or error.
    pub regression_skipped: u64,
    /// Share of correct predictions.
    pub accuracy: Option<f64>,
    /// TP / (TP + FP).
    pub precision: Option<f64>,
    /// TP / (TP + FN).
    pub recall: Option<f64>,
    /// 2·TP / (2·TP + FP + FN).
    pub f1: Option<f64>,
    /// FP / (FP + TN).
    pub false_positive_rate: Option<f64>,
    /// Binned ROC AUC.
    pub roc_auc: Option<f64>,
    /// Largest possible error of `roc_auc` versus the exact AUC on the raw scores.
    pub roc_auc_error_bound: Option<f64>,
    /// Mean clipped negative log-likelihood of the true class.
    pub log_loss: Option<f64>,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Root mean squared error.
    pub rmse: Option<f64>,
}

impl QualityReport {
    /// The defined metrics as (name, value), in [`QualityMetric::ALL`] order: what a metrics
    /// exporter publishes (an undefined metric is absent rather than a misleading 0).
    pub fn metrics(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        QualityMetric::ALL
            .into_iter()
            .filter_map(|metric| self.metric(metric).map(|value| (metric.name(), value)))
    }

    /// The value of one metric in this report.
    pub fn metric(&self, metric: QualityMetric) -> Option<f64> {
        match metric {
            QualityMetric::Accuracy => self.accuracy,
            QualityMetric::Precision => self.precision,
            QualityMetric::Recall => self.recall,
            QualityMetric::F1 => self.f1,
            QualityMetric::RocAuc => self.roc_auc,
            QualityMetric::LogLoss => self.log_loss,
            QualityMetric::Mae => self.mae,
            QualityMetric::Rmse => self.rmse,
            QualityMetric::FalsePositiveRate => self.false_positive_rate,
        }
    }
}

/// A model-quality metric, as named in configuration, metrics labels and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityMetric {
    /// Share of correct predictions.
    Accuracy,
    /// TP / (TP + FP) of the positive class.
    Precision,
    /// TP / (TP + FN) of the positive class.
    Recall,
    /// F1 score of the positive class.
    F1,
    /// Area under the ROC curve of the positive-class score.
    RocAuc,
    /// Mean negative log-likelihood of the true class.
    LogLoss,
    /// Mean absolute error (regression).
    Mae,
    /// Root mean squared error (regression).
    Rmse,
    /// FP / (FP + TN) of the positive class.
    FalsePositiveRate,
}

impl QualityMetric {
    /// Every metric, in declaration order.
    pub const ALL: [QualityMetric; 9] = [
        QualityMetric::Accuracy,
        QualityMetric::Precision,
        QualityMetric::Recall,
        QualityMetric::F1,
        QualityMetric::RocAuc,
        QualityMetric::LogLoss,
        QualityMetric::Mae,
        QualityMetric::Rmse,
        QualityMetric::FalsePositiveRate,
    ];

    /// The snake_case name, identical to the serde spelling.
    pub fn name(self) -> &'static str {
        match self {
            QualityMetric::Accuracy => "accuracy",
            QualityMetric::Precision => "precision",
            QualityMetric::Recall => "recall",
            QualityMetric::F1 => "f1",
            QualityMetric::RocAuc => "roc_auc",
            QualityMetric::LogLoss => "log_loss",
            QualityMetric::Mae => "mae",
            QualityMetric::Rmse => "rmse",
            QualityMetric::FalsePositiveRate => "false_positive_rate",
        }
    }

    /// True when a larger value is a better model, so a policy knows whether a floor or a
    /// ceiling applies: accuracy, precision, recall, F1 and ROC AUC are better high; log loss,
    /// MAE, RMSE and the false positive rate are better low.
    pub fn higher_is_better(self) -> bool {
        match self {
            QualityMetric::Accuracy
            | QualityMetric::Precision
            | QualityMetric::Recall
            | QualityMetric::F1
            | QualityMetric::RocAuc => true,
            QualityMetric::LogLoss
            | QualityMetric::Mae
            | QualityMetric::Rmse
            | QualityMetric::FalsePositiveRate => false,
        }
    }
}

impl std::fmt::Display for QualityMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One non-empty bin of the score histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreBin {
    /// Bin index: scores in [bin/1024, (bin+1)/1024), the last bin also holding 1.0.
    bin: u16,
    /// Scores with a positive label.
    positive: u64,
    /// Scores with a negative label.
    negative: u64,
}

/// Sparse per-class histogram of scores over [`AUC_BINS`] uniform bins of [0, 1]: the
/// non-empty bins, sorted by index. Sparse because a pane often holds a few dozen outcomes,
/// and a dense 1024 × 2 array per pane would dominate the window's memory.
///
/// Deserialisation checks the sort order and the bin range, so a checkpoint edited by hand
/// cannot break the merge (which relies on the order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ScoreBin>", into = "Vec<ScoreBin>")]
struct ScoreHistogram {
    bins: Vec<ScoreBin>,
}

impl TryFrom<Vec<ScoreBin>> for ScoreHistogram {
    type Error = String;

    fn try_from(bins: Vec<ScoreBin>) -> Result<Self, Self::Error> {
        if let Some(bad) = bins.iter().find(|b| usize::from(b.bin) >= AUC_BINS) {
            return Err(format!("score bin {} is not below {AUC_BINS}", bad.bin));
        }
        if bins.windows(2).any(|w| w[0].bin >= w[1].bin) {
            return Err("score bins are not strictly increasing".to_owned());
        }
        Ok(Self { bins })
    }
}

impl From<ScoreHistogram> for Vec<ScoreBin> {
    fn from(histogram: ScoreHistogram) -> Self {
        histogram.bins
    }
}

/// The bin of a score in [0, 1], `None` otherwise (NaN included). `score * 1024` is exact (a
/// power-of-two scale), so bin b holds exactly [b/1024, (b+1)/1024); 1.0 joins the last bin.
fn bin_of(score: f64) -> Option<u16> {
    if !(0.0..=1.0).contains(&score) {
        return None;
    }
    let bin = ((score * AUC_BINS as f64) as usize).min(AUC_BINS - 1);
    u16::try_from(bin).ok()
}

impl ScoreHistogram {
    /// Counts a score; false when it is not in [0, 1].
    fn record(&mut self, score: f64, positive: bool) -> bool {
        let Some(bin) = bin_of(score) else {
            return false;
        };
        let index = match self.bins.binary_search_by_key(&bin, |b| b.bin) {
            Ok(index) => index,
            Err(index) => {
                self.bins.insert(
                    index,
                    ScoreBin {
                        bin,
                        positive: 0,
                        negative: 0,
                    },
                );
                index
            }
        };
        // `index` comes from the search over this very vector, so `get_mut` always succeeds;
        // it is used only to keep the code free of indexing panics.
        if let Some(entry) = self.bins.get_mut(index) {
            if positive {
                add(&mut entry.positive, 1);
            } else {
                add(&mut entry.negative, 1);
            }
        }
        true
    }

    /// Adds another histogram: a linear merge of two sorted bin lists.
    fn merge(&mut self, other: &ScoreHistogram) {
        if other.bins.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.bins.len() + other.bins.len());
        // `get` instead of indexing: the loop is visibly panic-free.
        let (mut i, mut j) = (0, 0);
        loop {
            match (self.bins.get(i), other.bins.get(j)) {
                (Some(a), Some(b)) => match a.bin.cmp(&b.bin) {
                    Ordering::Less => {
                        merged.push(*a);
                        i += 1;
                    }
                    Ordering::Greater => {
                        merged.push(*b);
                        j += 1;
                    }
                    Ordering::Equal => {
                        let mut sum = *a;
                        add(&mut sum.positive, b.positive);
                        add(&mut sum.negative, b.negative);
                        merged.push(sum);
                        i += 1;
                        j += 1;
                    }
                },
                (Some(a), None) => {
                    merged.push(*a);
                    i += 1;
                }
                (None, Some(b)) => {
                    merged.push(*b);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.bins = merged;
    }

    /// (positive, negative) scores counted.
    fn totals(&self) -> (u64, u64) {
        self.bins.iter().fold((0u64, 0u64), |(p, n), b| {
            (p.saturating_add(b.positive), n.saturating_add(b.negative))
        })
    }

    /// (AUC, error bound), see [`mann_whitney`].
    fn auc(&self) -> Option<(f64, f64)> {
        mann_whitney(self.bins.iter().map(|b| (b.positive, b.negative)))
    }
}

/// Mann–Whitney AUC over groups of tied scores in increasing score order, each group given as
/// (positives, negatives). Returns (AUC, ½·Σ pos·neg / (P·N)): the share of (positive,
/// negative) pairs ordered correctly, ties counting ½, and the share of pairs that were ties
/// times ½.
///
/// Integer arithmetic in u128 (twice the win count, so ½ stays an integer) makes the result
/// exact up to the final division; saturation, reachable only beyond 2^128 pairs, keeps it
/// panic-free. `None` when either class is absent.
fn mann_whitney(groups: impl Iterator<Item = (u64, u64)>) -> Option<(f64, f64)> {
    let (mut positives, mut negatives, mut twice_wins, mut ties) = (0u128, 0u128, 0u128, 0u128);
    for (pos, neg) in groups {
        let (pos, neg) = (u128::from(pos), u128::from(neg));
        // Each positive here beats every negative in a lower group and ties this group's.
        let pairs = pos.saturating_mul(neg);
        twice_wins = twice_wins
            .saturating_add(pos.saturating_mul(negatives.saturating_mul(2)))
            .saturating_add(pairs);
        ties = ties.saturating_add(pairs);
        positives = positives.saturating_add(pos);
        negatives = negatives.saturating_add(neg);
    }
    if positives == 0 || negatives == 0 {
        return None;
    }
    let twice_pairs = positives.saturating_mul(negatives).saturating_mul(2) as f64;
    Some((twice_wins as f64 / twice_pairs, ties as f64 / twice_pairs))
}

/// Exact ROC AUC on raw scores, ties counted ½ — what `sklearn.metrics.roc_auc_score` computes
/// (by the trapezoid rule over the ROC curve, which is the same number). The reference the
/// binned AUC is tested against. Non-finite scores are ignored; `None` when a class is absent.
#[cfg(test)]
pub(crate) fn exact_roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(positive)
        .filter(|(s, _)| s.is_finite())
        .map(|(&s, &p)| (s, p))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Group equal scores (-0.0 and 0.0 are equal scores, as in numpy).
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut last: Option<f64> = None;
    for (score, is_positive) in pairs {
        if last != Some(score) || groups.is_empty() {
            groups.push((0, 0));
            last = Some(score);
        }
        if let Some(group) = groups.last_mut() {
            if is_positive {
                group.0 += 1;
            } else {
                group.1 += 1;
            }
        }
    }
    mann_whitney(groups.into_iter()).map(|(auc, _)| auc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::relative_error;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        auc_bins: usize,
        log_loss_eps: f64,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Case {
        Binary(ClassCase),
        Multiclass(ClassCase),
        Regression(RegressionCase),
    }

    /// Binary cases have 0/1 labels and predictions; multiclass cases class names.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Labels {
        Binary(Vec<u8>),
        Classes(Vec<String>),
    }

    impl Labels {
        fn get(&self, i: usize) -> String {
            match self {
                Labels::Binary(v) => v[i].to_string(),
                Labels::Classes(v) => v[i].clone(),
            }
        }
        fn len(&self) -> usize {
            match self {
                Labels::Binary(v) => v.len(),
                Labels::Classes(v) => v.len(),
            }
        }
    }

    #[derive(Deserialize)]
    struct ClassCase {
        name: String,
        #[serde(default = "binary_positive")]
        positive_class: String,
        y_true: Labels,
        y_pred: Labels,
        score: Vec<f64>,
        #[serde(default)]
        p_true: Option<Vec<f64>>,
        confusion: [u64; 4],
        accuracy: f64,
        precision: Option<f64>,
        recall: Option<f64>,
        f1: Option<f64>,
        false_positive_rate: Option<f64>,
        roc_auc: Option<f64>,
        log_loss: f64,
    }

    fn binary_positive() -> String {
        "1".to_owned()
    }

    #[derive(Deserialize)]
    struct RegressionCase {
        name: String,
        y_true: Vec<f64>,
        y_pred: Vec<f64>,
        mae: f64,
        rmse: f64,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(include_str!("../../tests/vectors/quality.json")).unwrap()
    }

    fn assert_close(name: &str, what: &str, actual: Option<f64>, expected: Option<f64>) {
        match (actual, expected) {
            (Some(a), Some(e)) => assert!(
                relative_error(a, e) <= 1e-12 || (a - e).abs() <= 1e-15,
                "{name}: {what} {a} vs sklearn {e}"
            ),
            (None, None) => {}
            _ => panic!("{name}: {what} {actual:?} vs sklearn {expected:?}"),
        }
    }

    /// Records a classification case; `with_class` chooses between passing the predicted class
    /// and passing only the binary decision (both must give the same confusion counts).
    fn record_case(case: &ClassCase, with_class: bool) -> OutcomeStats {
        let mut stats = OutcomeStats::new();
        for i in 0..case.y_true.len() {
            let (truth, predicted) = (case.y_true.get(i), case.y_pred.get(i));
            stats.record_classification(ClassificationOutcome {
                predicted_positive: (!with_class).then_some(predicted == case.positive_class),
                predicted_class: with_class.then_some(predicted.as_str()),
                true_class: &truth,
                positive_class: &case.positive_class,
                score: Some(case.score[i]),
                probability_of_true_class: case.p_true.as_ref().map(|p| p[i]),
            });
        }
        stats
    }

    #[test]
    fn matches_sklearn_vectors() {
        let vectors = vectors();
        assert_eq!(vectors.auc_bins, AUC_BINS);
        assert_eq!(vectors.log_loss_eps, LOG_LOSS_EPSILON);
        assert!(vectors.cases.len() >= 30);
        for case in &vectors.cases {
            match case {
                Case::Binary(case) | Case::Multiclass(case) => check_classification(case),
                Case::Regression(case) => check_regression(case),
            }
        }
    }

    fn check_classification(case: &ClassCase) {
        let name = case.name.as_str();
        let stats = record_case(case, true);
        let [tn, fp, fn_, tp] = case.confusion;
        assert_eq!(
            [
                stats.true_negatives(),
                stats.false_positives(),
                stats.false_negatives(),
                stats.true_positives()
            ],
            [tn, fp, fn_, tp],
            "{name}: confusion"
        );
        assert_close(name, "accuracy", stats.accuracy(), Some(case.accuracy));
        assert_close(name, "precision", stats.precision(), case.precision);
        assert_close(name, "recall", stats.recall(), case.recall);
        assert_close(name, "f1", stats.f1(), case.f1);
        assert_close(
            name,
            "fpr",
            stats.false_positive_rate(),
            case.false_positive_rate,
        );
        assert_close(name, "log_loss", stats.log_loss(), Some(case.log_loss));
        assert_eq!(stats.auc_skipped(), 0, "{name}");
        assert_eq!(stats.log_loss_skipped(), 0, "{name}");

        // The exact helper is sklearn's number; the binned AUC is within its bound of it.
        let positive: Vec<bool> = (0..case.y_true.len())
            .map(|i| case.y_true.get(i) == case.positive_class)
            .collect();
        let exact = exact_roc_auc(&case.score, &positive);
        assert_close(name, "exact roc_auc", exact, case.roc_auc);
        match (stats.roc_auc(), stats.roc_auc_error_bound(), case.roc_auc) {
            (Some(binned), Some(bound), Some(sklearn)) => {
                assert!(
                    (binned - sklearn).abs() <= bound + 1e-12,
                    "{name}: binned {binned} vs sklearn {sklearn}, bound {bound}"
                );
            }
            (None, None, None) => {}
            other => panic!("{name}: auc {other:?}"),
        }

        // Without predicted_class, accuracy of a binary task comes from the decision alone.
        let decision_only = record_case(case, false);
        assert_eq!(decision_only.true_positives(), stats.true_positives());
        assert_eq!(decision_only.false_negatives(), stats.false_negatives());
        if matches!(case.y_true, Labels::Binary(_)) {
            assert_eq!(decision_only.report(), stats.report(), "{name}");
        }
    }

    fn check_regression(case: &RegressionCase) {
        let mut stats = OutcomeStats::new();
        for (&p, &t) in case.y_pred.iter().zip(&case.y_true) {
            stats.record_regression(p, t);
        }
        assert_eq!(stats.regression_count(), case.y_true.len() as u64);
        assert_close(&case.name, "mae", stats.mae(), Some(case.mae));
        assert_close(&case.name, "rmse", stats.rmse(), Some(case.rmse));
        // A regression window has no classification metric.
        assert_eq!(stats.accuracy(), None);
        assert_eq!(stats.roc_auc(), None);
        assert_eq!(stats.log_loss(), None);
    }

    #[test]
    fn binned_auc_is_exact_on_the_bin_grid_and_loose_inside_one_bin() {
        for case in vectors().cases {
            let Case::Binary(case) = case else { continue };
            let stats = record_case(&case, true);
            if case.name == "binary_scores_on_bin_grid" {
                // Same-bin pairs there are exact ties (apart from 1023/1024 with 1.0), so the
                // binned AUC equals sklearn's up to that one bin.
                let diff = (stats.roc_auc().unwrap() - case.roc_auc.unwrap()).abs();
                assert!(diff <= stats.roc_auc_error_bound().unwrap() + 1e-12);
                assert!(diff < 1e-3, "grid diff {diff}");
            }
            if case.name == "binary_scores_within_one_bin" {
                assert_eq!(stats.roc_auc(), Some(0.5));
                assert_eq!(stats.roc_auc_error_bound(), Some(0.5));
                assert_eq!(stats.auc_bins_used(), 1);
            }
        }
    }

    #[test]
    fn empty_stats_have_no_metric() {
        let stats = OutcomeStats::new();
        assert!(stats.is_empty());
        for metric in QualityMetric::ALL {
            assert_eq!(stats.metric(metric), None, "{metric}");
        }
        let report = stats.report();
        assert_eq!(report.roc_auc_error_bound, None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["accuracy"], serde_json::Value::Null);
        assert_eq!(json["count"], 0);
    }

    #[test]
    fn bad_inputs_are_skipped_and_counted() {
        let mut stats = OutcomeStats::new();
        for score in [f64::NAN, f64::INFINITY, -0.1, 1.5, f64::NEG_INFINITY] {
            stats.record_classification(ClassificationOutcome {
                predicted_positive: Some(true),
                predicted_class: None,
                true_class: "yes",
                positive_class: "yes",
                score: Some(score),
                probability_of_true_class: None,
            });
        }
        assert_eq!(stats.auc_skipped(), 5);
        assert_eq!(stats.log_loss_skipped(), 5);
        assert_eq!(stats.log_loss(), None);
        assert_eq!(stats.true_positives(), 5);
        assert_eq!(stats.accuracy(), Some(1.0));

        stats.record_regression(f64::NAN, 1.0);
        stats.record_regression(1.0, f64::INFINITY);
        stats.record_regression(1e200, -1e200); // finite error, infinite square
        assert_eq!(stats.regression_skipped(), 3);
        assert_eq!(stats.mae(), None);
        assert_eq!(stats.count(), 8);
    }

    #[test]
    fn probability_of_true_class_takes_precedence_over_score() {
        let mut stats = OutcomeStats::new();
        stats.record_classification(ClassificationOutcome {
            predicted_positive: None,
            predicted_class: Some("b"),
            true_class: "c",
            positive_class: "a",
            score: Some(0.2),
            probability_of_true_class: Some(0.25),
        });
        assert_eq!(stats.log_loss(), Some(-(0.25f64).ln()));
        // Predicted "b" for a "c": wrong, and a true negative for positive class "a".
        assert_eq!(stats.accuracy(), Some(0.0));
        assert_eq!(stats.true_negatives(), 1);
        // Probability 0 of the true class costs −ln ε, not ∞.
        stats.record_classification(ClassificationOutcome {
            predicted_positive: None,
            predicted_class: None,
            true_class: "c",
            positive_class: "a",
            score: None,
            probability_of_true_class: Some(0.0),
        });
        assert_eq!(stats.log_loss_count(), 2);
        assert!(stats.log_loss().unwrap().is_finite());
        // Neither predicted field: no confusion entry and no accuracy contribution.
        assert_eq!(stats.classified(), 1);
    }

    #[test]
    fn metric_names_and_serde_agree() {
        let names: Vec<&str> = QualityMetric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "accuracy",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "log_loss",
                "mae",
                "rmse",
                "false_positive_rate"
            ]
        );
        for metric in QualityMetric::ALL {
            let json = serde_json::to_string(&metric).unwrap();
            assert_eq!(json, format!("\"{}\"", metric.name()));
            assert_eq!(
                serde_json::from_str::<QualityMetric>(&json).unwrap(),
                metric
            );
            assert_eq!(metric.to_string(), metric.name());
        }
        let lower: Vec<&str> = QualityMetric::ALL
            .iter()
            .filter(|m| !m.higher_is_better())
            .map(|m| m.name())
            .collect();
        assert_eq!(lower, ["log_loss", "mae", "rmse", "false_positive_rate"]);
    }

    #[test]
    fn report_metric_matches_stats_metric() {
        let mut stats = OutcomeStats::new();
        for (i, truth) in ["1", "0", "1", "1", "0"].into_iter().enumerate() {
            stats.record_classification(ClassificationOutcome {
                predicted_positive: Some(i % 2 == 0),
                predicted_class: None,
                true_class: truth,
                positive_class: "1",
                score: Some(i as f64 / 4.0),
                probability_of_true_class: None,
            });
            stats.record_regression(i as f64, 2.0);
        }
        let report = stats.report();
        for metric in QualityMetric::ALL {
            assert_eq!(report.metric(metric), stats.metric(metric), "{metric}");
            assert!(report.metric(metric).is_some(), "{metric}");
        }
        let names: Vec<&str> = report.metrics().map(|(name, _)| name).collect();
        assert_eq!(names.len(), QualityMetric::ALL.len());

        // Undefined metrics are left out of the exported list, not reported as 0.
        let mut regression = OutcomeStats::new();
        regression.record_regression(1.0, 3.0);
        let exported: Vec<(&str, f64)> = regression.report().metrics().collect();
        assert_eq!(exported, [("mae", 2.0), ("rmse", 2.0)]);
    }

    #[test]
    fn serde_round_trip_and_checked_histogram() {
        let mut stats = OutcomeStats::new();
        for (i, score) in [0.9, 0.1, 0.5, 1.0, 0.0].into_iter().enumerate() {
            stats.record_classification(ClassificationOutcome {
                predicted_positive: Some(score >= 0.5),
                predicted_class: None,
                true_class: if i % 2 == 0 { "p" } else { "n" },
                positive_class: "p",
                score: Some(score),
                probability_of_true_class: None,
            });
        }
        let json = serde_json::to_string(&stats).unwrap();
        let back: OutcomeStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stats);

        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["scores"] = serde_json::json!([
            {"bin": 5, "positive": 1, "negative": 0},
            {"bin": 2, "positive": 0, "negative": 1}
        ]);
        assert!(serde_json::from_value::<OutcomeStats>(value.clone()).is_err());
        value["scores"] = serde_json::json!([{"bin": 1024, "positive": 1, "negative": 0}]);
        assert!(serde_json::from_value::<OutcomeStats>(value).is_err());
    }

    #[test]
    fn bins_cover_the_unit_interval() {
        assert_eq!(bin_of(0.0), Some(0));
        assert_eq!(bin_of(-0.0), Some(0));
        assert_eq!(bin_of(1.0 / 1024.0), Some(1));
        assert_eq!(bin_of(1.0 / 1024.0 - 1e-18), Some(0));
        assert_eq!(bin_of(1023.0 / 1024.0), Some(1023));
        assert_eq!(bin_of(1.0), Some(1023));
        assert_eq!(bin_of(f64::MIN_POSITIVE), Some(0));
        assert_eq!(bin_of(1.0 + f64::EPSILON), None);
        assert_eq!(bin_of(f64::NAN), None);
    }

    #[test]
    fn exact_auc_counts_ties_as_half() {
        assert_eq!(exact_roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(exact_roc_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(exact_roc_auc(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(
            exact_roc_auc(&[0.2, f64::NAN, 0.4, 0.4], &[false, true, true, false]),
            Some(0.75)
        );
    }

    fn outcome_strategy() -> impl Strategy<Value = (f64, bool, bool)> {
        // Scores on a coarse grid (many ties, many shared bins), arbitrary ones in [0, 1], and
        // a few out-of-range or non-finite values.
        let score = prop_oneof![
            4 => (0u32..=20).prop_map(|k| f64::from(k) / 20.0),
            4 => 0.0..=1.0f64,
            1 => prop_oneof![Just(f64::NAN), Just(-0.5), Just(1.5), Just(f64::INFINITY)],
        ];
        (score, any::<bool>(), any::<bool>())
    }

    fn record_all(outcomes: &[(f64, bool, bool)]) -> OutcomeStats {
        let mut stats = OutcomeStats::new();
        for &(score, truth, predicted) in outcomes {
            stats.record_classification(ClassificationOutcome {
                predicted_positive: Some(predicted),
                predicted_class: None,
                true_class: if truth { "1" } else { "0" },
                positive_class: "1",
                score: Some(score),
                probability_of_true_class: None,
            });
            stats.record_regression(score, if truth { 1.0 } else { 0.0 });
        }
        stats
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
            #[test]
            fn binned_auc_is_within_its_bound_of_the_exact_auc(
                outcomes in prop::collection::vec(outcome_strategy(), 0..300),
            ) {
                let stats = record_all(&outcomes);
                let scores: Vec<f64> = outcomes
                    .iter()
                    .map(|o| o.0)
                    .filter(|s| (0.0..=1.0).contains(s))
                    .collect();
                let labels: Vec<bool> = outcomes
                    .iter()
                    .filter(|o| (0.0..=1.0).contains(&o.0))
                    .map(|o| o.1)
                    .collect();
                let exact = exact_roc_auc(&scores, &labels);
                match (stats.roc_auc(), stats.roc_auc_error_bound(), exact) {
                    (Some(binned), Some(bound), Some(exact)) => {
                        prop_assert!((0.0..=0.5).contains(&bound));
                        prop_assert!((0.0..=1.0).contains(&binned));
                        prop_assert!(
                            (binned - exact).abs() <= bound + 1e-12,
                            "binned {} exact {} bound {}", binned, exact, bound
                        );
                    }
                    (None, None, None) => {}
                    other => prop_assert!(false, "{:?}", other),
                }
                prop_assert_eq!(
                    stats.auc_skipped() + stats.auc_positives() + stats.auc_negatives(),
                    outcomes.len() as u64
                );
            }

            #[test]
            fn merge_of_panes_equals_the_whole(
                outcomes in prop::collection::vec(outcome_strategy(), 0..200),
                cuts in prop::collection::vec(0usize..200, 0..5),
            ) {
                let whole = record_all(&outcomes);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(outcomes.len())).collect();
                cuts.push(0);
                cuts.push(outcomes.len());
                cuts.sort_unstable();
                let mut merged = OutcomeStats::new();
                for pane in cuts.windows(2) {
                    merged.merge(&record_all(&outcomes[pane[0]..pane[1]]));
                }
                // Counts and histogram merge exactly; the float sums up to rounding.
                prop_assert_eq!(&merged.scores, &whole.scores);
                let (m, w) = (merged.report(), whole.report());
                prop_assert_eq!(m.count, w.count);
                prop_assert_eq!(
                    [m.true_positives, m.false_positives, m.true_negatives, m.false_negatives],
                    [w.true_positives, w.false_positives, w.true_negatives, w.false_negatives]
                );
                prop_assert_eq!(m.classified, w.classified);
                prop_assert_eq!(m.auc_skipped, w.auc_skipped);
                prop_assert_eq!(m.roc_auc, w.roc_auc);
                prop_assert_eq!(m.regression_skipped, w.regression_skipped);
                for metric in QualityMetric::ALL {
                    prop_assert!(close(m.metric(metric), w.metric(metric)), "{}", metric);
                }
            }

            #[test]
            fn arbitrary_floats_never_panic_or_poison_metrics(
                values in prop::collection::vec((any::<f64>(), any::<f64>(), any::<f64>()), 0..50),
            ) {
                let mut stats = OutcomeStats::new();
                for &(a, b, c) in &values {
                    stats.record_classification(ClassificationOutcome {
    predicted_positive: None,
    predicted_class: Some("x"),
    true_class: if a > 0.0 { "x" } else { "y" },
    positive_class: "x",
    score: Some(b),
    probability_of_true_class: (c > 0.0).then_some(c),
    });
                    stats.record_regression(a, b);
                }
                for metric in QualityMetric::ALL {
                    if let Some(value) = stats.metric(metric) {
                        prop_assert!(value.is_finite(), "{} = {}", metric, value);
                    }
                }
                let json = serde_json::to_string(&stats).unwrap();
                prop_assert_eq!(serde_json::from_str::<OutcomeStats>(&json).unwrap(), stats.clone());
                // Merging may overflow a sum to +∞ (documented), never to NaN.
                let mut doubled = stats.clone();
                doubled.merge(&stats);
                for metric in QualityMetric::ALL {
                    if let Some(value) = doubled.metric(metric) {
                        prop_assert!(!value.is_nan(), "{} = {}", metric, value);
                    }
                }
            }
        }
}
