//! Drift statistics and detectors: pure math over numbers and counts.
//!
//! Owns: ADWIN, reference binning, PSI, Jensen–Shannon, two-sample KS, Wasserstein-1, chi², the
//! event-time pane windows and the window sketches. Must not touch: clocks, I/O, tokio, rdkafka.
//! Every statistic follows DESIGN §3–§4 and is checked against SciPy, NumPy and River vectors
//! (`tests/vectors/`).
//!
//! Each computed value carries the sample sizes it was computed on; a statistic that cannot be
//! computed from the data at hand returns [`InsufficientData`] instead of a number.

pub mod adwin;
pub mod binning;
pub mod chi2;
pub mod divergence;
pub mod ks;
pub mod ks_pvalue;
pub mod sketch;
pub mod wasserstein;
pub mod window;

use serde::{Deserialize, Serialize};

/// A statistic could not be computed: too few observations on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient data: reference has {reference_count}, current has {current_count}, at least {required} needed on each side")]
pub struct InsufficientData {
    /// Observations in the reference.
    pub reference_count: u64,
    /// Observations in the current sample or window.
    pub current_count: u64,
    /// Minimum needed on each side.
    pub required: u64,
}

impl InsufficientData {
    /// `Err` when either side has fewer than `required` observations.
    pub fn check(reference_count: u64, current_count: u64, required: u64) -> Result<(), Self> {
        if reference_count < required || current_count < required {
            Err(Self {
                reference_count,
                current_count,
                required,
            })
        } else {
            Ok(())
        }
    }
}

/// Relative difference used by tests against reference vectors.
#[cfg(test)]
pub(crate) fn relative_error(actual: f64, expected: f64) -> f64 {
    if actual == expected {
        0.0
    } else {
        (actual - expected).abs() / expected.abs().max(f64::MIN_POSITIVE)
    }
}
