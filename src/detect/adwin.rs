//! ADWIN (ADaptive WINdowing) change detector, bit-for-bit compatible with River 0.26.1's
//! `river.drift.ADWIN`.
//!
//! Owns: the exponential-histogram window, the cut test and River's reset-after-detection
//! behaviour. Must not touch: clocks, I/O, async code. Every value it reports must equal
//! River's for the same stream and parameters, so the floating-point operations below keep
//! River's order (e.g. the running variance update and the merge of two buckets); reordering
//! them would drift the last bits and, near a threshold, move a detection index.
//!
//! Layout: row `r` of the histogram holds up to `max_buckets + 1` buckets, each summarising
//! `2^r` consecutive elements (their total and their variance, i.e. sum of squared deviations).
//! Row 0 receives new elements; a row that reaches `max_buckets + 1` buckets merges its two
//! oldest into one bucket of the next row. Rows are stored flat (`rows × (max_buckets + 1)`)
//! so an update touches one small contiguous slice and never allocates once the window
//! has reached its size.

use serde::{Deserialize, Serialize};

/// ADWIN's parameters; the defaults are River's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdwinParams {
    /// Significance value of the cut test; smaller means fewer, later detections.
    pub delta: f64,
    /// The cut test runs on every `clock`-th update (once the window is past the grace period).
    pub clock: u32,
    /// Buckets of one size kept before the two oldest are merged.
    pub max_buckets: u32,
    /// Sub-windows shorter than this are never compared.
    pub min_window_length: u32,
    /// No cut test until the window holds more than this many elements.
    pub grace_period: u32,
}

impl Default for AdwinParams {
    fn default() -> Self {
        Self {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

/// Why a set of ADWIN parameters cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdwinParamsError {
    /// `delta` must lie strictly between 0 and 1.
    #[error("adwin delta must be in (0, 1), got {0}")]
    Delta(f64),
    /// `clock` must be at least 1 (River divides by it).
    #[error("adwin clock must be >= 1")]
    Clock,
    /// `max_buckets` must be at least 2. With 1, a merge can empty a row below the oldest
    /// one, and a later deletion of the oldest bucket then finds an empty row: River 0.26.1
    /// itself panics there ("slice index starts at 1 but ends at 0"), so there is no
    /// reference behaviour to follow, and refusing the value at start is the honest answer.
    #[error("adwin max_buckets must be >= 2, got {0}")]
    MaxBuckets(u32),
}

impl AdwinParams {
    /// Checks the parameters, returning every problem found.
    pub fn validate(&self) -> Vec<AdwinParamsError> {
        let mut problems = Vec::new();
        if !(self.delta > 0.0 && self.delta < 1.0) {
            problems.push(AdwinParamsError::Delta(self.delta));
        }
        if self.clock == 0 {
            problems.push(AdwinParamsError::Clock);
        }
        if self.max_buckets < 2 {
            problems.push(AdwinParamsError::MaxBuckets(self.max_buckets));
        }
        problems
    }
}

/// The exponential histogram and running statistics of the current window
/// (River's `AdaptiveWindowing`).
///
/// Merges are deferred: an update only appends its element to `pending` (and updates the
/// running total, width and variance, which River reads after every update), and
/// [`Window::flush`] merges the pending elements into the histogram right before a cut test
/// reads it, or when a few dozen have gathered. Merging a batch pairs the same buckets in the
/// same order as merging after each update (see `flush`), so every bucket holds the same
/// bits; what changes is that an update no longer runs a data-dependent merge cascade.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "WindowData", into = "WindowData")]
struct Window {
    /// Bucket totals, row-major, `row_capacity` slots per row.
    totals: Vec<f64>,
    /// Bucket variances (sums of squared deviations), same layout as `totals`.
    variances: Vec<f64>,
    /// Buckets in use per row; row `r`'s buckets are the first `lens[r]` slots, oldest first.
    lens: Vec<u32>,
    /// Sum of the window's elements.
    total: f64,
    /// Sum of squared deviations from the mean over the window.
    variance: f64,
    /// Number of elements in the window. A float because River keeps it as one and every
    /// comparison and division below uses it as a float.
    width: f64,
    /// Updates since the last reset; the cut test runs when it is a multiple of `clock`.
    tick: u64,
    /// Elements added since the last flush, oldest first: new row-0 buckets.
    pending: Vec<f64>,
    /// Working lists of `flush`, kept to reuse their storage (empty between flushes).
    scratch: [Vec<f64>; 4],
}

/// A [`Window`] as stored: every element merged into the histogram. This is the layout of
/// state written before merges were deferred, so checkpoints read and write as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowData {
    totals: Vec<f64>,
    variances: Vec<f64>,
    lens: Vec<u32>,
    total: f64,
    variance: f64,
    width: f64,
    tick: u64,
}

impl From<WindowData> for Window {
    fn from(mut data: WindowData) -> Self {
        // State written before unused slots were zeroed may hold stale values there. Zero
        // them, as `flush` and `delete_oldest` keep them: otherwise rows that no merge has
        // touched since the restore would keep them, and the stored form would differ from
        // that of a detector that never stopped.
        if !data.lens.is_empty() {
            let cap = data.totals.len() / data.lens.len();
            for (row, &len) in data.lens.iter().enumerate() {
                let unused = (row * cap + len as usize).min(data.totals.len())..(row + 1) * cap;
                for slots in [&mut data.totals, &mut data.variances] {
                    if let Some(unused) = slots.get_mut(unused.clone()) {
                        unused.fill(0.0);
                    }
                }
            }
        }
        Self {
            totals: data.totals,
            variances: data.variances,
            lens: data.lens,
            total: data.total,
            variance: data.variance,
            width: data.width,
            tick: data.tick,
            pending: Vec::new(),
            scratch: Default::default(),
        }
    }
}

impl From<Window> for WindowData {
    fn from(mut window: Window) -> Self {
        window.flush();
        Self {
            totals: window.totals,
            variances: window.variances,
            lens: window.lens,
            total: window.total,
            variance: window.variance,
            width: window.width,
            tick: window.tick,
        }
    }
}

/// Two windows are equal when they hold the same histogram and statistics, whether or not
/// their pending elements have been merged yet.
impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        WindowData::from(self.clone()) == WindowData::from(other.clone())
    }
}

