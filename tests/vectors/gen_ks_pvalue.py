#!/usr/bin/env python
"""Generate SciPy reference vectors for src/detect/ks_pvalue.rs.

Run with the project's pinned SciPy (1.17.1):

    target/pyenv/bin/python tests/vectors/gen_ks_pvalue.py

Writes src/detect/ks_pvalue_vectors.rs with

    KS2_CASES:   (n1, n2, d, expected_p, expected_statistic, exact?)
    KSTWO_CASES: (n, d, expected_sf)

Deterministic: fixed grids plus numpy Generators with fixed seeds.

KS2 expectations come from SciPy's own pieces in the order ks_2samp uses
them (``_attempt_exact_2kssamp`` then ``kstwo.sf(d, np.round(en))``). That
mirror is cross-checked against the full ``scipy.stats.ks_2samp`` on
generated samples, whose raw (pre-rounding) statistic is captured by
wrapping ``_attempt_exact_2kssamp``; those sample cases are emitted too.
"""

import math
import os
import sys
import warnings

import numpy as np
import scipy
import scipy.stats
import scipy.stats._stats_py as sp
from scipy.stats import kstwo

assert scipy.__version__ == "1.17.1", scipy.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "src", "detect", "ks_pvalue_vectors.rs"))

warnings.simplefilter("ignore")

SIZES = [1, 2, 3, 5, 7, 10, 37, 53, 60, 90, 100, 500, 1000, 3000, 9999,
         10000, 10001, 20000, 100000]
MAX_AUTO_N = 10000


def lit(x):
    """A float literal that round-trips and is valid Rust."""
    x = float(x)
    assert math.isfinite(x), x
    r = repr(x)
    assert float(r) == x
    return r


# ---------------------------------------------------------------------------
# ks_2samp (two-sided, method="auto") given n1, n2 and the raw statistic d
# ---------------------------------------------------------------------------

_orig_attempt = sp._attempt_exact_2kssamp
_record = []


def _recording_attempt(n1, n2, g, d, alternative):
    out = _orig_attempt(n1, n2, g, d, alternative)
    _record.append((n1, n2, float(d), bool(out[0])))
    return out


sp._attempt_exact_2kssamp = _recording_attempt


def scipy_2samp(n1, n2, d):
    """The tail of scipy.stats.ks_2samp after D is known (two-sided, auto)."""
    g = math.gcd(n1, n2)
    exact = False
    if max(n1, n2) <= MAX_AUTO_N:
        success, d, prob = _orig_attempt(n1, n2, g, np.float64(d), "two-sided")
        exact = bool(success)
    if not exact:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = kstwo.sf(d, np.round(en))
    prob = np.clip(prob, 0, 1)
    return float(prob), float(d), exact


def d_grid(n1, n2, rng):
    """Statistics worth testing for one (n1, n2) pair."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    m, n = max(n1, n2), min(n1, n2)
    en = m * n / (m + n)
    ds = {0.0, 1.0, 1e-300, 1e-12, 0.5 / lcm, 1.0 / lcm, 1.5 / lcm, 2.0 / lcm,
          2.5 / lcm, 1.0 - 1e-12, (lcm - 1) / lcm, 1.0 / max(n1, n2),
          1.0 / min(n1, n2), 0.1, 0.25, 0.5, 0.75, 0.9, 0.99}
    # The interesting range scales like 1/sqrt(en).
    for c in (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.36, 1.5, 1.63, 2.0, 2.5, 3.0,
              4.0, 5.0, 6.0, 8.0, 12.0):
        x = c / math.sqrt(en)
        if x < 1:
            ds.add(x)
            # the nearest attainable lattice value h/lcm as a raw input
            ds.add(round(x * lcm) / lcm)
    # a few random, generally non-lattice values
    for x in rng.uniform(0, min(1.0, 6 / math.sqrt(en)), size=3):
        ds.add(float(x))
    # D computed from ECDFs is i/n1 - j/n2, not h/lcm: mimic that rounding
    for _ in range(3):
        i = int(rng.integers(0, n1 + 1))
        j = int(rng.integers(0, n2 + 1))
        v = i / n1 - j / n2
        if v > 0:
            ds.add(v)
    # Only the statistic's domain: for d > 1 SciPy's exact path returns
    # nonsense (e.g. statistic 2.0); the Rust port clamps d to [0, 1] instead.
    return sorted(x for x in ds if 0.0 <= x <= 1.0)


def exact_cost(n1, n2, d):
    """Rough cost of SciPy's exact path (to keep generation time sane)."""
    if max(n1, n2) > MAX_AUTO_N or n1 == n2:
        return 0
    return max(n1, n2) * min(min(n1, n2) + 1, 2 * d * min(n1, n2) + 2)


