//! Population Stability Index and Jensen–Shannon distance over binned counts (DESIGN §4).
//!
//! Owns: the two divergences on histograms. Both take raw counts of the same bins (reference
//! first) and normalise them to proportions themselves.

use super::InsufficientData;

/// Proportion substituted for an exactly-zero bin in PSI (DESIGN §4: ε = 1e-4, no
/// renormalisation), so an empty bin costs a large but finite amount.
pub const PSI_EPSILON: f64 = 1e-4;

fn totals(reference: &[u64], current: &[u64]) -> Result<(f64, f64), InsufficientData> {
    let reference_total: u64 = reference.iter().sum();
    let current_total: u64 = current.iter().sum();
    InsufficientData::check(reference_total, current_total, 1)?;
    Ok((reference_total as f64, current_total as f64))
}

/// PSI = Σ (cₖ − rₖ)·ln(cₖ / rₖ) over proportions, a zero proportion replaced by ε.
///
/// `reference` and `current` are counts of the same bins; a shorter slice is padded with
/// zero counts.
///
/// # Errors
/// [`InsufficientData`] when either side has no observation.
pub fn psi(reference: &[u64], current: &[u64]) -> Result<f64, InsufficientData> {
    let (reference_total, current_total) = totals(reference, current)?;
    let bins = reference.len().max(current.len());
    let mut sum = 0.0;
    for k in 0..bins {
        let r = proportion(reference.get(k).copied().unwrap_or(0), reference_total);
        let c = proportion(current.get(k).copied().unwrap_or(0), current_total);
        sum += (c - r) * (c / r).ln();
    }
    Ok(sum)
}

#[inline]
fn proportion(count: u64, total: f64) -> f64 {
    let p = count as f64 / total;
    if p == 0.0 {
        PSI_EPSILON
    } else {
        p
    }
}

/// Jensen–Shannon distance in base 2, as `scipy.spatial.distance.jensenshannon(p, q, base=2)`:
/// the square root of the JS divergence, in [0, 1].
///
/// # Errors
/// [`InsufficientData`] when either side has no observation.
pub fn jensen_shannon(reference: &[u64], current: &[u64]) -> Result<f64, InsufficientData> {
    let (reference_total, current_total) = totals(reference, current)?;
    let bins = reference.len().max(current.len());
    let (mut left, mut right) = (0.0, 0.0);
    for k in 0..bins {
        let p = reference.get(k).copied().unwrap_or(0) as f64 / reference_total;
        let q = current.get(k).copied().unwrap_or(0) as f64 / current_total;
        let m = (p + q) / 2.0;
        left += relative_entropy(p, m);
        right += relative_entropy(q, m);
    }
    let divergence = (left + right) / std::f64::consts::LN_2;
    // Rounding can leave a tiny negative sum for identical inputs; SciPy would return NaN
    // there, a distance of 0 is the honest answer.
    Ok((divergence / 2.0).max(0.0).sqrt())
}

/// `scipy.special.rel_entr(x, y)` for x ≥ 0, y ≥ x/2 (always the case against a midpoint).
#[inline]
fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else {
        0.0
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
        epsilon: f64,
        cases: Vec<Case>,
    }
    #[derive(Deserialize)]
    struct Case {
        name: String,
        reference_counts: Vec<u64>,
        current_counts: Vec<u64>,
        psi: f64,
        js: f64,
    }

    #[test]
    fn matches_numpy_and_scipy_vectors() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/divergence.json")).unwrap();
        assert_eq!(vectors.epsilon, PSI_EPSILON);
        assert!(vectors.cases.len() >= 10);
        for case in &vectors.cases {
            let p = psi(&case.reference_counts, &case.current_counts).unwrap();
            assert!(
                relative_error(p, case.psi) <= 1e-12 || (p - case.psi).abs() < 1e-15,
                "{}: psi {p} vs {}",
                case.name,
                case.psi
            );
            let js = jensen_shannon(&case.reference_counts, &case.current_counts).unwrap();
            assert!(
                relative_error(js, case.js) <= 1e-12 || (js - case.js).abs() < 1e-12,
                "{}: js {js} vs {}",
                case.name,
                case.js
            );
        }
    }

    #[test]
    fn empty_side_is_insufficient() {
        assert!(psi(&[0, 0], &[1, 2]).is_err());
        assert!(jensen_shannon(&[1, 2], &[]).is_err());
    }

    proptest! {
        #[test]
        fn psi_and_js_are_non_negative_and_zero_on_identity(
            reference in prop::collection::vec(0u64..1000, 1..20),
            current in prop::collection::vec(0u64..1000, 1..20),
        ) {
            prop_assume!(reference.iter().sum::<u64>() > 0 && current.iter().sum::<u64>() > 0);
            prop_assert!(psi(&reference, &current).unwrap() >= 0.0);
            let js = jensen_shannon(&reference, &current).unwrap();
            prop_assert!((0.0..=1.0 + 1e-12).contains(&js));
            prop_assert_eq!(psi(&reference, &reference).unwrap(), 0.0);
            prop_assert_eq!(jensen_shannon(&reference, &reference).unwrap(), 0.0);
        }
    }
}
