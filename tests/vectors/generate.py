"""Generate reference test vectors for driftwatch from SciPy / NumPy / River.

Writes, next to this script (tests/vectors/):

    adwin.json        river.drift.ADWIN: detections and per-step width/estimation traces
    binning.json      quantile reference bins (np.quantile linear) + np.searchsorted(side="right")
    divergence.json   PSI (epsilon 1e-4, no renormalisation) and scipy Jensen-Shannon (base 2)
    ks.json           scipy.stats.ks_2samp (two-sided, method="auto")
    wasserstein.json  scipy.stats.wasserstein_distance
    chi2.json         scipy.stats.chi2_contingency on the 2xK table (Yates when dof == 1)

Every file is regenerated deterministically (fixed seeds, numpy.random.default_rng;
random.Random only for River's docstring example).  The script checks the versions
below and refuses to run with anything else, so the vectors always come from:

    Python 3.11, numpy 2.4.6, scipy 1.17.1, river 0.26.1

Recreate the venv and regenerate (from the repository root):

    python3 -m venv target/pyenv && target/pyenv/bin/pip install river==0.26.1 scipy==1.17.1 numpy==2.4.6
    target/pyenv/bin/python tests/vectors/generate.py
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings

import numpy as np
import river
import scipy
from river.drift import ADWIN
from scipy import stats
from scipy.spatial.distance import jensenshannon

EXPECTED_VERSIONS = {"numpy": "2.4.6", "scipy": "1.17.1", "river": "0.26.1"}
OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def check_versions() -> None:
    got = {"numpy": np.__version__, "scipy": scipy.__version__, "river": river.__version__}
    if got != EXPECTED_VERSIONS:
        raise SystemExit(f"version mismatch: expected {EXPECTED_VERSIONS}, got {got}")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def fl(xs) -> list[float]:
    out = [float(x) for x in np.asarray(xs, dtype=np.float64).ravel()]
    for x in out:
        if not math.isfinite(x):
            raise ValueError(f"non-finite value {x!r}")
    return out


def ints(xs) -> list[int]:
    return [int(x) for x in np.asarray(xs).ravel()]


def fnum(x) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x!r}")
    return x


def r6(x) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64), 6)


def write(name: str, obj) -> None:
    path = os.path.join(OUT_DIR, name)
    with open(path, "w") as f:
        # allow_nan=False: raise instead of ever emitting NaN / Infinity.
        json.dump(obj, f, separators=(",", ":"), allow_nan=False)
    # Round-trip check: floats must survive exactly.
    with open(path) as f:
        back = json.load(f)
    assert back == obj, f"{name}: JSON round trip changed the data"


# ---------------------------------------------------------------------------
# 1. ADWIN
# ---------------------------------------------------------------------------

ADWIN_DEFAULTS = {"delta": 0.002, "clock": 32, "max_buckets": 5, "min_window_length": 5, "grace_period": 10}
MAX_TRACE_POINTS = 3000


def run_adwin(name: str, stream, params: dict | None = None) -> dict:
    p = dict(ADWIN_DEFAULTS)
    p.update(params or {})
    stream = fl(stream)
    n = len(stream)
    trace_every = 1 if n <= MAX_TRACE_POINTS else math.ceil(n / MAX_TRACE_POINTS)
    adwin = ADWIN(**p)
    detections, width, estimation = [], [], []
    for i, x in enumerate(stream):
        adwin.update(x)
        if adwin.drift_detected:
            detections.append(i)
        if i % trace_every == 0:
            w = adwin.width  # River 0.26.1 returns this as a float
            assert float(w) == int(w)
            width.append(int(w))
            estimation.append(fnum(adwin.estimation))
    assert len(width) <= MAX_TRACE_POINTS
    return {
        "name": name,
        "params": {
            "delta": float(p["delta"]),
            "clock": int(p["clock"]),
            "max_buckets": int(p["max_buckets"]),
            "min_window_length": int(p["min_window_length"]),
            "grace_period": int(p["grace_period"]),
        },
        "stream": stream,
        "detections": detections,
        "trace_every": trace_every,
        "width": width,
        "estimation": estimation,
        "n_detections": len(detections),
    }


def piecewise_normal(rng, segments, sd=1.0) -> np.ndarray:
    """segments: list of (length, mean) or (length, mean, sd)."""
    parts = []
    for seg in segments:
        length, mean = seg[0], seg[1]
        s = seg[2] if len(seg) > 2 else sd
        parts.append(rng.normal(mean, s, size=length))
    return r6(np.concatenate(parts))


def gen_adwin() -> dict:
    cases = []

    # --- default parameters -------------------------------------------------
    rng = np.random.default_rng(1001)
    cases.append(run_adwin("abrupt_mean_shift", piecewise_normal(rng, [(1000, 0.0), (2000, 1.0)])))

    rng = np.random.default_rng(1002)
    cases.append(run_adwin("small_mean_shift", piecewise_normal(rng, [(1000, 0.0), (2000, 0.3)])))

    rng = np.random.default_rng(1003)
    bern = np.concatenate([rng.random(1000) < 0.2, rng.random(2000) < 0.6]).astype(np.float64)
    cases.append(run_adwin("bernoulli_p02_to_p06", bern))

    rng = np.random.default_rng(1004)
    ramp_mean = np.concatenate([np.zeros(1000), np.linspace(0.0, 2.0, 1000), np.full(1000, 2.0)])
    cases.append(run_adwin("gradual_ramp", r6(ramp_mean + rng.normal(0.0, 1.0, size=3000))))

    rng = np.random.default_rng(1005)
    cases.append(run_adwin("variance_only_change", piecewise_normal(rng, [(1000, 0.0, 1.0), (2000, 0.0, 4.0)])))

    const = run_adwin("constant_stream", np.full(2000, 0.5))
    assert const["n_detections"] == 0, "constant stream must not drift"
    cases.append(const)

    rng = np.random.default_rng(1007)
    cases.append(
        run_adwin(
            "several_changes",
            piecewise_normal(rng, [(600, 0.0), (600, 2.0), (600, -1.0), (600, 1.0), (600, 1.0, 0.2)]),
        )
    )

    # River's own docstring example: first (and only) detection at index 1023.
    prng = random.Random(12345)
    doc_stream = prng.choices([0, 1], k=1000) + prng.choices(range(4, 8), k=1000)
    doc = run_adwin("river_docstring_example", [float(v) for v in doc_stream])
    assert doc["detections"] == [1023], doc["detections"]
    # Same result when fed Python ints, exactly as in the docstring.
    a = ADWIN()
    int_dets = []
    for i, v in enumerate(doc_stream):
        a.update(v)
        if a.drift_detected:
            int_dets.append(i)
    assert int_dets == [1023], int_dets
    cases.append(doc)

    # --- non-default parameters on a shared stream --------------------------
    # An early burst (first 40 points at mean 4) exercises grace_period and
    # min_window_length; later shifts exercise clock/max_buckets/delta.
    rng = np.random.default_rng(2001)
    shared = piecewise_normal(rng, [(40, 4.0), (960, 0.0), (700, 1.0), (800, 0.4)])
    for pname, pval in [
        ("clock", 1),
        ("clock", 7),
        ("max_buckets", 2),
        ("max_buckets", 10),
        ("min_window_length", 1),
        ("min_window_length", 20),
        ("grace_period", 0),
        ("grace_period", 100),
        ("delta", 0.1),
        ("delta", 1e-5),
    ]:
        label = f"{pname}_{pval:g}".replace("-", "m").replace(".", "p")
        cases.append(run_adwin(label, shared, {pname: pval}))
    # Defaults on the same stream, for comparison with the variants above.
    cases.append(run_adwin("shared_stream_defaults", shared))
    # Everything non-default at once.
    cases.append(
        run_adwin(
            "all_params_nondefault",
            shared,
            {"delta": 0.01, "clock": 3, "max_buckets": 3, "min_window_length": 2, "grace_period": 25},
        )
    )

    # --- long stream --------------------------------------------------------
    rng = np.random.default_rng(3001)
    long_stream = piecewise_normal(rng, [(15000, 0.0), (15000, 0.5), (15000, -0.5), (15000, 0.25)])
    long_case = run_adwin("long_stream_60000_three_changes", long_stream)
    assert long_case["trace_every"] == 20
    cases.append(long_case)

    return {"river_version": river.__version__, "cases": cases}


# ---------------------------------------------------------------------------
# 2. Binning
# ---------------------------------------------------------------------------


def bin_case(name: str, reference, bins: int, current) -> dict:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = np.quantile(ref, np.arange(1, bins) / bins, method="linear")
    idx = np.searchsorted(edges, cur, side="right")
    counts = np.bincount(idx, minlength=bins)
    assert len(edges) == bins - 1 and len(counts) == bins
    assert np.all(np.diff(edges) >= 0)
    return {
        "name": name,
        "reference": fl(ref),
        "bins": int(bins),
        "edges": fl(edges),
        "current": fl(cur),
        "bin_index": ints(idx),
        "counts": ints(counts),
    }


def with_edges(edges_src_ref, bins, extra) -> np.ndarray:
    """Current values that include the edges themselves (exact hits)."""
    e = np.quantile(np.asarray(edges_src_ref, dtype=np.float64), np.arange(1, bins) / bins, method="linear")
    return np.concatenate([np.asarray(extra, dtype=np.float64), e])


def gen_binning() -> dict:
    cases = []
    rng = np.random.default_rng(4001)

    ref = r6(rng.normal(0, 1, 1000))
    cur = r6(rng.normal(0.3, 1.2, 500))
    cases.append(bin_case("normal_b10", ref, 10, cur))
    cases.append(bin_case("normal_b2", ref, 2, cur))
    cases.append(bin_case("normal_b3", ref, 3, cur))
    cases.append(bin_case("normal_b20", ref, 20, cur))

    # Many ties / duplicate edges: reference mostly 0 with a few other values.
    ref = np.concatenate([np.zeros(95), [1.0, 2.0, 2.0, 5.0, -3.0]])
    rng.shuffle(ref)
    cur = np.concatenate([np.zeros(10), [-3.0, -1.0, 0.5, 1.0, 2.0, 5.0, 6.0, -0.0]])
    cases.append(bin_case("mostly_zero_duplicate_edges", ref, 10, with_edges(ref, 10, cur)))

    # Integer values 0..3.
    ref = rng.integers(0, 4, 200).astype(np.float64)
    cur = rng.integers(0, 4, 100).astype(np.float64)
    cases.append(bin_case("integers_0_to_3_b10", ref, 10, with_edges(ref, 10, cur)))
    cases.append(bin_case("integers_0_to_3_b4", ref, 4, with_edges(ref, 4, cur)))

    # Current values exactly on the edges (plus neighbours just below/above).
    ref = r6(rng.uniform(0, 10, 101))
    e = np.quantile(ref, np.arange(1, 10) / 10, method="linear")
    cur = np.concatenate([e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf), [ref.min(), ref.max()]])
    cases.append(bin_case("current_on_edges", ref, 10, cur))

    # Current far beyond the reference range on both sides.
    ref = r6(rng.normal(0, 1, 200))
    cur = np.array([-1e12, -1e6, -50.0, -5.0, 0.0, 5.0, 50.0, 1e6, 1e12, -1e300, 1e300])
    cases.append(bin_case("current_out_of_range", ref, 10, cur))

    # Tiny references.
    cur = np.array([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
    cases.append(bin_case("tiny_reference_n1", [1.0], 10, cur))
    cases.append(bin_case("tiny_reference_n1_b2", [1.0], 2, cur))
    cases.append(bin_case("tiny_reference_n2", [1.0, 3.0], 10, with_edges([1.0, 3.0], 10, cur)))
    cases.append(bin_case("tiny_reference_n3", [3.0, 1.0, 2.5], 10, with_edges([3.0, 1.0, 2.5], 10, cur)))
    cases.append(bin_case("tiny_reference_n3_b3", [2.0, 0.5, 2.0], 3, with_edges([2.0, 0.5, 2.0], 3, cur)))

    # Negative and mixed-sign values.
    ref = r6(rng.uniform(-100, -1, 150))
    cur = r6(rng.uniform(-120, 0, 80))
    cases.append(bin_case("all_negative", ref, 10, with_edges(ref, 10, cur)))
    ref = r6(rng.standard_t(3, 300) * 10)
    cur = r6(rng.standard_t(3, 120) * 12 + 1)
    cases.append(bin_case("mixed_sign_heavy_tail", ref, 10, with_edges(ref, 10, cur)))

    # Huge and tiny magnitudes.
    ref = np.array([1e-300, -1e-300, 1e300, -1e300, 0.0, 1.0, -1.0, 1e-10, 1e10, 3e299, -7e-301, 42.0])
    cur = np.array([0.0, 1e-300, 2e-300, -1e-300, 5e-324, -5e-324, 1e300, 1.5e300, -1e300, 1e-10, 1.0, 1e308, -1e308])
    cases.append(bin_case("huge_and_tiny_magnitudes", ref, 10, with_edges(ref, 10, cur)))
    cases.append(bin_case("huge_and_tiny_magnitudes_b4", ref, 4, with_edges(ref, 4, cur)))
    # Interpolation spanning the whole double range (b - a = 2e300 is still finite).
    ref = np.array([1e300, -1e300])
    cases.append(bin_case("huge_two_point_reference", ref, 4, with_edges(ref, 4, cur)))
    ref = np.array([1e300, 1e-300, -1e300])
    cases.append(bin_case("huge_three_point_reference", ref, 5, with_edges(ref, 5, cur)))

    return {"cases": cases}


# ---------------------------------------------------------------------------
# 3. PSI / Jensen-Shannon
# ---------------------------------------------------------------------------

PSI_EPS = 1e-4


def psi(ref_counts, cur_counts) -> float:
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    r = ref / ref.sum()
    c = cur / cur.sum()
    r = np.where(r == 0, PSI_EPS, r)
    c = np.where(c == 0, PSI_EPS, c)
    return float(np.sum((c - r) * np.log(c / r)))


def div_case(name: str, ref_counts, cur_counts) -> dict:
    assert len(ref_counts) == len(cur_counts)
    js = jensenshannon(np.asarray(ref_counts, dtype=np.float64), np.asarray(cur_counts, dtype=np.float64), base=2)
    return {
        "name": name,
        "reference_counts": ints(ref_counts),
        "current_counts": ints(cur_counts),
        "psi": fnum(psi(ref_counts, cur_counts)),
        "js": fnum(js),
    }


def gen_divergence() -> dict:
    cases = []
    base = [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    cases.append(div_case("identical", base, base))
    cases.append(div_case("identical_proportions_different_totals", base, [37] * 10))
    cases.append(div_case("slight_shift", base, [95, 98, 101, 99, 104, 100, 97, 103, 99, 104]))
    cases.append(div_case("strong_shift", base, [5, 10, 20, 40, 80, 120, 160, 200, 220, 145]))
    cases.append(div_case("zero_in_reference_only", [0, 120, 130, 150, 100, 100, 100, 100, 100, 100], base))
    cases.append(div_case("zero_in_current_only", base, [0, 120, 130, 150, 100, 100, 100, 100, 100, 100]))
    cases.append(
        div_case(
            "zero_in_both_same_bin",
            [100, 0, 100, 100, 100, 100, 100, 100, 100, 100],
            [90, 0, 110, 95, 105, 100, 100, 100, 100, 100],
        )
    )
    cases.append(
        div_case(
            "zero_in_both_different_bins",
            [100, 0, 100, 100, 100, 100, 100, 100, 100, 100],
            [100, 100, 100, 100, 100, 100, 100, 0, 100, 100],
        )
    )
    cases.append(div_case("two_bins", [500, 500], [300, 700]))
    cases.append(div_case("one_bin_plus_other", [990, 10], [900, 100]))
    cases.append(div_case("one_bin_plus_other_empty_other", [1000, 0], [950, 50]))
    cases.append(
        div_case(
            "eleven_bins_with_other",
            [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 0],
            [90, 95, 100, 105, 110, 100, 100, 95, 100, 90, 15],
        )
    )
    cases.append(div_case("unbalanced_totals_10_vs_1e6", [1, 1, 2, 1, 1, 1, 1, 1, 0, 1], [100000] * 10))
    cases.append(div_case("unbalanced_totals_1e6_vs_10", [100000] * 10, [0, 3, 1, 1, 1, 2, 0, 1, 1, 0]))
    cases.append(div_case("one_hot_vs_one_hot_different_bins", [100, 0, 0], [0, 0, 50]))
    cases.append(div_case("one_hot_vs_one_hot_same_bin", [0, 7, 0], [0, 1000, 0]))
    return {"epsilon": PSI_EPS, "cases": cases}


# ---------------------------------------------------------------------------
# 4. Kolmogorov-Smirnov
# ---------------------------------------------------------------------------


FALLBACKS: list[str] = []


def ks_case(name: str, a, b, expect_method: str | None = None) -> dict:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.ks_2samp(a, b)
    fell_back = any(issubclass(w.category, RuntimeWarning) for w in caught)
    method = "exact" if (max(len(a), len(b)) <= 10000 and not fell_back) else "asymp"
    if fell_back:
        FALLBACKS.append(name)
    if expect_method is not None:
        assert method == expect_method, (name, method)
    return {
        "name": name,
        "a": fl(a),
        "b": fl(b),
        "statistic": fnum(res.statistic),
        "pvalue": fnum(res.pvalue),
        "method": method,
    }


def gen_ks() -> dict:
    cases = []
    rng = np.random.default_rng(5001)

    cases.append(ks_case("n1_vs_n1", [0.5], [1.5]))
    cases.append(ks_case("n1_vs_n1_equal", [2.0], [2.0]))
    cases.append(ks_case("n1_vs_n5", [0.3], [0.1, 0.2, 0.4, 0.5, 0.6]))
    cases.append(ks_case("n3_vs_n3_identical", [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]))
    cases.append(ks_case("n50_vs_n50_same_dist", r6(rng.normal(0, 1, 50)), r6(rng.normal(0, 1, 50))))
    cases.append(ks_case("n50_vs_n50_shift", r6(rng.normal(0, 1, 50)), r6(rng.normal(0.8, 1, 50))))
    cases.append(ks_case("n1000_vs_n1000_same_dist", r6(rng.normal(0, 1, 1000)), r6(rng.normal(0, 1, 1000))))
    cases.append(ks_case("n1000_vs_n1000_shift", r6(rng.normal(0, 1, 1000)), r6(rng.normal(0.15, 1, 1000))))
    cases.append(
        ks_case("n1000_vs_n1000_large_shift_tiny_p", r6(rng.normal(0, 1, 1000)), r6(rng.normal(1.0, 1, 1000)))
    )
    cases.append(ks_case("coprime_37_vs_53", r6(rng.normal(0, 1, 37)), r6(rng.normal(0.5, 1, 53))))
    cases.append(ks_case("coprime_37_vs_53_same_dist", r6(rng.normal(0, 1, 37)), r6(rng.normal(0, 1, 53))))
    cases.append(ks_case("common_factor_60_vs_90", r6(rng.normal(0, 1, 60)), r6(rng.normal(0.4, 1.3, 90))))
    cases.append(
        ks_case(
            "heavy_ties_integers_0_to_4",
            rng.integers(0, 5, 100).astype(np.float64),
            rng.choice(5, 150, p=[0.1, 0.15, 0.2, 0.25, 0.3]).astype(np.float64),
        )
    )
    cases.append(ks_case("disjoint_samples", r6(rng.uniform(0, 1, 20)), r6(rng.uniform(2, 3, 30))))
    b = r6(rng.normal(0, 1, 50))
    cases.append(ks_case("a_subset_of_b", b[:20].copy(), b))
    cases.append(
        ks_case(
            "n10000_vs_n10000_exact_small_shift",
            np.round(rng.normal(0, 1, 10000), 4),
            np.round(rng.normal(0.03, 1, 10000), 4),
            expect_method="exact",
        )
    )
    cases.append(
        ks_case(
            "n10001_vs_n2000_asymp",
            r6(rng.normal(0, 1, 10001)),
            r6(rng.normal(0.05, 1, 2000)),
            expect_method="asymp",
        )
    )
    c12 = ks_case(
        "n12000_vs_n12000_asymp_tiny_shift",
        r6(rng.normal(0, 1, 12000)),
        r6(rng.normal(0.02, 1, 12000)),
        expect_method="asymp",
    )
    assert 1e-6 < c12["pvalue"] < 0.999, c12["pvalue"]
    cases.append(c12)
    cases.append(
        ks_case("n5000_vs_n7_lopsided_exact", r6(rng.normal(0, 1, 5000)), r6(rng.normal(0.5, 1, 7)), "exact")
    )
    return {"cases": cases}


# ---------------------------------------------------------------------------
# 5. Wasserstein
# ---------------------------------------------------------------------------


def w_case(name: str, u, v) -> dict:
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    return {"name": name, "u": fl(u), "v": fl(v), "distance": fnum(stats.wasserstein_distance(u, v))}


def gen_wasserstein() -> dict:
    cases = []
    rng = np.random.default_rng(6001)
    x = r6(rng.normal(0, 1, 200))
    cases.append(w_case("identical", x, x[::-1].copy()))
    cases.append(w_case("shifted", x, r6(x + 2.5)))
    cases.append(w_case("scaled", x, r6(x * 3.0)))
    cases.append(w_case("ties", rng.integers(0, 4, 100).astype(np.float64), rng.integers(1, 5, 70).astype(np.float64)))
    cases.append(w_case("different_sizes", r6(rng.normal(0, 1, 31)), r6(rng.normal(0.5, 2, 117))))
    cases.append(w_case("single_points", [1.0], [4.5]))
    cases.append(w_case("single_vs_many", [0.0], [1.0, 2.0, 3.0, -4.0]))
    cases.append(w_case("negative_values", r6(rng.uniform(-50, -10, 80)), r6(rng.uniform(-60, -5, 90))))
    cases.append(w_case("n5000_vs_n3000", r6(rng.normal(0, 1, 5000)), r6(rng.gamma(2.0, 1.0, 3000))))
    return {"cases": cases}


# ---------------------------------------------------------------------------
# 6. Chi-squared
# ---------------------------------------------------------------------------


def chi2_stats(ref_counts, cur_counts):
    ref = np.asarray(ref_counts, dtype=np.int64)
    cur = np.asarray(cur_counts, dtype=np.int64)
    keep = (ref + cur) > 0
    table = np.array([ref[keep], cur[keep]])
    res = stats.chi2_contingency(table, correction=True)
    return res.statistic, res.pvalue, res.dof


def chi2_case(name: str, ref_counts, cur_counts) -> dict:
    st, p, dof = chi2_stats(ref_counts, cur_counts)
    return {
        "name": name,
        "reference_counts": ints(ref_counts),
        "current_counts": ints(cur_counts),
        "statistic": fnum(st),
        "pvalue": fnum(p),
        "dof": int(dof),
    }


def find_tail_case(make, target_log10: float, ks) -> tuple:
    best = None
    for k in ks:
        ref, cur = make(k)
        _, p, _ = chi2_stats(ref, cur)
        if p > 0:
            err = abs(math.log10(p) - target_log10)
            if best is None or err < best[0]:
                best = (err, ref, cur)
    assert best is not None and best[0] < 1.0, best
    return best[1], best[2]


def gen_chi2() -> dict:
    cases = []
    cases.append(chi2_case("2x2_yates", [30, 70], [45, 55]))
    # |O - E| < 0.5 in every cell, so scipy caps the Yates adjustment at
    # |O - E| (observed is moved onto expected: statistic 0, p 1).
    cases.append(chi2_case("2x2_yates_would_overshoot", [5, 6], [6, 6]))
    cases.append(chi2_case("2x2_yates_would_overshoot_uneven", [10, 21], [11, 21]))
    cases.append(chi2_case("2x5", [50, 60, 70, 40, 30], [40, 70, 60, 55, 25]))
    cases.append(
        chi2_case(
            "2x11",
            [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 5],
            [90, 95, 110, 105, 100, 120, 85, 100, 100, 90, 20],
        )
    )
    cases.append(chi2_case("2x4_zero_column_in_both", [40, 0, 35, 25], [30, 0, 45, 20]))
    # After dropping the empty column the table is 2x2: dof 1, Yates applies.
    cases.append(chi2_case("2x3_zero_column_in_both_reduces_to_2x2", [40, 60, 0], [55, 45, 0]))
    cases.append(chi2_case("zero_column_in_current_only", [40, 10, 35, 25], [30, 0, 45, 20]))
    cases.append(chi2_case("zero_column_in_reference_only", [40, 0, 35, 25], [30, 12, 45, 20]))

    ref, cur = find_tail_case(lambda k: ([5000, 5000], [5000 + k, 5000 - k]), -50.0, range(1, 2000))
    cases.append(chi2_case("2x2_tiny_p_1e-50", ref, cur))
    ref, cur = find_tail_case(
        lambda k: ([2000] * 5, [2000 + k, 2000, 2000, 2000, 2000 - k]), -200.0, range(1, 2000)
    )
    cases.append(chi2_case("2x5_tiny_p_1e-200", ref, cur))
    ref, cur = find_tail_case(lambda k: ([20000, 20000], [20000 + k, 20000 - k]), -200.0, range(1, 20000))
    cases.append(chi2_case("2x2_tiny_p_1e-200", ref, cur))

    cases.append(chi2_case("identical_proportions", [100, 200, 300], [50, 100, 150]))
    cases.append(chi2_case("identical_proportions_2x2", [100, 300], [25, 75]))
    return {"cases": cases}


# ---------------------------------------------------------------------------


def main() -> None:
    check_versions()
    outputs = {
        "adwin.json": gen_adwin(),
        "binning.json": gen_binning(),
        "divergence.json": gen_divergence(),
        "ks.json": gen_ks(),
        "wasserstein.json": gen_wasserstein(),
        "chi2.json": gen_chi2(),
    }
    total = 0
    for name, obj in outputs.items():
        write(name, obj)
        size = os.path.getsize(os.path.join(OUT_DIR, name))
        total += size
        print(f"{name:18s} {size:>10,d} bytes  {len(obj['cases'])} cases")
    print(f"{'total':18s} {total:>10,d} bytes")
    if FALLBACKS:
        print("ks_2samp fell back from exact to asymp for:", ", ".join(FALLBACKS))
    assert total < 4_200_000, "vectors too large"


if __name__ == "__main__":
    main()
