//! Event-time alignment of a partition's two inputs: predictions and their labels.
//!
//! Why: a label must reach the label join before the predictions' watermark passes its
//! timestamp, or it counts in a later window than it would in a replay of the same events.
//! Consuming a backlog (a restart after downtime, a new consumer group), librdkafka may hand
//! over thousands of predictions before the first label of the same time. Kafka Streams
//! solves this by choosing, per task, the input with the smallest head timestamp; with
//! librdkafka's single queue the equivalent is flow control: pause a predictions partition
//! while its labels partition is behind in event time *and still has unread messages*, resume
//! once the labels catch up, run dry, or stop moving for `max_wait` (a quiet labels topic must
//! never stall monitoring).
//!
//! Owns: the decisions only (pure, unit-tested); the service applies them with
//! `pause`/`resume`. Pausing purges librdkafka's prefetched messages of that partition, which
//! it re-fetches on resume: hysteresis (pause beyond `max_skew`, resume below half of it)
//! keeps that rare.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to do with a predictions partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nothing changes.
    Keep,
    /// Stop fetching it until its labels catch up.
    Pause,
    /// Fetch it again.
    Resume,
}

#[derive(Debug, Clone, Default)]
struct Clocks {
    /// Largest prediction event time handled.
    predictions: Option<i64>,
    /// Largest label event time handled.
    labels: Option<i64>,
    /// When the predictions partition was paused, and the label time then.
    paused: Option<(Instant, Option<i64>)>,
    /// Label time at which waiting was last given up: no new pause until labels move on.
    gave_up_at: Option<Option<i64>>,
    /// Predictions since the labels' backlog was last checked.
    since_check: u32,
}

/// The alignment state of every partition of one consumer.
#[derive(Debug, Clone)]
pub struct Aligner {
    max_skew_ms: i64,
    max_wait: Duration,
    partitions: HashMap<i32, Clocks>,
}

/// Predictions between two backlog checks of a partition whose labels lag (the check asks
/// librdkafka for watermarks and positions, which takes locks).
const CHECK_EVERY: u32 = 256;

impl Aligner {
    /// Pauses predictions that run more than `max_skew_ms` of event time ahead of their
    /// labels; gives up waiting after `max_wait` without label progress.
    pub fn new(max_skew_ms: i64, max_wait: Duration) -> Self {
        Self {
            max_skew_ms: max_skew_ms.max(1),
            max_wait,
            partitions: HashMap::new(),
        }
    }

    /// A prediction of `partition` at event time `timestamp` was handled. `labels_backlog`
    /// says whether the partition's labels topic has unread messages (asked only when the
    /// labels lag).
    pub fn on_prediction(
        &mut self,
        partition: i32,
        timestamp: i64,
        labels_backlog: impl FnOnce() -> bool,
    ) -> Flow {
        let max_skew_ms = self.max_skew_ms;
        let clocks = self.partitions.entry(partition).or_default();
        clocks.predictions = Some(clocks.predictions.map_or(timestamp, |t| t.max(timestamp)));
        if clocks.paused.is_some() || clocks.gave_up_at == Some(clocks.labels) {
            return Flow::Keep;
        }
        let behind = match clocks.labels {
            Some(labels) => timestamp.saturating_sub(labels) > max_skew_ms,
            // No label yet: behind only if some are waiting to be read.
            None => true,
        };
        if !behind {
            clocks.since_check = 0;
            return Flow::Keep;
        }
        // Asked once per CHECK_EVERY lagging predictions. Before the first label, also at
        // the very first prediction (labels may be waiting: pause at once), but not at every
        // one: with no labels at all (a model without ground truth) that cost 15x throughput.
        clocks.since_check += 1;
        let due = clocks.since_check >= CHECK_EVERY
            || (clocks.labels.is_none() && clocks.since_check == 1);
        if !due {
            return Flow::Keep;
        }
        clocks.since_check = u32::from(clocks.labels.is_none());
        if labels_backlog() {
            clocks.paused = Some((Instant::now(), clocks.labels));
            Flow::Pause
        } else {
            Flow::Keep
        }
    }

    /// A label of `partition` at event time `timestamp` was handled.
    pub fn on_label(&mut self, partition: i32, timestamp: i64) -> Flow {
        let max_skew_ms = self.max_skew_ms;
        let clocks = self.partitions.entry(partition).or_default();
        clocks.labels = Some(clocks.labels.map_or(timestamp, |t| t.max(timestamp)));
        if clocks.gave_up_at.is_some_and(|at| at != clocks.labels) {
            clocks.gave_up_at = None;
        }
        let caught_up = clocks
            .predictions
            .is_none_or(|p| p.saturating_sub(timestamp) <= max_skew_ms / 2);
        if clocks.paused.is_some() && caught_up {
            clocks.paused = None;
            return Flow::Resume;
        }
        Flow::Keep
    }

