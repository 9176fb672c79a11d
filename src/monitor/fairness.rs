//! Group fairness of a binary decision across the values of one sensitive attribute: per-group
//! selection rates and error rates, demographic parity and equalized odds differences.
//!
//! Owns: [`FairnessStats`] (mergeable per-group counts of a pane or window), [`FairnessReport`]
//! and [`FairnessCheck`]. Must not touch: clocks, I/O, tokio, rdkafka — which attribute is
//! sensitive, and the label join, are the engine's business.
//!
//! Checked against fairlearn 0.15.0 (`tests/vectors/fairness.json`, written by
//! `tests/vectors/gen_quality.py`). Deliberate differences, all where fairlearn reports a number
//! for something the data cannot tell:
//! - Fewer than two groups: fairlearn returns 0.0 for both differences; we return `None`.
//! - A group without positive (negative) labels: fairlearn takes its TPR (FPR) as 0.0, because
//!   scikit-learn's `confusion_matrix(normalize="true")` turns 0/0 into 0, so such a group
//!   stretches the spread. We report that rate as `None`, and the equalized odds difference is
//!   `None` until every labelled group has both classes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The group that pools every value beyond the first `max_groups` (see [`FairnessStats`]).
pub const OTHER_GROUP: &str = "__other__";

/// The [`FairnessCheck::Skipped`] reason when the model has no sensitive attribute.
pub const NO_SENSITIVE_ATTRIBUTE: &str = "no sensitive attribute";

/// Counts of one group (one value of the sensitive attribute).
///
/// Predictions and labelled outcomes are counted separately because labels arrive late, or
/// never: the selection rate needs no label, so it covers every prediction, while the error
/// rates cover only the outcomes joined with a label so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStats {
    /// Predictions recorded.
    pub predictions: u64,
    /// Predictions of the positive decision.
    pub predicted_positive: u64,
    /// Labelled outcomes: predicted positive, labelled positive.
    pub true_positives: u64,
    /// Labelled outcomes: predicted positive, labelled negative.
    pub false_positives: u64,
    /// Labelled outcomes: predicted negative, labelled negative.
    pub true_negatives: u64,
    /// Labelled outcomes: predicted negative, labelled positive.
    pub false_negatives: u64,
}

impl GroupStats {
    /// Labelled outcomes recorded.
    pub fn labelled(&self) -> u64 {
        self.positives().saturating_add(self.negatives())
    }

    /// Labelled outcomes with a positive label.
    pub fn positives(&self) -> u64 {
        self.true_positives.saturating_add(self.false_negatives)
    }

    /// Labelled outcomes with a negative label.
    pub fn negatives(&self) -> u64 {
        self.false_positives.saturating_add(self.true_negatives)
    }

    /// Predicted positive / predictions (fairlearn's `selection_rate`); `None` without
    /// predictions.
    pub fn selection_rate(&self) -> Option<f64> {
        ratio(self.predicted_positive, self.predictions)
    }

    /// TP / (TP + FN); `None` without positive labels (fairlearn: 0.0).
    pub fn true_positive_rate(&self) -> Option<f64> {
        ratio(self.true_positives, self.positives())
    }

    /// FP / (FP + TN); `None` without negative labels (fairlearn: 0.0).
    pub fn false_positive_rate(&self) -> Option<f64> {
        ratio(self.false_positives, self.negatives())
    }

    /// Adds another group's counts.
    pub fn merge(&mut self, other: &GroupStats) {
        add(&mut self.predictions, other.predictions);
        add(&mut self.predicted_positive, other.predicted_positive);
        add(&mut self.true_positives, other.true_positives);
        add(&mut self.false_positives, other.false_positives);
        add(&mut self.true_negatives, other.true_negatives);
        add(&mut self.false_negatives, other.false_negatives);
    }
}