def ks2_grid():
    rng = np.random.default_rng(20240517)
    cases = []
    pairs = []
    for a in SIZES:
        for b in SIZES:
            if a <= b:
                pairs.append((a, b))
    # a few reversed orders and extra common-factor / coprime combinations
    pairs += [(10, 7), (100, 60), (9999, 37), (10000, 3000), (53, 37),
              (60, 90), (90, 60), (64, 48), (1000, 999), (7, 10000),
              (2, 9999), (4999, 10000), (5000, 10000), (6, 4), (12, 18),
              (10000, 1), (10001, 1), (11, 13), (128, 96), (250, 750)]
    for (n1, n2) in pairs:
        for d in d_grid(n1, n2, rng):
            if exact_cost(n1, n2, d) > 6e7 and d < 0.99:
                continue
            p, stat, exact = scipy_2samp(n1, n2, d)
            cases.append((n1, n2, d, p, stat, exact))
    # n1 == n2 with d = 1/n: 2*P can round above 1 -> asymptotic fallback
    for n in list(range(1, 80)) + [97, 128, 255, 1000, 4097, 9999, 10000]:
        for d in (1.0 / n, 2.0 / n, 3.0 / n):
            if d <= 1:
                p, stat, exact = scipy_2samp(n, n, d)
                cases.append((n, n, d, p, stat, exact))
    # dense small grid: every lattice value for small coprime/non-coprime pairs
    for (n1, n2) in [(3, 5), (4, 6), (5, 7), (8, 12), (9, 6), (13, 4)]:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        for h in range(0, lcm + 1):
            p, stat, exact = scipy_2samp(n1, n2, h / lcm)
            cases.append((n1, n2, h / lcm, p, stat, exact))
    return cases


def ks2_samples():
    """Full scipy.stats.ks_2samp on generated data (cross-checks the mirror)."""
    rng = np.random.default_rng(7)
    cases = []
    pairs = [(1, 1), (1, 2), (2, 3), (5, 5), (5, 7), (10, 10), (10, 37),
             (37, 53), (53, 53), (60, 90), (100, 100), (100, 500),
             (500, 1000), (1000, 1000), (1000, 3000), (3000, 9999),
             (9999, 10000), (10000, 10000), (10000, 10001), (10001, 20000),
             (20000, 20000), (3, 100000), (1000, 100000), (100000, 100000)]
    for (n1, n2) in pairs:
        for kind in ("same", "shift", "ties", "scale"):
            x = rng.standard_normal(n1)
            y = rng.standard_normal(n2)
            if kind == "shift":
                y = y + 3.0 / math.sqrt(min(n1, n2) + 1)
            elif kind == "ties":
                x = np.round(x * 2)
                y = np.round(y * 2 + 0.3)
            elif kind == "scale":
                y = y * 1.2
            _record.clear()
            res = scipy.stats.ks_2samp(x, y, alternative="two-sided", method="auto")
            if _record:
                (_, _, d_raw, success) = _record[-1]
            else:
                d_raw, success = float(res.statistic), False
            p, stat, exact = scipy_2samp(n1, n2, d_raw)
            # The mirror must agree bit-for-bit with the real thing.
            assert p == float(res.pvalue), (n1, n2, kind, p, res.pvalue)
            assert stat == float(res.statistic), (n1, n2, kind, stat, res.statistic)
            assert exact == success
            cases.append((n1, n2, d_raw, float(res.pvalue), float(res.statistic), exact))
    return cases


