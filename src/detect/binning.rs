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

/// Sorts in `f64::total_cmp` order. Large inputs use an LSD radix sort on the order-preserving
/// bit pattern of each double (sign flipped, negatives inverted): six O(n) passes over 11-bit
/// digits, skipping digits all values share, which is 3–5× faster than a comparison sort for
/// the 10,000-value samples KS and the reference builder sort.
pub fn sort_f64(values: &mut [f64]) {
    const RADIX_THRESHOLD: usize = 512;
    if values.len() < RADIX_THRESHOLD {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // Order-preserving key: flip all bits of negatives, only the sign bit of positives.
    let key = |x: f64| {
        let bits = x.to_bits();
        bits ^ (((bits as i64 >> 63) as u64) | (1 << 63))
    };
    // 11-bit digits: 6 passes cover 64 bits, and the 6 count tables (2048 entries each)
    // stay in L1/L2.
    const BITS: usize = 11;
    const PASSES: usize = 64_usize.div_ceil(BITS);
    const MASK: u64 = (1 << BITS) - 1;
    let mut keys: Vec<u64> = values.iter().map(|&x| key(x)).collect();
    let mut buffer = vec![0u64; keys.len()];
    let mut counts = vec![[0usize; 1 << BITS]; PASSES];
    for &k in &keys {
        for (digit, count) in counts.iter_mut().enumerate() {
            count[((k >> (digit * BITS)) & MASK) as usize] += 1;
        }
    }
    for (digit, count) in counts.iter().enumerate() {
        // A digit every key shares does not reorder anything.
        if count.contains(&keys.len()) {
            continue;
        }
        let mut offsets = vec![0usize; 1 << BITS];
        let mut running = 0;
        for (offset, &c) in offsets.iter_mut().zip(count.iter()) {
            *offset = running;
            running += c;
        }
        for &k in &keys {
            let bucket = ((k >> (digit * BITS)) & MASK) as usize;
            buffer[offsets[bucket]] = k;
            offsets[bucket] += 1;
        }
        std::mem::swap(&mut keys, &mut buffer);
    }
    for (value, k) in values.iter_mut().zip(keys) {
        let bits = if k >> 63 == 1 { k ^ (1 << 63) } else { !k };
        *value = f64::from_bits(bits);
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

/// A lookup table that turns a bin search into a guess and a step or two.
///
/// The span of the edges is cut into equal-width buckets; `starts[j]` is the number of edges
/// `<= lo + j·step`. A value's bucket is found by one multiplication; its bucket's start is
/// within an edge or two of the answer (512 buckets for ~160 edges), and stepping from it to
/// the first edge above the value gives the exact answer whatever the rounding of the bucket
/// computation. This replaces ~8 dependent loads scattered over a few kilobytes with 2–3
/// loads in the same cache lines (BENCHMARKS.md: a 20-feature event went from ~600 to ~230
/// ns). When the span is too narrow for its magnitude (bucket bounds would not be
/// representable), not finite, or there are more edges than a `u16` counts, the index is
/// disabled and the plain search runs.
#[derive(Debug, Clone, PartialEq)]
struct EdgeIndex {
    lo: f64,
    inverse_step: f64,
    starts: Vec<u16>,
}

impl EdgeIndex {
    const BUCKETS: usize = 512;

    fn build(edges: &[f64]) -> Self {
        let disabled = Self {
            lo: 0.0,
            inverse_step: 0.0,
            starts: Vec::new(),
        };
        let (Some(&lo), Some(&hi)) = (edges.first(), edges.last()) else {
            return disabled;
        };
        let span = hi - lo;
        let magnitude = lo.abs().max(hi.abs());
        if !span.is_finite()
            || span <= magnitude * 1e-9
            || edges.len() < 16
            || edges.len() > usize::from(u16::MAX)
        {
            return disabled;
        }
        let step = span / Self::BUCKETS as f64;
        let starts = (0..=Self::BUCKETS)
            .map(|j| searchsorted_right(edges, lo + j as f64 * step) as u16)
            .collect();
        Self {
            lo,
            inverse_step: 1.0 / step,
            starts,
        }
    }

    #[inline]
    fn search(&self, edges: &[f64], x: f64) -> usize {
        if self.starts.is_empty() {
            return searchsorted_right(edges, x);
        }
        if x.is_nan() {
            return searchsorted_right(edges, x);
        }
        if x < self.lo {
            // Below the first edge, which is `lo`. Compared on `x` itself: `(x - lo) * step⁻¹`
            // underflows to -0.0 for an `x` just below `lo`.
            return 0;
        }
        let position = (x - self.lo) * self.inverse_step;
        // The bucket's start is a guess within an edge or two of the answer (rounding in
        // `position` may pick a neighbouring bucket); stepping from it to the first edge
        // above `x` makes the answer exact whatever the guess.
        let bucket = (position as usize).min(Self::BUCKETS);
        let mut i = usize::from(self.starts[bucket]);
        // Most buckets hold at most two edges: two branch-free steps settle almost every
        // value, so the loops below (which keep the answer exact) rarely run and their
        // branches stay predictable.
        i += usize::from(edges.get(i).is_some_and(|&edge| edge <= x));
        i += usize::from(edges.get(i).is_some_and(|&edge| edge <= x));
        while i < edges.len() && edges[i] <= x {
            i += 1;
        }
        while i > 0 && edges[i - 1] > x {
            i -= 1;
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
        fn radix_sort_equals_total_cmp_sort(
            values in prop::collection::vec(prop_oneof![
                any::<f64>(), -1e3f64..1e3, Just(0.0), Just(-0.0), Just(f64::MIN_POSITIVE)], 0..3000),
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
            reference in prop::collection::vec(
                prop_oneof![-1e3f64..1e3, -1e-6f64..1e-6, 1e12f64..1.000001e12, Just(0.0)], 1..400),
            probes in prop::collection::vec(
                prop_oneof![-2e3f64..2e3, -2e-6f64..2e-6, 1e12f64..1.000002e12], 1..200),
            refinement in 1usize..40,
        ) {
            let sorted = sorted_finite(&reference);
            let grid = FineGrid::from_sorted(&sorted, 10, refinement).unwrap();
            for &x in probes.iter().chain(grid.edges()) {
                prop_assert_eq!(grid.cell_of(x), searchsorted_right(grid.edges(), x));
                prop_assert_eq!(grid.cell_of(x.next_down()), searchsorted_right(grid.edges(), x.next_down()));
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
