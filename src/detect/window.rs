//! Event-time pane windows (DESIGN §3).
//!
//! Owns: pane arithmetic, the watermark and lateness rule ([`PaneClock`]), and per-series
//! sliding histograms made of panes ([`PaneWindow`]). Must not touch: wall clocks — time is the
//! events' own `timestamp` (milliseconds), so replays reproduce live runs exactly.
//!
//! A window is the last `W` panes of fixed length `P`. Recording an event is O(1): one counter
//! in its open pane. Closing a pane folds its (sparse) counts into the window totals and
//! subtracts the pane that slid out, so the merged window histogram is never rebuilt from
//! events. Memory is O(W × cells) per series whatever the event rate, and closed panes keep
//! only their non-zero cells.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Why window settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Pane length must be positive.
    #[error("pane length must be > 0 ms, got {0}")]
    PaneLength(i64),
    /// Lateness cannot be negative.
    #[error("allowed lateness must be >= 0 ms, got {0}")]
    Lateness(i64),
    /// A window needs at least one pane.
    #[error("a window needs at least 1 pane")]
    NoPanes,
}

/// Whether an event may still enter its pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The event's pane is still open.
    OnTime {
        /// Index of the event's pane (`timestamp div P`).
        pane: i64,
    },
    /// The event's pane has already closed: count it and drop it.
    Late,
    /// The event is further ahead of the newest event time than the jump guard allows, and
    /// too few events in a row agree: a bad timestamp (a clock off by years, microseconds
    /// sent as milliseconds), counted and dropped so it cannot move the watermark and make
    /// every later event late.
    TooFarAhead,
}

/// How far one event may move a stream's event time forward at once (see
/// [`PaneClock::with_jump_guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JumpGuard {
    /// Largest forward jump over the newest event time admitted without confirmation (ms).
    pub max_jump_ms: i64,
    /// Events in a row that must all be that far ahead before the jump is taken as the
    /// stream's real time (a resumption after a long quiet period); each of them but the
    /// last is dropped.
    pub confirmations: u32,
}

/// Pane arithmetic and the watermark of one stream (one partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneClock {
    pane_ms: i64,
    allowed_lateness_ms: i64,
    /// Largest event time admitted so far.
    max_event_time: Option<i64>,
    /// Highest pane index closed so far; events for it or older panes are late.
    closed_through: Option<i64>,
    /// Limit on forward jumps of event time; `None`: any jump is taken.
    jump_guard: Option<JumpGuard>,
    /// Events in a row refused as too far ahead.
    ahead_streak: u32,
}