impl Window {
    /// Pending elements that trigger a flush even when no cut test is due (within the grace
    /// period, or with a long clock), so the list stays small.
    const MAX_PENDING: usize = 64;

    fn new(row_capacity: usize) -> Self {
        Self {
            totals: vec![0.0; row_capacity],
            variances: vec![0.0; row_capacity],
            lens: vec![0],
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
            pending: Vec::with_capacity(Self::MAX_PENDING),
            scratch: Default::default(),
        }
    }

    /// Adds `value` to the window's width, total and variance, which River reads after every
    /// update (the histogram may lag, see [`Window::flush`]).
    #[inline(always)]
    fn count(&mut self, value: f64) {
        self.width += 1.0;
        if self.width > 1.0 {
            // Incremental variance (Welford form) in River's operation order.
            let previous_mean = self.total / (self.width - 1.0);
            let deviation = value - previous_mean;
            self.variance += (self.width - 1.0) * deviation * deviation / self.width;
        }
        self.total += value;
    }

    /// Merges the pending elements into the histogram, row by row.
    ///
    /// Merging after every insert keeps each row at most `max_buckets` long: when an arrival
    /// makes it `max_buckets + 1`, its two oldest buckets merge into one of the next row. So
    /// of a row's buckets followed by `n` arrivals (`t` in all), the first `2·m` merge in
    /// consecutive pairs, oldest first, with `m = ⌈(t − max_buckets) / 2⌉` (none when `t ≤
    /// max_buckets`), and the merged buckets arrive at the next row in that order. A batch
    /// does exactly that, one row at a time, with the same arithmetic on the same pairs.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Rows are `totals.len() / lens.len()` slots wide (`max_buckets + 1`).
        let cap = self.totals.len() / self.lens.len();
        let max_buckets = cap - 1;
        let [mut in_totals, mut in_variances, mut out_totals, mut out_variances] =
            std::mem::take(&mut self.scratch);
        in_totals.clear();
        in_totals.append(&mut self.pending);
        in_variances.clear();
        in_variances.resize(in_totals.len(), 0.0);
        let mut row = 0usize;
        while !in_totals.is_empty() {
            if row == self.lens.len() {
                self.lens.push(0);
                self.totals.resize(self.totals.len() + cap, 0.0);
                self.variances.resize(self.variances.len() + cap, 0.0);
            }
            let base = row * cap;
            // The row's sequence is its `live` buckets, then the arrivals; it is read in
            // place, in three runs so that no element needs a branch: pairs within the live
            // buckets, the pair across the boundary (odd `live`), pairs within the arrivals.
            let live = self.lens[row] as usize;
            let count = live + in_totals.len();
            let merges = if count > max_buckets {
                (count - max_buckets).div_ceil(2)
            } else {
                0
            };
            out_totals.clear();
            out_variances.clear();
            let mut pair = 0;
            let (totals, variances) = (&self.totals[base..], &self.variances[base..]);
            while pair < merges && 2 * pair + 1 < live {
                let (a, b) = (2 * pair, 2 * pair + 1);
                let (total, variance) =
                    merge(row, (totals[a], variances[a]), (totals[b], variances[b]));
                out_totals.push(total);
                out_variances.push(variance);
                pair += 1;
            }
            if pair < merges && 2 * pair + 1 == live {
                let a = live - 1;
                let (total, variance) = merge(
                    row,
                    (totals[a], variances[a]),
                    (in_totals[0], in_variances[0]),
                );
                out_totals.push(total);
                out_variances.push(variance);
                pair += 1;
            }
            if pair < merges {
                // Sequence position `2 * pair` and on lie in the arrivals.
                let first = 2 * pair - live;
                let arrivals = first..first + 2 * (merges - pair);
                let (pairs_t, pairs_v) = (&in_totals[arrivals.clone()], &in_variances[arrivals]);
                for (t, v) in pairs_t.chunks_exact(2).zip(pairs_v.chunks_exact(2)) {
                    let (total, variance) = merge(row, (t[0], v[0]), (t[1], v[1]));
                    out_totals.push(total);
                    out_variances.push(variance);
                }
            }
            // The row keeps the sequence's tail: its own unmerged buckets move to the front,
            // then the unmerged arrivals follow.
            let kept = count - 2 * merges;
            let mut slot = base;
            for from in base + (2 * merges).min(live)..base + live {
                self.totals[slot] = self.totals[from];
                self.variances[slot] = self.variances[from];
                slot += 1;
            }
            let first_kept_arrival = (2 * merges).saturating_sub(live);
            for (&t, &v) in in_totals[first_kept_arrival..]
                .iter()
                .zip(&in_variances[first_kept_arrival..])
            {
                self.totals[slot] = t;
                self.variances[slot] = v;
                slot += 1;
            }
            debug_assert_eq!(slot, base + kept);
            // Unused slots hold zeros, so a window's stored form does not depend on when its
            // merges ran (a restored detector compares equal to one that never stopped).
            for unused in slot..base + cap {
                self.totals[unused] = 0.0;
                self.variances[unused] = 0.0;
            }
            self.lens[row] = kept as u32;
            // The merged buckets are the next row's arrivals.
            std::mem::swap(&mut in_totals, &mut out_totals);
            std::mem::swap(&mut in_variances, &mut out_variances);
            row += 1;
        }
        self.scratch = [in_totals, in_variances, out_totals, out_variances];
    }
}

