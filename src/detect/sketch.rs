//! Window-level KS and Wasserstein-1 from a bounded sketch, with a proven error bound.
//!
//! Owns: estimating two-sample statistics between an exact reference sample and a window that
//! is only known through its counts on a [`FineGrid`] (plus the sums of the values that fell
//! outside the reference range). Pure math.
//!
//! Error bounds (property-tested against the exact computation in this module's tests):
//! - **KS.** At every grid edge both empirical CDFs are known exactly (the reference is kept
//!   whole; the window's count below an edge is a prefix sum of cells). The estimate is the
//!   largest difference at the edges, a lower bound of the exact statistic. Inside a cell both
//!   CDFs are monotone, so the exact statistic exceeds the estimate by at most the largest
//!   probability mass either sample puts in one inner cell: `D_est ≤ D ≤ D_est + bound`. The
//!   two outer cells (below the reference minimum, above its maximum) add no error, because the
//!   reference CDF is flat there. With a quantile grid of G inner cells the reference's mass
//!   per cell is ≈ 1/G, so in the no-drift case the bound is ≈ 1/G.
//! - **Wasserstein-1.** Outside the reference range the integral is exact, from the tail sums.
//!   Inside a cell the window's CDF is interpolated linearly between its known values at the
//!   cell's edges; the error is at most Σ (cell width × window mass in the cell):
//!   `|W_est − W| ≤ bound`.
//!
//! The KS p-value of a window is the asymptotic one, `kolmogorov(√(n·m/(n+m))·D)` (SciPy's
//! `scipy.special.kolmogorov`): the statistic is an estimate, so the exact finite-sample
//! distribution would add cost (milliseconds per feature for unequal samples of thousands)
//! without adding accuracy. Offline, `driftwatch compare` computes the exact test on raw
//! samples, as `scipy.stats.ks_2samp` does.

use serde::{Deserialize, Serialize};

use super::binning::FineGrid;
use super::ks_pvalue::ks_2samp_pvalue_asymptotic;
use super::InsufficientData;

/// A frozen numeric reference: its sorted values and the grid window sketches are built on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSample {
    sorted: Vec<f64>,
    grid: FineGrid,
    /// Reference values strictly below each grid edge.
    below_edge: Vec<u64>,
}

impl ReferenceSample {
    /// From sorted, finite values and the grid built on them.
    pub fn new(sorted: Vec<f64>, grid: FineGrid) -> Self {
        let below_edge = grid
            .edges()
            .iter()
            .map(|&edge| sorted.partition_point(|&v| v < edge) as u64)
            .collect();
        Self {
            sorted,
            grid,
            below_edge,
        }
    }

    /// The grid.
    pub fn grid(&self) -> &FineGrid {
        &self.grid
    }

    /// Sorted reference values.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// Reference size.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when the reference holds no value.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// What a window sketch holds: counts per grid cell and the sums of the values in the outer
/// cells.
#[derive(Debug, Clone, Copy)]
pub struct WindowSketch<'a> {
    /// Counts per grid cell (`grid.cells()` long).
    pub cell_counts: &'a [u64],
    /// Sum of the values below the reference minimum (cell 0).
    pub low_tail_sum: f64,
    /// Sum of the values above the reference maximum (last cell).
    pub high_tail_sum: f64,
}

/// A statistic estimated from a sketch, with its guaranteed error bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SketchEstimate {
    /// The estimate.
    pub value: f64,
    /// See the module docs: KS `value ≤ exact ≤ value + error_bound`; W1 `|value − exact| ≤
    /// error_bound`.
    pub error_bound: f64,
    /// Reference size.
    pub reference_count: u64,
    /// Window size.
    pub current_count: u64,
}

/// KS estimate and the p-value of the estimated statistic at the true sample sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SketchKs {
    /// Statistic estimate and bound.
    pub estimate: SketchEstimate,
    /// Two-sided asymptotic p-value of `estimate.value`: `kolmogorov(√(n·m/(n+m))·D)`.
    pub p_value: f64,
}

fn window_count(
    reference: &ReferenceSample,
    window: &WindowSketch<'_>,
) -> Result<u64, InsufficientData> {
    let current: u64 = window.cell_counts.iter().sum();
    InsufficientData::check(reference.len() as u64, current, 1)?;
    Ok(current)
}

