//! Reference binning (DESIGN §3, contract): quantile edges computed like NumPy's
//! `np.quantile(..., method="linear")`, bin lookup like `np.searchsorted(edges, x, side="right")`,
//! categorical bins with an `__other__` bin, and the finer quantile grid that window sketches use.
//!
//! Owns: turning a reference sample into bin edges and a value into a bin index. Pure; no I/O.
//! Missing values never reach this module: callers count them apart (missing-rate drift is its
//! own check).

use serde::{Deserialize, Serialize};

/// Name of the bin that collects categories absent from the reference.
pub const OTHER_CATEGORY: &str = "__other__";

/// Why bins could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BinningError {
    /// No finite value to build numeric bins from.
    #[error("the reference has no finite values")]
    EmptyReference,
    /// Fewer than one bin asked for.
    #[error("the number of bins must be at least 1, got {0}")]
    NoBins(usize),
}

/// NumPy's `np.quantile(sorted, q, method="linear")` on an already sorted, non-empty,
/// NaN-free slice.
///
/// The arithmetic mirrors NumPy 2.x (`_quantile` + `_lerp`): the virtual index is
/// `(n - 1) * q`; indices at or past the end take the maximum; the interpolation is
/// `a + (b - a) * t`, or `b - (b - a) * (1 - t)` when `t >= 0.5`, which is what makes
/// NumPy's results monotone in `q` and exact at the endpoints.
///
/// # Panics
/// Never for a non-empty slice; an empty slice is a caller bug and returns NaN.
pub fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let virtual_index = (n - 1) as f64 * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let previous_index = virtual_index.floor();
    let gamma = virtual_index - previous_index;
    let previous = previous_index as usize;
    let a = sorted[previous];
    let b = sorted[previous + 1];
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// `np.searchsorted(edges, x, side="right")`: the number of edges `<= x`.
///
/// Branchless binary search: the loop runs `ceil(log2(len))` times whatever the data and the
/// comparison compiles to a conditional move, so the per-event cost is flat and free of
/// branch mispredictions (this is the hot path of every numeric feature).
#[inline]
pub fn searchsorted_right(edges: &[f64], x: f64) -> usize {
    if edges.is_empty() {
        return 0;
    }
    let mut base = 0usize;
    let mut size = edges.len();
    while size > 1 {
        let half = size / 2;
        // Invariant: every edge before `base` is <= x; the answer lies in base..=base+size.
        base = if edges[base + half] <= x {
            base + half
        } else {
            base
        };
        size -= half;
    }
    base + usize::from(edges[base] <= x)
}

/// Sorts finite values ascending; non-finite values are dropped (callers count them).
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sort_f64(&mut sorted);
    sorted
}