/// Two buckets of row `row` (totals and variances, older first) merged into one of the next
/// row, in River's operation order.
#[inline(always)]
fn merge(row: usize, (t0, v0): (f64, f64), (t1, v1): (f64, f64)) -> (f64, f64) {
    let size = (1u64 << row) as f64;
    // River divides by `size` and by `size + size`. Both are powers of two, so multiplying
    // by their exact reciprocals gives the same bits (each operation rounds the same real
    // number) without the divisions' latency.
    let (mean0, mean1) = (
        t0 * inverse_power_of_two(row),
        t1 * inverse_power_of_two(row),
    );
    let merged_total = t0 + t1;
    let merged_variance =
        v0 + v1 + size * size * (mean0 - mean1) * (mean0 - mean1) * inverse_power_of_two(row + 1);
    (merged_total, merged_variance)
}

/// ADWIN drift detector over a stream of real numbers.
///
/// `update` returns whether this element's update detected a change. Like River, the
/// detector then starts afresh (an empty window) at the next update, so `width` and
/// `estimation` still describe the shrunk window right after a detection.
///
/// Read back from state through `AdwinData`, which refuses a detector whose histogram does
/// not fit its parameters (see `Adwin::check`): the histogram is indexed without checks, so
/// a damaged record must fail at restore, not panic at the next update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AdwinData")]
pub struct Adwin {
    params: AdwinParams,
    /// Slots per row: `max_buckets + 1`, room for the bucket that triggers a merge.
    row_capacity: usize,
    window: Window,
    /// The previous update detected a change: reset before the next one (River's semantics).
    drift_detected: bool,
    /// Detections since construction (River counts per helper; we keep the lifetime total,
    /// which is what an operator wants to see).
    detections: u64,
    /// Elements seen since construction.
    updates: u64,
}

/// The stored form of an [`Adwin`]: its serialized fields, in their order, checked before
/// they become a detector.
#[derive(Deserialize)]
struct AdwinData {
    params: AdwinParams,
    row_capacity: usize,
    window: Window,
    drift_detected: bool,
    detections: u64,
    updates: u64,
}

impl TryFrom<AdwinData> for Adwin {
    type Error = String;

    fn try_from(data: AdwinData) -> Result<Self, String> {
        let adwin = Self {
            params: data.params,
            row_capacity: data.row_capacity,
            window: data.window,
            drift_detected: data.drift_detected,
            detections: data.detections,
            updates: data.updates,
        };
        adwin.check().map(|()| adwin)
    }
}

impl Adwin {
    /// Checks that a detector read back from state fits together: valid parameters, rows
    /// `max_buckets + 1` slots wide with at most `max_buckets` buckets each (as every merge
    /// leaves them), fewer than 64 rows (row `r` holds buckets of 2^r elements), and a width
    /// that is what the buckets hold (removing the oldest bucket relies on it).
    ///
    /// # Errors
    /// The first thing that does not fit.
    fn check(&self) -> Result<(), String> {
        let problems = self.params.validate();
        if let Some(problem) = problems.first() {
            return Err(problem.to_string());
        }
        let max_buckets = self.params.max_buckets as usize;
        if self.row_capacity != max_buckets + 1 {
            return Err(format!(
                "rows of {} slots for max_buckets {max_buckets}",
                self.row_capacity
            ));
        }
        let w = &self.window;
        let rows = w.lens.len();
        if rows == 0 || rows >= 64 {
            return Err(format!("a histogram of {rows} rows"));
        }
        if w.totals.len() != rows * self.row_capacity || w.variances.len() != w.totals.len() {
            return Err(format!(
                "{rows} rows of {} slots with {} totals and {} variances",
                self.row_capacity,
                w.totals.len(),
                w.variances.len()
            ));
        }
        if let Some(row) = w.lens.iter().position(|&len| len as usize > max_buckets) {
            return Err(format!(
                "row {row} holds {} buckets, more than max_buckets {max_buckets}",
                w.lens[row]
            ));
        }
        let held: f64 = (w.lens.iter().enumerate())
            .map(|(row, &len)| f64::from(len) * (1u64 << row) as f64)
            .sum();
        if held != w.width {
            return Err(format!(
                "a width of {} and buckets holding {held} elements",
                w.width
            ));
        }
        Ok(())
    }

