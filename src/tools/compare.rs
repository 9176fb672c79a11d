//! `driftwatch compare`: one reference sample against one current sample, every statistic the
//! service would compute on them, plus the bins used, as one JSON object.

use std::collections::BTreeMap;

use serde::Serialize;

use super::lines::{read_labels, read_numbers, InputError};
use crate::cli::CompareArgs;
use crate::detect::binning::{sorted_finite, CategoricalBins, NumericBins, OTHER_CATEGORY};
use crate::detect::chi2::{chi2_homogeneity, Chi2Result};
use crate::detect::divergence::{jensen_shannon, psi};
use crate::detect::ks::ks_2samp_sorted;
use crate::detect::wasserstein::wasserstein_sorted;

/// Why `compare` failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Bad input file or line.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A sample has nothing to compare.
    #[error("{0} sample has no {1} values")]
    Empty(&'static str, &'static str),
    /// Unusable `--bins`.
    #[error("--bins must be at least 1")]
    Bins,
}

/// KS part of the numeric report.
#[derive(Debug, Serialize)]
pub struct KsReport {
    /// sup |F_ref − F_cur|.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// "exact" or "asymp", SciPy's "auto" rule.
    pub method: &'static str,
}

/// Report for numeric samples.
#[derive(Debug, Serialize)]
pub struct NumericReport {
    /// Always "numeric".
    pub kind: &'static str,
    /// Finite reference values used.
    pub reference_count: u64,
    /// Finite current values used.
    pub current_count: u64,
    /// Non-finite lines (nan, inf) in the reference, left out.
    pub reference_missing: u64,
    /// Non-finite lines in the current sample, left out.
    pub current_missing: u64,
    /// Bin edges (reference quantiles at k/B).
    pub edges: Vec<f64>,
    /// Reference counts per bin.
    pub reference_counts: Vec<u64>,
    /// Current counts per bin.
    pub current_counts: Vec<u64>,
    /// Population stability index over the bins.
    pub psi: f64,
    /// Jensen–Shannon distance (base 2) over the bins.
    pub js: f64,
    /// Exact two-sample KS on the raw values.
    pub ks: KsReport,
    /// Wasserstein-1 on the raw values.
    pub wasserstein: f64,
}

/// Report for categorical samples.
#[derive(Debug, Serialize)]
pub struct CategoricalReport {
    /// Always "categorical".
    pub kind: &'static str,
    /// Reference lines.
    pub reference_count: u64,
    /// Current lines.
    pub current_count: u64,
    /// Bin labels: reference categories, then `__other__`.
    pub categories: Vec<String>,
    /// Reference counts per bin.
    pub reference_counts: Vec<u64>,
    /// Current counts per bin.
    pub current_counts: Vec<u64>,
    /// Population stability index over the bins.
    pub psi: f64,
    /// Jensen–Shannon distance (base 2) over the bins.
    pub js: f64,
    /// Chi² test of homogeneity on the 2×K table.
    pub chi2: Chi2Result,
}

/// Either report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CompareReport {
    /// Numeric samples.
    Numeric(NumericReport),
    /// Categorical samples.
    Categorical(CategoricalReport),
}

/// Reads both files and computes the report.
///
/// # Errors
/// See [`CompareError`].
pub fn compare(args: &CompareArgs) -> Result<CompareReport, CompareError> {
    if args.bins == 0 {
        return Err(CompareError::Bins);
    }
    if args.categorical {
        let reference = read_labels(&args.reference)?;
        let current = read_labels(&args.current)?;
        compare_categorical(&reference, &current).map(CompareReport::Categorical)
    } else {
        let reference = read_numbers(&args.reference)?;
        let current = read_numbers(&args.current)?;
        compare_numeric(&reference, &current, args.bins).map(CompareReport::Numeric)
    }
}

/// Numeric report on two samples (non-finite values left out and counted).
///
/// # Errors
/// [`CompareError::Empty`] when a sample has no finite value.
pub fn compare_numeric(
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> Result<NumericReport, CompareError> {
    let reference_sorted = sorted_finite(reference);
    let current_sorted = sorted_finite(current);
    if reference_sorted.is_empty() {
        return Err(CompareError::Empty("reference", "finite"));
    }
    if current_sorted.is_empty() {
        return Err(CompareError::Empty("current", "finite"));
    }
    let binning =
        NumericBins::from_sorted(&reference_sorted, bins).map_err(|_| CompareError::Bins)?;
    let reference_counts = binning.histogram(&reference_sorted);
    let current_counts = binning.histogram(&current_sorted);
    // Both samples are non-empty, so none of these can report insufficient data.
    let insufficient = |_| CompareError::Empty("reference or current", "finite");
    let ks = ks_2samp_sorted(&reference_sorted, &current_sorted).map_err(insufficient)?;
    Ok(NumericReport {
        kind: "numeric",
        reference_count: reference_sorted.len() as u64,
        current_count: current_sorted.len() as u64,
        reference_missing: (reference.len() - reference_sorted.len()) as u64,
        current_missing: (current.len() - current_sorted.len()) as u64,
        psi: psi(&reference_counts, &current_counts).map_err(insufficient)?,
        js: jensen_shannon(&reference_counts, &current_counts).map_err(insufficient)?,
        ks: KsReport {
            statistic: ks.statistic,
            p_value: ks.p_value,
            method: if ks.exact { "exact" } else { "asymp" },
        },
        wasserstein: wasserstein_sorted(&reference_sorted, &current_sorted)
            .map_err(insufficient)?,
        edges: binning.edges().to_vec(),
        reference_counts,
        current_counts,
    })
}

/// Categorical report: one bin per reference category plus `__other__`.
///
/// # Errors
/// [`CompareError::Empty`] when a sample has no line.
pub fn compare_categorical(
    reference: &[String],
    current: &[String],
) -> Result<CategoricalReport, CompareError> {
    if reference.is_empty() {
        return Err(CompareError::Empty("reference", "category"));
    }
    if current.is_empty() {
        return Err(CompareError::Empty("current", "category"));
    }
    let mut frequencies: BTreeMap<&str, u64> = BTreeMap::new();
    for label in reference {
        *frequencies.entry(label.as_str()).or_default() += 1;
    }
    // The offline tool keeps every reference category; the service caps them by config.
    let bins = CategoricalBins::from_counts(frequencies.iter().map(|(k, v)| (*k, *v)), usize::MAX);
    let histogram = |labels: &[String]| {
        let mut counts = vec![0u64; bins.len()];
        for label in labels {
            counts[bins.bin_of(label)] += 1;
        }
        counts
    };
    let reference_counts = histogram(reference);
    let current_counts = histogram(current);
    let insufficient = |_| CompareError::Empty("reference or current", "category");
    let mut categories = bins.categories().to_vec();
    categories.push(OTHER_CATEGORY.to_owned());
    Ok(CategoricalReport {
        kind: "categorical",
        reference_count: reference.len() as u64,
        current_count: current.len() as u64,
        psi: psi(&reference_counts, &current_counts).map_err(insufficient)?,
        js: jensen_shannon(&reference_counts, &current_counts).map_err(insufficient)?,
        chi2: chi2_homogeneity(&reference_counts, &current_counts).map_err(insufficient)?,
        categories,
        reference_counts,
        current_counts,
    })
}