/// Sorts in `f64::total_cmp` order. Large finite inputs use an adaptive bucket sort: one pass
/// finds the range, one counts how many values fall in each of about `n` equal slices of it,
/// one scatters them, and each slice holding more than a few values is sorted the same way
/// over its own, narrower range (or, when tiny, by insertion). Real samples fill the slices
/// evenly enough that this costs about three linear passes; a heavy tail or an outlier only
/// adds a level for the crowded slices, and a pathological input that keeps crowding falls
/// back to a comparison sort after a few levels, so the worst case stays O(n log n). The
/// 64-bit LSD radix sort it replaced needed six passes, each scattering over 2,048 buckets,
/// and was the larger part of an exact KS test on 10,000 values (issue #2's ≤ 0.5 ms).
/// Inputs with a non-finite value (callers mostly filter them) take the comparison sort.
pub fn sort_f64(values: &mut [f64]) {
    const COMPARISON_THRESHOLD: usize = 256;
    if values.len() < COMPARISON_THRESHOLD || !values.iter().all(|v| v.is_finite()) {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut scratch = vec![0.0f64; values.len()];
    bucket_sort(values, &mut scratch, 0);
}

/// Sorts finite `values` in `total_cmp` order, with `scratch` (same length) as working space.
fn bucket_sort(values: &mut [f64], scratch: &mut [f64], depth: u32) {
    // Below this, insertion sort beats another bucket pass.
    const INSERTION_THRESHOLD: usize = 24;
    // Levels before a comparison sort takes over (each level narrows the range by ~n).
    const MAX_DEPTH: u32 = 6;
    let n = values.len();
    if n <= INSERTION_THRESHOLD {
        insertion_sort(values);
        return;
    }
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = max - min;
    // About one slice per 4–8 values: the per-slice counters (u32) then stay in L1 (8 KB for
    // 10,000 values), which matters more than shorter insertion sorts.
    let slices = n.next_power_of_two() / 8;
    let scale = slices as f64 / span;
    if span == 0.0 {
        // All equal, up to the sign of zero, which `total_cmp` orders.
        order_signed_zeros(values);
        return;
    }
    if depth >= MAX_DEPTH || !span.is_finite() || !scale.is_finite() {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // Monotone in `v` (subtraction, multiplication by a positive number and truncation all
    // preserve order), so the slices are in order; `min` is slice 0, `max` the last.
    let slice_of = |v: f64| (((v - min) * scale) as usize).min(slices - 1);
    // `ends[s]` starts as the first position of slice s and ends as one past its last.
    // (`u32` is enough: `sort_f64` only sends slices of `values`, and a slice of more than
    // u32::MAX doubles would not fit in memory here; the fallback keeps even that correct.)
    let Ok(_) = u32::try_from(n) else {
        values.sort_unstable_by(f64::total_cmp);
        return;
    };
    let mut ends = vec![0u32; slices];
    for &v in values.iter() {
        ends[slice_of(v)] += 1;
    }
    let mut running = 0;
    for end in ends.iter_mut() {
        let count = *end;
        *end = running;
        running += count;
    }
    for &v in values.iter() {
        let slot = &mut ends[slice_of(v)];
        scratch[*slot as usize] = v;
        *slot += 1;
    }
    values.copy_from_slice(scratch);
    let mut start = 0;
    for &end in &ends {
        let end = end as usize;
        if end - start > 1 {
            bucket_sort(&mut values[start..end], &mut scratch[start..end], depth + 1);
        }
        start = end;
    }
}

fn insertion_sort(values: &mut [f64]) {
    for i in 1..values.len() {
        let value = values[i];
        let mut j = i;
        while j > 0 && values[j - 1].total_cmp(&value).is_gt() {
            values[j] = values[j - 1];
            j -= 1;
        }
        values[j] = value;
    }
}

/// Orders a run of equal values; only zeros differ (`-0.0` before `+0.0`).
fn order_signed_zeros(values: &mut [f64]) {
    if values.first().is_some_and(|&v| v == 0.0) {
        values.sort_unstable_by(f64::total_cmp);
    }
}

/// Numeric bins of a reference: `bins - 1` edges at the reference quantiles `k / bins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericBins {
    edges: Vec<f64>,
}

impl NumericBins {
    /// Bins from a sorted, finite reference sample.
    ///
    /// # Errors
    /// [`BinningError::EmptyReference`] for an empty sample, [`BinningError::NoBins`] for 0 bins.
    pub fn from_sorted(sorted: &[f64], bins: usize) -> Result<Self, BinningError> {
        if bins == 0 {
            return Err(BinningError::NoBins(bins));
        }
        if sorted.is_empty() {
            return Err(BinningError::EmptyReference);
        }
        // q = k / bins is computed as one correctly rounded division, exactly like
        // `np.arange(1, bins) / bins`.
        let edges = (1..bins)
            .map(|k| quantile_linear(sorted, k as f64 / bins as f64))
            .collect();
        Ok(Self { edges })
    }

    /// The `bins - 1` edges, ascending (duplicates possible; their bins stay empty).
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    /// Always false: there is at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin of `x`: values equal to an edge go to the upper bin, values beyond the
    /// reference range to the first or last bin.
    #[inline]
    pub fn bin_of(&self, x: f64) -> usize {
        searchsorted_right(&self.edges, x)
    }

    /// Histogram of `values` over these bins (non-finite values skipped).
    pub fn histogram(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0u64; self.len()];
        for &v in values.iter().filter(|v| v.is_finite()) {
            counts[self.bin_of(v)] += 1;
        }
        counts
    }
}

/// A fine quantile grid over a numeric reference, used by window sketches.
///
/// It has `coarse_bins × refinement` inner bins from the reference quantiles, plus two outer
/// bins for values below the reference minimum and above its maximum, so that drift out of
/// the reference range is located exactly. Because `k / B == (k·m) / (B·m)` holds exactly in
/// floating point (both are the correctly rounded value of the same rational), every coarse
/// edge is also a fine edge, and a fine bin maps to its coarse bin by integer division: the
/// coarse histogram is derived from the fine one without a second lookup per event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "FineGridData", into = "FineGridData")]
pub struct FineGrid {
    /// `[ref_min, fine quantile edges…, next_up(ref_max)]`.
    edges: Vec<f64>,
    coarse_bins: usize,
    refinement: usize,
    /// Shortcut into `edges`, rebuilt from them (see [`EdgeIndex`]).
    index: EdgeIndex,
}