    /// A detector with the given parameters.
    ///
    /// # Errors
    /// Every problem with the parameters (see [`AdwinParams::validate`]).
    pub fn new(params: AdwinParams) -> Result<Self, Vec<AdwinParamsError>> {
        let problems = params.validate();
        if !problems.is_empty() {
            return Err(problems);
        }
        let row_capacity = params.max_buckets as usize + 1;
        Ok(Self {
            params,
            row_capacity,
            window: Window::new(row_capacity),
            drift_detected: false,
            detections: 0,
            updates: 0,
        })
    }

    /// The parameters this detector runs with.
    pub fn params(&self) -> &AdwinParams {
        &self.params
    }

    /// Number of elements in the current window.
    pub fn width(&self) -> u64 {
        self.window.width as u64
    }

    /// Mean of the current window (0 when empty), River's `estimation`.
    pub fn estimation(&self) -> f64 {
        if self.window.width == 0.0 {
            0.0
        } else {
            self.window.total / self.window.width
        }
    }

    /// Sum of the current window's elements.
    pub fn total(&self) -> f64 {
        self.window.total
    }

    /// Sum of squared deviations from the mean over the current window.
    pub fn variance(&self) -> f64 {
        self.window.variance
    }

    /// Whether the last update detected a change.
    pub fn drift_detected(&self) -> bool {
        self.drift_detected
    }

    /// Changes detected since construction.
    pub fn detections(&self) -> u64 {
        self.detections
    }

    /// Elements seen since construction.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Adds one element; returns `true` when this update detected a change.
    ///
    /// Non-finite values would poison the running sums forever, so callers must filter them
    /// (the monitor counts them as data-quality problems); here they are ignored and
    /// reported as no detection.
    pub fn update(&mut self, value: f64) -> bool {
        self.update_with(value, true, Self::insert)
    }

    /// [`Self::update`], with or without the [`InsignificanceTest`] shortcut, adding the
    /// element with `insert` (tests compare the deferred merges with merging at each insert).
    #[inline(always)]
    fn update_with(&mut self, value: f64, shortcut: bool, insert: fn(&mut Self, f64)) -> bool {
        if !value.is_finite() {
            return false;
        }
        if self.drift_detected {
            // River resets the whole helper at the update after a detection.
            self.window = Window::new(self.row_capacity);
        }
        self.updates += 1;
        insert(self, value);
        self.drift_detected = self.detect_change(shortcut);
        if self.drift_detected {
            self.detections += 1;
        }
        self.drift_detected
    }

    fn insert(&mut self, value: f64) {
        self.window.pending.push(value);
        self.window.count(value);
    }

    /// The merge-after-every-insert form of [`Self::insert`] (River's), kept as the
    /// reference the deferred merges are tested against.
    #[cfg(test)]
    fn insert_eagerly(&mut self, value: f64) {
        self.window.flush();
        let w = &mut self.window;
        let slot = w.lens[0] as usize;
        w.totals[slot] = value;
        w.variances[slot] = 0.0;
        w.lens[0] += 1;
        w.count(value);
        self.compress_eagerly();
    }

    /// Cascades merges upwards while a row holds `max_buckets + 1` buckets.
    #[cfg(test)]
    fn compress_eagerly(&mut self) {
        let cap = self.row_capacity;
        let w = &mut self.window;
        let mut row = 0usize;
        while w.lens[row] as usize == cap {
            let base = row * cap;
            let size = (1u64 << row) as f64;
            let (t0, t1) = (w.totals[base], w.totals[base + 1]);
            let (v0, v1) = (w.variances[base], w.variances[base + 1]);
            // River divides by `size` and by `size + size`. Both are powers of two, so
            // multiplying by their exact reciprocals gives the same bits (each operation
            // rounds the same real number) without the divisions' latency.
            let (mean0, mean1) = (
                t0 * inverse_power_of_two(row),
                t1 * inverse_power_of_two(row),
            );
            let merged_total = t0 + t1;
            let merged_variance = v0
                + v1
                + size * size * (mean0 - mean1) * (mean0 - mean1) * inverse_power_of_two(row + 1);

            if row + 1 == w.lens.len() {
                w.lens.push(0);
                w.totals.resize(w.totals.len() + cap, 0.0);
                w.variances.resize(w.variances.len() + cap, 0.0);
            }
            let next = (row + 1) * cap + w.lens[row + 1] as usize;
            w.totals[next] = merged_total;
            w.variances[next] = merged_variance;
            w.lens[row + 1] += 1;

            // Drop the two merged buckets from the front of this row.
            let len = w.lens[row] as usize;
            shift_down(&mut w.totals, base + 2..base + len, 2);
            shift_down(&mut w.variances, base + 2..base + len, 2);
            w.lens[row] -= 2;

            if (w.lens[row + 1] as usize) < cap {
                break;
            }
            row += 1;
        }
    }