impl PaneClock {
    /// A clock with pane length `pane_ms` and lateness bound `allowed_lateness_ms`.
    ///
    /// # Errors
    /// Every problem with the two settings.
    pub fn new(pane_ms: i64, allowed_lateness_ms: i64) -> Result<Self, Vec<WindowError>> {
        let mut problems = Vec::new();
        if pane_ms <= 0 {
            problems.push(WindowError::PaneLength(pane_ms));
        }
        if allowed_lateness_ms < 0 {
            problems.push(WindowError::Lateness(allowed_lateness_ms));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            pane_ms,
            allowed_lateness_ms,
            max_event_time: None,
            closed_through: None,
            jump_guard: None,
            ahead_streak: 0,
        })
    }

    /// Refuses events more than `guard.max_jump_ms` ahead of the newest event time, unless
    /// `guard.confirmations` such events come in a row. Without it, one event stamped years
    /// ahead moves the watermark there and every later (correct) event is late: the stream
    /// goes blind until it catches up.
    pub fn with_jump_guard(mut self, guard: JumpGuard) -> Self {
        self.jump_guard = Some(guard);
        self
    }

    /// Pane length in milliseconds.
    pub fn pane_ms(&self) -> i64 {
        self.pane_ms
    }

    /// Index of the pane holding `timestamp` (floor division, so negative times work too).
    pub fn pane_of(&self, timestamp: i64) -> i64 {
        timestamp.div_euclid(self.pane_ms)
    }

    /// `[start, end)` of a pane in event time (saturating at the ends of the time line).
    pub fn pane_bounds(&self, pane: i64) -> (i64, i64) {
        let start = pane.saturating_mul(self.pane_ms);
        (start, start.saturating_add(self.pane_ms))
    }

    /// Max event time seen minus the allowed lateness; `None` before the first event.
    pub fn watermark(&self) -> Option<i64> {
        self.max_event_time
            .map(|t| t.saturating_sub(self.allowed_lateness_ms))
    }

    /// Largest event time admitted so far.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// Highest pane closed so far.
    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through
    }

    /// Admits an event at `timestamp`: late if its pane has closed, otherwise on time (and the
    /// watermark may move).
    ///
    /// `written_at` is when the event's record was written (Kafka's record timestamp), when
    /// known. With a jump guard, an event more than `max_jump_ms` ahead of it is refused as
    /// too far ahead whatever came before: an event is not written long before it happens.
    /// This is the only check a stream's *first* event gets, which has no earlier event time
    /// to be compared with; without it, one bad first timestamp would set the watermark and
    /// make every later event late.
    pub fn admit(&mut self, timestamp: i64, written_at: Option<i64>) -> Admission {
        let pane = self.pane_of(timestamp);
        if self.closed_through.is_some_and(|closed| pane <= closed) {
            return Admission::Late;
        }
        if let Some(guard) = self.jump_guard {
            // Refused without touching the streak: a run of such events is no resumption.
            if written_at
                .is_some_and(|written| timestamp.saturating_sub(written) > guard.max_jump_ms)
            {
                return Admission::TooFarAhead;
            }
        }
        if let (Some(guard), Some(newest)) = (self.jump_guard, self.max_event_time) {
            if timestamp.saturating_sub(newest) > guard.max_jump_ms {
                self.ahead_streak += 1;
                if self.ahead_streak < guard.confirmations {
                    return Admission::TooFarAhead;
                }
            }
            self.ahead_streak = 0;
        }
        self.max_event_time = Some(self.max_event_time.map_or(timestamp, |t| t.max(timestamp)));
        Admission::OnTime { pane }
    }

    /// Closes every pane whose end the watermark has reached; returns the new highest closed
    /// pane when it moved. Callers then close their open panes up to it, oldest first.
    pub fn advance(&mut self) -> Option<i64> {
        let watermark = self.watermark()?;
        // Pane p ends at (p + 1)·P; it is closed once the watermark reaches that end.
        let closable = watermark.div_euclid(self.pane_ms) - 1;
        if self.closed_through.is_none_or(|closed| closable > closed) {
            self.closed_through = Some(closable);
            Some(closable)
        } else {
            None
        }
    }
}

/// Per-pane extra sums kept beside the cell counts (the low and high tail sums let window
/// sketches integrate exactly outside the reference range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PaneSums {
    /// Observations that were missing (null, NaN, wrong type).
    pub missing: u64,
    /// Sum of the values that fell in the first cell.
    pub low_tail_sum: f64,
    /// Sum of the values that fell in the last cell.
    pub high_tail_sum: f64,
}

impl PaneSums {
    fn add(&mut self, other: &PaneSums) {
        self.missing += other.missing;
        self.low_tail_sum += other.low_tail_sum;
        self.high_tail_sum += other.high_tail_sum;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenPane {
    index: i64,
    /// Counts per cell; their sum is the pane's observations (not kept apart: one store
    /// less per event and feature on the hot path).
    counts: Vec<u32>,
    sums: PaneSums,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ClosedPane {
    index: i64,
    /// Non-zero cells only: (cell, count).
    cells: Vec<(u32, u64)>,
    sums: PaneSums,
}

/// A sliding histogram over the last `max_panes` closed panes of one series.
///
/// Read back from state through `PaneWindowData`, which refuses a window whose parts do not
/// fit together (see `PaneWindow::check`): the hot path indexes by cell without checks, so a
/// damaged record must fail at restore, not panic at the next event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PaneWindowData")]
pub struct PaneWindow {
    cells: usize,
    max_panes: i64,
    /// Open panes, ascending by index (few: lateness / P + 1).
    open: Vec<OpenPane>,
    closed: VecDeque<ClosedPane>,
    totals: Vec<u64>,
    count: u64,
    sums: PaneSums,
    /// Recycled dense buffers, so steady state allocates nothing per pane.
    #[serde(skip)]
    spare: Vec<Vec<u32>>,
}

/// Two windows are equal when they hold the same state; their spare buffers (a cache of
/// allocations, not state) do not count.
impl PartialEq for PaneWindow {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            cells,
            max_panes,
            open,
            closed,
            totals,
            count,
            sums,
            spare: _,
        } = self;
        (cells, max_panes, open, closed, totals, count, sums)
            == (
                &other.cells,
                &other.max_panes,
                &other.open,
                &other.closed,
                &other.totals,
                &other.count,
                &other.sums,
            )
    }
}

/// The stored form of a [`PaneWindow`]: its serialized fields, in their order, checked
/// before they become a window.
#[derive(Deserialize)]
struct PaneWindowData {
    cells: usize,
    max_panes: i64,
    open: Vec<OpenPane>,
    closed: VecDeque<ClosedPane>,
    totals: Vec<u64>,
    count: u64,
    sums: PaneSums,
}

impl TryFrom<PaneWindowData> for PaneWindow {
    type Error = String;