/// Saturating `+=`: counters never panic (tests build with overflow checks) nor wrap.
#[inline]
fn add(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

/// `numerator / denominator`, `None` for 0/0.
#[inline]
fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Per-group counts for one sensitive attribute, keyed by the attribute's value.
///
/// Bounded: the first `max_groups` distinct values recorded get their own group; any later
/// value is pooled into [`OTHER_GROUP`], so the map holds at most `max_groups + 1` entries
/// whatever the attribute's cardinality (an attribute fed an id would otherwise grow without
/// limit). The pooled group takes part in the differences like any other: dropping it would
/// hide every late group, while as a mixture its rates lie between its members', so it can
/// only understate the spread, never invent one. A value spelled `__other__` shares that
/// group. Which values get a slot depends on arrival order, which is deterministic for a
/// replayed stream.
///
/// Mergeable (pane → window): [`merge`](Self::merge) applies this map's bound to the other
/// map's groups, in the other map's (sorted) order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessStats {
    max_groups: usize,
    groups: BTreeMap<String, GroupStats>,
}

impl FairnessStats {
    /// Empty statistics keeping at most `max_groups` named groups (plus [`OTHER_GROUP`]).
    pub fn new(max_groups: usize) -> Self {
        Self {
            max_groups,
            groups: BTreeMap::new(),
        }
    }

    /// The bound on named groups.
    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    /// The groups, by attribute value (including [`OTHER_GROUP`] once values were pooled).
    pub fn groups(&self) -> &BTreeMap<String, GroupStats> {
        &self.groups
    }

    /// One group's counts; a pooled value has none of its own (look up [`OTHER_GROUP`]).
    pub fn group(&self, value: &str) -> Option<&GroupStats> {
        self.groups.get(value)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Records a prediction for a group: counts toward its selection rate.
    ///
    /// The engine calls this once per prediction, and [`record_outcome`](Self::record_outcome)
    /// once more when that prediction's label joins; the two never count the same thing twice.
    pub fn record_prediction(&mut self, group: &str, predicted_positive: bool) {
        self.update(group, |stats| {
            add(&mut stats.predictions, 1);
            add(&mut stats.predicted_positive, u64::from(predicted_positive));
        });
    }

    /// Records a labelled outcome for a group: counts toward its true and false positive rates
    /// only (the prediction itself is counted by [`record_prediction`](Self::record_prediction)).
    pub fn record_outcome(
        &mut self,
        group: &str,
        predicted_positive: bool,
        actually_positive: bool,
    ) {
        self.update(group, |stats| {
            let cell = match (predicted_positive, actually_positive) {
                (true, true) => &mut stats.true_positives,
                (true, false) => &mut stats.false_positives,
                (false, false) => &mut stats.true_negatives,
                (false, true) => &mut stats.false_negatives,
            };
            add(cell, 1);
        });
    }

    /// Adds another pane's groups to these.
    pub fn merge(&mut self, other: &FairnessStats) {
        for (value, stats) in &other.groups {
            self.update(value, |mine| mine.merge(stats));
        }
    }

    /// The group a value is counted in: its own if it has (or can get) a slot, else the pool.
    fn key_for<'g>(&self, value: &'g str) -> &'g str {
        let named = self.groups.len() - usize::from(self.groups.contains_key(OTHER_GROUP));
        if self.groups.contains_key(value) || named < self.max_groups {
            value
        } else {
            OTHER_GROUP
        }
    }

    /// Applies `f` to a value's group, creating it on first use. A closure instead of returning
    /// `&mut GroupStats` so the common case (the group exists) needs neither a `String`
    /// allocation nor an `unwrap`.
    fn update(&mut self, value: &str, f: impl FnOnce(&mut GroupStats)) {
        let key = self.key_for(value);
        match self.groups.get_mut(key) {
            Some(stats) => f(stats),
            None => {
                let mut stats = GroupStats::default();
                f(&mut stats);
                self.groups.insert(key.to_owned(), stats);
            }
        }
    }

    /// Per-group rates and the differences between the groups that take part.
    ///
    /// A group takes part in the demographic parity difference with at least
    /// `min_group_count` predictions (and at least one), and in the true/false positive rate
    /// differences with at least `min_group_count` labelled outcomes (and at least one): error
    /// rates rest on the labels, so a group with many predictions but a handful of labels
    /// would make the spread noise. Every group is listed in the report either way.
    pub fn report(&self, min_group_count: u64) -> FairnessReport {
        let groups: BTreeMap<String, GroupReport> = self
            .groups
            .iter()
            .map(|(value, stats)| (value.clone(), GroupReport::from(stats)))
            .collect();
        let demographic_parity_difference = spread(
            groups
                .values()
                .filter(|g| g.predictions >= min_group_count)
                .filter_map(|g| g.selection_rate),
        );
        // A group whose predictions all still wait for labels says nothing about error rates,
        // so only labelled groups count; but among those, one without positives (negatives)
        // leaves the TPR (FPR) spread undefined rather than silently narrower.
        let labelled: Vec<&GroupReport> = groups
            .values()
            .filter(|g| g.labelled > 0 && g.labelled >= min_group_count)
            .collect();
        let true_positive_rate_difference =
            all_defined(labelled.iter().map(|g| g.true_positive_rate));
        let false_positive_rate_difference =
            all_defined(labelled.iter().map(|g| g.false_positive_rate));
        let equalized_odds_difference = true_positive_rate_difference
            .zip(false_positive_rate_difference)
            .map(|(tpr, fpr)| tpr.max(fpr));
        FairnessReport {
            min_group_count,
            groups,
            demographic_parity_difference,
            true_positive_rate_difference,
            false_positive_rate_difference,
            equalized_odds_difference,
        }
    }
}