    /// Removes the oldest bucket (the first of the last row); returns its size.
    fn delete_oldest(&mut self) -> f64 {
        let cap = self.row_capacity;
        let w = &mut self.window;
        let row = w.lens.len() - 1;
        let base = row * cap;
        let size = (1u64 << row) as f64;
        let bucket_total = w.totals[base];
        let bucket_variance = w.variances[base];
        let bucket_mean = bucket_total / size;

        w.width -= size;
        w.total -= bucket_total;
        let window_mean = w.total / w.width;
        w.variance -= bucket_variance
            + size * w.width * (bucket_mean - window_mean) * (bucket_mean - window_mean)
                / (size + w.width);

        let len = w.lens[row] as usize;
        shift_down(&mut w.totals, base + 1..base + len, 1);
        shift_down(&mut w.variances, base + 1..base + len, 1);
        // The vacated slot is zeroed, as `flush` leaves unused slots.
        w.totals[base + len - 1] = 0.0;
        w.variances[base + len - 1] = 0.0;
        w.lens[row] -= 1;
        if w.lens[row] == 0 && row > 0 {
            // The emptied oldest row disappears, as River pops it from its deque.
            w.lens.pop();
            w.totals.truncate(row * cap);
            w.variances.truncate(row * cap);
        } else if w.lens[row] == 0 {
            // River would pop its only row and then fail on the next insert; a window of
            // one row can only be emptied with width ≤ max_buckets, which the min-window
            // rule prevents. Keep an empty row 0 so the structure stays valid regardless.
        }
        size
    }

    /// River's `_detect_change`: every `clock` updates, scan all cut points from the oldest
    /// bucket to the newest and drop the oldest bucket while some cut shows a significant
    /// difference of means.
    ///
    /// `shortcut` skips River's test on cuts that [`InsignificanceTest`] proves insignificant
    /// (the tests run without it too and require identical results).
    #[inline]
    fn detect_change(&mut self, shortcut: bool) -> bool {
        let params = &self.params;
        self.window.tick += 1;
        if !is_multiple(self.window.tick, params.clock)
            || self.window.width <= f64::from(params.grace_period)
        {
            if self.window.pending.len() >= Window::MAX_PENDING {
                self.window.flush();
            }
            return false;
        }
        self.scan_for_change(shortcut)
    }

    /// The cut test proper (once per `clock` updates): kept out of line so that the code
    /// of every update stays small (fewer registers to save, more updates in flight).
    #[inline(never)]
    fn scan_for_change(&mut self, shortcut: bool) -> bool {
        let params = self.params;
        let min_len = f64::from(params.min_window_length);
        self.window.flush();
        let cap = self.row_capacity;
        let mut change_detected = false;
        let mut reduce_width = true;
        while reduce_width {
            reduce_width = false;
            let w = &self.window;
            // The bound's log term only depends on the width, which is fixed during one scan.
            let delta_prime = (2.0 * w.width.ln() / params.delta).ln();
            let variance_in_window = w.variance / w.width;
            let insignificance =
                InsignificanceTest::new(variance_in_window, delta_prime).filter(|_| shortcut);
            let mut n0 = 0.0f64;
            let mut n1 = w.width;
            let mut u0 = 0.0f64;
            let mut u1 = w.total;
            'scan: for row in (0..w.lens.len()).rev() {
                let size = (1u64 << row) as f64;
                let len = w.lens[row] as usize;
                for k in 0..len {
                    let bucket_total = w.totals[row * cap + k];
                    n0 += size;
                    n1 -= size;
                    u0 += bucket_total;
                    u1 -= bucket_total;
                    if row == 0 && k == len - 1 {
                        // The cut after the newest element leaves W1 empty.
                        break 'scan;
                    }
                    if n1 < min_len || n0 < min_len {
                        continue;
                    }
                    if insignificance
                        .as_ref()
                        .is_some_and(|test| test.certain(n0, n1, u0, u1, min_len))
                    {
                        continue;
                    }
                    let delta_mean = (u0 / n0) - (u1 / n1);
                    if cut_is_significant(
                        n0,
                        n1,
                        delta_mean,
                        delta_prime,
                        variance_in_window,
                        min_len,
                    ) {
                        reduce_width = true;
                        change_detected = true;
                        if self.window.width > 0.0 {
                            self.delete_oldest();
                        }
                        break 'scan;
                    }
                }
            }
        }
        change_detected
    }
}

/// `tick % clock == 0`, without the integer division (20-40 cycles, ~2 % of an update in
/// perf) when `clock` is a power of two, as River's default 32 is.
#[inline(always)]
fn is_multiple(tick: u64, clock: u32) -> bool {
    let clock = u64::from(clock);
    if clock.is_power_of_two() {
        tick & (clock - 1) == 0
    } else {
        tick % clock == 0
    }
}

