//! One monitored series: a feature (or the prediction's score or class) of one model version.
//!
//! Owns: the warm-up sample, the frozen reference (bins, sketch grid, missing rate), the pane
//! window, data-quality counts and the per-evaluation statistics. Pure.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::detect::binning::{sorted_finite, CategoricalBins, FineGrid};
use crate::detect::chi2::chi2_homogeneity;
use crate::detect::divergence::{jensen_shannon, psi};
use crate::detect::sketch::{
    ks_from_sketch, wasserstein_from_sketch, ReferenceSample, WindowSketch,
};
use crate::detect::window::PaneWindow;
use crate::event::FeatureValue;

use super::output::hex;
use super::settings::{DetectorSettings, FeatureKind, ReferenceSettings};

/// Data-quality counts of a series since it was first seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityCounts {
    /// Values observed (any kind).
    pub observed: u64,
    /// Null or absent values.
    pub missing: u64,
    /// Values of the wrong type (a string in a numeric feature, a number in a categorical one).
    pub type_mismatch: u64,
    /// NaN or infinite numbers.
    pub non_finite: u64,
    /// Categories absent from the reference (counted in `__other__`).
    pub unseen_category: u64,
    /// Numbers outside the reference's [min, max].
    pub out_of_range: u64,
}

/// A value reduced to what a tracker needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation<'a> {
    /// A finite number.
    Number(f64),
    /// A category label.
    Category(&'a str),
    /// Missing (null, absent).
    Missing,
    /// NaN or infinite.
    NonFinite,
}

impl<'a> Observation<'a> {
    /// From an event's feature value.
    pub fn from_value(value: &'a FeatureValue<'_>) -> Self {
        match value {
            FeatureValue::Null => Observation::Missing,
            FeatureValue::Number(x) if x.is_finite() => Observation::Number(*x),
            FeatureValue::Number(_) => Observation::NonFinite,
            FeatureValue::Text(text) => Observation::Category(text),
            FeatureValue::Bool(true) => Observation::Category("true"),
            FeatureValue::Bool(false) => Observation::Category("false"),
        }
    }
}

/// The warm-up sample of a series, before the reference freezes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct WarmupSample {
    numbers: Vec<f64>,
    categories: BTreeMap<String, u64>,
    missing: u64,
    total: u64,
    /// Category counts added since the state changelog's last warm-up chunk: the chunks
    /// carry them so that a high-cardinality feature's map is not rewritten at every commit.
    #[serde(skip)]
    unwritten_categories: BTreeMap<String, u64>,
}

/// The bulk of a warm-up sample: its numbers and category counts, which the state changelog
/// stores in append-only chunks rather than with every write of the monitor (whose cost
/// would otherwise grow with the square of the warm-up length).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmupValues {
    /// The numbers, in arrival order.
    pub numbers: Vec<f64>,
    /// Count per category.
    pub categories: BTreeMap<String, u64>,
}

/// The frozen reference of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reference {
    /// Numeric: exact sorted sample with its grid, coarse bin counts, spread.
    Numeric {
        /// Sorted sample and sketch grid.
        sample: ReferenceSample,
        /// Reference counts per coarse bin.
        counts: Vec<u64>,
        /// Standard deviation (Wasserstein is reported in these units).
        std_dev: f64,
    },
    /// Categorical: categories and their counts (`__other__` last).
    Categorical {
        /// The bins.
        bins: CategoricalBins,
        /// Reference counts per bin.
        counts: Vec<u64>,
    },
}

impl Reference {
    /// Checks that the reference is consistent in itself (its counts match its bins);
    /// returns the number of window cells it goes with.
    ///
    /// # Errors
    /// What does not match.
    pub fn check(&self) -> Result<usize, String> {
        match self {
            Reference::Numeric { sample, counts, .. } => {
                let grid = sample.grid();
                if counts.len() != grid.coarse_bins() {
                    return Err(format!(
                        "a numeric reference with {} counts for {} bins",
                        counts.len(),
                        grid.coarse_bins()
                    ));
                }
                Ok(grid.cells())
            }
            Reference::Categorical { bins, counts } => {
                if counts.len() != bins.len() {
                    return Err(format!(
                        "a categorical reference with {} counts for {} bins",
                        counts.len(),
                        bins.len()
                    ));
                }
                Ok(bins.len())
            }
        }
    }
}