/// The serialized form of [`FineGrid`]: the index is not stored but rebuilt from the edges,
/// so a state or baseline file can never hand the hot path a table that does not match its
/// edges (or its size), and the index's layout can change between releases. An `index`
/// field in a file written before is ignored.
#[derive(Serialize, Deserialize)]
struct FineGridData {
    edges: Vec<f64>,
    coarse_bins: usize,
    refinement: usize,
}

impl From<FineGridData> for FineGrid {
    fn from(data: FineGridData) -> Self {
        let index = EdgeIndex::build(&data.edges);
        Self {
            edges: data.edges,
            // A grid always has at least one coarse bin and a refinement of one.
            coarse_bins: data.coarse_bins.max(1),
            refinement: data.refinement.max(1),
            index,
        }
    }
}

impl From<FineGrid> for FineGridData {
    fn from(grid: FineGrid) -> Self {
        Self {
            edges: grid.edges,
            coarse_bins: grid.coarse_bins,
            refinement: grid.refinement,
        }
    }
}

/// A lookup table that turns a bin search into one load for most values, and a guess and a
/// step or two for the rest.
///
/// Two facts of real features shape it:
/// - **Ties.** Integer-valued features (counts, ages in days, a discount that is mostly 0) give
///   runs of equal quantile edges, and their values land exactly on them. The search therefore
///   runs over the *distinct* edge values, and `ranks` turns the position among those into the
///   number of edges `<= x` (so a run of 20 equal edges costs one step, not 20).
/// - **Heavy tails.** For log-normal or exponential features (amounts, durations) the edges
///   crowd into the first few percent of the span, so equal-width buckets over the whole span
///   would put dozens of edges in one bucket. The buckets cover a range `[lo, hi)` chosen at
///   build time, among a few trims of each tail, to minimise the expected cost for values
///   drawn like the reference (every fine bin holds the same reference mass); the few values
///   beyond it take a binary search over the edges out there.
///
/// Inside `[lo, hi)` a value's bucket is `bucket_of(x)`, one subtraction and multiplication
/// away. That computation is monotone in `x` (each rounding step is), so an edge whose own
/// bucket is below `x`'s is `<= x`, and one whose bucket is above is `> x`, whatever the
/// rounding. Hence:
/// - a bucket that no edge falls in has one answer for all its values: the table holds it
///   (ranks applied), flagged [`Self::DECIDED`]. With ~10 fine bins per 32 buckets most
///   values end here, after a single load, instead of two dependent cache misses;
/// - otherwise the table holds the number of edges in lower buckets, and stepping over the
///   bucket's own edges (one or two, typically) gives the exact answer.
///
/// When the span is too narrow for its magnitude (bucket bounds would not be representable),
/// not finite, or there are too many edges for the table's 15 bits, the buckets are disabled
/// and only the binary search runs.
#[derive(Debug, Clone, PartialEq)]
struct EdgeIndex {
    /// The distinct edge values, ascending.
    distinct: Vec<f64>,
    /// `ranks[k]` = number of edges `<= distinct[k - 1]` (`ranks[0] = 0`).
    ranks: Vec<u16>,
    /// No two edges are equal, so `ranks[k] == k`.
    without_ties: bool,
    /// Position in `distinct` of `lo` (values below it are searched in `distinct[..low]`).
    low: usize,
    /// Position in `distinct` of `hi` (values at or above it are searched after it).
    high: usize,
    /// `distinct[low]` and `distinct[high]`, kept beside them because every lookup compares
    /// with them first and the copies save a dependent load.
    lo: f64,
    hi: f64,
    inverse_step: f64,
    /// Per bucket: the answer with [`Self::DECIDED`] set, or the number of distinct edges
    /// in lower buckets (every one of them `<= x`).
    buckets: Vec<u16>,
}

