//! Two-sided p-values for the two-sample Kolmogorov–Smirnov (KS) test.
//!
//! This module owns the *pure math* that turns a KS statistic `D` and the two
//! sample sizes into a p-value. It performs no I/O, holds no global state and
//! depends on `std` only. It does not compute `D` from data; callers do that.
//!
//! The goal is bit-for-bit (or, where SciPy itself depends on BLAS / SIMD
//! libm variants, ≤ 1e-9 relative) agreement with SciPy 1.17.1:
//!
//! * [`ks_2samp_pvalue`] mirrors `scipy.stats.ks_2samp(..., alternative="two-sided",
//!   method="auto")` once `D` is known: the exact path
//!   (`scipy/stats/_stats_py.py::_attempt_exact_2kssamp`, which calls
//!   `_compute_prob_outside_square` for `n1 == n2` and the Pythran-compiled
//!   `scipy/stats/_stats_pythran.py::_compute_outer_prob_inside_method`
//!   otherwise) and the asymptotic path (`kstwo.sf(D, round(n1*n2/(n1+n2)))`).
//! * [`kstwo_sf`] mirrors `scipy.stats.kstwo.sf`, i.e. the argument handling of
//!   `rv_continuous.sf` plus `scipy/stats/_ksstats.py::_kolmogn(cdf=False)` and
//!   its helpers (`_kolmogn_DMTW`, `_kolmogn_Pomeranz`, `_kolmogn_PelzGood`),
//!   and the C++ `scipy.special.smirnov` from xsf
//!   (`include/xsf/cephes/kolmogorov.h`, with `dd_real.h` double-double
//!   arithmetic and `unity.h::expm1`).
//!
//! Known, tiny sources of non-bitwise differences (all far below 1e-9
//! relative): NumPy evaluates `np.exp`/`np.log`/array `**` with its own SIMD
//! kernels (glibc is used here), `np.matmul`/`np.convolve` go through BLAS
//! with a different summation order, and two SciPy helpers silently switch to
//! x87 `long double` after rescaling by `2**±128`.

use std::cmp::{max, min};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// How the p-value was computed (mirrors SciPy's "auto" choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    /// Exact lattice-path probability (`_attempt_exact_2kssamp` succeeded).
    Exact,
    /// `kstwo.sf(D, round(n1*n2/(n1+n2)))`, used for large samples or when the
    /// exact computation failed numerically.
    Asymptotic,
}

/// The p-value and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsPValue {
    /// Two-sided p-value, clipped to `[0, 1]` like SciPy (NaN only for a NaN statistic).
    pub p_value: f64,
    /// Which of SciPy's two methods produced `p_value`.
    pub method: KsMethod,
    /// The statistic SciPy reports: on the exact path (and on its asymptotic
    /// fallback) `D` is rounded to the lattice value `h / lcm(n1, n2)`,
    /// as `_attempt_exact_2kssamp` does; otherwise the (clamped) input `D`.
    pub statistic: f64,
}

/// `MAX_AUTO_N` in `ks_2samp`: "auto" tries the exact method iff `max(n1, n2) <= 10_000`.
const MAX_AUTO_N: u64 = 10_000;

/// `2**128` and `2**-128` (`_E128`, `_EP128`, `_EM128` in `_ksstats.py`).
const E128: i64 = 128;
const EP128: f64 = 3.402823669209385e38;
const EM128: f64 = 2.938735877055719e-39;

// Constants from `_ksstats.py`, written as the exact doubles NumPy produced
// (np.sqrt(2*np.pi), np.log(2*np.pi), np.sqrt(3), np.pi**2, np.pi**4, np.pi**6).
const SQRT2PI: f64 = 2.5066282746310002;
const LOG_2PI: f64 = 1.8378770664093453;
const SQRT3: f64 = 1.7320508075688772;
const PI_SQUARED: f64 = 9.869604401089358;
const PI_FOUR: f64 = 97.40909103400242;
const PI_SIX: f64 = 961.3891935753043;
const MIN_LOG: f64 = -708.0;
/// `_STIRLING_COEFFS` (highest power first, as `np.polyval` expects), i.e.
/// B_{2j}/(2j)/(2j-1) for j = 8..1, written as their shortest round-trip
/// decimal forms (the same doubles as SciPy's 20-digit literals).
const STIRLING_COEFFS: [f64; 8] = [
    -0.029550653594771242,
    0.00641025641025641,
    -0.0019175269175269176,
    0.0008417508417508417,
    -0.0005952380952380953,
    0.0007936507936507937,
    -0.002777777777777778,
    0.08333333333333333,
];

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Two-sided p-value of the two-sample KS statistic `d` for sample sizes n1, n2 ≥ 1,
/// as scipy.stats.ks_2samp(method="auto") computes it (exact when max(n1, n2) ≤ 10_000).
///
/// Preconditions and edge cases:
/// * `n1`, `n2` must be ≥ 1 (SciPy raises on empty samples). A zero is treated
///   as 1 so that the function never divides by zero or panics.
/// * `d` is a statistic in `[0, 1]`. Values below 0 (including `-0.0` and
///   `-inf`) are treated as 0 and values above 1 as 1; SciPy never produces
///   such values from data and the asymptotic branch gives identical results
///   for them. A NaN `d` yields a NaN p-value (SciPy raises on the exact path
///   and returns NaN on the asymptotic one).
/// * Exact-path failure (result outside `[0, 1]`, e.g. `2*P` rounding to
///   `1.0000000000000002` when `n1 == n2` and `d == 1/n1`) falls back to the
///   asymptotic method with the *rounded* statistic, exactly like SciPy.
pub fn ks_2samp_pvalue(n1: u64, n2: u64, d: f64) -> KsPValue {
    let n1 = n1.max(1);
    let n2 = n2.max(1);
    let try_exact = max(n1, n2) <= MAX_AUTO_N;
    if d.is_nan() {
        let method = if try_exact {
            KsMethod::Exact
        } else {
            KsMethod::Asymptotic
        };
        return KsPValue {
            p_value: f64::NAN,
            method,
            statistic: d,
        };
    }
    // Clamp to the statistic's domain (also normalises -0.0 to +0.0).
    let d = if d > 0.0 { d.min(1.0) } else { 0.0 };

    if try_exact {
        let g = gcd(n1, n2);
        match attempt_exact_2kssamp(n1, n2, g, d) {
            (true, d_rounded, prob) => {
                return KsPValue {
                    p_value: clip01(prob),
                    method: KsMethod::Exact,
                    statistic: d_rounded,
                };
            }
            // SciPy warns "Exact calculation unsuccessful" and switches to
            // 'asymp', keeping the rounded statistic.
            (false, d_rounded, _) => return asymptotic_2samp(n1, n2, d_rounded),
        }
    }
    asymptotic_2samp(n1, n2, d)
}

/// scipy.stats.kstwo.sf(d, n): survival function of the one-sample two-sided KS statistic D_n.
///
/// `n == 0` is outside the distribution's parameter space and yields NaN (as
/// SciPy's `badvalue`). `d <= 0.5/n` gives 1, `d >= 1` gives 0, NaN gives NaN.
pub fn kstwo_sf(d: f64, n: u64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    kstwo_sf_checked(d, n)
}

// ---------------------------------------------------------------------------
// ks_2samp: exact path
// ---------------------------------------------------------------------------

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn clip01(p: f64) -> f64 {
    // np.clip(p, 0, 1): NaN passes through (as with f64::clamp).
    p.clamp(0.0, 1.0)
}