# ---------------------------------------------------------------------------
# kstwo.sf
# ---------------------------------------------------------------------------

def kstwo_ds(n, rng):
    ds = {0.0, -0.5, 1.0, 1.5, 0.5 / n, 0.5 / n * (1 + 1e-12), 0.6 / n,
          0.75 / n, 0.99 / n, 1.0 / n, 1.01 / n, 0.5, 0.5000000001, 0.6, 0.8,
          0.95, 1 - 1e-9}
    if n > 1:
        ds |= {(n - 1) / n, (n - 1.5) / n, (n - 0.5) / n}
    # nxsquared = n x^2 targets: DMTW (<= 0.754693), Pomeranz (<= 4),
    # Miller/smirnov, Pelz-Good (< 2.2 for n > 140), smirnov (>= 2.2),
    # zero (>= 370).
    for c in (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.754, 0.755, 0.8, 1.0,
              1.5, 2.0, 2.19, 2.2, 2.21, 3.0, 3.99, 4.0, 4.01, 5.0, 10.0,
              20.0, 50.0, 100.0, 200.0, 300.0, 369.0, 370.0, 400.0):
        x = math.sqrt(c / n)
        if 0 < x < 1:
            ds.add(x)
    # DMTW vs Pelz-Good boundary n x^1.5 = 1.4 (relevant for n > 140)
    for c in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
        x = (c * 1.4 / n) ** (2.0 / 3.0)
        if 0 < x < 1:
            ds.add(x)
    for x in rng.uniform(0, 1, size=2):
        ds.add(float(x))
    for x in rng.uniform(0, min(1.0, 4 / math.sqrt(n)), size=3):
        ds.add(float(x))
    return sorted(ds)


def kstwo_grid():
    rng = np.random.default_rng(99)
    cases = []
    ns = list(range(1, 201)) + [250, 500, 1000, 5000, 10000, 50000, 99999,
                                100000, 100001, 1000000, 1000001, 2000000]
    for n in ns:
        for d in kstwo_ds(n, rng):
            sf = float(kstwo.sf(d, n))
            if not math.isfinite(sf):
                continue
            cases.append((n, d, sf))
    return cases


# ---------------------------------------------------------------------------
# Keeping the Rust test fast
# ---------------------------------------------------------------------------
# A few algorithms are linear (smirnov's sum, up to n = 10^6 terms) or
# O(m * window) (the exact inside method) and cost up to ~1 s per case even in
# optimised Rust (SciPy itself is slower). Cases whose rough cost exceeds
# HEAVY_NS are thinned deterministically: per (n1, n2) pair, or per n for
# kstwo, only the heavy cases with the smallest and the largest d are kept.

HEAVY_NS = 2e6


def smirnov_cost(n, x):
    """Rough ns for xsf smirnov(n, x) in the Rust port."""
    if n <= 1 or not (0 < x < 1) or n * x <= 1 or -2.0 * n * x * x < -745.13:
        return 0.0
    if n > 1000000 or math.floor(n * x) >= n - 1:
        return 0.0
    return 800.0 * n


def kstwo_cost(n, x):
    """Rough ns for kstwo.sf(x, n), following _kolmogn's branches."""
    if n < 1 or x <= 0.5 / n or x >= 1:
        return 0.0
    t = n * x
    if t <= 1:
        return float(n) if n <= 140 else 0.0
    if t >= n - 1:
        return 0.0
    if x >= 0.5:
        return smirnov_cost(n, x)
    nx2 = t * x
    if n <= 140:
        return smirnov_cost(n, x) if nx2 > 4 else 2e4
    if nx2 >= 370:
        return 0.0
    if nx2 >= 2.2:
        return smirnov_cost(n, x)
    if n <= 100000 and n * x ** 1.5 <= 1.4:
        k = math.ceil(t)
        return 5.0 * n + 2.0 * (2 * k - 1) ** 3 * math.log2(n)
    return 0.0