impl EdgeIndex {
    const BUCKETS: usize = 2048;
    /// Flag of a bucket entry that is the answer itself.
    const DECIDED: u16 = 0x8000;
    /// Trims tried for each tail, as fractions of the reference mass left outside the buckets.
    const TRIMS: [f64; 6] = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1];

    fn build(edges: &[f64]) -> Self {
        let mut distinct: Vec<f64> = Vec::with_capacity(edges.len());
        let mut multiplicity: Vec<usize> = Vec::with_capacity(edges.len());
        for &edge in edges {
            if distinct.last() == Some(&edge) {
                if let Some(count) = multiplicity.last_mut() {
                    *count += 1;
                }
            } else {
                distinct.push(edge);
                multiplicity.push(1);
            }
        }
        let without_ties = distinct.len() == edges.len();
        let plain = |distinct: Vec<f64>, ranks: Vec<u16>| Self {
            without_ties,
            low: 0,
            high: distinct.len(),
            distinct,
            ranks,
            lo: 0.0,
            hi: 0.0,
            inverse_step: 0.0,
            buckets: Vec::new(),
        };
        if edges.len() > usize::from(u16::MAX) || edges.iter().any(|e| e.is_nan()) {
            // Not representable in `u16` ranks, or not a sorted sequence: the plain search on
            // the edges themselves (`search` sees the empty `ranks`).
            return plain(Vec::new(), Vec::new());
        }
        let mut ranks = Vec::with_capacity(distinct.len() + 1);
        let mut running = 0usize;
        ranks.push(0u16);
        for &count in &multiplicity {
            running += count;
            ranks.push(running as u16);
        }
        if distinct.len() < 16 || edges.len() >= usize::from(Self::DECIDED) {
            return plain(distinct, ranks);
        }
        let total = edges.len() as f64;
        let mut best: Option<(f64, usize, usize)> = None;
        for &low_trim in &Self::TRIMS {
            for &high_trim in &Self::TRIMS {
                let low = ranks.partition_point(|&r| f64::from(r) < low_trim * total);
                let low = low.saturating_sub(1).min(distinct.len() - 1);
                let above = ((1.0 - high_trim) * total).ceil();
                let high = ranks
                    .partition_point(|&r| f64::from(r) < above)
                    .saturating_sub(1)
                    .clamp(low, distinct.len() - 1);
                if high <= low + 1 {
                    continue;
                }
                let Some(cost) = Self::expected_cost(&distinct, &multiplicity, low, high) else {
                    continue;
                };
                if best.is_none_or(|(c, _, _)| cost < c) {
                    best = Some((cost, low, high));
                }
            }
        }
        let Some((_, low, high)) = best else {
            return plain(distinct, ranks);
        };
        let (lo, hi) = (distinct[low], distinct[high]);
        let inverse_step = Self::BUCKETS as f64 / (hi - lo);
        let mut occupied = [0u16; Self::BUCKETS + 1];
        for &edge in &distinct[low..] {
            occupied[Self::bucket_of(edge, lo, inverse_step)] += 1;
        }
        let mut below = low;
        let buckets = occupied
            .iter()
            .map(|&edges_in| {
                let entry = if edges_in == 0 {
                    let answer = if without_ties {
                        below
                    } else {
                        usize::from(ranks[below])
                    };
                    answer as u16 | Self::DECIDED
                } else {
                    below as u16
                };
                below += usize::from(edges_in);
                entry
            })
            .collect();
        Self {
            distinct,
            ranks,
            without_ties,
            low,
            high,
            lo,
            hi,
            inverse_step,
            buckets,
        }
    }

    /// The bucket of `x >= lo`. Build and search must share this exact computation: the
    /// table's correctness rests on its monotonicity, not on its precision.
    #[inline(always)]
    fn bucket_of(x: f64, lo: f64, inverse_step: f64) -> usize {
        (((x - lo) * inverse_step) as usize).min(Self::BUCKETS)
    }

    /// Expected cost, in rough units of one dependent load, of finding a value drawn like the
    /// reference with buckets over `[distinct[low], distinct[high])`; `None` when that span
    /// cannot be cut into representable buckets.
    fn expected_cost(
        distinct: &[f64],
        multiplicity: &[usize],
        low: usize,
        high: usize,
    ) -> Option<f64> {
        let (lo, hi) = (distinct[low], distinct[high]);
        let span = hi - lo;
        let magnitude = lo.abs().max(hi.abs());
        if !span.is_finite() || span <= magnitude * 1e-9 {
            return None;
        }
        let inverse_step = Self::BUCKETS as f64 / span;
        let total: usize = multiplicity.iter().sum();
        let bin_mass = 1.0 / total as f64;
        // Distinct edges per bucket, and the reference mass landing in each: a run of k equal
        // edges puts k - 1 fine bins' worth on that one value, and every fine bin spreads its
        // share evenly over the buckets it spans.
        let mut edges_in = [0u16; Self::BUCKETS + 1];
        let mut mass_in = [0.0f64; Self::BUCKETS + 1];
        for k in low..high {
            let from = (distinct[k] - lo) * inverse_step;
            let to = (distinct[k + 1] - lo) * inverse_step;
            let first = Self::bucket_of(distinct[k], lo, inverse_step);
            edges_in[first] += 1;
            mass_in[first] += (multiplicity[k] - 1) as f64 * bin_mass;
            let last = Self::bucket_of(distinct[k + 1], lo, inverse_step);
            if first == last {
                mass_in[first] += bin_mass;
            } else {
                let density = bin_mass / (to - from);
                for (bucket, mass) in mass_in.iter_mut().enumerate().take(last + 1).skip(first) {
                    let overlap = to.min((bucket + 1) as f64) - from.max(bucket as f64);
                    *mass += density * overlap.max(0.0);
                }
            }
        }
        // One load for a decided bucket; otherwise the table, then two branch-free steps,
        // and each further edge is a loop turn (entering the loop at all risks a
        // misprediction, counted as 3).
        let inside: f64 = edges_in
            .iter()
            .zip(&mass_in)
            .map(|(&e, &m)| match e {
                0 => m,
                1 | 2 => m * 2.0,
                _ => m * (2.0 + 3.0 + f64::from(e - 2)),
            })
            .sum();
        let mass_of = |range: &[usize]| range.iter().sum::<usize>() as f64 * bin_mass;
        let below = mass_of(&multiplicity[..low]);
        let above = mass_of(&multiplicity[high..]);
        // A binary search: a branch on the range, then log2(len) dependent steps.
        let search = |mass: f64, len: usize| mass * (4.0 + (len as f64 + 1.0).log2());
        Some(inside + search(below, low) + search(above, distinct.len() - high))
    }

    /// Asks the processor for the cache line of `x`'s bucket, so that a later
    /// [`Self::search`] of it does not wait for memory. Only a hint: it changes nothing.
    #[inline]
    fn prefetch(&self, x: f64) {
        if x >= self.lo && x < self.hi {
            if let Some(entry) = self
                .buckets
                .get(Self::bucket_of(x, self.lo, self.inverse_step))
            {
                crate::hint::prefetch_read(entry);
            }
        }
    }

    #[inline]
    fn search(&self, edges: &[f64], x: f64) -> usize {
        if self.ranks.is_empty() || x.is_nan() {
            return searchsorted_right(edges, x);
        }
        let position = if self.buckets.is_empty() {
            searchsorted_right(&self.distinct, x)
        } else if x < self.lo {
            // Compared on `x` itself: `(x - lo) * step⁻¹` underflows to -0.0 for an `x` just
            // below `lo`.
            searchsorted_right(&self.distinct[..self.low], x)
        } else if x >= self.hi {
            self.high + 1 + searchsorted_right(&self.distinct[self.high + 1..], x)
        } else {
            let entry = self.buckets[Self::bucket_of(x, self.lo, self.inverse_step)];
            if entry & Self::DECIDED != 0 {
                return usize::from(entry & !Self::DECIDED);
            }
            self.step_over_bucket(usize::from(entry), x)
        };
        if self.without_ties {
            // Distinct edges are the edges: the position is the answer, and skipping the
            // rank table saves a dependent load (~15 % of a 20-feature event on smooth data).
            position
        } else {
            usize::from(self.ranks[position])
        }
    }

    /// Distinct edges `<= x`, given the number `below` in lower buckets: steps over the
    /// edges of `x`'s own bucket (edges of higher buckets are `> x`, so the loop stops there).
    #[inline]
    fn step_over_bucket(&self, below: usize, x: f64) -> usize {
        let distinct = &self.distinct;
        let mut i = below;
        // Most occupied buckets hold one or two distinct edges: two branch-free steps settle
        // almost every value, so the loop below rarely runs and its branch stays predictable.
        i += usize::from(distinct.get(i).is_some_and(|&edge| edge <= x));
        i += usize::from(distinct.get(i).is_some_and(|&edge| edge <= x));
        while i < distinct.len() && distinct[i] <= x {
            i += 1;
        }
        i
    }
}