/// Mirrors `_attempt_exact_2kssamp(n1, n2, g, d, 'two-sided')`.
/// Returns `(success, rounded_d, probability)`.
fn attempt_exact_2kssamp(n1: u64, n2: u64, g: u64, d: f64) -> (bool, f64, f64) {
    // Only called with max(n1, n2) <= 10_000, so lcm <= 1e8 fits easily and
    // `d * lcm` is computed exactly as NumPy does (float64 product).
    let lcm = (n1 / g) * n2;
    // h = int(np.round(d * lcm)): NumPy rounds half to even.
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d_rounded = h as f64 * 1.0 / lcm as f64;
    if h == 0 {
        return (true, d_rounded, 1.0);
    }
    let prob = if n1 == n2 {
        prob_outside_square(n1 as i64, h as i64)
    } else {
        outer_prob_inside_method(n1 as i64, n2 as i64, g as i64, h as i64)
    };
    // SciPy's np.errstate(over/invalid="raise") never triggers here: the
    // square method is plain Python float arithmetic and the inside method is
    // compiled Pythran. The only failure mode is a result outside [0, 1]
    // (or NaN), which SciPy reports as `success = False`.
    if !(0.0..=1.0).contains(&prob) {
        return (false, d_rounded, prob);
    }
    (true, d_rounded, prob)
}

/// Mirrors `_compute_prob_outside_square(n, h)`: Pr(D_{n,n} >= h/n), 0 < h <= n.
///
/// P = 2 * A0 * (1 - A1*(1 - A2*(1 - ...))) evaluated Horner-style from the
/// innermost term, each A_k being a product of h ratios. Same operation order
/// as the Python source (`(n - k*h - j) * p1 / (n + k*h + j + 1)`), so the
/// result is bitwise identical. Cost is O(n + h).
fn prob_outside_square(n: i64, h: i64) -> f64 {
    let mut p = 0.0f64;
    // k = int(np.floor(n / h)) with true (float) division.
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let kh = k * h;
        let mut p1 = 1.0f64;
        for j in 0..h {
            p1 = (n - kh - j) as f64 * p1 / (n + kh + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// How many lattice columns the inside method advances together. Each column
/// is a serial chain of divisions; interleaving independent columns (lagged by
/// two rows, a wavefront) hides the division latency and lets the compiler
/// use packed divisions, while every individual floating-point operation stays
/// exactly the one SciPy performs (so results are bitwise unchanged).
const WAVE: usize = 8;
/// Row lag between consecutive columns of a wavefront block (>= 1 is correct;
/// 2 keeps the columns' dependency chains apart).
const LAG: i64 = 2;

/// Mirrors `_compute_outer_prob_inside_method(m, n, g, h)` from
/// `scipy/stats/_stats_pythran.py` (Pythran-compiled in the wheel).
///
/// Returns the proportion of lattice paths from (0,0) to (m,n) that do *not*
/// stay strictly inside |x/m - y/n| < h/lcm(m,n), using Viehmann's recursion
/// for 1 - p so no subtractive cancellation occurs. Only one column of the
/// lattice (a sliding window `A`) is kept. Entries past the current window are
/// always 1.0 (a path there has already left the band); SciPy maintains that by
/// resetting the tail to 1 whenever the window shrinks.
fn outer_prob_inside_method(m: i64, n: i64, g: i64, h: i64) -> f64 {
    // Probability is symmetric in m, n; the computation uses m >= n.
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let mg = m / g;
    let ng = n / g;
    let mgf = mg as f64;

    // Window bookkeeping exactly as in the Pythran code; divisions of int64
    // operands are true (double) divisions there.
    let window = |i: i64| -> (i64, i64) {
        let lo = max(((ng * i - h) as f64 / mgf).floor() as i64 + 1, 0);
        let lo = min(lo, n);
        let hi = min(((ng * i + h) as f64 / mgf).ceil() as i64, n + 1);
        (lo, hi)
    };

    let mut minj: i64 = 0;
    let maxj0 = min((h as f64 / mgf).ceil() as i64, n + 1);
    let len_a = min(2 * maxj0 + 2, n + 1).max(1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj0.max(0) as usize) {
        *v = 0.0;
    }
    let mut curlen = maxj0 - minj;

    let mut i: i64 = 1;
    while i <= m {
        let cols = min(WAVE as i64, m - i + 1) as usize;
        // Per-column state of this wavefront block.
        let mut lo = [0i64; WAVE];
        let mut len = [0i64; WAVE];
        let mut prev_len = [0i64; WAVE];
        let mut shift = [0usize; WAVE];
        let mut val = [0.0f64; WAVE];
        let mut last_lo = minj;
        let mut last_len = curlen;
        let mut cols_ok = cols;
        for c in 0..cols {
            let (l, hgh) = window(i + c as i64);
            if hgh <= l {
                // The band closed: every path leaves it (SciPy returns 1.0
                // as soon as it reaches this column; earlier columns of the
                // block cannot influence that).
                return 1.0;
            }
            let this_len = hgh - l;
            if this_len as usize > len_a || l < last_lo {
                // Cannot happen (the window never outgrows A and minj never
                // decreases); report failure rather than index out of bounds.
                return f64::NAN;
            }
            // Because ng <= mg, minj and maxj each advance by at most 1 per
            // column, so the read offset is 0 or 1 and the window length
            // changes by at most 1. The wavefront relies on that (a shrinking
            // window resets exactly one entry, which the previous column has
            // already written); if it ever did not hold, the column starts a
            // new block and runs on its own, i.e. exactly sequentially.
            if c > 0 && (l - last_lo > 1 || last_len - this_len > 1) {
                cols_ok = c;
                break;
            }
            lo[c] = l;
            len[c] = this_len;
            prev_len[c] = last_len;
            shift[c] = (l - last_lo) as usize;
            val[c] = if l == 0 { 0.0 } else { 1.0 };
            last_lo = l;
            last_len = this_len;
        }
        let cols = cols_ok;
        let steps = (0..cols)
            .map(|c| len[c] + LAG * c as i64)
            .max()
            .unwrap_or(0);
        // Steps in which every column of a full block is strictly inside its
        // window (started, not at its last entry) need no range checks and no
        // tail reset; they run through a branch-free copy of the same update.
        let (steady_lo, steady_hi) = if cols == WAVE {
            let lo_s = LAG * (WAVE as i64 - 1);
            let hi_s = (0..WAVE)
                .map(|c| len[c] - 1 + LAG * c as i64)
                .min()
                .unwrap_or(0);
            (lo_s, max(lo_s, hi_s))
        } else {
            (steps, steps)
        };
        let mut s = 0i64;
        while s < steps {
            if s == steady_lo && steady_hi > steady_lo {
                // Lane-wise form of the same update: all reads, then the
                // arithmetic, then all writes. The lanes touch distinct
                // entries (reads of lane c+1 lie below the write of lane c,
                // and vice versa), so this order is equivalent, and it lets
                // the compiler pack the independent divisions into `divpd`.
                // j and i + j are small integers, exact as f64 increments.
                let mut colf = [0.0f64; WAVE];
                let mut jf = [0.0f64; WAVE];
                let mut den = [0.0f64; WAVE];
                for c in 0..WAVE {
                    let j = steady_lo - LAG * c as i64 + lo[c];
                    colf[c] = (i + c as i64) as f64;
                    jf[c] = j as f64;
                    den[c] = (i + c as i64 + j) as f64;
                }
                for s2 in steady_lo..steady_hi {
                    let mut prev = [0.0f64; WAVE];
                    for c in 0..WAVE {
                        prev[c] = a[(s2 - LAG * c as i64) as usize + shift[c]];
                    }
                    let mut v = [0.0f64; WAVE];
                    for c in 0..WAVE {
                        v[c] = (prev[c] * colf[c] + val[c] * jf[c]) / den[c];
                    }
                    for c in 0..WAVE {
                        val[c] = v[c];
                        a[(s2 - LAG * c as i64) as usize] = v[c];
                        jf[c] += 1.0;
                        den[c] += 1.0;
                    }
                }
                s = steady_hi;
                continue;
            }
            for c in 0..cols {
                let jj = s - LAG * c as i64;
                if jj < 0 || jj >= len[c] {
                    continue;
                }
                let ix = jj as usize;
                let col = (i + c as i64) as f64;
                let j = jj + lo[c];
                // val = (A[jj + minj - lastminj] * i + val * j) / (i + j)
                // Entries past the previous column's window are 1.0 (see above);
                // `get` only guards against an impossible out-of-range read.
                let prev = a.get(ix + shift[c]).copied().unwrap_or(1.0);
                let v = (prev * col + val[c] * j as f64) / (i + c as i64 + j) as f64;
                val[c] = v;
                a[ix] = v;
                if jj == len[c] - 1 && prev_len[c] > len[c] {
                    // Column finished and its window shrank: reset the
                    // carried-over tail to 1 (numpy slice, clipped at the end).
                    let start = len[c] as usize;
                    let stop = min((prev_len[c]) as usize, len_a);
                    for t in a.iter_mut().take(stop).skip(start) {
                        *t = 1.0;
                    }
                }
            }
            s += 1;
        }
        minj = lo[cols - 1];
        curlen = len[cols - 1];
        i += cols as i64;
    }
    a[(curlen - 1) as usize]
}

// ---------------------------------------------------------------------------
// ks_2samp: asymptotic path and kstwo.sf
// ---------------------------------------------------------------------------

/// The 'asymp' branch of `ks_2samp` for alternative='two-sided':
/// `kstwo.sf(d, np.round(en))`, en = m*n/(m+n) with m >= n as floats.
fn asymptotic_2samp(n1: u64, n2: u64, d: f64) -> KsPValue {
    let (a, b) = (n1 as f64, n2 as f64);
    let (m, n) = if a >= b { (a, b) } else { (b, a) };
    let en = m * n / (m + n);
    let n_eff = en.round_ties_even();
    // rv_continuous._argcheck for kstwo: n >= 1 and integral.
    let p = if n_eff >= 1.0 {
        kstwo_sf_checked(d, n_eff as u64)
    } else {
        f64::NAN
    };
    KsPValue {
        p_value: clip01(p),
        method: KsMethod::Asymptotic,
        statistic: d,
    }
}

/// `rv_continuous.sf` specialised to kstwo (support [0.5/n, 1]), then
/// `kolmogn(n, x, cdf=False)`. Requires n >= 1.
fn kstwo_sf_checked(x: f64, n: u64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    // cond2: x <= a (lower end of the support, 0.5/n) -> 1.0
    if x <= 0.5 / n as f64 {
        return 1.0;
    }
    // x >= b = 1 is outside the open support and left at the initial 0.
    if x >= 1.0 {
        return 0.0;
    }
    kolmogn_sf(n, x)
}

/// Mirrors `_kolmogn(n, x, cdf=False)` (Simard & L'Ecuyer 2011 branch choice).
fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben–Gambino: for 1/2n <= x <= 1/n, CDF = n!/n^n (2t-1)^n.
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            // np.prod(np.arange(1, n+1) * (1.0/n) * (2*t - 1)), sequential product.
            let rn = 1.0 / nf;
            let c = 2.0 * t - 1.0;
            let mut p = 1.0f64;
            for i in 1..=n {
                p *= i as f64 * rn * c;
            }
            p
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip01(1.0 - prob);
    }
    if t >= (n - 1) as f64 {
        // Ruben–Gambino upper tail: SF = 2 (1-x)^n.
        let prob = 2.0 * (1.0 - x).powf(nf);
        return clip01(prob);
    }
    if x >= 0.5 {
        // For x >= 1/2 the two one-sided events are disjoint: SF = 2*smirnov.
        let prob = 2.0 * smirnov_sf(n_as_int(n), x);
        return clip01(prob);
    }

    // Simard & L'Ecuyer's choice, keyed on n*x^2: Durbin's matrix (small
    // matrices when n*x is small), Pomeranz's recursion (moderate n*x^2), and
    // 2*smirnov once the intersection term of the two one-sided tails is
    // negligible.
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            let prob = kolmogn_dmtw_cdf(n, x);
            return clip01(1.0 - prob);
        }
        if nxsquared <= 4.0 {
            let prob = kolmogn_pomeranz_cdf(n, x);
            return clip01(1.0 - prob);
        }
        // Miller approximation: 2*smirnov.
        let prob = 2.0 * smirnov_sf(n_as_int(n), x);
        return clip01(prob);
    }

    // n > 140: SciPy splits CDF and SF cut-offs; for the SF, 2*smirnov is used
    // from n*x^2 >= 2.2 and the tail is 0 beyond n*x^2 >= 370.
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        let prob = 2.0 * smirnov_sf(n_as_int(n), x);
        return clip01(prob);
    }
    // Fall through and compute the SF as 1 - CDF (nxsquared < 2.2 < 18, so
    // SciPy's `cdfprob = 1.0` shortcut cannot apply): DMTW while its matrix
    // stays small (n * x^1.5 <= 1.4), else the Pelz-Good expansion.
    let cdfprob = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(n, x)
    };
    clip01(1.0 - cdfprob)
}