/// Moves `slots[range]` down by `by` places. A row holds a handful of buckets: an inlined
/// loop of that many moves costs less than the call to `memmove` that `copy_within` makes.
#[inline(always)]
fn shift_down(slots: &mut [f64], range: std::ops::Range<usize>, by: usize) {
    for i in range {
        slots[i - by] = slots[i];
    }
}

/// `2^-exponent`, exactly (`exponent` is a histogram row: far below the 1022 where it would
/// stop being a normal number).
#[inline]
fn inverse_power_of_two(exponent: usize) -> f64 {
    debug_assert!(exponent < 1023);
    f64::from_bits((1023 - exponent as u64) << 52)
}

/// ADWIN's Hoeffding-style bound on the difference of means of two sub-windows.
#[inline]
fn cut_is_significant(
    n0: f64,
    n1: f64,
    delta_mean: f64,
    delta_prime: f64,
    variance_in_window: f64,
    min_len: f64,
) -> bool {
    let m_recip = 1.0 / (n0 - min_len + 1.0) + 1.0 / (n1 - min_len + 1.0);
    let epsilon = (2.0 * m_recip * variance_in_window * delta_prime).sqrt()
        + 2.0 / 3.0 * delta_prime * m_recip;
    delta_mean.abs() > epsilon
}

/// A proof, with multiplications only, that [`cut_is_significant`] would say no.
///
/// Nearly every cut of a scan is far from significant, and River's test costs four
/// divisions and a square root. Writing `a = n0 − m + 1`, `b = n1 − m + 1` and
/// `E = u0·n1 − u1·n0`, the test's difference of means is `|E| / (n0·n1)` and its bound is at
/// least `sqrt(2·v·δ'·(a + b)/(a·b))` (the second, linear term is never negative). So, squared
/// and multiplied out, `(|E| + r)² · a·b < 2·v·δ'·(a + b) · (n0·n1)²` shows the cut
/// insignificant, where `r` covers the rounding of River's own evaluation and of `E`'s (a few
/// units in the last place of `|u0|·n1 + |u1|·n0`) and a relative margin of 1e-12 covers the
/// rounding of both sides here (a few dozen units of 1.1e-16). When the inequality fails —
/// near the threshold, or a real change — River's test decides, so every result is River's
/// to the last bit; the shortcut only skips work whose outcome is already known.
///
/// It is used only where no step can overflow or leave the normal range in a way that
/// weakens the argument: `v` and `δ'` positive and moderate (an overflow of the left side
/// to infinity only makes the inequality fail, and an underflow of it only where the right
/// side is certainly larger).
#[derive(Debug, Clone, Copy)]
struct InsignificanceTest {
    /// `2·v·δ'`, the part of the bound shared by every cut of a scan.
    scale: f64,
}

impl InsignificanceTest {
    /// Margins far above the worst rounding of either side, far below any real gap.
    const RELATIVE_MARGIN: f64 = 1.0 + 1e-12;
    const ROUNDING: f64 = 4.0 * f64::EPSILON;

    /// The test for one scan, when its constants allow a sound one.
    fn new(variance_in_window: f64, delta_prime: f64) -> Option<Self> {
        let moderate = |x: f64| (1e-100..=1e100).contains(&x);
        (moderate(variance_in_window) && moderate(delta_prime)).then_some(Self {
            scale: 2.0 * variance_in_window * delta_prime,
        })
    }

    /// True only when River's test certainly finds the cut insignificant.
    #[inline]
    fn certain(&self, n0: f64, n1: f64, u0: f64, u1: f64, min_len: f64) -> bool {
        // Sums beyond this could overflow below; such streams take River's test.
        const LARGEST_SUM: f64 = 1e100;
        if !(u0.abs() <= LARGEST_SUM && u1.abs() <= LARGEST_SUM) {
            return false;
        }
        let a = n0 - min_len + 1.0;
        let b = n1 - min_len + 1.0;
        let difference = (u0 * n1 - u1 * n0).abs();
        let rounding = Self::ROUNDING * (u0.abs() * n1 + u1.abs() * n0);
        let left = difference + rounding;
        let n0n1 = n0 * n1;
        left * left * (a * b) * Self::RELATIVE_MARGIN < self.scale * (a + b) * (n0n1 * n0n1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        river_version: String,
        cases: Vec<Case>,
    }
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        params: AdwinParams,
        stream: Vec<f64>,
        detections: Vec<u64>,
        trace_every: usize,
        width: Vec<u64>,
        estimation: Vec<f64>,
        n_detections: u64,
    }