/// One detector's outcome at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorResult {
    /// Detector name.
    pub detector: Cow<'static, str>,
    /// Statistic (distance, test statistic, or rate increase).
    pub statistic: f64,
    /// p-value for tests (before any multiple-testing adjustment).
    pub p_value: Option<f64>,
    /// The threshold compared against (a p-value threshold for tests).
    pub threshold: f64,
    /// Bound on the statistic's error when computed from a sketch.
    pub error_bound: Option<f64>,
    /// Whether the detector's breaches count towards retraining.
    pub retrain: bool,
}

/// The statistics of one series at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEvaluation {
    /// Detector outcomes; empty when there was not enough data.
    pub results: Vec<DetectorResult>,
    /// Reference size.
    pub reference_count: u64,
    /// Window size.
    pub window_count: u64,
    /// SHA-256 of the compared histograms.
    pub evidence_sha256: String,
}

/// A monitored series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTracker {
    kind: Option<FeatureKind>,
    warmup: Option<WarmupSample>,
    reference: Option<Reference>,
    reference_missing_rate: f64,
    window: Option<PaneWindow>,
    /// Data-quality counts.
    pub quality: QualityCounts,
}

impl SeriesTracker {
    /// A tracker in warm-up; `kind` forces the type (otherwise the first non-null value
    /// decides: number → numeric, string or boolean → categorical).
    pub fn new(kind: Option<FeatureKind>) -> Self {
        Self {
            kind,
            warmup: Some(WarmupSample::default()),
            reference: None,
            reference_missing_rate: 0.0,
            window: None,
            quality: QualityCounts::default(),
        }
    }

    /// A tracker for a series first seen after warm-up ended: it has no reference and is only
    /// counted.
    pub fn unreferenced() -> Self {
        Self {
            warmup: None,
            ..Self::new(None)
        }
    }

    /// The series' type, once known.
    pub fn kind(&self) -> Option<FeatureKind> {
        self.kind
    }

    /// The frozen reference, once built.
    pub fn reference(&self) -> Option<&Reference> {
        self.reference.as_ref()
    }

    /// The numbers of the warm-up sample so far, in arrival order (empty once frozen).
    pub fn warmup_numbers(&self) -> &[f64] {
        self.warmup.as_ref().map_or(&[], |w| &w.numbers)
    }

    /// Moves the warm-up sample's numbers and categories out, leaving it without them until
    /// [`SeriesTracker::put_warmup_values`] (see [`WarmupValues`]).
    pub fn take_warmup_values(&mut self) -> WarmupValues {
        self.warmup
            .as_mut()
            .map(|w| WarmupValues {
                numbers: std::mem::take(&mut w.numbers),
                categories: std::mem::take(&mut w.categories),
            })
            .unwrap_or_default()
    }

    /// Puts back what [`SeriesTracker::take_warmup_values`] moved out.
    pub fn put_warmup_values(&mut self, values: WarmupValues) {
        if let Some(warmup) = self.warmup.as_mut() {
            warmup.numbers = values.numbers;
            warmup.categories = values.categories;
        }
    }