/// `scipy.special.smirnov` is the `ld->d` ufunc loop: the Python int becomes a
/// C `long`, truncated to `int` for the xsf kernel. We keep n as i64 instead.
/// That is identical to SciPy for n <= i32::MAX; beyond it SciPy's truncation
/// gives NaN or a wrong n (e.g. `kstwo.sf(0.6, 2**33)` is NaN), whereas the
/// port uses the true n (only reachable with samples of > 4e9 observations).
fn n_as_int(n: u64) -> i64 {
    min(n, i64::MAX as u64) as i64
}

/// `_log_nfactorial_div_n_pow_n(n)`: log(n!/n^n) via Stirling, with the
/// n*log(n) term removed analytically to avoid cancellation.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    let rn = 1.0 / n;
    // np.polyval: Horner starting from y = 0.
    let x = rn / n;
    let mut y = 0.0f64;
    for &c in STIRLING_COEFFS.iter() {
        y = y * x + c;
    }
    n.ln() / 2.0 - n + LOG_2PI / 2.0 + rn * y
}

/// Mirrors `_kolmogn_DMTW(n, d, cdf=True)`: Durbin's matrix algorithm in the
/// Marsaglia–Tsang–Wang form. Write d = (k - h)/n; the CDF is
/// (n!/n^n) * (H^n)[k-1, k-1] for an m x m matrix H, m = 2k - 1, computed by
/// repeated squaring with explicit power-of-two rescaling.
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    // v[j] = (1 - h^(j+1)) / (j+1)!, w[j] = 1/j!, v[-1] corrected.
    let mut v = vec![0.0f64; m];
    let mut w = vec![0.0f64; m];
    let mut fac = 1.0f64;
    for j in 1..=m {
        v[j - 1] = 1.0 - h.powf(j as f64);
        w[j - 1] = fac;
        fac /= j as f64; // may underflow; harmless
        v[j - 1] *= fac;
    }
    let base = if 2.0 * h - 1.0 > 0.0 {
        2.0 * h - 1.0
    } else {
        0.0
    };
    let tt = base.powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;

    // H (row-major): H[i-1.., i] = w[..m-i+1]; H[:, 0] = v; H[-1, :] = flip(v).
    let mut hm = vec![0.0f64; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let mut hpwr = vec![0.0f64; m * m];
    for r in 0..m {
        hpwr[r * m + r] = 1.0;
    }
    let mut tmp = vec![0.0f64; m * m];
    let mut nn = n;
    let mut expnt: i64 = 0;
    let mut hexpnt: i64 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            matmul(&hpwr, &hm, &mut tmp, m);
            std::mem::swap(&mut hpwr, &mut tmp);
            expnt += hexpnt;
        }
        nn /= 2;
        if nn == 0 {
            // SciPy squares H once more here, but never uses the result.
            break;
        }
        matmul(&hm, &hm, &mut tmp, m);
        std::mem::swap(&mut hm, &mut tmp);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > EP128 {
            for e in hm.iter_mut() {
                *e /= EP128;
            }
            hexpnt += E128;
        }
    }

    let mut p = hpwr[(k - 1) * m + (k - 1)];
    // Multiply by n!/n^n, rescaling to stay out of the subnormal range.
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < EM128 {
            p *= EP128;
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p = ldexp(p, expnt);
    }
    clip01(p)
}

