//! Alert policy (DESIGN §5): per (subject, detector) a small state machine with hysteresis,
//! Benjamini–Hochberg across the features of one evaluation, and the retrain cooldown.
//!
//! Owns: deciding *when* a breach becomes an alert transition. Must not touch: statistics
//! (it only sees breach / clean / insufficient) and clocks (times are event times).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::output::AlertState;

/// What one evaluation of one detector said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Over the threshold.
    Breach,
    /// Within the threshold.
    Clean,
    /// Not enough data: the state machine does not move.
    Insufficient,
}

/// Hysteresis state of one (subject, detector).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Currently firing.
    pub firing: bool,
    /// Consecutive evaluations disagreeing with the current state.
    pub streak: u32,
}

impl Hysteresis {
    /// Feeds one verdict; returns the transition it caused, if any. `k` consecutive breaches
    /// fire, `k` consecutive clean evaluations resolve.
    pub fn observe(&mut self, verdict: Verdict, k: u32) -> Option<AlertState> {
        self.observe_asymmetric(verdict, k, k)
    }

    /// Like [`Hysteresis::observe`] with separate streak lengths to fire and to resolve (a
    /// change detector such as ADWIN is its own confirmation: it fires at once and resolves
    /// after `k_resolve` quiet evaluations).
    pub fn observe_asymmetric(
        &mut self,
        verdict: Verdict,
        k_fire: u32,
        k_resolve: u32,
    ) -> Option<AlertState> {
        let k = if self.firing { k_resolve } else { k_fire };
        let against = match verdict {
            Verdict::Insufficient => return None,
            Verdict::Breach => !self.firing,
            Verdict::Clean => self.firing,
        };
        if !against {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < k.max(1) {
            return None;
        }
        self.streak = 0;
        self.firing = !self.firing;
        Some(if self.firing {
            AlertState::Firing
        } else {
            AlertState::Resolved
        })
    }
}

impl Verdict {
    /// Breach or clean.
    pub fn from_breach(breach: bool) -> Self {
        if breach {
            Verdict::Breach
        } else {
            Verdict::Clean
        }
    }
}

/// The state machines of one model version, keyed by (subject, detector).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBook {
    states: BTreeMap<(String, String), Hysteresis>,
}

impl AlertBook {
    /// Feeds a verdict for (subject, detector); returns the transition, if any.
    pub fn observe(
        &mut self,
        subject: &str,
        detector: &str,
        verdict: Verdict,
        k_fire: u32,
        k_resolve: u32,
    ) -> Option<AlertState> {
        let key = (subject.to_owned(), detector.to_owned());
        if verdict == Verdict::Insufficient && !self.states.contains_key(&key) {
            return None;
        }
        self.states
            .entry(key)
            .or_default()
            .observe_asymmetric(verdict, k_fire, k_resolve)
    }

    /// Whether (subject, detector) is firing.
    pub fn is_firing(&self, subject: &str, detector: &str) -> bool {
        self.states
            .get(&(subject.to_owned(), detector.to_owned()))
            .is_some_and(|h| h.firing)
    }

    /// Every firing (subject, detector).
    pub fn firing(&self) -> impl Iterator<Item = (&str, &str)> {
        self.states
            .iter()
            .filter(|(_, h)| h.firing)
            .map(|((s, d), _)| (s.as_str(), d.as_str()))
    }
}

/// Benjamini–Hochberg adjusted p-values (step-up, as `scipy.stats.false_discovery_control`
/// with method "bh"), in the input order.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running_min = 1.0f64;
    for rank in (0..m).rev() {
        let index = order[rank];
        let candidate = p_values[index] * m as f64 / (rank + 1) as f64;
        running_min = running_min.min(candidate);
        adjusted[index] = running_min.clamp(0.0, 1.0);
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_k_breaches_and_resolves_after_k_clean() {
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(Verdict::Breach, 2), None);
        assert_eq!(h.observe(Verdict::Clean, 2), None);
        assert_eq!(h.observe(Verdict::Breach, 2), None);
        assert_eq!(h.observe(Verdict::Insufficient, 2), None);
        assert_eq!(h.observe(Verdict::Breach, 2), Some(AlertState::Firing));
        assert_eq!(h.observe(Verdict::Breach, 2), None);
        assert_eq!(h.observe(Verdict::Clean, 2), None);
        assert_eq!(h.observe(Verdict::Clean, 2), Some(AlertState::Resolved));
        assert!(!h.firing);
    }

    #[test]
    fn bh_matches_scipy() {
        // scipy.stats.false_discovery_control([0.01, 0.04, 0.03, 0.2, 0.001])
        let adjusted = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2, 0.001]);
        let expected = [0.025, 0.05, 0.05, 0.2, 0.005];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-15, "{adjusted:?}");
        }
        assert!(benjamini_hochberg(&[]).is_empty());
    }
}
