//! Chi² test of homogeneity on the 2×K table (reference counts, current counts), as
//! `scipy.stats.chi2_contingency` computes it (DESIGN §4): Pearson's statistic on expected
//! frequencies from the margins, Yates' continuity correction when there is one degree of
//! freedom, and the p-value from the chi² distribution (statrs).
//!
//! Columns empty on both sides are dropped first: they carry no information and SciPy refuses
//! a table with a zero expected frequency.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::InsufficientData;

/// Result of the chi² test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chi2Result {
    /// Pearson's chi² statistic (Yates-corrected when `dof == 1`).
    pub statistic: f64,
    /// Upper-tail probability of the statistic under the null hypothesis.
    pub p_value: f64,
    /// Degrees of freedom: non-empty columns minus one.
    pub dof: u64,
    /// Observations in the reference row.
    pub reference_count: u64,
    /// Observations in the current row.
    pub current_count: u64,
}

/// Chi² test on the table `[reference; current]` (counts of the same categories).
///
/// # Errors
/// [`InsufficientData`] when either row is empty.
pub fn chi2_homogeneity(
    reference: &[u64],
    current: &[u64],
) -> Result<Chi2Result, InsufficientData> {
    let reference_count: u64 = reference.iter().sum();
    let current_count: u64 = current.iter().sum();
    InsufficientData::check(reference_count, current_count, 1)?;
    let width = reference.len().max(current.len());
    let columns: Vec<(f64, f64)> = (0..width)
        .map(|k| {
            (
                reference.get(k).copied().unwrap_or(0) as f64,
                current.get(k).copied().unwrap_or(0) as f64,
            )
        })
        .filter(|(r, c)| *r + *c > 0.0)
        .collect();
    let dof = columns.len().saturating_sub(1) as u64;
    let mut result = Chi2Result {
        statistic: 0.0,
        p_value: 1.0,
        dof,
        reference_count,
        current_count,
    };
    if dof == 0 {
        return Ok(result);
    }
    let total = (reference_count + current_count) as f64;
    let row_totals = [reference_count as f64, current_count as f64];
    let yates = dof == 1;
    let mut statistic = 0.0;
    for &(r, c) in &columns {
        let column_total = r + c;
        for (observed, row_total) in [(r, row_totals[0]), (c, row_totals[1])] {
            let expected = row_total * column_total / total;
            let observed = if yates {
                // Move each observation towards its expectation by at most 0.5.
                let diff = expected - observed;
                observed + diff.abs().min(0.5) * diff.signum()
            } else {
                observed
            };
            statistic += (observed - expected) * (observed - expected) / expected;
        }
    }
    result.statistic = statistic;
    result.p_value = chi2_sf(statistic, dof);
    Ok(result)
}

/// Upper tail of the chi² distribution with `dof` degrees of freedom.
pub fn chi2_sf(statistic: f64, dof: u64) -> f64 {
    match ChiSquared::new(dof as f64) {
        Ok(distribution) => distribution.sf(statistic).clamp(0.0, 1.0),
        Err(_) => f64::NAN,
    }
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
        reference_counts: Vec<u64>,
        current_counts: Vec<u64>,
        statistic: f64,
        pvalue: f64,
        dof: u64,
    }

    #[test]
    fn matches_scipy_chi2_contingency() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/chi2.json")).unwrap();
        assert!(vectors.cases.len() >= 8);
        for case in &vectors.cases {
            let result = chi2_homogeneity(&case.reference_counts, &case.current_counts).unwrap();
            assert_eq!(result.dof, case.dof, "{}", case.name);
            assert!(
                relative_error(result.statistic, case.statistic) <= 1e-12
                    || (result.statistic - case.statistic).abs() < 1e-12,
                "{}: statistic {} vs {}",
                case.name,
                result.statistic,
                case.statistic
            );
            assert!(
                relative_error(result.p_value, case.pvalue) <= 1e-9,
                "{}: p {} vs {}",
                case.name,
                result.p_value,
                case.pvalue
            );
        }
    }

    #[test]
    fn single_category_has_no_freedom() {
        let result = chi2_homogeneity(&[10, 0], &[3, 0]).unwrap();
        assert_eq!(
            (result.dof, result.statistic, result.p_value),
            (0, 0.0, 1.0)
        );
    }

    #[test]
    fn empty_current_is_insufficient() {
        assert!(chi2_homogeneity(&[1, 2], &[0, 0]).is_err());
    }
}