impl FineGrid {
    /// Grid from a sorted, finite reference; `refinement ≥ 1` fine bins per coarse bin.
    ///
    /// # Errors
    /// As [`NumericBins::from_sorted`].
    pub fn from_sorted(
        sorted: &[f64],
        coarse_bins: usize,
        refinement: usize,
    ) -> Result<Self, BinningError> {
        if coarse_bins == 0 {
            return Err(BinningError::NoBins(coarse_bins));
        }
        if sorted.is_empty() {
            return Err(BinningError::EmptyReference);
        }
        let refinement = refinement.max(1);
        let fine = coarse_bins * refinement;
        let mut edges = Vec::with_capacity(fine + 1);
        edges.push(sorted[0]);
        edges.extend((1..fine).map(|j| quantile_linear(sorted, j as f64 / fine as f64)));
        edges.push(sorted[sorted.len() - 1].next_up());
        let index = EdgeIndex::build(&edges);
        Ok(Self {
            edges,
            coarse_bins,
            refinement,
            index,
        })
    }

    /// Number of grid cells: inner bins plus the two outer ones.
    pub fn cells(&self) -> usize {
        self.edges.len() + 1
    }

    /// Edges of the grid; cell `i` is `[edges[i-1], edges[i])`, cell 0 is below `edges[0]`.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The grid cell of `x`.
    #[inline]
    pub fn cell_of(&self, x: f64) -> usize {
        self.index.search(&self.edges, x)
    }