/// Plain row-major product c = a * b (summation over the inner index in order).
fn matmul(a: &[f64], b: &[f64], c: &mut [f64], m: usize) {
    for e in c.iter_mut() {
        *e = 0.0;
    }
    for i in 0..m {
        let crow = &mut c[i * m..(i + 1) * m];
        for kk in 0..m {
            let aik = a[i * m + kk];
            if aik == 0.0 {
                continue;
            }
            let brow = &b[kk * m..(kk + 1) * m];
            for (cv, bv) in crow.iter_mut().zip(brow.iter()) {
                *cv += aik * bv;
            }
        }
    }
}

/// `_pomeranz_compute_j1j2`: endpoints of the non-zero interval of row i.
fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let ip1div2 = (i + 1) / 2;
        let ip1mod2 = (i + 1) % 2;
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    (max(j1 + 2, 0), min(j2, n))
}

/// Python slice bounds `[start:stop]` of a sequence of length `len`.
fn py_slice(len: i64, start: i64, stop: i64) -> (usize, usize) {
    let norm = |x: i64| -> i64 {
        if x < 0 {
            max(x + len, 0)
        } else {
            min(x, len)
        }
    };
    let (a, b) = (norm(start), norm(stop));
    (a as usize, max(a, b) as usize)
}

/// Mirrors `_kolmogn_Pomeranz(n, x, cdf=True)`: Pomeranz's recursion, two
/// rows at a time, each row a truncated convolution with (almost) Poisson
/// weights, rescaled by 2^128 when it gets tiny. Only used for n <= 140.
fn kolmogn_pomeranz_cdf(n: u64, x: f64) -> f64 {
    let ni = n as i64;
    let nf = n as f64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = 1.0 * (t - ll as f64);
    let g = if f < 1.0 - f { f } else { 1.0 - f };
    let ceilf: i64 = if f > 0.0 { 1 } else { 0 };
    let roundf: i64 = if f > 0.5 { 1 } else { 0 };
    let npwrs = (2 * (ll + 1)) as usize;
    let mut gpower = vec![0.0f64; npwrs];
    let mut twogpower = vec![0.0f64; npwrs];
    let mut onem2gpower = vec![0.0f64; npwrs];
    gpower[0] = 1.0;
    twogpower[0] = 1.0;
    onem2gpower[0] = 1.0;
    let mut expnt: i64 = 0;
    let g_over_n = g / nf;
    let two_g_over_n = 2.0 * g / nf;
    let one_minus_two_g_over_n = (1.0 - 2.0 * g) / nf;
    for mm in 1..npwrs {
        let mf = mm as f64;
        gpower[mm] = gpower[mm - 1] * g_over_n / mf;
        twogpower[mm] = twogpower[mm - 1] * two_g_over_n / mf;
        onem2gpower[mm] = onem2gpower[mm - 1] * one_minus_two_g_over_n / mf;
    }

    let mut v0 = vec![0.0f64; npwrs];
    let mut v1 = vec![0.0f64; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s): (i64, i64) = (0, 0);
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    for i in 1..(2 * ni + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        for e in v1.iter_mut() {
            *e = 0.0;
        }
        let (nj1, nj2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs: &[f64] = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = nj2 - k1 + 1;
        if ln2 > 0 {
            // conv = np.convolve(V0[k1-V0s : k1-V0s+ln2], pwrs[:ln2]) ("full").
            let (a0, a1) = py_slice(npwrs as i64, k1 - v0s, k1 - v0s + ln2);
            let (b0, b1) = py_slice(npwrs as i64, 0, ln2);
            let av = &v0[a0..a1];
            let bv = &pwrs[b0..b1];
            if av.is_empty() || bv.is_empty() {
                // np.convolve would raise; cannot happen for valid inputs.
                return f64::NAN;
            }
            let conv_full = av.len() + bv.len() - 1;
            let conv_start = nj1 - k1;
            let conv_len = nj2 - nj1 + 1;
            let (c0, c1) = py_slice(conv_full as i64, conv_start, conv_start + conv_len);
            let mut vmax = f64::NEG_INFINITY;
            for (dst, kk) in (c0..c1).enumerate() {
                if dst >= npwrs {
                    break;
                }
                // conv[kk] = sum_i a[i] * b[kk - i]
                let lo_i = kk.saturating_sub(bv.len() - 1);
                let hi_i = min(kk, av.len() - 1);
                let mut s = 0.0f64;
                for ii in lo_i..=hi_i {
                    s += av[ii] * bv[kk - ii];
                }
                v1[dst] = s;
            }
            for &e in v1.iter() {
                if e > vmax {
                    vmax = e;
                }
            }
            if 0.0 < vmax && vmax < EM128 {
                for e in v1.iter_mut() {
                    *e *= EP128;
                }
                expnt -= E128;
            }
            v1s = v0s + nj1 - k1;
        }
    }

    let idx = ni - v1s;
    let mut ans = if idx >= 0 && (idx as usize) < npwrs {
        v1[idx as usize]
    } else {
        0.0
    };
    for mm in 1..=n {
        if ans.abs() > EP128 {
            ans *= EM128;
            expnt += E128;
        }
        ans *= mm as f64;
    }
    if expnt != 0 {
        ans = ldexp(ans, expnt);
    }
    clip01(ans)
}

/// NumPy's pairwise summation (`np.sum` on a contiguous float64 array).
fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0f64;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_pairwise_sum(&a[..n2]) + np_pairwise_sum(&a[n2..])
    }
}

