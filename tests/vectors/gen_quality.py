"""Generate model-quality and fairness reference vectors for driftwatch.

Writes, next to this script (tests/vectors/):

    quality.json   scikit-learn: accuracy, precision, recall, F1, confusion counts, ROC AUC,
                   log loss (binary and multiclass), MAE, RMSE
    fairness.json  fairlearn: demographic_parity_difference, equalized_odds_difference
                   (agg="worst_case"), per-group selection rate / TPR / FPR

Checked by src/monitor/quality.rs and src/monitor/fairness.rs. Deterministic (fixed seeds,
numpy.random.default_rng); the script refuses to run with other versions than

    Python 3.11, numpy 2.4.6, scikit-learn 1.9.1, fairlearn 0.15.0

Run from the repository root:

    "$(bash scripts/pyenv.sh)" tests/vectors/gen_quality.py

JSON has no NaN: a metric scikit-learn reports as NaN (zero_division=np.nan, or roc_auc_score
on a single class) is stored as null, which is exactly where driftwatch returns None.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import fairlearn
import numpy as np
import sklearn
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

EXPECTED_VERSIONS = {"numpy": "2.4.6", "sklearn": "1.9.1", "fairlearn": "0.15.0"}
OUT_DIR = os.path.dirname(os.path.abspath(__file__))
AUC_BINS = 1024
# The bound on pooled groups used by the fairness cases that do not test pooling.
DEFAULT_MAX_GROUPS = 16


def check_versions() -> None:
    got = {"numpy": np.__version__, "sklearn": sklearn.__version__, "fairlearn": fairlearn.__version__}
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


def opt(x) -> float | None:
    """NaN (sklearn's "undefined") becomes null; anything else must be finite."""
    x = float(x)
    if math.isnan(x):
        return None
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
    with open(path) as f:
        back = json.load(f)
    assert back == obj, f"{name}: JSON round trip changed the data"


def auc_or_null(y_true, score) -> float | None:
    """roc_auc_score; sklearn 1.9 warns and returns NaN when y_true holds one class."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auc = roc_auc_score(y_true, score)
    one_class = len(np.unique(y_true)) < 2
    warned = any(issubclass(w.category, UndefinedMetricWarning) for w in caught)
    assert one_class == math.isnan(auc) == warned, (one_class, auc, warned)
    return opt(auc)


def prf(y_true_bin, y_pred_bin) -> dict:
    """Positive-class counts metrics; zero_division=np.nan makes "undefined" visible."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kw = {"zero_division": np.nan, "labels": [0, 1], "pos_label": 1, "average": "binary"}
        tn, fp, fn, tp = confusion_matrix(y_true_bin, y_pred_bin, labels=[0, 1]).ravel()
        return {
            "confusion": ints([tn, fp, fn, tp]),
            "precision": opt(precision_score(y_true_bin, y_pred_bin, **kw)),
            "recall": opt(recall_score(y_true_bin, y_pred_bin, **kw)),
            "f1": opt(f1_score(y_true_bin, y_pred_bin, **kw)),
            # sklearn has no false_positive_rate; fairlearn's would turn 0/0 into 0.
            "false_positive_rate": None if fp + tn == 0 else float(fp / (fp + tn)),
        }


# ---------------------------------------------------------------------------
# quality.json
# ---------------------------------------------------------------------------


def binary_case(name: str, y_true, score, threshold: float = 0.5, y_pred=None) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    assert ((score >= 0) & (score <= 1)).all()
    if y_pred is None:
        y_pred = (score >= threshold).astype(np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    case = {
        "name": name,
        "kind": "binary",
        "y_true": ints(y_true),
        "y_pred": ints(y_pred),
        "score": fl(score),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": auc_or_null(y_true, score),
        # labels=[0, 1]: a one-class y_true is still a binary problem with a 1-D y_proba.
        "log_loss": float(log_loss(y_true, score, labels=[0, 1])),
    }
    case.update(prf(y_true, y_pred))
    return case


def multiclass_case(name: str, classes: list[str], positive: str, y_true, proba, y_pred=None) -> dict:
    proba = np.asarray(proba, dtype=np.float64)
    classes = sorted(classes)  # log_loss's column order (LabelBinarizer sorts labels)
    y_true = np.asarray(y_true)
    index = {c: i for i, c in enumerate(classes)}
    if y_pred is None:
        y_pred = np.asarray([classes[i] for i in np.argmax(proba, axis=1)])
    y_pred = np.asarray(y_pred)
    p_true = proba[np.arange(len(y_true)), [index[c] for c in y_true]]
    score = proba[:, index[positive]]
    t_bin = (y_true == positive).astype(np.int64)
    p_bin = (y_pred == positive).astype(np.int64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = log_loss(list(y_true), proba, labels=classes)
    # Rows must sum to one, or sklearn would only warn (it does not renormalise either).
    assert not caught, [str(w.message) for w in caught]
    case = {
        "name": name,
        "kind": "multiclass",
        "classes": classes,
        "positive_class": positive,
        "y_true": [str(c) for c in y_true],
        "y_pred": [str(c) for c in y_pred],
        "p_true": fl(p_true),
        "score": fl(score),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": auc_or_null(t_bin, score),
        "log_loss": float(loss),
    }
    case.update(prf(t_bin, p_bin))
    return case


def regression_case(name: str, y_true, y_pred) -> dict:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "name": name,
        "kind": "regression",
        "y_true": fl(y_true),
        "y_pred": fl(y_pred),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
    }


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def separable_scores(rng, y, separation: float, noise: float = 1.0):
    return r6(sigmoid(separation * (2 * y - 1) + rng.normal(0, noise, size=len(y))))


def gen_quality() -> dict:
    rng = np.random.default_rng(20240611)
    cases = []

    # --- binary, varied class balance -------------------------------------------------
    y = (rng.random(200) < 0.5).astype(int)
    cases.append(binary_case("binary_balanced_200", y, separable_scores(rng, y, 1.0)))
    y = (rng.random(1000) < 0.05).astype(int)
    cases.append(binary_case("binary_5pct_positive_1000", y, separable_scores(rng, y, 1.5), threshold=0.3))
    y = (rng.random(500) < 0.95).astype(int)
    cases.append(binary_case("binary_95pct_positive_500", y, separable_scores(rng, y, 0.5)))
    cases.append(binary_case("binary_tiny_4", [0, 1, 1, 0], [0.2, 0.7, 0.4, 0.4]))
    y = (rng.random(5000) < 0.3).astype(int)
    cases.append(binary_case("binary_large_5000", y, separable_scores(rng, y, 0.8, noise=1.5)))
    y = (rng.random(300) < 0.4).astype(int)
    cases.append(binary_case("binary_weak_signal_300", y, separable_scores(rng, y, 0.1)))

    # --- AUC undefined: one class ----------------------------------------------------
    cases.append(binary_case("binary_all_positive", np.ones(50, int), r6(rng.random(50))))
    cases.append(binary_case("binary_all_negative", np.zeros(50, int), r6(rng.random(50))))

    # --- zero denominators -----------------------------------------------------------
    y = (rng.random(80) < 0.5).astype(int)
    cases.append(binary_case("binary_no_predicted_positive", y, r6(rng.random(80) * 0.49)))
    cases.append(binary_case("binary_all_negative_none_predicted", np.zeros(20, int), r6(rng.random(20) * 0.4)))
    cases.append(binary_case("binary_all_predicted_positive", y, r6(0.5 + rng.random(80) * 0.5)))

    # --- ties ------------------------------------------------------------------------
    y = (rng.random(500) < 0.4).astype(int)
    tied = np.round(np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.3, 500), 0.1, 0.9), 1)
    cases.append(binary_case("binary_heavy_ties_tenths", y, tied))
    cases.append(binary_case("binary_constant_score", y[:100], np.full(100, 0.37)))
    # All scores inside one 1/1024 bin: binned AUC is 0.5, the bound is at its widest.
    y = (rng.random(200) < 0.5).astype(int)
    narrow = 0.5 + np.round(rng.random(200) * 9e-4 + y * 5e-5, 8)
    cases.append(binary_case("binary_scores_within_one_bin", y, narrow))
    # Scores on the bin grid k/1024 (exact in binary): distinct scores never share a bin,
    # except 1023/1024 and 1.0, which both land in the last bin.
    y = (rng.random(400) < 0.5).astype(int)
    k = np.clip(np.round(512 + 300 * (2 * y - 1) * rng.random(400) + rng.normal(0, 150, 400)), 0, 1024)
    cases.append(binary_case("binary_scores_on_bin_grid", y, k / 1024.0))

    # --- separation extremes ---------------------------------------------------------
    y = np.array([0] * 30 + [1] * 20)
    s = r6(np.concatenate([rng.random(30) * 0.4, 0.6 + rng.random(20) * 0.4]))
    cases.append(binary_case("binary_perfect_separation", y, s))
    cases.append(binary_case("binary_reversed", y, 1.0 - s))

    # --- log loss with extreme probabilities 0 and 1 ---------------------------------
    y = (rng.random(60) < 0.5).astype(int)
    extreme = np.where(rng.random(60) < 0.5, y, 1 - y).astype(float)  # half confidently wrong
    cases.append(binary_case("binary_extreme_probabilities_0_1", y, extreme))
    extreme = np.where(y == 1, 1.0 - 1e-17, 1e-300)  # rounds to 1.0 / below eps: both clipped
    cases.append(binary_case("binary_probabilities_beyond_eps", y, extreme))
    almost = np.where(y == 1, 1.0 - 2.0**-52, 2.0**-53)  # exactly at / below the clip points
    cases.append(binary_case("binary_probabilities_at_clip_points", y, almost))

    # --- multiclass ------------------------------------------------------------------
    classes = ["bird", "cat", "dog"]
    n = 300
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    y_true = np.array([classes[rng.choice(3, p=row)] for row in proba])
    cases.append(multiclass_case("multiclass_3_dirichlet", classes, "cat", y_true, proba))

    classes = ["a", "b", "c", "d", "e"]
    n = 1000
    proba = rng.dirichlet([0.5, 1.0, 2.0, 1.0, 0.5], size=n)
    y_true = np.array([classes[i] for i in rng.choice(5, size=n, p=[0.1, 0.2, 0.4, 0.2, 0.1])])
    cases.append(multiclass_case("multiclass_5_weak", classes, "c", y_true, proba))

    classes = ["neg", "neu", "pos"]
    eye = np.eye(3)
    idx_true = rng.choice(3, size=40)
    idx_pred = np.where(rng.random(40) < 0.7, idx_true, (idx_true + 1) % 3)
    proba = eye[idx_pred]  # one-hot: probability 1 right or 0 on the true class
    y_true = np.array([classes[i] for i in idx_true])
    cases.append(multiclass_case("multiclass_one_hot_extremes", classes, "pos", y_true, proba))

    classes = ["x", "y", "z"]
    proba = rng.dirichlet([2.0, 2.0, 2.0], size=120)
    y_true = np.array([classes[i] for i in rng.choice(3, size=120)])
    y_pred = np.full(120, "y")  # a constant predictor: positive "x" is never predicted
    cases.append(multiclass_case("multiclass_constant_predictor", classes, "x", y_true, proba, y_pred=y_pred))

    # --- regression ------------------------------------------------------------------
    t = r6(rng.normal(10, 3, 100))
    cases.append(regression_case("regression_normal_100", t, r6(t + rng.normal(0, 1, 100))))
    t = r6(rng.normal(0, 1, 1000))
    cases.append(regression_case("regression_heavy_tails_1000", t, r6(t + rng.standard_t(2, 1000))))
    t = r6(rng.normal(0, 1, 50))
    cases.append(regression_case("regression_exact", t, t))
    t = r6(rng.normal(1e6, 1e3, 200))
    cases.append(regression_case("regression_large_magnitude", t, r6(t + rng.normal(5, 2, 200))))
    cases.append(regression_case("regression_single_point", [3.5], [1.25]))
    t = r6(rng.normal(0, 1, 30))
    cases.append(regression_case("regression_constant_bias", t, t + 0.5))

    return {"auc_bins": AUC_BINS, "log_loss_eps": float(np.finfo(np.float64).eps), "cases": cases}