    /// A hint that [`Self::cell_of`]`(x)` comes soon: brings the part of the lookup table it
    /// will read into the cache. Changes nothing.
    #[inline]
    pub fn prefetch_cell(&self, x: f64) {
        self.index.prefetch(x);
    }

    /// The coarse (reference) bin of a grid cell; equal to `NumericBins::bin_of` for any
    /// value in that cell.
    #[inline]
    pub fn coarse_of_cell(&self, cell: usize) -> usize {
        let last = self.edges.len();
        if cell == 0 {
            0
        } else if cell >= last {
            self.coarse_bins - 1
        } else {
            (cell - 1) / self.refinement
        }
    }

    /// Number of coarse bins.
    pub fn coarse_bins(&self) -> usize {
        self.coarse_bins
    }

    /// Folds grid-cell counts into coarse-bin counts.
    pub fn coarse_counts(&self, cell_counts: &[u64]) -> Vec<u64> {
        let mut coarse = vec![0u64; self.coarse_bins];
        for (cell, &count) in cell_counts.iter().enumerate() {
            coarse[self.coarse_of_cell(cell)] += count;
        }
        coarse
    }
}

/// Categorical bins: one per reference category (most frequent first, capped), plus
/// [`OTHER_CATEGORY`] last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "CategoricalBinsData", into = "CategoricalBinsData")]
pub struct CategoricalBins {
    /// Category labels in bin order, without `__other__`.
    categories: Vec<String>,
    /// Category → bin: one hash (FNV, fast on short strings) per event instead of a binary
    /// search of string comparisons. Lookups only, so crafted categories cannot grow it.
    index: std::collections::HashMap<String, usize, fnv::FnvBuildHasher>,
}

/// The serialized form of [`CategoricalBins`]: the categories; the index is rebuilt.
#[derive(Serialize, Deserialize)]
struct CategoricalBinsData {
    categories: Vec<String>,
}

impl From<CategoricalBinsData> for CategoricalBins {
    fn from(data: CategoricalBinsData) -> Self {
        Self::from_sorted(data.categories)
    }
}

impl From<CategoricalBins> for CategoricalBinsData {
    fn from(bins: CategoricalBins) -> Self {
        Self {
            categories: bins.categories,
        }
    }
}

impl CategoricalBins {
    /// Bins from `(category, count)` pairs of the reference, keeping at most `max_categories`
    /// categories (the most frequent; ties broken by name so the result is deterministic).
    pub fn from_counts<'a>(
        counts: impl IntoIterator<Item = (&'a str, u64)>,
        max_categories: usize,
    ) -> Self {
        let mut pairs: Vec<(&str, u64)> = counts.into_iter().filter(|(_, c)| *c > 0).collect();
        pairs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        pairs.truncate(max_categories);
        // Bin order by label keeps reports and evidence hashes independent of frequency ties.
        let mut categories: Vec<String> = pairs.into_iter().map(|(c, _)| c.to_owned()).collect();
        categories.sort_unstable();
        Self::from_sorted(categories)
    }

    fn from_sorted(categories: Vec<String>) -> Self {
        let index = categories
            .iter()
            .enumerate()
            .map(|(bin, category)| (category.clone(), bin))
            .collect();
        Self { categories, index }
    }

    /// Reference categories in bin order.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// Number of bins, `__other__` included.
    pub fn len(&self) -> usize {
        self.categories.len() + 1
    }

    /// Always false: `__other__` always exists.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin of a category; unseen categories go to `__other__` (the last bin).
    #[inline]
    pub fn bin_of(&self, category: &str) -> usize {
        self.index
            .get(category)
            .copied()
            .unwrap_or(self.categories.len())
    }