    fn try_from(data: PaneWindowData) -> Result<Self, String> {
        let window = Self {
            cells: data.cells,
            max_panes: data.max_panes,
            open: data.open,
            closed: data.closed,
            totals: data.totals,
            count: data.count,
            sums: data.sums,
            spare: Vec::new(),
        };
        window.check().map(|()| window)
    }
}

impl PaneWindow {
    /// Checks that the parts of a window read back from state fit together: every pane
    /// spans the window's cells, panes are in order, and the totals are the sums of the
    /// closed panes (closing and expiring panes add and subtract them without checks).
    ///
    /// # Errors
    /// The first thing that does not fit.
    fn check(&self) -> Result<(), String> {
        let cells = self.cells;
        if cells == 0 || self.max_panes < 1 {
            return Err(format!(
                "a window of {cells} cells and {} panes",
                self.max_panes
            ));
        }
        if self.totals.len() != cells {
            return Err(format!(
                "a window of {cells} cells with {} totals",
                self.totals.len()
            ));
        }
        if let Some(pane) = self.open.iter().find(|p| p.counts.len() != cells) {
            return Err(format!(
                "open pane {} has {} cells, the window {cells}",
                pane.index,
                pane.counts.len()
            ));
        }
        let open_ascending = self.open.windows(2).all(|p| p[0].index < p[1].index);
        let closed_ascending =
            (self.closed.iter().zip(self.closed.iter().skip(1))).all(|(a, b)| a.index < b.index);
        if !open_ascending || !closed_ascending {
            return Err("panes out of order".to_owned());
        }
        let mut totals = vec![0u64; cells];
        for pane in &self.closed {
            for &(cell, count) in &pane.cells {
                let total = totals
                    .get_mut(cell as usize)
                    .ok_or_else(|| format!("closed pane {} counts cell {cell}", pane.index))?;
                *total = total
                    .checked_add(count)
                    .ok_or_else(|| "a cell total overflows".to_owned())?;
            }
        }
        let count = totals.iter().try_fold(0u64, |sum, &t| sum.checked_add(t));
        if totals != self.totals || count != Some(self.count) {
            return Err("the window's totals are not the sums of its closed panes".to_owned());
        }
        Ok(())
    }

    /// A window of `max_panes` panes over `cells` cells.
    ///
    /// # Errors
    /// [`WindowError::NoPanes`] when `max_panes` is 0.
    pub fn new(cells: usize, max_panes: usize) -> Result<Self, WindowError> {
        if max_panes == 0 {
            return Err(WindowError::NoPanes);
        }
        Ok(Self {
            cells: cells.max(1),
            max_panes: max_panes as i64,
            open: Vec::new(),
            closed: VecDeque::new(),
            totals: vec![0; cells.max(1)],
            count: 0,
            sums: PaneSums::default(),
            spare: Vec::new(),
        })
    }

    #[inline]
    fn open_pane(&mut self, pane: i64) -> &mut OpenPane {
        // Events arrive nearly in order: the pane is almost always the newest open one.
        if self.open.last().is_some_and(|p| p.index == pane) {
            let last = self.open.len() - 1;
            return &mut self.open[last];
        }
        let mut position = self.open.len();
        while position > 0 && self.open[position - 1].index > pane {
            position -= 1;
        }
        if position == 0 || self.open[position - 1].index != pane {
            let counts = self.spare.pop().unwrap_or_else(|| vec![0; self.cells]);
            self.open.insert(
                position,
                OpenPane {
                    index: pane,
                    counts,
                    sums: PaneSums::default(),
                },
            );
            position += 1;
        }
        &mut self.open[position - 1]
    }

    /// Counts one observation in `cell` of pane `pane`. A cell out of range (a caller bug) is
    /// clamped to the last cell rather than panicking.
    #[inline]
    pub fn record(&mut self, pane: i64, cell: usize) {
        let last = self.cells - 1;
        let open = self.open_pane(pane);
        open.counts[cell.min(last)] += 1;
    }