# ---------------------------------------------------------------------------
# fairness.json
# ---------------------------------------------------------------------------


def pool_groups(groups, max_groups: int) -> list[str]:
    """driftwatch's bound: the first max_groups distinct values seen keep their name, later
    ones are pooled into "__other__"."""
    seen: list[str] = []
    out = []
    for g in groups:
        if g not in seen and len(seen) < max_groups:
            seen.append(g)
        out.append(g if g in seen else "__other__")
    return out


def fairness_case(name: str, y_true, y_pred, groups, max_groups: int = DEFAULT_MAX_GROUPS) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    groups = [str(g) for g in groups]
    pooled = pool_groups(groups, max_groups)
    sf = np.asarray(pooled)
    dpd = demographic_parity_difference(y_true, y_pred, sensitive_features=sf)
    eod = equalized_odds_difference(y_true, y_pred, sensitive_features=sf)  # agg="worst_case"
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sf,
    )
    by_group = {}
    for g, row in frame.by_group.iterrows():
        mask = sf == g
        by_group[str(g)] = {
            "count": int(mask.sum()),
            "positives": int(y_true[mask].sum()),
            "negatives": int((1 - y_true[mask]).sum()),
            # fairlearn's values: a TPR (FPR) of a group without positives (negatives) is 0.0,
            # because sklearn's confusion_matrix(normalize="true") turns 0/0 into 0.
            "selection_rate": float(row["selection_rate"]),
            "tpr": float(row["tpr"]),
            "fpr": float(row["fpr"]),
        }
    eo_defined = len(by_group) >= 2 and all(v["positives"] > 0 and v["negatives"] > 0 for v in by_group.values())
    return {
        "name": name,
        "max_groups": max_groups,
        "y_true": ints(y_true),
        "y_pred": ints(y_pred),
        "group": groups,
        "pooled_group": pooled,
        "by_group": by_group,
        "demographic_parity_difference": float(dpd),
        "equalized_odds_difference": float(eod),
        "eo_defined": eo_defined,
    }