    /// Label of bin `index` (`__other__` for the last).
    pub fn label(&self, index: usize) -> &str {
        self.categories
            .get(index)
            .map(String::as_str)
            .unwrap_or(OTHER_CATEGORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        reference: Vec<f64>,
        bins: usize,
        edges: Vec<f64>,
        current: Vec<f64>,
        bin_index: Vec<usize>,
        counts: Vec<u64>,
    }

    /// Edges bit-identical to `np.quantile(..., method="linear")`, bins identical to
    /// `np.searchsorted(..., side="right")`.
    #[test]
    fn matches_numpy_vectors() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/binning.json")).unwrap();
        assert!(vectors.cases.len() >= 10);
        for case in &vectors.cases {
            let sorted = sorted_finite(&case.reference);
            let bins = NumericBins::from_sorted(&sorted, case.bins).unwrap();
            // f64 equality: exact, except that -0.0 == 0.0, which bin identically (NumPy's sort
            // leaves the order of signed zeros unspecified).
            assert_eq!(bins.edges(), &case.edges[..], "{}", case.name);
            let indices: Vec<usize> = case.current.iter().map(|&x| bins.bin_of(x)).collect();
            assert_eq!(indices, case.bin_index, "{}", case.name);
            assert_eq!(bins.histogram(&case.current), case.counts, "{}", case.name);
        }
    }

    #[test]
    fn searchsorted_matches_numpy_semantics() {
        let edges = [1.0, 2.0, 2.0, 3.0];
        assert_eq!(searchsorted_right(&edges, 0.5), 0);
        assert_eq!(searchsorted_right(&edges, 1.0), 1);
        assert_eq!(searchsorted_right(&edges, 2.0), 3);
        assert_eq!(searchsorted_right(&edges, 2.5), 3);
        assert_eq!(searchsorted_right(&edges, 3.0), 4);
        assert_eq!(searchsorted_right(&edges, 99.0), 4);
        assert_eq!(searchsorted_right(&[], 1.0), 0);
    }

    #[test]
    fn quantile_endpoints_are_min_and_max() {
        let sorted = [-3.0, 0.5, 7.0];
        assert_eq!(quantile_linear(&sorted, 0.0), -3.0);
        assert_eq!(quantile_linear(&sorted, 1.0), 7.0);
        assert_eq!(quantile_linear(&sorted, 0.5), 0.5);
        assert_eq!(quantile_linear(&sorted, 0.25), -1.25);
    }

    #[test]
    fn empty_reference_is_an_error() {
        assert_eq!(
            NumericBins::from_sorted(&[], 10),
            Err(BinningError::EmptyReference)
        );
        assert_eq!(
            NumericBins::from_sorted(&[1.0], 0),
            Err(BinningError::NoBins(0))
        );
    }

    #[test]
    fn categorical_other_bin_catches_unseen() {
        let bins = CategoricalBins::from_counts([("b", 5), ("a", 7), ("c", 1), ("z", 0)], 2);
        assert_eq!(bins.categories(), ["a", "b"]);
        assert_eq!(bins.bin_of("a"), 0);
        assert_eq!(bins.bin_of("b"), 1);
        assert_eq!(bins.bin_of("c"), 2);
        assert_eq!(bins.label(2), OTHER_CATEGORY);
        assert_eq!(bins.len(), 3);
    }

    #[test]
    fn categorical_bins_survive_serialization_with_their_index() {
        let bins = CategoricalBins::from_counts([("fr", 3), ("de", 2), ("us", 9)], 10);
        let json = serde_json::to_string(&bins).unwrap();
        assert_eq!(json, r#"{"categories":["de","fr","us"]}"#);
        let back: CategoricalBins = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bins);
        for (i, category) in ["de", "fr", "us", "jp"].into_iter().enumerate() {
            assert_eq!(back.bin_of(category), i);
        }
    }

