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

/// The running maximum of |i/n1 − j/n2| over candidate points (i, j) = (reference values ≤ x,
/// current values ≤ x), tracked on the exact integer |i·n2 − j·n1| (= n1·n2·|i/n1 − j/n2|) so
/// the float division runs only when the maximum grows or ties. Distinct integers differ by
/// n1·n2·1/(n1·n2) relative, far more than rounding, so the integer order is the float order;
/// among exact ties the float values (SciPy's `i / n1 - j / n2`) are compared, so the result
/// stays bit-identical to SciPy's.
struct Extremum {
    n1: f64,
    n2: f64,
    n1i: i64,
    n2i: i64,
    best: i64,
    statistic: f64,
}

impl Extremum {
    fn new(n1: usize, n2: usize) -> Self {
        Self {
            n1: n1 as f64,
            n2: n2 as f64,
            n1i: n1 as i64,
            n2i: n2 as i64,
            best: -1,
            statistic: 0.0,
        }
    }

    /// The scaled difference |i·n2 − j·n1|.
    #[inline]
    fn scaled(&self, i: usize, j: usize) -> i64 {
        (i as i64 * self.n2i - j as i64 * self.n1i).abs()
    }

    #[inline]
    fn consider(&mut self, i: usize, j: usize) {
        let scaled = self.scaled(i, j);
        if scaled >= self.best {
            let difference = (i as f64 / self.n1 - j as f64 / self.n2).abs();
            self.statistic = if scaled > self.best {
                difference
            } else {
                self.statistic.max(difference)
            };
            self.best = scaled;
        }
    }

    /// Merges two sorted runs that hold every value of an interval of the line (nothing else
    /// of either sample lies in it), starting with `i0` reference and `j0` current values below
    /// the interval, and considers each distinct value's point.
    fn merge(&mut self, reference: &[f64], current: &[f64], i0: usize, j0: usize) {
        // A merge that takes one value per step without branching on the data: the smaller
        // head advances (both on a tie), and a point counts only once both heads have moved
        // past the value just taken, i.e. after all copies of it in both samples (SciPy's
        // `searchsorted(..., side="right")` positions). Exhausted runs read as +∞: whatever
        // follows the interval is larger than everything in it.
        let head = |sample: &[f64], k: usize| sample.get(k).copied().unwrap_or(f64::INFINITY);
        let (mut i, mut j) = (0usize, 0usize);
        let total = reference.len() + current.len();
        let (mut a, mut b) = (head(reference, 0), head(current, 0));
        while i + j < total {
            let x = a.min(b);
            i += usize::from(a <= x);
            j += usize::from(b <= x);
            a = head(reference, i);
            b = head(current, j);
            if a > x && b > x && self.scaled(i0 + i, j0 + j) >= self.best {
                self.consider(i0 + i, j0 + j);
            }
        }
    }
}

/// KS statistic of two sorted, NaN-free samples: max over all observations of
/// |i/n1 − j/n2|, each ratio computed as SciPy does (`searchsorted(...) / n`) so the maximum
/// is bit-identical.
pub fn ks_statistic_sorted(reference: &[f64], current: &[f64]) -> f64 {
    let mut extremum = Extremum::new(reference.len(), current.len());
    extremum.merge(reference, current, 0, 0);
    extremum.statistic
}

/// KS statistic of two unsorted samples, over their finite values; bit-identical to sorting
/// both and calling [`ks_statistic_sorted`], without sorting them.
///
/// Why: sorting 2 × 10,000 values was two thirds of an exact KS test. The line is cut into
/// about `(n1 + n2) / 4` equal slices between the smallest and largest value, and each sample
/// is counted per slice (two linear passes). The difference at each slice's end is a point of
/// the statistic (the slice's last value, all its copies included), so the largest of those is
/// a lower bound; inside a slice holding `c1` and `c2` values, the difference can move by at
/// most those counts, so only slices whose bound reaches the lower bound can hold the maximum.
/// Those few are gathered, sorted and merged exactly. When too many slices qualify (nearly
/// identical samples), or the range cannot be sliced, both samples are sorted instead.
pub fn ks_statistic_unsorted(reference: &[f64], current: &[f64]) -> f64 {
    let (n1, n2) = (finite_count(reference), finite_count(current));
    statistic_of_finite(reference, current, n1, n2)
}

fn finite_count(sample: &[f64]) -> usize {
    sample.iter().filter(|v| v.is_finite()).count()
}