def biased(rng, groups, base_rate: dict, pos_rate: dict, accuracy: dict):
    n = len(groups)
    y = np.array([rng.random() < pos_rate[g] for g in groups], dtype=int)
    flip = np.array([rng.random() > accuracy[g] for g in groups])
    y_pred = np.where(flip, 1 - y, y)
    # Some groups get extra positive predictions: a selection-rate bias on top of errors.
    extra = np.array([rng.random() < base_rate[g] for g in groups])
    y_pred = np.where(extra, 1, y_pred)
    assert len(y_pred) == n
    return y, y_pred


def gen_fairness() -> dict:
    rng = np.random.default_rng(777)
    cases = []

    g = list(rng.choice(["f", "m"], size=400))
    y, p = biased(rng, g, {"f": 0.0, "m": 0.15}, {"f": 0.4, "m": 0.4}, {"f": 0.8, "m": 0.8})
    cases.append(fairness_case("two_groups_selection_bias", y, p, g))

    g = list(rng.choice(["a", "b", "c"], size=600, p=[0.5, 0.3, 0.2]))
    y, p = biased(rng, g, {"a": 0.05, "b": 0.0, "c": 0.1}, {"a": 0.3, "b": 0.5, "c": 0.4}, {"a": 0.9, "b": 0.75, "c": 0.6})
    cases.append(fairness_case("three_groups_unequal", y, p, g))

    names = ["g1", "g2", "g3", "g4", "g5"]
    g = list(rng.choice(names, size=1000, p=[0.4, 0.25, 0.15, 0.15, 0.05]))
    y, p = biased(
        rng,
        g,
        dict(zip(names, [0.0, 0.02, 0.05, 0.1, 0.2])),
        dict(zip(names, [0.2, 0.3, 0.4, 0.5, 0.6])),
        dict(zip(names, [0.95, 0.9, 0.85, 0.8, 0.7])),
    )
    cases.append(fairness_case("five_groups_graded", y, p, g))

    g = list(rng.choice(["u", "v", "w", "z"], size=200))
    y = (rng.random(200) < 0.5).astype(int)
    cases.append(fairness_case("four_groups_perfect_predictor", y, y, g))

    g = ["p"] * 50 + ["q"] * 50
    y = (rng.random(100) < 0.5).astype(int)
    p = np.tile([1, 0], 50)
    cases.append(fairness_case("identical_predictions_alternate", y, p, g))

    # A group without positives: fairlearn counts its TPR as 0; driftwatch: undefined.
    g = ["a"] * 40 + ["b"] * 40
    y = np.concatenate([np.zeros(40, int), (rng.random(40) < 0.5).astype(int)])
    p = (rng.random(80) < 0.5).astype(int)
    cases.append(fairness_case("group_without_positives", y, p, g))

    # A group without negatives (FPR undefined for it).
    g = ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    y = np.concatenate([(rng.random(30) < 0.5).astype(int), np.ones(30, int), (rng.random(30) < 0.5).astype(int)])
    p = (rng.random(90) < 0.6).astype(int)
    cases.append(fairness_case("group_without_negatives", y, p, g))

    # One group: fairlearn reports 0.0 for both differences; driftwatch: undefined.
    y = (rng.random(50) < 0.5).astype(int)
    p = (rng.random(50) < 0.5).astype(int)
    cases.append(fairness_case("single_group", y, p, ["only"] * 50))

    # Bounded groups: six groups, max_groups = 3; the later three are pooled into __other__.
    names = ["r", "s", "t", "u", "v", "w"]
    g = list(rng.choice(names, size=500))
    y = (rng.random(500) < 0.45).astype(int)
    p = np.where(rng.random(500) < 0.75, y, 1 - y)
    cases.append(fairness_case("pooled_six_groups_max_3", y, p, g, max_groups=3))

    # Group values that look like numbers, sorted as strings ("10" < "9").
    g = list(rng.choice(["9", "10", "100"], size=300))
    y = (rng.random(300) < 0.5).astype(int)
    p = np.where(rng.random(300) < 0.7, y, 1 - y)
    cases.append(fairness_case("numeric_looking_groups", y, p, g))

    return {"cases": cases}


def main() -> None:
    check_versions()
    outputs = {"quality.json": gen_quality(), "fairness.json": gen_fairness()}
    for name, obj in outputs.items():
        write(name, obj)
        size = os.path.getsize(os.path.join(OUT_DIR, name))
        print(f"{name:14s} {size:>9,d} bytes  {len(obj['cases'])} cases")


if __name__ == "__main__":
    main()