    proptest! {
        #[test]
        fn fine_grid_agrees_with_coarse_bins(
            reference in prop::collection::vec(-50i32..50, 1..300),
            probes in prop::collection::vec(-60.0f64..60.0, 1..100),
            coarse in 1usize..15,
            refinement in 1usize..20,
        ) {
            let reference: Vec<f64> = reference.into_iter().map(|v| f64::from(v) / 4.0).collect();
            let sorted = sorted_finite(&reference);
            let bins = NumericBins::from_sorted(&sorted, coarse).unwrap();
            let grid = FineGrid::from_sorted(&sorted, coarse, refinement).unwrap();
            // Probe edges themselves as well as arbitrary values.
            let edge_probes: Vec<f64> = grid.edges().to_vec();
            for &x in probes.iter().chain(edge_probes.iter()) {
                prop_assert_eq!(grid.coarse_of_cell(grid.cell_of(x)), bins.bin_of(x));
            }
        }

        #[test]
        fn bucket_sort_equals_total_cmp_sort(
            // Uniform, arbitrary bit patterns (NaN, infinities, subnormals), repeated values
            // and signed zeros, and powers of two across the whole exponent range (a span the
            // slices cut very unevenly: deep recursion and the comparison fallback).
            values in prop::collection::vec(prop_oneof![
                any::<f64>(), -1e3f64..1e3, Just(0.0), Just(-0.0), Just(f64::MIN_POSITIVE),
                (-1074i32..1024).prop_map(|e| 2f64.powi(e)),
                (0u64..4).prop_map(|k| 1e12 + k as f64)], 0..3000),
        ) {
            let mut expected = values.clone();
            expected.sort_unstable_by(f64::total_cmp);
            let mut actual = values;
            sort_f64(&mut actual);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&actual), bits(&expected));
        }

        #[test]
        fn indexed_search_equals_plain_search(
            // Uniform, tiny and huge magnitudes, integers (runs of equal edges) and a heavy
            // tail (edges crowded at the low end: the bucket range gets trimmed).
            reference in prop::collection::vec(
                prop_oneof![-1e3f64..1e3, -1e-6f64..1e-6, 1e12f64..1.000001e12, Just(0.0),
                    (0u32..12).prop_map(f64::from), (-3.0f64..12.0).prop_map(f64::exp)], 1..400),
            probes in prop::collection::vec(
                prop_oneof![-2e3f64..2e3, -2e-6f64..2e-6, 1e12f64..1.000002e12,
                    (0u32..14).prop_map(f64::from), (-4.0f64..13.0).prop_map(f64::exp)], 1..200),
            refinement in 1usize..40,
        ) {
            let sorted = sorted_finite(&reference);
            let grid = FineGrid::from_sorted(&sorted, 10, refinement).unwrap();
            // The hint before a lookup, as the engine gives it, for any value at all.
            for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -f64::MAX] {
                grid.prefetch_cell(x);
            }
            for &x in probes.iter().chain(grid.edges()) {
                grid.prefetch_cell(x);
                prop_assert_eq!(grid.cell_of(x), searchsorted_right(grid.edges(), x));
                prop_assert_eq!(grid.cell_of(x.next_down()), searchsorted_right(grid.edges(), x.next_down()));
                prop_assert_eq!(grid.cell_of(x.next_up()), searchsorted_right(grid.edges(), x.next_up()));
            }
            // Around every bucket boundary, where rounding decides the bucket.
            let index = &grid.index;
            if !index.buckets.is_empty() {
                let step = (index.hi - index.lo) / EdgeIndex::BUCKETS as f64;
                for j in 0..=EdgeIndex::BUCKETS {
                    let boundary = index.lo + j as f64 * step;
                    for x in [boundary.next_down(), boundary, boundary.next_up()] {
                        prop_assert_eq!(grid.cell_of(x), searchsorted_right(grid.edges(), x));
                    }
                }
            }
        }

        #[test]
        fn a_grid_survives_serialization_with_a_working_index(
            reference in prop::collection::vec(-1e3f64..1e3, 16..300),
            probes in prop::collection::vec(-2e3f64..2e3, 1..50),
        ) {
            let grid = FineGrid::from_sorted(&sorted_finite(&reference), 10, 16).unwrap();
            let json = serde_json::to_string(&grid).unwrap();
            prop_assert!(!json.contains("index"));
            let back: FineGrid = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &grid);
            for &x in &probes {
                prop_assert_eq!(back.cell_of(x), searchsorted_right(back.edges(), x));
            }
        }

        #[test]
        fn bins_partition_every_value(
            reference in prop::collection::vec(-1e6f64..1e6, 1..200),
            values in prop::collection::vec(-2e6f64..2e6, 0..200),
            nbins in 1usize..30,
        ) {
            let sorted = sorted_finite(&reference);
            let bins = NumericBins::from_sorted(&sorted, nbins).unwrap();
            let counts = bins.histogram(&values);
            prop_assert_eq!(counts.len(), nbins);
            prop_assert_eq!(counts.iter().sum::<u64>(), values.len() as u64);
            prop_assert!(bins.edges().windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