    /// Counts a numeric observation and, when it lands in the first or last cell, adds its
    /// value to that tail's sum.
    #[inline]
    pub fn record_value(&mut self, pane: i64, cell: usize, value: f64) {
        let last = self.cells - 1;
        let cell = cell.min(last);
        let open = self.open_pane(pane);
        open.counts[cell] += 1;
        if cell == 0 {
            open.sums.low_tail_sum += value;
        } else if cell == last {
            open.sums.high_tail_sum += value;
        }
    }

    /// Counts a missing observation in pane `pane`.
    pub fn record_missing(&mut self, pane: i64) {
        self.open_pane(pane).sums.missing += 1;
    }

    /// Closes every open pane with index ≤ `through`, oldest first, and drops panes that slid
    /// out of the window. Returns how many panes closed.
    pub fn close_through(&mut self, through: i64) -> usize {
        let mut closed = 0;
        let due = self.open.partition_point(|p| p.index <= through);
        for mut pane in self.open.drain(..due).collect::<Vec<_>>() {
            let mut cells = Vec::new();
            for (cell, count) in pane.counts.iter_mut().enumerate() {
                if *count > 0 {
                    cells.push((cell as u32, u64::from(*count)));
                    self.totals[cell] += u64::from(*count);
                    self.count += u64::from(*count);
                    *count = 0;
                }
            }
            self.spare.push(std::mem::take(&mut pane.counts));
            self.closed.push_back(ClosedPane {
                index: pane.index,
                cells,
                sums: pane.sums,
            });
            closed += 1;
        }
        self.expire(through);
        if closed > 0 {
            // Float sums are re-added from the panes (W additions) instead of subtracted, so
            // rounding never accumulates over a long run.
            self.sums = PaneSums::default();
            for pane in &self.closed {
                self.sums.add(&pane.sums);
            }
        }
        closed
    }

    fn expire(&mut self, newest: i64) {
        let oldest_kept = newest.saturating_sub(self.max_panes - 1);
        while self.closed.front().is_some_and(|p| p.index < oldest_kept) {
            let Some(pane) = self.closed.pop_front() else {
                break;
            };
            for (cell, count) in pane.cells {
                self.totals[cell as usize] -= count;
                self.count -= count;
            }
        }
    }

    /// Window histogram: counts per cell over the closed panes in the window.
    pub fn counts(&self) -> &[u64] {
        &self.totals
    }

    /// Observations (not missing) in the window.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Missing observations and tail sums over the window.
    pub fn sums(&self) -> &PaneSums {
        &self.sums
    }