/// Mirrors `_kolmogn_PelzGood(n, x, cdf=True)`: the Li-Chien/Korolyuk
/// expansion K0 + K1/sqrt(n) + K2/n + K3/n^1.5 transformed with Jacobi theta
/// identities (Pelz & Good 1976) so that it converges fast for small z.
fn kolmogn_pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let zsquared = z.powf(2.0);
    let zthree = z.powf(3.0);
    let zfour = z.powf(4.0);
    let zsix = z.powf(6.0);

    let qlog = -PI_SQUARED / 8.0 / zsquared;
    if qlog < MIN_LOG {
        // z ~ 0.0417: the CDF underflows.
        return 0.0;
    }
    let q = qlog.exp();

    let k1a = -zsquared;
    let k1b = PI_SQUARED / 4.0;
    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * PI_SQUARED / 4.0;
    let k2c = PI_FOUR * (1.0 - 2.0 * zsquared) / 16.0;
    let k3d = PI_SIX * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = PI_FOUR * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = PI_SQUARED * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powf(8.0);

    // Horner scheme for sum c_i q^(i^2) over odd i.
    let mut kk = [0.0f64; 4];
    let maxk = (16.0 * z / std::f64::consts::PI).ceil() as i64;
    let mut k = maxk;
    while k > 0 {
        let mo = (2 * k - 1) as f64;
        let msquared = mo * mo; // exact: small integers
        let mfour = msquared * msquared;
        let msix = mfour * msquared;
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * msquared,
            k2a + k2b * msquared + k2c * mfour,
            k3a + k3b * msquared + k3c * mfour + k3d * msix,
        ];
        for c in 0..4 {
            kk[c] *= qpower;
            kk[c] += coeffs[c];
        }
        k -= 1;
    }
    let denom = [z, 6.0 * zfour, 72.0 * z.powf(7.0), 6480.0 * z.powf(10.0)];
    for c in 0..4 {
        kk[c] *= q;
        kk[c] *= SQRT2PI;
        kk[c] /= denom[c];
    }

    // The other sums, over all integers k (no cancellation expected).
    let q2 = (-PI_SQUARED / 2.0 / zsquared).exp();
    let sqrt3z = SQRT3 * z;
    let nk = max(maxk, 0) as usize;
    // maxk <= ceil(16*sqrt(n)*x/pi) is small in every branch that gets here;
    // keep a stack buffer and fall back to the heap only if needed.
    let mut buf2 = [0.0f64; 64];
    let mut buf3 = [0.0f64; 64];
    let mut heap2;
    let mut heap3;
    let (t2, t3): (&mut [f64], &mut [f64]) = if nk <= 64 {
        (&mut buf2[..nk], &mut buf3[..nk])
    } else {
        heap2 = vec![0.0f64; nk];
        heap3 = vec![0.0f64; nk];
        (&mut heap2[..], &mut heap3[..])
    };
    for idx in 0..nk {
        let kv = (maxk - idx as i64) as f64; // ks = arange(maxk, 0, -1)
        let ksq = kv * kv;
        let qp = q2.powf(ksq);
        let kspi = std::f64::consts::PI * kv;
        t2[idx] = ksq * qp;
        t3[idx] = (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
    }
    let mut k2extra = np_pairwise_sum(t2);
    k2extra *= PI_SQUARED * SQRT2PI / (-36.0 * zthree);
    kk[2] += k2extra;
    let mut k3extra = np_pairwise_sum(t3);
    k3extra *= PI_SQUARED * SQRT2PI / (216.0 * zsix);
    kk[3] += k3extra;
    for (c, e) in kk.iter_mut().enumerate() {
        *e /= nf.powf(c as f64 / 2.0);
    }
    // Python's builtin sum: 0 + K0 + K1 + K2 + K3.
    0.0 + kk[0] + kk[1] + kk[2] + kk[3]
}

// ---------------------------------------------------------------------------
// Bit-level helpers (C's frexp / ldexp semantics)
// ---------------------------------------------------------------------------

/// C `frexp`: x = m * 2^e with 0.5 <= |m| < 1 (m = x, e = 0 for 0/inf/NaN).
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let ee = ((bits >> 52) & 0x7ff) as i32;
    if ee == 0 {
        if x == 0.0 {
            return (x, 0);
        }
        let (m, e) = frexp(x * f64::from_bits(0x43f0_0000_0000_0000)); // 2^64
        return (m, e - 64);
    }
    if ee == 0x7ff {
        return (x, 0);
    }
    let m = f64::from_bits((bits & 0x800f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000);
    (m, ee - 0x3fe)
}

/// C `ldexp`/`scalbn` with a single final rounding (musl's algorithm).
fn ldexp(x: f64, e: i64) -> f64 {
    let mut n = e.clamp(-4000, 4000) as i32;
    let mut y = x;
    let p1023 = f64::from_bits(0x7fe0_0000_0000_0000);
    let pm1022_53 = f64::from_bits(0x0010_0000_0000_0000) * f64::from_bits(0x4340_0000_0000_0000);
    if n > 1023 {
        y *= p1023;
        n -= 1023;
        if n > 1023 {
            y *= p1023;
            n -= 1023;
            if n > 1023 {
                n = 1023;
            }
        }
    } else if n < -1022 {
        y *= pm1022_53;
        n += 1022 - 53;
        if n < -1022 {
            y *= pm1022_53;
            n += 1022 - 53;
            if n < -1022 {
                n = -1022;
            }
        }
    }
    y * f64::from_bits(((0x3ff + n) as u64) << 52)
}

// ---------------------------------------------------------------------------
// Double-double arithmetic (xsf include/xsf/cephes/dd_real.h, from QD 2.3.18)
// ---------------------------------------------------------------------------

/// An unevaluated sum hi + lo with |lo| <= ulp(hi)/2.
#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    const fn new(hi: f64, lo: f64) -> Self {
        Dd { hi, lo }
    }
    const fn from(x: f64) -> Self {
        Dd { hi: x, lo: 0.0 }
    }
    /// `dd == double`
    fn eq_f(self, x: f64) -> bool {
        self.hi == x && self.lo == 0.0
    }
    fn is_finite(self) -> bool {
        self.hi.is_finite()
    }
}

/// fl(a+b) and its error, assuming |a| >= |b|.
#[inline]
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    (s, b - c)
}

/// fl(a+b) and its error (Knuth).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    let d = b - c;
    let e = s - c;
    (s, (a - e) + d)
}

/// fl(a*b) and its error, via a fused multiply-add like `std::fma`.
#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Neg for Dd {
    type Output = Dd;
    fn neg(self) -> Dd {
        Dd::new(-self.hi, -self.lo)
    }
}

impl Add for Dd {
    type Output = Dd;
    fn add(self, r: Dd) -> Dd {
        let (s1, mut s2) = two_sum(self.hi, r.hi);
        let (t1, t2) = two_sum(self.lo, r.lo);
        s2 += t1;
        let (s1, mut s2) = quick_two_sum(s1, s2);
        s2 += t2;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd::new(s1, s2)
    }
}

impl Add<f64> for Dd {
    type Output = Dd;
    fn add(self, r: f64) -> Dd {
        let (s1, mut s2) = two_sum(self.hi, r);
        s2 += self.lo;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd::new(s1, s2)
    }
}

impl Sub for Dd {
    type Output = Dd;
    fn sub(self, r: Dd) -> Dd {
        self + (-r)
    }
}

impl Sub<f64> for Dd {
    type Output = Dd;
    fn sub(self, r: f64) -> Dd {
        let (s1, mut s2) = two_sum(self.hi, -r);
        s2 += self.lo;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd::new(s1, s2)
    }
}

impl Mul for Dd {
    type Output = Dd;
    fn mul(self, r: Dd) -> Dd {
        let (p1, mut p2) = two_prod(self.hi, r.hi);
        p2 += self.hi * r.lo + self.lo * r.hi;
        let (p1, p2) = quick_two_sum(p1, p2);
        Dd::new(p1, p2)
    }
}

impl Mul<f64> for Dd {
    type Output = Dd;
    fn mul(self, r: f64) -> Dd {
        let (p1, e1) = two_prod(self.hi, r);
        let (p2, e2) = two_prod(self.lo, r);
        let (p1, e1) = quick_two_sum(p1, e2 + p2 + e1);
        Dd::new(p1, e1)
    }
}

impl Mul<Dd> for f64 {
    type Output = Dd;
    fn mul(self, r: Dd) -> Dd {
        let (p1, e1) = two_prod(self, r.hi);
        let (p2, e2) = two_prod(self, r.lo);
        let (p1, e1) = quick_two_sum(p1, e2 + p2 + e1);
        Dd::new(p1, e1)
    }
}