def ks2_cost(n1, n2, d, stat, exact):
    m, n = max(n1, n2), min(n1, n2)
    cost = 0.0
    if m <= MAX_AUTO_N:
        if n1 == n2:
            cost += 20.0 * m
        else:
            cost += 1.2 * m * min(n + 1, 2 * d * n + 2)
    if not exact:
        cost += kstwo_cost(stat, round(m * n / (m + n)))
    return cost


def thin_heavy(cases, key, cost):
    heavy = {}
    for i, c in enumerate(cases):
        if cost(c) > HEAVY_NS:
            heavy.setdefault(key(c), []).append(i)
    drop = set()
    for idx in heavy.values():
        drop.update(idx[1:-1])  # keep the first and the last (grids are sorted by d)
    return [c for i, c in enumerate(cases) if i not in drop], len(drop)


def main():
    ks2 = ks2_grid()
    ks2_from_samples = ks2_samples()
    # de-duplicate, keep order
    seen = set()
    ks2_u = []
    for c in ks2:
        key = (c[0], c[1], c[2])
        if key not in seen and math.isfinite(c[3]):
            seen.add(key)
            ks2_u.append(c)
    ks2_u, dropped_ks2 = thin_heavy(
        ks2_u, key=lambda c: (c[0], c[1]), cost=lambda c: ks2_cost(c[0], c[1], c[2], c[4], c[5]))
    # Sample-based cases cross-check the whole of ks_2samp: keep them all.
    for c in ks2_from_samples:
        if (c[0], c[1], c[2]) not in seen:
            seen.add((c[0], c[1], c[2]))
            ks2_u.append(c)
    kst, dropped_kst = thin_heavy(
        kstwo_grid(), key=lambda c: c[0], cost=lambda c: kstwo_cost(c[0], c[1]))

    lines = [
        "// @generated by tests/vectors/gen_ks_pvalue.py with SciPy %s, NumPy %s."
        % (scipy.__version__, np.__version__),
        "// Do not edit by hand; re-run the generator instead.",
        "",
        "// Data, not math: values such as 1/sqrt(2) occur naturally in the grids.",
        "",
        "/// (n1, n2, d, expected_p, expected_statistic, exact?) from scipy.stats.ks_2samp",
        "/// (alternative='two-sided', method='auto').",
        "#[allow(clippy::approx_constant)]",
        "pub(crate) const KS2_CASES: &[(u64, u64, f64, f64, f64, bool)] = &[",
    ]
    for (n1, n2, d, p, stat, exact) in ks2_u:
        lines.append("    (%d, %d, %s, %s, %s, %s)," % (
            n1, n2, lit(d), lit(p), lit(stat), "true" if exact else "false"))
    lines.append("];")
    lines.append("")
    lines.append("/// (n, d, expected_sf) from scipy.stats.kstwo.sf(d, n).")
    lines.append("#[allow(clippy::approx_constant)]")
    lines.append("pub(crate) const KSTWO_CASES: &[(u64, f64, f64)] = &[")
    for (n, d, sf) in kst:
        lines.append("    (%d, %s, %s)," % (n, lit(d), lit(sf)))
    lines.append("];")
    text = "\n".join(lines) + "\n"
    with open(OUT, "w") as f:
        f.write(text)
    n_exact = sum(1 for c in ks2_u if c[5])
    print("wrote %s: %d KS2 cases (%d exact, %d from samples, %d heavy dropped), "
          "%d KSTWO cases (%d heavy dropped), %d bytes"
          % (OUT, len(ks2_u), n_exact, len(ks2_from_samples), dropped_ks2, len(kst),
             dropped_kst, len(text)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
