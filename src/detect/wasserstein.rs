//! Wasserstein-1 (earth mover's) distance between two samples, as
//! `scipy.stats.wasserstein_distance(u, v)`: ∫ |F_u − F_v| dx over the merged sorted values.

use super::InsufficientData;

/// W1 between two sorted, NaN-free samples.
///
/// # Errors
/// [`InsufficientData`] when either sample is empty.
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> Result<f64, InsufficientData> {
    InsufficientData::check(u.len() as u64, v.len() as u64, 1)?;
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut distance = 0.0;
    // Walk the merged order. After consuming value x, the next merged value y is either equal
    // (a tie: the interval is empty and contributes nothing) or strictly greater, in which case
    // every element ≤ x has been consumed and i/nu, j/nv are the CDFs on [x, y), exactly as
    // SciPy's searchsorted(..., "right") computes them.
    let next = |i: usize, j: usize| match (u.get(i), v.get(j)) {
        (Some(&a), Some(&b)) => Some(a.min(b)),
        (Some(&a), None) => Some(a),
        (None, Some(&b)) => Some(b),
        (None, None) => None,
    };
    while let Some(x) = next(i, j) {
        if u.get(i) == Some(&x) {
            i += 1;
        } else {
            j += 1;
        }
        if let Some(y) = next(i, j) {
            distance += (i as f64 / nu - j as f64 / nv).abs() * (y - x);
        }
    }
    Ok(distance)
}

/// W1 between two unsorted samples; non-finite values are ignored.
///
/// # Errors
/// [`InsufficientData`] when either sample has no finite value.
pub fn wasserstein(u: &[f64], v: &[f64]) -> Result<f64, InsufficientData> {
    let u = super::binning::sorted_finite(u);
    let v = super::binning::sorted_finite(v);
    wasserstein_sorted(&u, &v)
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
        u: Vec<f64>,
        v: Vec<f64>,
        distance: f64,
    }

    #[test]
    fn matches_scipy_wasserstein_distance() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/wasserstein.json")).unwrap();
        assert!(vectors.cases.len() >= 6);
        for case in &vectors.cases {
            let d = wasserstein(&case.u, &case.v).unwrap();
            assert!(
                relative_error(d, case.distance) <= 1e-12 || (d - case.distance).abs() < 1e-15,
                "{}: {d} vs {}",
                case.name,
                case.distance
            );
        }
    }

    #[test]
    fn shift_of_a_point_mass() {
        assert_eq!(wasserstein(&[0.0], &[2.5]).unwrap(), 2.5);
        assert_eq!(wasserstein(&[1.0, 1.0], &[1.0]).unwrap(), 0.0);
        assert!(wasserstein(&[], &[1.0]).is_err());
    }
}