impl Div for Dd {
    type Output = Dd;
    fn div(self, r: Dd) -> Dd {
        let q1 = self.hi / r.hi;
        let mut rem = self - r * q1;
        let q2 = rem.hi / r.hi;
        rem = rem - r * q2;
        let q3 = rem.hi / r.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Dd::new(q1, q2) + q3
    }
}

impl Div<f64> for Dd {
    type Output = Dd;
    fn div(self, r: f64) -> Dd {
        self / Dd::from(r)
    }
}

impl Div<Dd> for f64 {
    type Output = Dd;
    fn div(self, r: Dd) -> Dd {
        Dd::from(self) / r
    }
}

fn dd_floor(a: Dd) -> Dd {
    let mut hi = a.hi.floor();
    let mut lo = 0.0;
    if hi == a.hi {
        lo = a.lo.floor();
        let (h2, l2) = quick_two_sum(hi, lo);
        hi = h2;
        lo = l2;
    }
    Dd::new(hi, lo)
}

fn dd_ldexp(a: Dd, e: i64) -> Dd {
    Dd::new(ldexp(a.hi, e), ldexp(a.lo, e))
}

/// dd `frexp`: 0.5 <= |hi| < 1, or |hi| == 1 with hi*lo < 0.
fn dd_frexp(a: Dd) -> (Dd, i64) {
    let (mut man, exponent) = frexp(a.hi);
    let mut exponent = exponent as i64;
    let mut b1 = ldexp(a.lo, -exponent);
    if man.abs() == 0.5 && man * b1 < 0.0 {
        man *= 2.0;
        b1 *= 2.0;
        exponent -= 1;
    }
    (Dd::new(man, b1), exponent)
}

// ---------------------------------------------------------------------------
// smirnov (xsf include/xsf/cephes/kolmogorov.h)
// ---------------------------------------------------------------------------

/// `SMIRNOV_MAX_COMPUTE_N`: beyond this n, an approximation is used.
const SMIRNOV_MAX_COMPUTE_N: i64 = 1_000_000;
const SM_UPPER_MAX_TERMS: i64 = 3;
const SM_UPPERSUM_MIN_N: i64 = 10;
/// `SM_MAX_EXPONENT`: keep both words of a double-double normalised.
const SM_MAX_EXPONENT: i64 = 960;
/// cephes MINLOG = log(2**-1075).
const MINLOG: f64 = -745.1332191019412;

/// cephes `polevl`: Horner evaluation with coefficients highest power first.
fn polevl(x: f64, coef: &[f64]) -> f64 {
    let mut ans = coef[0];
    for &c in &coef[1..] {
        ans = ans * x + c;
    }
    ans
}

/// cephes `expm1` (unity.h): rational approximation on [-0.5, 0.5].
fn cephes_expm1(x: f64) -> f64 {
    const EP: [f64; 3] = [1.2617719307481058e-4, 3.0299440770744195e-2, 1.0];
    const EQ: [f64; 4] = [
        3.0019850513866446e-6,
        2.524483403496841e-3,
        2.2726554820815503e-1,
        2.0,
    ];
    if !x.is_finite() {
        if x.is_nan() || x > 0.0 {
            return x;
        }
        return -1.0;
    }
    if !(-0.5..=0.5).contains(&x) {
        return x.exp() - 1.0;
    }
    let xx = x * x;
    let mut r = x * polevl(xx, &EP);
    r = r / (polevl(xx, &EQ) - r);
    r + r
}

/// `modNX`: floor(n*x) and its fractional part computed exactly in
/// double-double. Returns (alpha, floor(n*x), n*x).
fn mod_nx(n: i64, x: f64) -> (f64, i64, f64) {
    let nx_d = (n as f64) * Dd::from(x);
    let nxfloor_d = dd_floor(nx_d);
    let alpha_d = nx_d - nxfloor_d;
    let mut alpha = alpha_d.hi;
    let mut nxfloor = nxfloor_d.hi as i64;
    if alpha == 1.0 {
        nxfloor += 1;
        alpha = 0.0;
    }
    (alpha, nxfloor, nx_d.hi)
}

/// `updateBinomial`: C(n, j+1) from C(n, j) as (dd mantissa, exponent).
fn update_binomial(cman: &mut Dd, cexpt: &mut i64, n: i64, j: i64) {
    let rat = Dd::from((n - j) as f64) / (j as f64 + 1.0);
    let man2 = *cman * rat;
    let (man2, expt) = dd_frexp(man2);
    *cexpt += expt;
    *cman = man2;
}

/// `pow_D`: a^m with a double-double base, trading accuracy for speed by
/// using `pow` on the high word and a first-order correction for the low word.
fn pow_d(a: Dd, m: i64) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::from(1.0);
        }
        return 1.0 / pow_d(a, -m);
    }
    if a.eq_f(0.0) {
        return Dd::from(0.0);
    }
    let mf = m as f64;
    let ans = a.hi.powf(mf);
    let r = a.lo / a.hi;
    let mut adj = mf * r;
    if adj.abs() > 1e-8 {
        if adj.abs() < 1e-4 {
            // First two terms of the Taylor series of (1+r)^m.
            adj += (mf * r) * ((m - 1) as f64 / 2.0 * r);
        } else {
            adj = cephes_expm1(mf * r.ln_1p());
        }
    }
    Dd::from(ans) + ans * adj
}

/// `pow2(a, b, m)` = (a + b)^m rounded to double.
fn pow2(a: f64, b: f64, m: i64) -> f64 {
    pow_d(Dd::from(a) + b, m).hi
}

/// `nextPowerOf2` exactly as written in xsf (used to split large exponents).
fn next_power_of_2(x: f64) -> f64 {
    let q = ldexp(x, 1 - 53);
    let mut l = (q + x).abs();
    if l == 0.0 {
        l = x.abs();
    } else {
        let lint = l as i32;
        if lint as f64 == l {
            l = lint as f64;
        }
    }
    l
}

/// `pow2Scaled_D`: a^m = significand * 2^exponent without over/underflow.
fn pow2_scaled_d(a: Dd, m: i64) -> (Dd, i64) {
    if m <= 0 {
        if m == 0 {
            return (Dd::from(1.0), 0);
        }
        let (ans, ae1) = pow2_scaled_d(a, -m);
        let (ans, ae2) = dd_frexp(1.0 / ans);
        return (ans, -ae1 + ae2);
    }
    let (y, ye) = dd_frexp(a);
    if m == 1 {
        return (y, ye);
    }
    let mut max_expt = SM_MAX_EXPONENT;
    // Quick check whether y^m might drop below 2^-960.
    if (m as f64) * (y.hi - 1.0) / y.hi < (-SM_MAX_EXPONENT) as f64 * std::f64::consts::LN_2 {
        let lg2y = y.hi.ln() / std::f64::consts::LN_2;
        let lg_ans = m as f64 * lg2y;
        if lg_ans <= -(SM_MAX_EXPONENT as f64) {
            max_expt =
                (next_power_of_2(-(SM_MAX_EXPONENT as f64) / lg2y + 1.0) / 2.0) as i32 as i64;
        }
    }
    if m <= max_expt || max_expt <= 0 {
        let ans1 = pow_d(y, m);
        let (ans, mut ans_e) = dd_frexp(ans1);
        ans_e += m * ye;
        return (ans, ans_e);
    }
    let q = m / max_expt;
    let r = m % max_expt;
    // y^m = (y^maxExpt)^q * y^r
    let (y2r, y2r_e) = pow2_scaled_d(y, r);
    let (y2m, y2m_e) = pow2_scaled_d(y, max_expt);
    let (y2mq, mut y2mq_e) = pow2_scaled_d(y2m, q);
    let (ans, mut ans_e) = dd_frexp(y2r * y2mq);
    y2mq_e += y2m_e * q;
    ans_e += y2mq_e + y2r_e;
    ans_e += m * ye;
    (ans, ans_e)
}