/// [`ks_statistic_unsorted`] with the finite counts already taken.
fn statistic_of_finite(reference: &[f64], current: &[f64], n1: usize, n2: usize) -> f64 {
    let finite = |v: &&f64| v.is_finite();
    let sorted_instead = || {
        let reference = super::binning::sorted_finite(reference);
        let current = super::binning::sorted_finite(current);
        ks_statistic_sorted(&reference, &current)
    };
    let (min, max) = reference
        .iter()
        .chain(current)
        .filter(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = max - min;
    let total = n1 + n2;
    let slices = (total / 4).next_power_of_two().clamp(16, 1 << 16);
    let scale = slices as f64 / span;
    // (Slice counts are `u32`: larger samples than that take the sorted path.)
    if n1 == 0
        || n2 == 0
        || total < 64
        || total > u32::MAX as usize
        || span <= 0.0
        || !span.is_finite()
        || !scale.is_finite()
    {
        return sorted_instead();
    }
    // Monotone in `v` (subtraction, multiplication by a positive number and truncation keep
    // the order), so a value in a later slice is strictly larger than any in an earlier one.
    let slice_of = |v: f64| (((v - min) * scale) as usize).min(slices - 1);
    let mut counts = vec![[0u32; 2]; slices];
    for &v in reference.iter().filter(finite) {
        counts[slice_of(v)][0] += 1;
    }
    for &v in current.iter().filter(finite) {
        counts[slice_of(v)][1] += 1;
    }
    // Slice ends: points of the statistic, and the lower bound.
    let mut extremum = Extremum::new(n1, n2);
    let (mut i, mut j) = (0usize, 0usize);
    for &[c1, c2] in &counts {
        if c1 + c2 > 0 {
            i += c1 as usize;
            j += c2 as usize;
            extremum.consider(i, j);
        }
    }
    // Slices whose inside could reach the bound (ties included: among equal maxima the float
    // values decide). Within a slice, i ranges over i0..=i0+c1 and j over j0..=j0+c2.
    let mut candidate = vec![false; slices];
    let mut candidate_values = 0usize;
    let (mut i0, mut j0) = (0usize, 0usize);
    for (s, &[c1, c2]) in counts.iter().enumerate() {
        let (c1, c2) = (c1 as usize, c2 as usize);
        if c1 + c2 > 1 {
            // The signed difference spans [i0·n2 − (j0+c2)·n1, (i0+c1)·n2 − j0·n1].
            let reach = extremum
                .scaled(i0 + c1, j0)
                .max(extremum.scaled(i0, j0 + c2));
            if reach >= extremum.best {
                candidate[s] = true;
                candidate_values += c1 + c2;
            }
        }
        i0 += c1;
        j0 += c2;
    }
    if candidate_values > total / 4 {
        return sorted_instead();
    }
    // Gather the candidates' values, ordered by slice then value, one run per sample.
    let gather = |sample: &[f64]| {
        let mut picked: Vec<(usize, f64)> = sample
            .iter()
            .filter(finite)
            .map(|&v| (slice_of(v), v))
            .filter(|&(s, _)| candidate[s])
            .collect();
        picked.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        picked
    };
    let (picked_reference, picked_current) = (gather(reference), gather(current));
    let (mut ra, mut rb) = (0usize, 0usize);
    let (mut i0, mut j0) = (0usize, 0usize);
    let mut run_a: Vec<f64> = Vec::new();
    let mut run_b: Vec<f64> = Vec::new();
    for (s, &[c1, c2]) in counts.iter().enumerate() {
        let (c1, c2) = (c1 as usize, c2 as usize);
        if candidate[s] {
            run_a.clear();
            run_b.clear();
            run_a.extend(picked_reference[ra..ra + c1].iter().map(|&(_, v)| v));
            run_b.extend(picked_current[rb..rb + c2].iter().map(|&(_, v)| v));
            ra += c1;
            rb += c2;
            extremum.merge(&run_a, &run_b, i0, j0);
        }
        i0 += c1;
        j0 += c2;
    }
    extremum.statistic
}

/// Two-sample KS test on already sorted, NaN-free samples.
///
/// # Errors
/// [`InsufficientData`] when either sample is empty.
pub fn ks_2samp_sorted(reference: &[f64], current: &[f64]) -> Result<KsResult, InsufficientData> {
    let (n1, n2) = (reference.len() as u64, current.len() as u64);
    InsufficientData::check(n1, n2, 1)?;
    Ok(result(n1, n2, ks_statistic_sorted(reference, current)))
}

/// The test's result for a statistic of samples of `n1` and `n2` values.
fn result(n1: u64, n2: u64, statistic: f64) -> KsResult {
    let p = ks_2samp_pvalue(n1, n2, statistic);
    KsResult {
        statistic: p.statistic,
        p_value: p.p_value,
        exact: p.method == KsMethod::Exact,
        reference_count: n1,
        current_count: n2,
    }
}

/// Two-sample KS test on unsorted samples; non-finite values are ignored.
///
/// # Errors
/// [`InsufficientData`] when either sample has no finite value.
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KsResult, InsufficientData> {
    let (n1, n2) = (finite_count(reference), finite_count(current));
    InsufficientData::check(n1 as u64, n2 as u64, 1)?;
    let statistic = statistic_of_finite(reference, current, n1, n2);
    Ok(result(n1 as u64, n2 as u64, statistic))
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

    /// Samples of a few shapes: continuous with a shift, integers (heavy ties), one far
    /// outlier (a crowded first slice), and arbitrary doubles with NaN and infinities.
    fn sample(shape: u8, seed: u64, len: usize, shift: f64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len)
            .map(|k| match shape % 4 {
                0 => rng.random::<f64>() + shift,
                1 => f64::from(rng.random_range(0..5u32)) + shift.round(),
                2 if k == 0 => 1e12,
                2 => rng.random::<f64>().powi(3) + shift,
                _ => f64::from_bits(rng.random::<u64>()),
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn unsorted_statistic_is_the_sorted_one_bit_for_bit(
            shape in 0u8..4,
            seed in 0u64..1_000_000,
            n1 in 1usize..3000,
            n2 in 1usize..3000,
            shift in proptest::prop_oneof![proptest::strategy::Just(0.0), 0.0f64..0.2, 0.5f64..3.0],
            identical in proptest::bool::ANY,
        ) {
            let reference = sample(shape, seed, n1, 0.0);
            let current = if identical {
                reference.clone()
            } else {
                sample(shape, seed ^ 0x9e37, n2, shift)
            };
            let sorted = ks_statistic_sorted(
                &crate::detect::binning::sorted_finite(&reference),
                &crate::detect::binning::sorted_finite(&current),
            );
            let unsorted = ks_statistic_unsorted(&reference, &current);
            proptest::prop_assert_eq!(unsorted.to_bits(), sorted.to_bits());
        }
    }

    #[test]
    fn empty_sample_is_insufficient() {
        assert!(ks_2samp(&[], &[1.0]).is_err());
        assert!(ks_2samp(&[f64::NAN], &[1.0]).is_err());
    }
}