/// max − min over at least two values; `None` for fewer.
fn spread(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut count, mut min, mut max) = (0usize, f64::INFINITY, f64::NEG_INFINITY);
    for value in values {
        count += 1;
        min = min.min(value);
        max = max.max(value);
    }
    (count >= 2).then_some(max - min)
}

/// [`spread`] of rates that must all be defined: one `None` makes the spread `None`.
fn all_defined(rates: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let rates: Option<Vec<f64>> = rates.collect();
    rates.and_then(|rates| spread(rates.into_iter()))
}

/// One group in a [`FairnessReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// Predictions recorded.
    pub predictions: u64,
    /// Predictions of the positive decision.
    pub predicted_positive: u64,
    /// Labelled outcomes.
    pub labelled: u64,
    /// Labelled outcomes with a positive label.
    pub positives: u64,
    /// Labelled outcomes with a negative label.
    pub negatives: u64,
    /// Predicted positive / predictions.
    pub selection_rate: Option<f64>,
    /// TP / (TP + FN).
    pub true_positive_rate: Option<f64>,
    /// FP / (FP + TN).
    pub false_positive_rate: Option<f64>,
}

impl From<&GroupStats> for GroupReport {
    fn from(stats: &GroupStats) -> Self {
        Self {
            predictions: stats.predictions,
            predicted_positive: stats.predicted_positive,
            labelled: stats.labelled(),
            positives: stats.positives(),
            negatives: stats.negatives(),
            selection_rate: stats.selection_rate(),
            true_positive_rate: stats.true_positive_rate(),
            false_positive_rate: stats.false_positive_rate(),
        }
    }
}

/// Per-group rates and the fairness differences of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    /// The predictions (labelled outcomes) a group needed to take part in the demographic
    /// parity (error rate) differences.
    pub min_group_count: u64,
    /// Each group's counts and rates, by attribute value.
    pub groups: BTreeMap<String, GroupReport>,
    /// Largest minus smallest selection rate over the groups taking part, as
    /// `fairlearn.metrics.demographic_parity_difference`; `None` for fewer than two groups.
    pub demographic_parity_difference: Option<f64>,
    /// Largest minus smallest TPR over the labelled groups taking part; `None` for fewer than
    /// two, or when one has no positive label.
    pub true_positive_rate_difference: Option<f64>,
    /// Largest minus smallest FPR over the labelled groups taking part; `None` for fewer than
    /// two, or when one has no negative label.
    pub false_positive_rate_difference: Option<f64>,
    /// The larger of the TPR and FPR differences, as
    /// `fairlearn.metrics.equalized_odds_difference(agg="worst_case")`; `None` when either is.
    pub equalized_odds_difference: Option<f64>,
}