    /// The category counts added since the last call, for the next warm-up chunk.
    pub fn take_unwritten_categories(&mut self) -> Vec<(String, u64)> {
        self.warmup
            .as_mut()
            .map(|w| {
                std::mem::take(&mut w.unwritten_categories)
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks every category count as not yet in a chunk: for a sample read from a record
    /// that held its categories itself (format v3), so that the next chunk carries them.
    pub fn mark_categories_unwritten(&mut self) {
        if let Some(warmup) = self.warmup.as_mut() {
            warmup.unwritten_categories = warmup.categories.clone();
        }
    }

    /// Adds the numbers and category counts of a warm-up chunk of the state changelog.
    ///
    /// # Errors
    /// The series is not warming up (the chunk does not belong to this monitor's state), or
    /// a count overflows.
    pub fn extend_warmup(
        &mut self,
        numbers: &[f64],
        categories: Vec<(String, u64)>,
    ) -> Result<(), String> {
        let Some(warmup) = self.warmup.as_mut() else {
            return if numbers.is_empty() && categories.is_empty() {
                Ok(())
            } else {
                Err("warm-up values for a series that is not warming up".to_owned())
            };
        };
        warmup.numbers.extend_from_slice(numbers);
        for (category, added) in categories {
            let count = warmup.categories.entry(category).or_default();
            *count = count
                .checked_add(added)
                .ok_or_else(|| "a warm-up category count overflows".to_owned())?;
        }
        Ok(())
    }

    /// Checks that the warm-up sample holds as many numbers as its counts say it received
    /// (every observation is counted once as a number, a category or a missing value), so
    /// that a lost chunk of the state changelog is refused rather than silently shrinking
    /// the reference.
    ///
    /// # Errors
    /// How many numbers there are and how many there should be.
    pub fn check_warmup_sample(&self) -> Result<(), String> {
        let Some(warmup) = self.warmup.as_ref() else {
            return Ok(());
        };
        let categorical = warmup
            .categories
            .values()
            .try_fold(0u64, |sum, &count| sum.checked_add(count));
        let expected = warmup
            .total
            .checked_sub(warmup.missing)
            .zip(categorical)
            .and_then(|(rest, categorical)| rest.checked_sub(categorical));
        if expected == Some(warmup.numbers.len() as u64) {
            Ok(())
        } else {
            Err(format!(
                "the warm-up sample has {} numbers, its counts say {} (total {}, missing {}, \
                 categorical {categorical})",
                warmup.numbers.len(),
                expected.map_or_else(|| "a negative number".to_owned(), |e| e.to_string()),
                warmup.total,
                warmup.missing,
                categorical =
                    categorical.map_or_else(|| "overflowing".to_owned(), |c| c.to_string()),
            ))
        }
    }

    /// Moves the reference out (the state changelog writes references as records of their
    /// own, once, instead of with every window update); [`SeriesTracker::put_reference`]
    /// puts it back.
    pub fn take_reference(&mut self) -> Option<Reference> {
        self.reference.take()
    }

    /// Checks that `reference` can be this series' reference: consistent in itself, and of
    /// its window's shape. A record that does not belong with this series' state (a bug, a
    /// damaged or hand-edited state topic) is refused at restore instead of being misread:
    /// a window with no reference to compare with, or one of another shape.
    ///
    /// # Errors
    /// What does not fit.
    pub fn check_reference(&self, reference: Option<&Reference>) -> Result<(), String> {
        let reference_cells = reference.map(Reference::check).transpose()?;
        match (reference_cells, self.window.as_ref().map(PaneWindow::cells)) {
            (None, Some(window)) => Err(format!("a window of {window} cells and no reference")),
            (Some(reference), Some(window)) if reference != window => Err(format!(
                "a reference of {reference} cells and a window of {window}"
            )),
            _ => Ok(()),
        }
    }

    /// Puts back a reference moved out by [`SeriesTracker::take_reference`] or read from the
    /// state changelog (checked with [`SeriesTracker::check_reference`]).
    pub fn put_reference(&mut self, reference: Option<Reference>) {
        self.reference = reference;
    }

    /// Window observations (0 before monitoring).
    pub fn window_count(&self) -> u64 {
        self.window.as_ref().map_or(0, PaneWindow::count)
    }

    fn count_quality<'v>(&mut self, observation: Observation<'v>) -> Observation<'v> {
        self.quality.observed += 1;
        if self.kind.is_none() {
            self.kind = match observation {
                Observation::Number(_) | Observation::NonFinite => Some(FeatureKind::Numeric),
                Observation::Category(_) => Some(FeatureKind::Categorical),
                Observation::Missing => None,
            };
        }
        match (self.kind, observation) {
            (_, Observation::Missing) => {
                self.quality.missing += 1;
                Observation::Missing
            }
            (_, Observation::NonFinite) => {
                self.quality.non_finite += 1;
                Observation::Missing
            }
            (Some(FeatureKind::Numeric), Observation::Category(_))
            | (Some(FeatureKind::Categorical), Observation::Number(_)) => {
                self.quality.type_mismatch += 1;
                Observation::Missing
            }
            _ => observation,
        }
    }

    /// Adds an observation to the warm-up sample.
    pub fn warm_up(&mut self, observation: Observation<'_>) {
        let observation = self.count_quality(observation);
        let Some(warmup) = self.warmup.as_mut() else {
            return;
        };
        warmup.total += 1;
        match observation {
            Observation::Number(x) => warmup.numbers.push(x),
            Observation::Category(c) => {
                for counts in [&mut warmup.categories, &mut warmup.unwritten_categories] {
                    if let Some(count) = counts.get_mut(c) {
                        *count += 1;
                    } else {
                        counts.insert(c.to_owned(), 1);
                    }
                }
            }
            Observation::Missing | Observation::NonFinite => warmup.missing += 1,
        }
    }

    /// Freezes the warm-up sample into the reference and opens the window. A series without a
    /// usable value (all missing, ignored) stays unreferenced.
    pub fn freeze(&mut self, reference: &ReferenceSettings, panes: usize) {
        let Some(warmup) = self.warmup.take() else {
            return;
        };
        self.reference_missing_rate = if warmup.total == 0 {
            0.0
        } else {
            warmup.missing as f64 / warmup.total as f64
        };
        self.reference = match self.kind {
            Some(FeatureKind::Numeric) => {
                let sorted = sorted_finite(&warmup.numbers);
                FineGrid::from_sorted(&sorted, reference.bins, reference.sketch_refinement)
                    .ok()
                    .map(|grid| {
                        let mut cells = vec![0u64; grid.cells()];
                        for &x in &sorted {
                            cells[grid.cell_of(x)] += 1;
                        }
                        let counts = grid.coarse_counts(&cells);
                        let n = sorted.len() as f64;
                        let mean = sorted.iter().sum::<f64>() / n;
                        let variance =
                            sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                        Reference::Numeric {
                            sample: ReferenceSample::new(sorted, grid),
                            counts,
                            std_dev: variance.sqrt(),
                        }
                    })
            }
            Some(FeatureKind::Categorical) if !warmup.categories.is_empty() => {
                let bins = CategoricalBins::from_counts(
                    warmup.categories.iter().map(|(k, v)| (k.as_str(), *v)),
                    reference.max_categories,
                );
                let mut counts = vec![0u64; bins.len()];
                for (category, count) in &warmup.categories {
                    counts[bins.bin_of(category)] += count;
                }
                Some(Reference::Categorical { bins, counts })
            }
            _ => None,
        };
        self.window = self.reference.as_ref().and_then(|r| {
            let cells = match r {
                Reference::Numeric { sample, .. } => sample.grid().cells(),
                Reference::Categorical { bins, .. } => bins.len(),
            };
            PaneWindow::new(cells, panes).ok()
        });
    }

    /// The reference's missing rate.
    pub fn reference_missing_rate(&self) -> f64 {
        self.reference_missing_rate
    }

    /// A copy of this frozen tracker with an empty window of `panes` panes and fresh quality
    /// counts: how a baseline's reference starts monitoring under the running settings.
    pub fn restarted(&self, panes: usize) -> Self {
        let window = self.reference.as_ref().and_then(|r| {
            let cells = match r {
                Reference::Numeric { sample, .. } => sample.grid().cells(),
                Reference::Categorical { bins, .. } => bins.len(),
            };
            PaneWindow::new(cells, panes).ok()
        });
        Self {
            kind: self.kind,
            warmup: None,
            reference: self.reference.clone(),
            reference_missing_rate: self.reference_missing_rate,
            window,
            quality: QualityCounts::default(),
        }
    }

    /// Records an observation into pane `pane` of the window.
    #[inline(always)]
    pub fn record(&mut self, pane: i64, observation: Observation<'_>) {
        let observation = self.count_quality(observation);
        let (Some(reference), Some(window)) = (self.reference.as_ref(), self.window.as_mut())
        else {
            return;
        };
        match (reference, observation) {
            (Reference::Numeric { sample, .. }, Observation::Number(x)) => {
                let grid = sample.grid();
                let cell = grid.cell_of(x);
                if cell == 0 || cell == grid.cells() - 1 {
                    self.quality.out_of_range += 1;
                }
                window.record_value(pane, cell, x);
            }
            (Reference::Categorical { bins, .. }, Observation::Category(c)) => {
                let bin = bins.bin_of(c);
                if bin == bins.len() - 1 {
                    self.quality.unseen_category += 1;
                }
                window.record(pane, bin);
            }
            _ => window.record_missing(pane),
        }
    }

    /// A hint that `x` is recorded soon: brings the part of the reference grid's lookup table
    /// that [`Self::record`] will read into the cache. Changes nothing.
    #[inline]
    pub fn prefetch_number(&self, x: f64) {
        if let Some(Reference::Numeric { sample, .. }) = &self.reference {
            sample.grid().prefetch_cell(x);
        }
    }

    /// Closes the window's panes up to `through`.
    pub fn close_through(&mut self, through: i64) {
        if let Some(window) = self.window.as_mut() {
            window.close_through(through);
        }
    }

    /// Runs the enabled detectors on the current window. `None` when unreferenced or when the
    /// window holds fewer than `min_samples` observations (insufficient data).
    pub fn evaluate(&self, detectors: &DetectorSettings) -> Option<SeriesEvaluation> {
        let (reference, window) = (self.reference.as_ref()?, self.window.as_ref()?);
        let window_count = window.count();
        if window_count < detectors.min_samples {
            return None;
        }
        let mut results = Vec::new();
        let retrain = |action| action == super::settings::Action::Retrain;
        let (reference_counts, current_counts, reference_count) = match reference {
            Reference::Numeric {
                sample,
                counts,
                std_dev,
            } => {
                let current = sample.grid().coarse_counts(window.counts());
                let sketch = WindowSketch {
                    cell_counts: window.counts(),
                    low_tail_sum: window.sums().low_tail_sum,
                    high_tail_sum: window.sums().high_tail_sum,
                };
                if detectors.ks.enabled {
                    if let Ok(ks) = ks_from_sketch(sample, &sketch) {
                        results.push(DetectorResult {
                            detector: Cow::Borrowed("ks"),
                            statistic: ks.estimate.value,
                            p_value: Some(ks.p_value),
                            threshold: detectors.ks.p_value,
                            error_bound: Some(ks.estimate.error_bound),
                            retrain: retrain(detectors.ks.action),
                        });
                    }
                }
                if detectors.wasserstein.enabled && *std_dev > 0.0 {
                    if let Ok(w) = wasserstein_from_sketch(sample, &sketch) {
                        results.push(DetectorResult {
                            detector: Cow::Borrowed("wasserstein"),
                            statistic: w.value / std_dev,
                            p_value: None,
                            threshold: detectors.wasserstein.threshold,
                            error_bound: Some(w.error_bound / std_dev),
                            retrain: retrain(detectors.wasserstein.action),
                        });
                    }
                }
                (counts.as_slice(), current, sample.len() as u64)
            }
            Reference::Categorical { counts, .. } => {
                let current = window.counts().to_vec();
                if detectors.chi2.enabled {
                    if let Ok(chi2) = chi2_homogeneity(counts, &current) {
                        results.push(DetectorResult {
                            detector: Cow::Borrowed("chi2"),
                            statistic: chi2.statistic,
                            p_value: Some(chi2.p_value),
                            threshold: detectors.chi2.p_value,
                            error_bound: None,
                            retrain: retrain(detectors.chi2.action),
                        });
                    }
                }
                (counts.as_slice(), current, counts.iter().sum())
            }
        };
        if detectors.psi.enabled {
            if let Ok(value) = psi(reference_counts, &current_counts) {
                results.push(DetectorResult {
                    detector: Cow::Borrowed("psi"),
                    statistic: value,
                    p_value: None,
                    threshold: detectors.psi.threshold,
                    error_bound: None,
                    retrain: retrain(detectors.psi.action),
                });
            }
        }
        if detectors.js.enabled {
            if let Ok(value) = jensen_shannon(reference_counts, &current_counts) {
                results.push(DetectorResult {
                    detector: Cow::Borrowed("js"),
                    statistic: value,
                    p_value: None,
                    threshold: detectors.js.threshold,
                    error_bound: None,
                    retrain: retrain(detectors.js.action),
                });
            }
        }
        if detectors.missing_rate.enabled {
            let missing = window.sums().missing;
            let rate = missing as f64 / (missing + window_count) as f64;
            results.push(DetectorResult {
                detector: Cow::Borrowed("missing_rate"),
                statistic: rate - self.reference_missing_rate,
                p_value: None,
                threshold: detectors.missing_rate.max_increase,
                error_bound: None,
                retrain: retrain(detectors.missing_rate.action),
            });
        }
        Some(SeriesEvaluation {
            results,
            reference_count,
            window_count,
            evidence_sha256: evidence(reference_counts, &current_counts, window.sums().missing),
        })
    }

    /// `(oldest, newest)` closed pane indices in the window.
    pub fn pane_range(&self) -> Option<(i64, i64)> {
        self.window.as_ref()?.pane_range()
    }
}

/// SHA-256 over the two histograms and the window's missing count: what an auditor needs to
/// re-derive every statistic of the evaluation.
fn evidence(reference: &[u64], current: &[u64], missing: u64) -> String {
    let mut hasher = Sha256::new();
    for side in [reference, current] {
        hasher.update((side.len() as u64).to_le_bytes());
        for count in side {
            hasher.update(count.to_le_bytes());
        }
    }
    hasher.update(missing.to_le_bytes());
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series warmed up on `observations` and frozen with `bins` coarse bins.
    fn frozen<'a>(
        observations: impl IntoIterator<Item = Observation<'a>>,
        bins: usize,
    ) -> SeriesTracker {
        let mut tracker = SeriesTracker::new(None);
        for observation in observations {
            tracker.warm_up(observation);
        }
        let settings = ReferenceSettings {
            bins,
            ..ReferenceSettings::default()
        };
        tracker.freeze(&settings, 5);
        tracker
    }