    /// Periodic check of paused partitions: resume those whose labels ran dry
    /// (`labels_backlog` false) or made no progress for `max_wait`.
    pub fn on_tick(
        &mut self,
        now: Instant,
        mut labels_backlog: impl FnMut(i32) -> bool,
    ) -> Vec<(i32, Flow)> {
        let max_wait = self.max_wait;
        let mut actions = Vec::new();
        for (&partition, clocks) in &mut self.partitions {
            let Some((since, labels_then)) = clocks.paused else {
                continue;
            };
            let stalled = now.duration_since(since) >= max_wait;
            if stalled && clocks.labels != labels_then {
                // Labels are moving, just slowly: keep waiting from here.
                clocks.paused = Some((now, clocks.labels));
                continue;
            }
            if stalled || !labels_backlog(partition) {
                clocks.paused = None;
                clocks.gave_up_at = Some(clocks.labels);
                actions.push((partition, Flow::Resume));
            }
        }
        actions.sort_by_key(|(p, _)| *p);
        actions
    }

    /// Forgets everything (a rebalance); returns the partitions that were paused, to resume.
    pub fn reset(&mut self) -> Vec<i32> {
        let mut paused: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, c)| c.paused.is_some())
            .map(|(p, _)| *p)
            .collect();
        paused.sort_unstable();
        self.partitions.clear();
        paused
    }

    /// Whether alignment keeps `partition` paused.
    pub fn is_paused(&self, partition: i32) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|c| c.paused.is_some())
    }

    /// Whether any partition is paused.
    pub fn any_paused(&self) -> bool {
        self.partitions.values().any(|c| c.paused.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_wait_for_labels_that_lag_and_have_a_backlog() {
        let mut aligner = Aligner::new(60_000, Duration::from_secs(5));
        assert_eq!(aligner.on_label(0, 1_000), Flow::Keep);
        assert_eq!(aligner.on_prediction(0, 50_000, || true), Flow::Keep);
        // 100 s ahead of the labels, which have unread messages: checked every 256.
        let mut flow = Flow::Keep;
        for i in 0..CHECK_EVERY {
            flow = aligner.on_prediction(0, 101_001 + i as i64, || true);
        }
        assert_eq!(flow, Flow::Pause);
        assert!(aligner.any_paused());
        // Labels catch up to within half the skew: resume.
        assert_eq!(aligner.on_label(0, 60_000), Flow::Keep);
        assert_eq!(aligner.on_label(0, 80_000), Flow::Resume);
        assert!(!aligner.any_paused());
    }

    #[test]
    fn no_pause_when_the_labels_have_nothing_left_to_read() {
        let mut aligner = Aligner::new(60_000, Duration::from_secs(5));
        aligner.on_label(1, 0);
        for i in 0..2 * CHECK_EVERY {
            assert_eq!(
                aligner.on_prediction(1, 200_000 + i as i64, || false),
                Flow::Keep
            );
        }
    }

    #[test]
    fn a_partition_without_labels_yet_pauses_at_once_if_labels_wait() {
        let mut aligner = Aligner::new(60_000, Duration::from_secs(5));
        assert_eq!(aligner.on_prediction(2, 1, || true), Flow::Pause);
        let mut other = Aligner::new(60_000, Duration::from_secs(5));
        assert_eq!(other.on_prediction(2, 1, || false), Flow::Keep);
    }

    #[test]
    fn waiting_is_given_up_when_labels_stall_or_run_dry() {
        let mut aligner = Aligner::new(60_000, Duration::from_millis(10));
        aligner.on_label(0, 0);
        aligner.on_label(1, 0);
        for i in 0..CHECK_EVERY {
            aligner.on_prediction(0, 500_000 + i as i64, || true);
            aligner.on_prediction(1, 500_000 + i as i64, || true);
        }
        assert!(aligner.any_paused());
        // Partition 1's labels ran dry: resume it now; partition 0 still has a backlog.
        let now = Instant::now();
        assert_eq!(aligner.on_tick(now, |p| p == 0), vec![(1, Flow::Resume)]);
        // After max_wait without progress, partition 0 resumes too...
        let later = now + Duration::from_millis(20);
        assert_eq!(aligner.on_tick(later, |_| true), vec![(0, Flow::Resume)]);
        // ... and is not paused again until its labels move.
        for i in 0..2 * CHECK_EVERY {
            assert_eq!(
                aligner.on_prediction(0, 600_000 + i as i64, || true),
                Flow::Keep
            );
        }
        aligner.on_label(0, 1);
        let mut flow = Flow::Keep;
        for i in 0..CHECK_EVERY {
            flow = aligner.on_prediction(0, 700_000 + i as i64, || true);
        }
        assert_eq!(flow, Flow::Pause);
    }

    #[test]
    fn slow_but_moving_labels_keep_the_pause() {
        let mut aligner = Aligner::new(60_000, Duration::from_millis(10));
        aligner.on_label(0, 0);
        for i in 0..CHECK_EVERY {
            aligner.on_prediction(0, 500_000 + i as i64, || true);
        }
        aligner.on_label(0, 1_000);
        let later = Instant::now() + Duration::from_millis(20);
        assert!(aligner.on_tick(later, |_| true).is_empty());
        assert!(aligner.any_paused());
    }

    #[test]
    fn a_rebalance_resumes_everything_paused() {
        let mut aligner = Aligner::new(60_000, Duration::from_secs(5));
        aligner.on_prediction(3, 1, || true);
        aligner.on_prediction(1, 1, || true);
        assert_eq!(aligner.reset(), vec![1, 3]);
        assert!(!aligner.any_paused());
    }
}