/// The fairness result of one evaluation: skipped, with the reason, or computed.
///
/// Serialised with a `status` tag: `{"status":"skipped","reason":"no sensitive attribute"}`,
/// or `{"status":"computed", ...the report's fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FairnessCheck {
    /// Not computed.
    Skipped {
        /// Why, e.g. [`NO_SENSITIVE_ATTRIBUTE`].
        reason: String,
    },
    /// Computed from the window's counts.
    Computed(FairnessReport),
}

impl FairnessCheck {
    /// Skipped because the model declares no sensitive attribute (reason
    /// [`NO_SENSITIVE_ATTRIBUTE`]).
    pub fn no_sensitive_attribute() -> Self {
        FairnessCheck::Skipped {
            reason: NO_SENSITIVE_ATTRIBUTE.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::relative_error;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        max_groups: usize,
        y_true: Vec<u8>,
        y_pred: Vec<u8>,
        group: Vec<String>,
        pooled_group: Vec<String>,
        by_group: BTreeMap<String, FairlearnGroup>,
        demographic_parity_difference: f64,
        equalized_odds_difference: f64,
        eo_defined: bool,
    }

    #[derive(Deserialize)]
    struct FairlearnGroup {
        count: u64,
        positives: u64,
        negatives: u64,
        selection_rate: f64,
        tpr: f64,
        fpr: f64,
    }

    fn close(actual: f64, expected: f64) -> bool {
        relative_error(actual, expected) <= 1e-12 || (actual - expected).abs() <= 1e-15
    }

    #[test]
    fn matches_fairlearn_vectors() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/fairness.json")).unwrap();
        assert!(vectors.cases.len() >= 10);
        for case in &vectors.cases {
            let name = case.name.as_str();
            let mut stats = FairnessStats::new(case.max_groups);
            for i in 0..case.y_true.len() {
                let (truth, predicted) = (case.y_true[i] == 1, case.y_pred[i] == 1);
                stats.record_prediction(&case.group[i], predicted);
                stats.record_outcome(&case.group[i], predicted, truth);
            }
            // Our pooling is the one the generator applied before calling fairlearn.
            let pooled: Vec<&str> = case.pooled_group.iter().map(String::as_str).collect();
            let keys: Vec<&String> = stats.groups().keys().collect();
            let expected: Vec<&String> = case.by_group.keys().collect();
            assert_eq!(keys, expected, "{name}: groups");
            assert!(pooled.iter().all(|g| stats.group(g).is_some()), "{name}");
            assert!(stats.groups().len() <= case.max_groups + 1);

            let report = stats.report(0);
            for (value, fairlearn) in &case.by_group {
                let ours = &report.groups[value];
                assert_eq!(ours.predictions, fairlearn.count, "{name}/{value}");
                assert_eq!(ours.positives, fairlearn.positives, "{name}/{value}");
                assert_eq!(ours.negatives, fairlearn.negatives, "{name}/{value}");
                assert!(close(
                    ours.selection_rate.unwrap(),
                    fairlearn.selection_rate
                ));
                // fairlearn's 0.0 for an undefined rate is our None.
                assert!(close(ours.true_positive_rate.unwrap_or(0.0), fairlearn.tpr));
                assert!(close(
                    ours.false_positive_rate.unwrap_or(0.0),
                    fairlearn.fpr
                ));
                assert_eq!(ours.true_positive_rate.is_none(), fairlearn.positives == 0);
                assert_eq!(ours.false_positive_rate.is_none(), fairlearn.negatives == 0);
            }

            if case.by_group.len() >= 2 {
                let dpd = report.demographic_parity_difference.unwrap();
                assert!(
                    close(dpd, case.demographic_parity_difference),
                    "{name}: dpd {dpd} vs fairlearn {}",
                    case.demographic_parity_difference
                );
            } else {
                assert_eq!(report.demographic_parity_difference, None, "{name}");
                assert_eq!(case.demographic_parity_difference, 0.0, "{name}");
            }

            if case.eo_defined {
                let eod = report.equalized_odds_difference.unwrap();
                assert!(
                    close(eod, case.equalized_odds_difference),
                    "{name}: eod {eod} vs fairlearn {}",
                    case.equalized_odds_difference
                );
            } else {
                assert_eq!(report.equalized_odds_difference, None, "{name}");
                // fairlearn's number is what substituting 0 for the undefined rates gives
                // (and 0.0 for a single group): the difference we deliberately do not copy.
                let rates = |f: fn(&GroupReport) -> Option<f64>| {
                    let r: Vec<f64> = report
                        .groups
                        .values()
                        .map(|g| f(g).unwrap_or(0.0))
                        .collect();
                    spread(r.into_iter()).unwrap_or(0.0)
                };
                let compat = rates(|g| g.true_positive_rate).max(rates(|g| g.false_positive_rate));
                assert!(
                    close(compat, case.equalized_odds_difference),
                    "{name}: {compat}"
                );
            }
        }
    }