    #[test]
    fn a_reference_must_fit_its_series_window() {
        let numbers = || (0..1_000).map(|i| Observation::Number(f64::from(i)));
        let ten = frozen(numbers(), 10);
        let five = frozen(numbers(), 5);
        let categories = frozen(
            ["a", "b", "c"]
                .iter()
                .cycle()
                .take(300)
                .map(|c| Observation::Category(c)),
            10,
        );
        assert!(ten.check_reference(ten.reference()).is_ok());
        assert!(categories.check_reference(categories.reference()).is_ok());
        // Another grid's, or another kind's: the window has another shape.
        for other in [five.reference(), categories.reference()] {
            let error = ten.check_reference(other).unwrap_err();
            assert!(error.contains("a reference of"), "{error}");
        }
        // A window with nothing to compare it with.
        let error = ten.check_reference(None).unwrap_err();
        assert!(error.contains("no reference"), "{error}");
        // A series without a window (warming up, or never frozen) takes either.
        let warming = SeriesTracker::new(None);
        assert!(warming.check_reference(None).is_ok());
        assert!(warming.check_reference(ten.reference()).is_ok());
        // A reference inconsistent in itself.
        let Some(Reference::Categorical { bins, mut counts }) = categories.reference().cloned()
        else {
            panic!("a categorical reference");
        };
        counts.pop();
        let error = categories
            .check_reference(Some(&Reference::Categorical { bins, counts }))
            .unwrap_err();
        assert!(error.contains("3 counts for 4 bins"), "{error}");
    }
}