/// KS between the reference and a window sketch.
///
/// # Errors
/// [`InsufficientData`] when either side is empty.
pub fn ks_from_sketch(
    reference: &ReferenceSample,
    window: &WindowSketch<'_>,
) -> Result<SketchKs, InsufficientData> {
    let current = window_count(reference, window)?;
    let (n_ref, n_cur) = (reference.len() as f64, current as f64);
    let mut statistic = 0.0f64;
    let mut bound = 0.0f64;
    let mut current_below = 0u64;
    let mut previous_reference_below = 0u64;
    let edges = reference.below_edge.len();
    for (edge, &reference_below) in reference.below_edge.iter().enumerate() {
        let cell_count = window.cell_counts.get(edge).copied().unwrap_or(0);
        current_below += cell_count;
        statistic =
            statistic.max((reference_below as f64 / n_ref - current_below as f64 / n_cur).abs());
        if edge > 0 {
            // Cell `edge` lies between edges edge-1 and edge: an inner cell.
            let reference_mass = (reference_below - previous_reference_below) as f64 / n_ref;
            let current_mass = cell_count as f64 / n_cur;
            bound = bound.max(reference_mass.max(current_mass));
        }
        previous_reference_below = reference_below;
    }
    debug_assert_eq!(edges + 1, window.cell_counts.len());
    // The statistic is an estimate (within `bound`), so its p-value uses the limiting
    // Kolmogorov distribution: O(1), where the exact finite-sample one costs milliseconds for
    // unequal samples of thousands, at every pane close of every feature.
    let p_value = ks_2samp_pvalue_asymptotic(reference.len() as u64, current, statistic);
    Ok(SketchKs {
        estimate: SketchEstimate {
            value: statistic,
            error_bound: bound,
            reference_count: reference.len() as u64,
            current_count: current,
        },
        p_value,
    })
}

/// ∫ |f − L(x)| dx over [s, t) where f is constant and L is linear with L(s)=l0, L(t)=l1.
#[inline]
fn abs_linear_integral(f: f64, l0: f64, l1: f64, width: f64) -> f64 {
    let (d0, d1) = (f - l0, f - l1);
    if d0 * d1 >= 0.0 {
        (d0.abs() + d1.abs()) / 2.0 * width
    } else {
        width * (d0 * d0 + d1 * d1) / (2.0 * (d0.abs() + d1.abs()))
    }
}