    #[test]
    fn skip_reason_and_serde_shape() {
        let skipped = FairnessCheck::no_sensitive_attribute();
        assert_eq!(
            serde_json::to_value(&skipped).unwrap(),
            serde_json::json!({"status": "skipped", "reason": "no sensitive attribute"})
        );

        let mut stats = FairnessStats::new(4);
        stats.record_prediction("a", true);
        stats.record_prediction("b", false);
        let computed = FairnessCheck::Computed(stats.report(1));
        let json = serde_json::to_value(&computed).unwrap();
        assert_eq!(json["status"], "computed");
        assert_eq!(json["min_group_count"], 1);
        assert_eq!(json["demographic_parity_difference"], 1.0);
        assert_eq!(json["equalized_odds_difference"], serde_json::Value::Null);
        assert_eq!(json["groups"]["a"]["selection_rate"], 1.0);
        let back: FairnessCheck = serde_json::from_value(json).unwrap();
        assert_eq!(back, computed);
    }

    #[test]
    fn small_groups_do_not_take_part() {
        let mut stats = FairnessStats::new(8);
        for i in 0..10 {
            stats.record_prediction("big", i % 2 == 0);
            stats.record_outcome("big", i % 2 == 0, i % 3 == 0);
        }
        for i in 0..10 {
            stats.record_prediction("many_predictions", i < 3);
        }
        stats.record_outcome("many_predictions", true, true);
        stats.record_outcome("many_predictions", false, false);
        stats.record_prediction("tiny", true);
        stats.record_outcome("tiny", true, false);

        let all = stats.report(0);
        // tiny 1.0 − many_predictions 0.3.
        assert!((all.demographic_parity_difference.unwrap() - 0.7).abs() < 1e-15);
        assert!(all.equalized_odds_difference.is_none()); // tiny has no positive label

        let report = stats.report(5);
        assert_eq!(report.groups.len(), 3, "small groups are still listed");
        assert!((report.demographic_parity_difference.unwrap() - 0.2).abs() < 1e-15);
        // Only "big" has five labels: fewer than two groups compare error rates.
        assert_eq!(report.true_positive_rate_difference, None);
        assert_eq!(report.equalized_odds_difference, None);
    }