    /// Same stream, same parameters → River's detection indices, and its width and
    /// estimation after every traced update, to the last bit.
    #[test]
    fn matches_river_0_26_1() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../tests/vectors/adwin.json")).unwrap();
        assert_eq!(vectors.river_version, "0.26.1");
        assert!(vectors.cases.len() >= 12);
        for case in &vectors.cases {
            let mut adwin = Adwin::new(case.params).unwrap();
            let mut detections = Vec::new();
            for (i, &x) in case.stream.iter().enumerate() {
                if adwin.update(x) {
                    detections.push(i as u64);
                }
                if i % case.trace_every == 0 {
                    let t = i / case.trace_every;
                    assert_eq!(
                        adwin.width(),
                        case.width[t],
                        "{}: width after {i}",
                        case.name
                    );
                    assert_eq!(
                        adwin.estimation().to_bits(),
                        case.estimation[t].to_bits(),
                        "{}: estimation after {i}: {} vs {}",
                        case.name,
                        adwin.estimation(),
                        case.estimation[t]
                    );
                }
            }
            assert_eq!(detections, case.detections, "{}", case.name);
            assert_eq!(adwin.detections(), case.n_detections, "{}", case.name);
        }
    }

    /// The shortcut never changes a result: same detections, widths and estimations as
    /// River's test alone, on streams of every scale, with drifts of every size and with
    /// values clustered close to the threshold.
    #[test]
    fn the_insignificance_shortcut_changes_no_result() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut detections = 0u32;
        for seed in 0..60u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let scale = [1e-90, 1e-9, 1e-3, 1.0, 1e3, 1e12, 1e90][seed as usize % 7];
            let params = AdwinParams {
                delta: [0.002, 0.1, 1e-6, 0.9][seed as usize % 4],
                clock: [32, 1, 7][seed as usize % 3],
                max_buckets: [5, 2, 9][seed as usize % 3],
                min_window_length: [5, 1, 40][seed as usize % 3],
                grace_period: [10, 0, 100][seed as usize % 3],
            };
            let mut with = Adwin::new(params).unwrap();
            let mut without = with.clone();
            let mut mean = 0.0;
            for i in 0..20_000 {
                if rng.random::<f64>() < 1e-3 {
                    // Shifts from barely detectable to obvious.
                    mean += rng.random_range(-0.3..0.3) * [0.05, 1.0, 10.0][i % 3];
                }
                let noise = if seed % 5 == 0 {
                    f64::from(rng.random_range(0u8..3))
                } else {
                    rng.random::<f64>()
                };
                let x = (mean + noise) * scale;
                let a = with.update(x);
                let b = without.update_with(x, false, Adwin::insert);
                assert_eq!(a, b, "seed {seed}, update {i}");
                assert_eq!(with, without, "seed {seed}, update {i}");
                detections += u32::from(a);
            }
        }
        assert!(
            detections > 100,
            "the streams exercise detections: {detections}"
        );
    }

    /// A window's row lengths, live buckets (total and variance bits), total, variance and
    /// width bits, and tick.
    type Histogram = (Vec<u32>, Vec<(u64, u64)>, [u64; 3], u64);

    /// The live buckets of a window, its pending elements merged: what a cut test reads.
    fn histogram(window: &Window) -> Histogram {
        let data = WindowData::from(window.clone());
        let cap = data.totals.len() / data.lens.len();
        let buckets = data
            .lens
            .iter()
            .enumerate()
            .flat_map(|(row, &len)| row * cap..row * cap + len as usize)
            .map(|slot| (data.totals[slot].to_bits(), data.variances[slot].to_bits()))
            .collect();
        let statistics = [data.total, data.variance, data.width].map(f64::to_bits);
        (data.lens, buckets, statistics, data.tick)
    }

    /// Whether every slot past its row's buckets holds zeros (in the stored form).
    fn unused_slots_are_zero(window: &Window) -> bool {
        let data = WindowData::from(window.clone());
        let cap = data.totals.len() / data.lens.len();
        data.lens.iter().enumerate().all(|(row, &len)| {
            let unused = row * cap + len as usize..(row + 1) * cap;
            data.totals[unused.clone()]
                .iter()
                .all(|&t| t.to_bits() == 0)
                && data.variances[unused].iter().all(|&v| v.to_bits() == 0)
        })
    }

    /// Deferred merges hold the same buckets, to the bit, as merging after every insert:
    /// checked after every update of streams with detections, for clocks that flush at
    /// every update, every few, or only at the pending bound, and for several row sizes.
    #[test]
    fn deferred_merges_build_the_same_histogram_as_merging_at_every_insert() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut detections = 0u32;
        for seed in 0..24u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let params = AdwinParams {
                delta: [0.002, 0.1, 1e-4][seed as usize % 3],
                clock: [32, 1, 7, 100][seed as usize % 4],
                max_buckets: [5, 3, 2, 9][(seed / 4) as usize % 4],
                min_window_length: [5, 1][seed as usize % 2],
                grace_period: [10, 0, 300][seed as usize % 3],
            };
            let mut deferred = Adwin::new(params).unwrap();
            let mut eager = deferred.clone();
            let mut mean = 0.0;
            for i in 0..6_000 {
                if rng.random::<f64>() < 2e-3 {
                    mean += rng.random_range(-1.0..1.0);
                }
                let x = mean + rng.random::<f64>();
                let a = deferred.update(x);
                let b = eager.update_with(x, true, Adwin::insert_eagerly);
                assert_eq!(a, b, "seed {seed}, update {i}");
                assert_eq!(deferred.width(), eager.width());
                assert_eq!(
                    deferred.estimation().to_bits(),
                    eager.estimation().to_bits()
                );
                assert_eq!(
                    histogram(&deferred.window),
                    histogram(&eager.window),
                    "seed {seed}, update {i}"
                );
                assert!(
                    unused_slots_are_zero(&deferred.window),
                    "seed {seed}, update {i}: stale values in unused slots"
                );
                detections += u32::from(a);
            }
        }
        assert!(
            detections > 20,
            "the streams exercise detections: {detections}"
        );
    }

    #[test]
    fn inverse_powers_of_two_are_exact() {
        for exponent in 0..70 {
            assert_eq!(
                inverse_power_of_two(exponent),
                1.0 / (1u128 << exponent) as f64
            );
        }
    }

    #[test]
    fn constant_stream_never_detects() {
        let mut adwin = Adwin::new(AdwinParams::default()).unwrap();
        for _ in 0..20_000 {
            assert!(!adwin.update(3.5));
        }
        assert_eq!(adwin.width(), 20_000);
        assert_eq!(adwin.estimation(), 3.5);
    }

    #[test]
    fn invalid_params_are_all_reported() {
        let params = AdwinParams {
            delta: 0.0,
            clock: 0,
            max_buckets: 0,
            ..AdwinParams::default()
        };
        assert_eq!(Adwin::new(params).unwrap_err().len(), 3);
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut adwin = Adwin::new(AdwinParams::default()).unwrap();
        adwin.update(1.0);
        assert!(!adwin.update(f64::NAN));
        assert!(!adwin.update(f64::INFINITY));
        assert_eq!(adwin.width(), 1);
        assert_eq!(adwin.estimation(), 1.0);
    }

    #[test]
    fn stale_values_in_unused_slots_of_stored_state_are_zeroed() {
        // Two rows of a 3-slot layout (max_buckets 2), with leftovers past each row's length,
        // as state written before unused slots were cleared may hold.
        let stored = WindowData {
            totals: vec![1.0, 9.0, 9.0, 4.0, 9.0, 9.0],
            variances: vec![0.0, 7.0, 7.0, 0.5, 7.0, 7.0],
            lens: vec![1, 1],
            total: 5.0,
            variance: 1.0,
            width: 3.0,
            tick: 3,
        };
        let window = Window::from(stored);
        assert!(unused_slots_are_zero(&window));
        assert_eq!(window.totals, [1.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
        assert_eq!(window.variances, [0.0, 0.0, 0.0, 0.5, 0.0, 0.0]);
    }

    /// Damage to a stored detector that would make an update index past its histogram or
    /// remove a bucket that is not there is refused when the state is read.
    #[test]
    fn a_stored_detector_whose_histogram_does_not_fit_is_refused() {
        let stored = serde_json::to_value(fed(300, 5)).unwrap();
        assert!(serde_json::from_value::<Adwin>(stored.clone()).is_ok());
        type Damage = fn(&mut serde_json::Value);
        let damages: [(&str, Damage); 7] = [
            ("a row more than its slots", |a| {
                a["window"]["lens"].as_array_mut().unwrap().push(1.into());
            }),
            ("fewer variances", |a| {
                a["window"]["variances"].as_array_mut().unwrap().pop();
            }),
            ("a row over max_buckets (the width to match)", |a| {
                let window = &mut a["window"];
                let extra = 6.0 - window["lens"][0].as_f64().unwrap();
                window["lens"][0] = 6.into();
                window["width"] = (window["width"].as_f64().unwrap() + extra).into();
            }),
            ("no rows", |a| {
                a["window"]["lens"] = serde_json::json!([]);
                a["window"]["totals"] = serde_json::json!([]);
                a["window"]["variances"] = serde_json::json!([]);
            }),
            ("a width the buckets do not hold", |a| {
                a["window"]["width"] = 1_000.0.into();
            }),
            ("rows of another width", |a| a["row_capacity"] = 7.into()),
            ("invalid parameters", |a| {
                a["params"]["max_buckets"] = 0.into()
            }),
        ];
        for (what, damage) in damages {
            let mut damaged = stored.clone();
            damage(&mut damaged);
            assert!(
                serde_json::from_value::<Adwin>(damaged).is_err(),
                "{what} was accepted"
            );
        }
    }

    /// A default detector after `updates` values cycling through `0..period`.
    fn fed(updates: u32, period: u32) -> Adwin {
        let mut adwin = Adwin::new(AdwinParams::default()).unwrap();
        for i in 0..updates {
            adwin.update(f64::from(i % period));
        }
        adwin
    }

    #[test]
    fn state_round_trips_through_serde() {
        let mut adwin = fed(1000, 7);
        let json = serde_json::to_string(&adwin).unwrap();
        let mut restored: Adwin = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, adwin);
        for i in 0..500 {
            assert_eq!(restored.update(f64::from(i)), adwin.update(f64::from(i)));
        }
        assert_eq!(restored, adwin);
    }
}