/// `pow4_D`: ((a+b)/(c+d))^m in double-double.
fn pow4_d(a: f64, b: f64, c: f64, d: f64, m: i64) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::from(1.0);
        }
        return pow4_d(c, d, a, b, -m);
    }
    let aa = Dd::from(a) + b;
    let cc = Dd::from(c) + d;
    if aa.eq_f(0.0) {
        return if cc.eq_f(0.0) {
            Dd::new(f64::NAN, f64::NAN)
        } else {
            Dd::from(0.0)
        };
    }
    if cc.eq_f(0.0) {
        let neg = aa.hi < 0.0 || (aa.hi == 0.0 && aa.lo < 0.0);
        return if neg {
            Dd::new(f64::NEG_INFINITY, f64::NEG_INFINITY)
        } else {
            Dd::new(f64::INFINITY, f64::INFINITY)
        };
    }
    pow_d(aa / cc, m)
}

/// `computeAv`: A_v(n, x) = C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1).
fn compute_av(n: i64, x: f64, v: i64, cman: Dd, cexpt: i64) -> Dd {
    let nf = n as f64;
    let t2x = Dd::from((n - v) as f64) / nf - x;
    let (t2, t2e) = pow2_scaled_d(t2x, n - v);
    let t1x = Dd::from(v as f64) / nf + x;
    let (t1, t1e) = pow2_scaled_d(t1x, v - 1);
    let ans = t1 * t2;
    let ans = ans * cman;
    let ans_e = cexpt + t1e + t2e;
    dd_ldexp(ans, ans_e)
}

/// Survival function of the one-sided statistic D_n^+ (`xsf::cephes::smirnov`,
/// i.e. `_smirnov(n, x).sf`), via the Birnbaum–Tingey/Smirnov sum in
/// double-double. The derivative (pdf) bookkeeping of the C++ code is omitted:
/// it never feeds back into the survival function.
fn smirnov_sf(n: i64, x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }

    let (alpha, nxfl, _nx) = mod_nx(n, x);
    let mut n1mxfl = n - nxfl - if alpha == 0.0 { 0 } else { 1 };
    let mut n1mxceil = n - nxfl;
    // If alpha is 0, the last term is excluded from either summation.
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }

    // Special case x <= 1/n: sf = 1 - x (1+x)^(n-1).
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = pow2(1.0, x, n - 1);
        let cdf = x * t;
        return 1.0 - cdf;
    }
    // x so large that the sf underflows.
    // C evaluates `-2 * n` in int; in f64 it is the same exact value for any
    // n < 2^53 and cannot overflow.
    if -2.0 * n as f64 * x * x < MINLOG {
        return 0.0;
    }
    // x >= 1 - 1/n: sf = (1-x)^n.
    if nxfl >= n - 1 {
        return pow2(1.0, -x, n);
    }
    // Very large n: p ~ exp(-(6nx+1)^2 / 18n).
    if n > SMIRNOV_MAX_COMPUTE_N {
        let nf = n as f64;
        let logp = -(6.0 * nf * x + 1.0).powf(2.0) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            let cdf = -cephes_expm1(logp);
            1.0 - cdf
        };
    }

    // Use the upper sum (few, alternating terms) only when it is short and
    // x is small; otherwise the lower sum.
    let n_upper_terms = n - n1mxceil + 1;
    let use_upper = (n_upper_terms <= 1 && x < 0.5)
        || (n >= SM_UPPERSUM_MIN_N
            && n_upper_terms <= SM_UPPER_MAX_TERMS
            && x <= 0.5 / (n as f64).sqrt());

    let (start, step, n_terms) = if use_upper {
        (n, -1i64, n - n1mxceil + 1)
    } else {
        (0, 1i64, n1mxfl + 1)
    };
    let vmid = n / 2;
    let mut cman = Dd::from(1.0);
    let mut cexpt: i64 = 0;
    let mut aj_sum = Dd::from(0.0);

    let aj = if use_upper {
        pow4_d(1.0, x, 1.0, 0.0, n - 1)
    } else {
        pow4_d(1.0, -x, 1.0, 0.0, n) / x
    };
    aj_sum = aj_sum + aj;
    update_binomial(&mut cman, &mut cexpt, n, 0);

    let mut j: i64 = 1;
    while j < n_terms {
        let v = start + j * step;
        let aj = compute_av(n, x, v, cman, cexpt);
        let aj_nonzero = !aj.eq_f(0.0);
        if aj.is_finite() && aj_nonzero {
            aj_sum = aj_sum + aj;
        }
        // Safe to terminate early?
        if aj_nonzero {
            if (4 * (n_terms - j)) as f64 * aj.hi.abs() < f64::EPSILON * aj_sum.hi
                && j != n_terms - 1
            {
                break;
            }
        } else if j > vmid {
            break;
        }
        update_binomial(&mut cman, &mut cexpt, n, j);
        j += 1;
    }
    let prob = (x * aj_sum).hi;
    let sf = if step < 0 { 1.0 - prob } else { prob };
    // std::clamp(sf, 0, 1)
    sf.clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `scipy.special.kolmogorov(x)`: survival function of the limiting Kolmogorov distribution,
