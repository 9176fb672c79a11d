//! Exact two-sample Kolmogorov–Smirnov test on raw samples, as `scipy.stats.ks_2samp`
//! (two-sided, method "auto") computes it: the statistic from the two empirical CDFs evaluated
//! at every observation, the p-value from [`super::ks_pvalue`].

use serde::{Deserialize, Serialize};

use super::ks_pvalue::{ks_2samp_pvalue, KsMethod};
use super::InsufficientData;

/// Result of a two-sample KS test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// sup |F_ref − F_cur|.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the p-value is exact or asymptotic (SciPy's "auto" rule).
    pub exact: bool,
    /// Observations in the reference sample.
    pub reference_count: u64,
    /// Observations in the current sample.
    pub current_count: u64,
}

/// KS statistic of two sorted, NaN-free samples: max over all observations of
/// |i/n1 − j/n2|, each ratio computed as SciPy does (`searchsorted(...) / n`) so the maximum
/// is bit-identical.
pub fn ks_statistic_sorted(reference: &[f64], current: &[f64]) -> f64 {
    let (n1, n2) = (reference.len() as f64, current.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut statistic = 0.0f64;
    while i < reference.len() || j < current.len() {
        // Next distinct value in the merged order; both ECDFs jump past all copies of it.
        let x = match (reference.get(i), current.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        while i < reference.len() && reference[i] <= x {
            i += 1;
        }
        while j < current.len() && current[j] <= x {
            j += 1;
        }
        let difference = (i as f64 / n1 - j as f64 / n2).abs();
        statistic = statistic.max(difference);
    }
    statistic
}

/// Two-sample KS test on already sorted, NaN-free samples.
///
/// # Errors
/// [`InsufficientData`] when either sample is empty.
pub fn ks_2samp_sorted(reference: &[f64], current: &[f64]) -> Result<KsResult, InsufficientData> {
    InsufficientData::check(reference.len() as u64, current.len() as u64, 1)?;
    let statistic = ks_statistic_sorted(reference, current);
    let p = ks_2samp_pvalue(reference.len() as u64, current.len() as u64, statistic);
    Ok(KsResult {
        statistic: p.statistic,
        p_value: p.p_value,
        exact: p.method == KsMethod::Exact,
        reference_count: reference.len() as u64,
        current_count: current.len() as u64,
    })
}

/// Two-sample KS test on unsorted samples; non-finite values are ignored.
///
/// # Errors
/// [`InsufficientData`] when either sample has no finite value.
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KsResult, InsufficientData> {
    let reference = super::binning::sorted_finite(reference);
    let current = super::binning::sorted_finite(current);
    ks_2samp_sorted(&reference, &current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::relative_error;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }
    #[derive(Deserialize)]
    struct Case {
        name: String,
        a: Vec<f64>,
        b: Vec<f64>,
        statistic: f64,
        pvalue: f64,
        method: String,
    }

    #[test]
    fn matches_scipy_ks_2samp() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/ks.json")).unwrap();
        assert!(vectors.cases.len() >= 12);
        for case in &vectors.cases {
            let result = ks_2samp(&case.a, &case.b).unwrap();
            assert!(
                relative_error(result.statistic, case.statistic) <= 1e-12,
                "{}: D {} vs {}",
                case.name,
                result.statistic,
                case.statistic
            );
            assert!(
                relative_error(result.p_value, case.pvalue) <= 1e-9
                    || (result.p_value - case.pvalue).abs() <= 1e-300,
                "{}: p {} vs {}",
                case.name,
                result.p_value,
                case.pvalue
            );
            assert_eq!(result.exact, case.method == "exact", "{}", case.name);
        }
    }

    #[test]
    fn empty_sample_is_insufficient() {
        assert!(ks_2samp(&[], &[1.0]).is_err());
        assert!(ks_2samp(&[f64::NAN], &[1.0]).is_err());
    }
}