/// Wasserstein-1 between the reference and a window sketch.
///
/// # Errors
/// [`InsufficientData`] when either side is empty.
pub fn wasserstein_from_sketch(
    reference: &ReferenceSample,
    window: &WindowSketch<'_>,
) -> Result<SketchEstimate, InsufficientData> {
    let current = window_count(reference, window)?;
    let sorted = &reference.sorted;
    let (n_ref, n_cur) = (sorted.len() as f64, current as f64);
    let edges = reference.grid.edges();
    let cells = window.cell_counts;
    let last_cell = cells.len() - 1;
    let (reference_min, reference_max) = (sorted[0], sorted[sorted.len() - 1]);

    // Outside the reference range the reference CDF is 0 (below) or 1 (above), so the
    // integral is the mean distance of those window values to the range: exact.
    let below = (cells[0] as f64 * reference_min - window.low_tail_sum) / n_cur;
    let above = (window.high_tail_sum - cells[last_cell] as f64 * reference_max) / n_cur;
    let mut distance = below.max(0.0) + above.max(0.0);
    let mut bound = 0.0;

    let mut current_below = cells[0];
    let mut r = 0usize; // reference values ≤ the current integration point
    for cell in 1..last_cell {
        let a = edges[cell - 1];
        // The last inner cell ends at next_up(max); integrate it up to max, the rest is the
        // (exact) upper tail.
        let b = if cell == last_cell - 1 {
            reference_max
        } else {
            edges[cell]
        };
        let cell_count = cells[cell];
        let l_start = current_below as f64 / n_cur;
        current_below += cell_count;
        let l_end = current_below as f64 / n_cur;
        if b <= a {
            continue;
        }
        bound += (b - a) * cell_count as f64 / n_cur;
        let slope = (l_end - l_start) / (b - a);
        let mut s = a;
        loop {
            while r < sorted.len() && sorted[r] <= s {
                r += 1;
            }
            let f = r as f64 / n_ref;
            let t = if r < sorted.len() && sorted[r] < b {
                sorted[r]
            } else {
                b
            };
            distance += abs_linear_integral(
                f,
                l_start + slope * (s - a),
                l_start + slope * (t - a),
                t - s,
            );
            if t >= b {
                break;
            }
            s = t;
        }
    }
    Ok(SketchEstimate {
        value: distance,
        error_bound: bound,
        reference_count: sorted.len() as u64,
        current_count: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::binning::sorted_finite;
    use crate::detect::ks::ks_statistic_sorted;
    use crate::detect::wasserstein::wasserstein_sorted;
    use proptest::prelude::*;

    fn sketch_of(reference: &ReferenceSample, values: &[f64]) -> (Vec<u64>, f64, f64) {
        let grid = reference.grid();
        let mut cells = vec![0u64; grid.cells()];
        let (mut low, mut high) = (0.0, 0.0);
        for &v in values {
            let cell = grid.cell_of(v);
            cells[cell] += 1;
            if cell == 0 {
                low += v;
            } else if cell == grid.cells() - 1 {
                high += v;
            }
        }
        (cells, low, high)
    }

    fn check(reference: &[f64], current: &[f64], refinement: usize) -> Result<(), TestCaseError> {
        let sorted_ref = sorted_finite(reference);
        let sorted_cur = sorted_finite(current);
        let grid = FineGrid::from_sorted(&sorted_ref, 10, refinement).unwrap();
        let sample = ReferenceSample::new(sorted_ref.clone(), grid);
        let (cells, low, high) = sketch_of(&sample, &sorted_cur);
        let window = WindowSketch {
            cell_counts: &cells,
            low_tail_sum: low,
            high_tail_sum: high,
        };
        let ks = ks_from_sketch(&sample, &window).unwrap();
        let exact_ks = ks_statistic_sorted(&sorted_ref, &sorted_cur);
        let tolerance = 1e-12;
        prop_assert!(
            ks.estimate.value <= exact_ks + tolerance,
            "KS estimate {} above exact {}",
            ks.estimate.value,
            exact_ks
        );
        prop_assert!(
            exact_ks <= ks.estimate.value + ks.estimate.error_bound + tolerance,
            "KS exact {} beyond estimate {} + bound {}",
            exact_ks,
            ks.estimate.value,
            ks.estimate.error_bound
        );

        let w = wasserstein_from_sketch(&sample, &window).unwrap();
        let exact_w = wasserstein_sorted(&sorted_ref, &sorted_cur).unwrap();
        let scale = sorted_ref
            .iter()
            .chain(&sorted_cur)
            .fold(1.0f64, |m, v| m.max(v.abs()));
        prop_assert!(
            (w.value - exact_w).abs() <= w.error_bound + 1e-9 * scale,
            "W1 estimate {} exact {} bound {}",
            w.value,
            exact_w,
            w.error_bound
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn sketch_bounds_hold_for_continuous_data(
            reference in prop::collection::vec(-100.0f64..100.0, 1..400),
            current in prop::collection::vec(-150.0f64..150.0, 1..400),
            refinement in 1usize..30,
        ) {
            check(&reference, &current, refinement)?;
        }

        #[test]
        fn sketch_bounds_hold_with_ties(
            reference in prop::collection::vec(-5i32..5, 1..300),
            current in prop::collection::vec(-7i32..7, 1..300),
            refinement in 1usize..30,
        ) {
            let reference: Vec<f64> = reference.into_iter().map(f64::from).collect();
            let current: Vec<f64> = current.into_iter().map(f64::from).collect();
            check(&reference, &current, refinement)?;
        }
    }

    #[test]
    fn bound_shrinks_with_a_finer_grid() {
        // No drift: both samples uniform on [0, 1), so the bound is about 1/G.
        let reference: Vec<f64> = (0..5000)
            .map(|i| (f64::from(i) * 0.618_033_988).fract())
            .collect();
        let current: Vec<f64> = (0..5000)
            .map(|i| (f64::from(i) * 0.414_213_562).fract())
            .collect();
        let sorted = sorted_finite(&reference);
        let bound_for = |refinement| {
            let sample = ReferenceSample::new(
                sorted.clone(),
                FineGrid::from_sorted(&sorted, 10, refinement).unwrap(),
            );
            let (cells, low, high) = sketch_of(&sample, &current);
            let window = WindowSketch {
                cell_counts: &cells,
                low_tail_sum: low,
                high_tail_sum: high,
            };
            ks_from_sketch(&sample, &window)
                .unwrap()
                .estimate
                .error_bound
        };
        let (coarse, fine) = (bound_for(1), bound_for(26));
        assert!(fine < coarse / 10.0, "fine {fine} coarse {coarse}");
        assert!(fine < 0.01);
    }
}