/// `P(K ≥ x)`.
///
/// Used for the p-value of *sketch* KS statistics on windows (see `sketch.rs`): the statistic
/// there is an estimate with a known error bound, so the exact finite-sample distribution
/// (milliseconds for unequal samples of thousands) buys no accuracy, while this costs a few
/// exponentials. Two classical series: for small `x` the Jacobi-theta form
/// `√(2π)/x · Σ exp(−(2k−1)²π²/(8x²))` (its complement converges fast there), for larger `x`
/// the alternating form `2 Σ (−1)^{k−1} exp(−2k²x²)`, which keeps full relative precision in
/// the tail.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        let factor = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=20u32 {
            let odd = f64::from(2 * k - 1);
            let term = (factor * odd * odd).exp();
            sum += term;
            if term < 1e-17 * sum {
                break;
            }
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / x * sum;
        (1.0 - cdf).clamp(0.0, 1.0)
    } else {
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * x * x).exp();
            sum += sign * term;
            if term < 1e-17 * sum.abs() {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// Asymptotic two-sided p-value of a two-sample KS statistic `d` with sizes `n1`, `n2`:
/// `kolmogorov(√(n1·n2/(n1+n2)) · d)`.
pub fn ks_2samp_pvalue_asymptotic(n1: u64, n2: u64, d: f64) -> f64 {
    let (n1, n2) = (n1.max(1) as f64, n2.max(1) as f64);
    kolmogorov_sf((n1 * n2 / (n1 + n2)).sqrt() * d)
}

#[cfg(test)]
mod tests {
    /// Values of `scipy.special.kolmogorov` (SciPy 1.17.1).
    #[test]
    fn kolmogorov_matches_scipy() {
        let cases = [
            (0.05, 1.0),
            (0.2, 0.999999999999495),
            (0.5, 0.9639452436648751),
            (0.8, 0.5441424115741981),
            (0.99, 0.2808738392255489),
            (1.0, 0.26999967167735456),
            (1.01, 0.25943416909359746),
            (1.2, 0.11224966667072497),
            (1.5, 0.022217962616525127),
            (2.0, 0.0006709252557796953),
            (3.0, 3.045995948942526e-08),
            (5.0, 3.8574996959278356e-22),
            (8.0, 5.14441874528483e-56),
        ];
        for (x, expected) in cases {
            let actual = kolmogorov_sf(x);
            let error = (actual - expected).abs() / expected;
            assert!(
                error < 1e-12,
                "kolmogorov({x}) = {actual}, SciPy {expected}"
            );
        }
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(f64::NAN).is_nan());
    }

    use super::*;

    /// SciPy reference vectors (generated by tests/vectors/gen_ks_pvalue.py).
    /// `include!` resolves relative to this file both under cargo and when the
    /// file is compiled standalone; a `#[path]` on a module nested in `tests`
    /// would resolve differently in the two settings.
    mod vectors {
        include!("ks_pvalue_vectors.rs");
    }

    /// Relative agreement <= 1e-9, or absolute <= 1e-300 for tiny values.
    fn close(got: f64, want: f64) -> bool {
        if got == want {
            return true;
        }
        if got.is_nan() || want.is_nan() {
            return false;
        }
        let diff = (got - want).abs();
        diff <= 1e-300 || diff <= 1e-9 * want.abs()
    }

    fn rel(got: f64, want: f64) -> f64 {
        if got == want {
            0.0
        } else if want == 0.0 {
            if got.abs() <= 1e-300 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (got - want).abs() / want.abs()
        }
    }

    #[test]
    fn ks2_vectors_match_scipy() {
        let mut failures = Vec::new();
        let mut max_rel = 0.0f64;
        let mut bitwise = 0usize;
        for &(n1, n2, d, p, stat, exact) in vectors::KS2_CASES {
            let r = ks_2samp_pvalue(n1, n2, d);
            let want_method = if exact {
                KsMethod::Exact
            } else {
                KsMethod::Asymptotic
            };
            if r.p_value.to_bits() == p.to_bits() {
                bitwise += 1;
            }
            max_rel = max_rel.max(rel(r.p_value, p));
            if !close(r.p_value, p)
                || r.method != want_method
                || r.statistic.to_bits() != stat.to_bits()
            {
                failures.push(format!(
                    "n1={n1} n2={n2} d={d:?}: got p={:?} {:?} stat={:?}, want p={p:?} {want_method:?} stat={stat:?}",
                    r.p_value, r.method, r.statistic
                ));
            }
        }
        println!(
            "KS2: {} cases, {} bitwise, max rel err {:e}",
            vectors::KS2_CASES.len(),
            bitwise,
            max_rel
        );
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures[..failures.len().min(40)].join("\n")
        );
    }

    #[test]
    fn kstwo_vectors_match_scipy() {
        let mut failures = Vec::new();
        let mut max_rel = 0.0f64;
        let mut bitwise = 0usize;
        for &(n, d, p) in vectors::KSTWO_CASES {
            let got = kstwo_sf(d, n);
            if got.to_bits() == p.to_bits() {
                bitwise += 1;
            }
            max_rel = max_rel.max(rel(got, p));
            if !close(got, p) {
                failures.push(format!(
                    "n={n} d={d:?}: got {got:?}, want {p:?} (rel {:e})",
                    rel(got, p)
                ));
            }
        }
        println!(
            "KSTWO: {} cases, {} bitwise, max rel err {:e}",
            vectors::KSTWO_CASES.len(),
            bitwise,
            max_rel
        );
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures[..failures.len().min(40)].join("\n")
        );
    }

    #[test]
    fn zero_statistic_gives_one() {
        for &(n1, n2) in &[
            (1, 1),
            (5, 7),
            (100, 100),
            (10_000, 9_999),
            (20_000, 30_000),
        ] {
            let r = ks_2samp_pvalue(n1, n2, 0.0);
            assert_eq!(r.p_value, 1.0, "n1={n1} n2={n2}");
            assert_eq!(r.statistic, 0.0);
        }
        assert_eq!(kstwo_sf(0.0, 10), 1.0);
        assert_eq!(kstwo_sf(-1.0, 10), 1.0);
    }

    #[test]
    fn unit_statistic() {
        // n1 = n2 = 1: D = 1 always, p = 1 (exact).
        let r = ks_2samp_pvalue(1, 1, 1.0);
        assert_eq!(
            (r.p_value, r.method, r.statistic),
            (1.0, KsMethod::Exact, 1.0)
        );
        // Complete separation of two samples: p = 2 / C(n1 + n2, n1).
        let r = ks_2samp_pvalue(5, 5, 1.0);
        assert!((r.p_value - 2.0 / 252.0).abs() < 1e-15, "{r:?}");
        let r = ks_2samp_pvalue(3, 4, 1.0);
        assert!((r.p_value - 2.0 / 35.0).abs() < 1e-15, "{r:?}");
        assert_eq!(kstwo_sf(1.0, 7), 0.0);
        // Asymptotic branch with d = 1: kstwo.sf(1, n) = 0.
        let r = ks_2samp_pvalue(20_000, 20_000, 1.0);
        assert_eq!((r.p_value, r.method), (0.0, KsMethod::Asymptotic));
    }

    #[test]
    fn single_observation() {
        // kstwo with n = 1: D_1 is uniform on [1/2, 1], sf = 2 (1 - d).
        for &d in &[0.5, 0.6, 0.75, 0.9, 0.999] {
            let want = if d <= 0.5 { 1.0 } else { 2.0 * (1.0 - d) };
            assert!((kstwo_sf(d, 1) - want).abs() < 1e-15, "d={d}");
        }
        // n1 = 1, n2 = 2: D in {1/2, 1}; Pr(D = 1) = 2/3.
        assert!((ks_2samp_pvalue(1, 2, 1.0).p_value - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(ks_2samp_pvalue(1, 2, 0.5).p_value, 1.0);
    }

    #[test]
    fn out_of_range_and_nan_inputs_do_not_panic() {
        let sizes = [
            (0, 0),
            (0, 5),
            (1, 1),
            (3, 10_000),
            (10_001, 1),
            (u64::MAX, u64::MAX),
            (u64::MAX, 1),
            (1 << 40, 1 << 41),
        ];
        let stats = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            -1.0,
            2.0,
            1e-300,
            1e-9,
            0.5,
        ];
        for &(n1, n2) in &sizes {
            for &d in &stats {
                let r = ks_2samp_pvalue(n1, n2, d);
                if d.is_nan() {
                    assert!(r.p_value.is_nan());
                } else {
                    assert!((0.0..=1.0).contains(&r.p_value), "{n1} {n2} {d} {r:?}");
                    assert!((0.0..=1.0).contains(&r.statistic));
                }
            }
        }
        assert!(kstwo_sf(0.3, 0).is_nan());
        assert!(kstwo_sf(f64::NAN, 3).is_nan());
        assert_eq!(kstwo_sf(f64::INFINITY, 3), 0.0);
        for &n in &[u64::MAX, 1 << 53, 1 << 40, (1 << 31) + 10, 1_000_001] {
            for &d in &[1e-12, 1e-9, 1e-7, 1e-3, 0.3, 0.6] {
                let p = kstwo_sf(d, n);
                assert!((0.0..=1.0).contains(&p), "n={n} d={d} p={p}");
            }
        }
    }

    #[test]
    fn equal_sizes_d_one_over_n_falls_back_like_scipy() {
        // For n = 5, 2*P rounds to 1.0000000000000002, so SciPy's exact path
        // fails and it switches to kstwo.sf(1/5, round(2.5) = 2).
        let r = ks_2samp_pvalue(5, 5, 0.2);
        assert_eq!(r.method, KsMethod::Asymptotic);
        assert_eq!(r.statistic, 0.2);
        assert_eq!(r.p_value, kstwo_sf(0.2, 2));
        let r = ks_2samp_pvalue(4, 4, 0.25);
        assert_eq!((r.method, r.p_value), (KsMethod::Exact, 1.0));
    }
}