    #[test]
    fn undefined_cases() {
        let empty = FairnessStats::new(8).report(0);
        assert!(empty.groups.is_empty());
        assert_eq!(empty.demographic_parity_difference, None);
        assert_eq!(empty.equalized_odds_difference, None);

        let mut stats = FairnessStats::new(8);
        stats.record_prediction("a", true);
        stats.record_outcome("a", true, true);
        stats.record_outcome("a", false, false);
        assert_eq!(stats.report(0).demographic_parity_difference, None);
        // "b" has predictions but no labels yet: in DP, not in EO.
        stats.record_prediction("b", false);
        let report = stats.report(0);
        assert_eq!(report.demographic_parity_difference, Some(1.0));
        assert_eq!(report.equalized_odds_difference, None);
        stats.record_outcome("b", false, true);
        stats.record_outcome("b", true, false);
        let report = stats.report(0);
        assert_eq!(report.true_positive_rate_difference, Some(1.0));
        assert_eq!(report.false_positive_rate_difference, Some(1.0));
        assert_eq!(report.equalized_odds_difference, Some(1.0));
        // A label without a recorded prediction: no selection rate, so no part in DP.
        stats.record_outcome("c", true, true);
        assert_eq!(stats.report(0).groups["c"].selection_rate, None);
        assert_eq!(stats.report(0).demographic_parity_difference, Some(1.0));
    }

    #[test]
    fn groups_beyond_the_bound_are_pooled() {
        let mut stats = FairnessStats::new(2);
        for value in ["x", "y", "z", "w", "x", OTHER_GROUP] {
            stats.record_prediction(value, true);
        }
        let keys: Vec<&str> = stats.groups().keys().map(String::as_str).collect();
        assert_eq!(keys, [OTHER_GROUP, "x", "y"]);
        assert_eq!(stats.group(OTHER_GROUP).unwrap().predictions, 3);
        assert_eq!(stats.group("x").unwrap().predictions, 2);

        // max_groups = 0 pools everything.
        let mut none = FairnessStats::new(0);
        none.record_outcome("a", true, false);
        assert_eq!(none.groups().len(), 1);
        assert!(none.group(OTHER_GROUP).is_some());

        // Merge applies the receiving side's bound.
        let mut small = FairnessStats::new(1);
        small.record_prediction("b", true);
        small.merge(&stats);
        let keys: Vec<&str> = small.groups().keys().map(String::as_str).collect();
        assert_eq!(keys, [OTHER_GROUP, "b"]);
        assert_eq!(small.group(OTHER_GROUP).unwrap().predictions, 6);
    }

    fn record(stats: &mut FairnessStats, rows: &[(u8, bool, bool, bool)]) {
        for &(group, predicted, truth, labelled) in rows {
            let value = format!("g{group}");
            stats.record_prediction(&value, predicted);
            if labelled {
                stats.record_outcome(&value, predicted, truth);
            }
        }
    }

    proptest! {
        #[test]
        fn merge_of_panes_equals_the_whole_and_rates_are_bounded(
            rows in prop::collection::vec((0u8..6, any::<bool>(), any::<bool>(), any::<bool>()), 0..300),
            cut in 0usize..300,
            max_groups in 0usize..8,
        ) {
            // Without pooling, merging is exact whatever the order.
            let cut = cut.min(rows.len());
            let mut whole = FairnessStats::new(16);
            record(&mut whole, &rows);
            let (mut left, mut right) = (FairnessStats::new(16), FairnessStats::new(16));
            record(&mut left, &rows[..cut]);
            record(&mut right, &rows[cut..]);
            right.merge(&left);
            prop_assert_eq!(&right, &whole);

            // With pooling, the bound holds and nothing is lost.
            let mut bounded = FairnessStats::new(max_groups);
            record(&mut bounded, &rows);
            let mut pane = FairnessStats::new(max_groups);
            record(&mut pane, &rows[..cut]);
            bounded.merge(&pane);
            prop_assert!(bounded.groups().len() <= max_groups + 1);
            let total: u64 = bounded.groups().values().map(|g| g.predictions).sum();
            prop_assert_eq!(total, (rows.len() + cut) as u64);

            let report = whole.report(0);
            for difference in [
                report.demographic_parity_difference,
                report.true_positive_rate_difference,
                report.false_positive_rate_difference,
                report.equalized_odds_difference,
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!((0.0..=1.0).contains(&difference));
            }
        }
    }
}