    /// `(oldest, newest)` closed pane indices in the window, if any.
    pub fn pane_range(&self) -> Option<(i64, i64)> {
        Some((self.closed.front()?.index, self.closed.back()?.index))
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Open panes (bounded by the lateness allowance divided by the pane length, plus one).
    pub fn open_panes(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A window of 4 cells with two closed panes and one open, as JSON.
    fn filled_window() -> PaneWindow {
        let mut window = PaneWindow::new(4, 3).unwrap();
        for (pane, cell) in [(1, 0), (1, 3), (2, 1), (2, 1), (3, 2)] {
            window.record_value(pane, cell, 0.5);
        }
        window.close_through(2);
        window
    }

    fn stored_window() -> serde_json::Value {
        serde_json::to_value(filled_window()).unwrap()
    }

    #[test]
    fn a_stored_window_reads_back_and_carries_on() {
        let mut window = filled_window();
        let mut restored: PaneWindow = serde_json::from_value(stored_window()).unwrap();
        // Equal although the original keeps spare buffers and the restored one has none.
        assert_eq!(restored, window);
        for w in [&mut window, &mut restored] {
            w.record(4, 3);
            w.close_through(5);
        }
        assert_eq!(restored, window);
        // Panes 3 and 4 are in the window now; 1 and 2 slid out.
        assert_eq!((window.pane_range(), window.count()), (Some((3, 4)), 2));
    }

    /// Damage to a stored window that would make the next event or pane close index out of
    /// its cells, or subtract more than a total holds, is refused when the state is read.
    #[test]
    fn a_stored_window_whose_parts_do_not_fit_is_refused() {
        type Damage = fn(&mut serde_json::Value);
        let damages: [(&str, Damage); 8] = [
            ("an open pane with fewer cells", |w| {
                w["open"][0]["counts"].as_array_mut().unwrap().pop();
            }),
            ("fewer totals", |w| {
                w["totals"].as_array_mut().unwrap().pop();
            }),
            ("a closed pane counting a cell past the last", |w| {
                w["closed"][0]["cells"][0][0] = 4.into();
            }),
            ("totals that are not the closed panes' sums", |w| {
                w["totals"][0] = 7.into();
            }),
            ("a count that is not the totals' sum", |w| {
                w["count"] = 99.into()
            }),
            ("closed panes out of order", |w| {
                w["closed"].as_array_mut().unwrap().swap(0, 1);
            }),
            ("no cells", |w| {
                w["cells"] = 0.into();
                w["totals"] = serde_json::json!([]);
            }),
            ("no panes", |w| w["max_panes"] = 0.into()),
        ];
        assert!(serde_json::from_value::<PaneWindow>(stored_window()).is_ok());
        for (what, damage) in damages {
            let mut stored = stored_window();
            damage(&mut stored);
            assert!(
                serde_json::from_value::<PaneWindow>(stored).is_err(),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn late_events_are_refused_after_their_pane_closes() {
        let mut clock = PaneClock::new(1000, 500).unwrap();
        assert_eq!(clock.admit(10_200, None), Admission::OnTime { pane: 10 });
        assert_eq!(clock.advance(), Some(8)); // watermark 9_700: pane 8 ended at 9_000
        assert_eq!(clock.admit(9_999, None), Admission::OnTime { pane: 9 });
        assert_eq!(clock.admit(8_999, None), Admission::Late);
        assert_eq!(clock.admit(11_600, None), Admission::OnTime { pane: 11 });
        assert_eq!(clock.advance(), Some(10)); // watermark 11_100
        assert_eq!(clock.admit(10_999, None), Admission::Late);
        assert_eq!(clock.advance(), None);
    }

    /// One-minute panes, jumps over an hour refused unless 3 in a row agree.
    fn guarded_clock(allowed_lateness_ms: i64) -> PaneClock {
        let guard = JumpGuard {
            max_jump_ms: 3_600_000,
            confirmations: 3,
        };
        PaneClock::new(60_000, allowed_lateness_ms)
            .unwrap()
            .with_jump_guard(guard)
    }

    #[test]
    fn one_far_future_timestamp_cannot_blind_the_stream() {
        let mut clock = guarded_clock(5_000);
        assert!(matches!(
            clock.admit(1_000_000, None),
            Admission::OnTime { .. }
        ));
        // A timestamp decades ahead (microseconds sent as milliseconds): refused...
        assert_eq!(clock.admit(1_000_000 * 1_000, None), Admission::TooFarAhead);
        assert_eq!(clock.max_event_time(), Some(1_000_000));
        // ... so the next good events are on time, and reset the streak.
        assert!(matches!(
            clock.admit(1_030_000, None),
            Admission::OnTime { .. }
        ));
        assert_eq!(clock.admit(9_000_000_000, None), Admission::TooFarAhead);
        assert_eq!(clock.admit(9_000_000_100, None), Admission::TooFarAhead);
        assert!(matches!(
            clock.admit(1_040_000, None),
            Admission::OnTime { .. }
        ));
        // A jump within the limit is ordinary progress.
        assert!(matches!(
            clock.admit(1_040_000 + 3_600_000, None),
            Admission::OnTime { .. }
        ));
    }

    #[test]
    fn a_real_resumption_is_taken_after_the_confirmations() {
        let mut clock = guarded_clock(0);
        assert!(matches!(clock.admit(0, None), Admission::OnTime { .. }));
        // Two days of silence, then traffic again: the first two are dropped, the third
        // moves the stream's time, and the rest flow.
        let resumed = 2 * 86_400_000;
        assert_eq!(clock.admit(resumed, None), Admission::TooFarAhead);
        assert_eq!(clock.admit(resumed + 10, None), Admission::TooFarAhead);
        assert!(matches!(
            clock.admit(resumed + 20, None),
            Admission::OnTime { .. }
        ));
        assert_eq!(clock.max_event_time(), Some(resumed + 20));
        assert!(matches!(
            clock.admit(resumed + 30, None),
            Admission::OnTime { .. }
        ));
        assert_eq!(clock.advance(), Some(resumed / 60_000 - 1));
    }

    #[test]
    fn a_far_future_first_event_is_refused_by_its_write_time() {
        let mut clock = guarded_clock(5_000);
        let now = 1_767_225_600_000;
        // The stream's very first event is stamped in microseconds: nothing came before it,
        // but it was written at `now`, so it cannot have happened decades later.
        assert_eq!(clock.admit(now * 1_000, Some(now)), Admission::TooFarAhead);
        assert_eq!(clock.max_event_time(), None, "the watermark was not set");
        // Good events flow, and are never late because of it.
        for i in 0..10 {
            let t = now + i * 1_000;
            assert!(matches!(
                clock.admit(t, Some(t + 20)),
                Admission::OnTime { .. }
            ));
            clock.advance();
        }
        // However many bad ones come in a row, they are no resumption.
        for _ in 0..5 {
            assert_eq!(clock.admit(now * 1_000, Some(now)), Admission::TooFarAhead);
        }
        assert_eq!(clock.max_event_time(), Some(now + 9_000));
        // Old events written now (a backfill) and events a little ahead of their write time
        // (producer clocks disagree) are ordinary.
        assert!(matches!(
            clock.admit(now + 10_000, Some(now + 10_000 - 3_600_000)),
            Admission::OnTime { .. }
        ));
        let mut fresh = guarded_clock(5_000);
        assert!(matches!(
            fresh.admit(now - 86_400_000, Some(now)),
            Admission::OnTime { .. }
        ));
    }

    #[test]
    fn negative_and_extreme_times_do_not_panic() {
        let mut clock = PaneClock::new(60_000, 0).unwrap();
        assert_eq!(clock.admit(-1, None), Admission::OnTime { pane: -1 });
        assert_eq!(
            clock.admit(i64::MAX, None),
            Admission::OnTime {
                pane: i64::MAX / 60_000
            }
        );
        assert!(clock.advance().is_some());
        assert_eq!(clock.admit(i64::MIN, None), Admission::Late);
        assert_eq!(clock.pane_bounds(i64::MAX).1, i64::MAX);
    }

    #[test]
    fn bad_settings_are_all_reported() {
        assert_eq!(PaneClock::new(0, -1).unwrap_err().len(), 2);
        assert!(PaneWindow::new(3, 0).is_err());
    }

    #[test]
    fn window_slides_and_keeps_tails() {
        let mut window = PaneWindow::new(3, 2).unwrap();
        window.record_value(0, 0, -5.0);
        window.record_value(1, 2, 7.0);
        window.record_missing(1);
        window.record(2, 1);
        assert_eq!(window.close_through(1), 2);
        assert_eq!(window.counts(), &[1, 0, 1]);
        assert_eq!(window.sums().low_tail_sum, -5.0);
        assert_eq!(window.sums().missing, 1);
        assert_eq!(window.close_through(2), 1);
        // Pane 0 slid out of the 2-pane window.
        assert_eq!(window.counts(), &[0, 1, 1]);
        assert_eq!(window.sums().low_tail_sum, 0.0);
        assert_eq!(window.pane_range(), Some((1, 2)));
    }

    /// One step of a window's life: record an event, or close panes up to an index.
    #[derive(Debug, Clone)]
    enum Step {
        Record { pane: i64, cell: usize },
        Close { through: i64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0i64..40, 0usize..6).prop_map(|(pane, cell)| Step::Record { pane, cell }),
            1 => (0i64..45).prop_map(|through| Step::Close { through }),
        ]
    }

    proptest! {
        /// The merged window always equals the histogram of the union of the events whose panes
        /// are closed and among the last `panes` panes.
        #[test]
        fn merged_window_equals_histogram_of_union(
            steps in prop::collection::vec(step(), 0..300),
            panes in 1usize..8,
        ) {
            let mut window = PaneWindow::new(6, panes).unwrap();
            let mut closed_through: Option<i64> = None;
            let mut recorded: Vec<(i64, usize)> = Vec::new();
            for step in steps {
                match step {
                    Step::Record { pane, cell } => {
                        // The clock refuses events of closed panes; the window never sees them.
                        if closed_through.is_none_or(|c| pane > c) {
                            window.record(pane, cell);
                            recorded.push((pane, cell));
                        }
                    }
                    Step::Close { through } => {
                        let newest = closed_through.map_or(through, |c| c.max(through));
                        window.close_through(newest);
                        closed_through = Some(newest);
                        let mut expected = [0u64; 6];
                        for &(pane, cell) in &recorded {
                            if pane <= newest && pane > newest - panes as i64 {
                                expected[cell] += 1;
                            }
                        }
                        prop_assert_eq!(window.counts(), &expected[..]);
                        prop_assert_eq!(window.count(), expected.iter().sum::<u64>());
                    }
                }
            }
        }
    }
}
