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
    let (n1i, n2i) = (reference.len() as i64, current.len() as i64);
    // A merge that takes one value per step without branching on the data: the smaller head
    // advances (both on a tie), and a difference counts only once both heads have moved past
    // the value just taken, i.e. after all copies of it in both samples (SciPy's
    // `searchsorted(..., side="right")` positions). Exhausted samples read as +∞.
    //
    // The maximum is tracked on the exact integer |i·n2 − j·n1| (= n1·n2·|i/n1 − j/n2|), so
    // the float division — what made the loop slow — runs only when the maximum grows or
    // ties. Distinct integers differ by n1·n2·1/(n1·n2) relative, far more than rounding, so
    // the integer order is the float order; among exact ties the float values (SciPy's
    // `i / n1 - j / n2`) are compared, so the result stays bit-identical.
    let head = |sample: &[f64], k: usize| sample.get(k).copied().unwrap_or(f64::INFINITY);
    let (mut i, mut j) = (0usize, 0usize);
    let mut best = -1_i64;
    let mut statistic = 0.0f64;
    let total = reference.len() + current.len();
    let (mut a, mut b) = (head(reference, 0), head(current, 0));
    while i + j < total {
        let x = a.min(b);
        i += usize::from(a <= x);
        j += usize::from(b <= x);
        a = head(reference, i);
        b = head(current, j);
        let scaled = (i as i64 * n2i - j as i64 * n1i).abs();
        if scaled >= best && a > x && b > x {
            let difference = (i as f64 / n1 - j as f64 / n2).abs();
            statistic = if scaled > best {
                difference
            } else {
                statistic.max(difference)
            };
            best = scaled;
        }
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
