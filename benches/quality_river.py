"""River's side of the detection-quality harness (`cargo bench --bench quality`).

Reads the streams that `benches/quality.rs` wrote (a manifest JSON plus one little-endian f64
file holding every stream back to back), runs River's `drift.ADWIN()` (defaults),
`drift.KSWIN(alpha=0.005, window_size=100, stat_size=30, seed=<stream seed>)` and
`drift.PageHinkley()` (defaults) on each stream, and prints one JSON object to stdout:

    {"river_version": "0.26.1",
     "alarms": {"adwin": [[i, ...], ...], "kswin": [[...] or null, ...], "page_hinkley": [...]},
     "timing": {"adwin": {"seconds": s, "events": n}, ...},
     "kswin_seeds": k, "kswin_reason": "..."}

Alarm indices are 0-based event indices where `drift_detected` was true after `update`.
KSWIN (≈ 0.2 ms per event in Python) runs on the first k seeds ("replica" in the manifest)
of every scenario only: all of them when the whole River run fits the manifest's
`kswin_budget_s`, else as many as fit (timed on the first stream), unless the manifest fixes
`kswin_seeds`.
Progress goes to stderr.

Usage: python benches/quality_river.py target/quality/streams.json
"""

import json
import math
import sys
import time
from array import array
from pathlib import Path

import river
from river import drift


def run(detector, values):
    """Feeds every value; returns the indices where the detector flagged a drift."""
    alarms = []
    update = detector.update
    for i, x in enumerate(values):
        update(x)
        if detector.drift_detected:
            alarms.append(i)
    return alarms


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    manifest_path = Path(sys.argv[1])
    manifest = json.loads(manifest_path.read_text())
    if manifest["format"] != "f64le":
        sys.exit(f"unsupported format {manifest['format']!r}")
    data = array("d")
    with open(manifest_path.parent / manifest["data"], "rb") as f:
        data.frombytes(f.read())
    if sys.byteorder != "little":
        data.byteswap()
    length = manifest["stream_length"]
    streams = manifest["streams"]
    values = [data[s["offset"]:s["offset"] + length].tolist() for s in streams]
    seeds = manifest["seeds_per_scenario"]
    scenarios = manifest["scenarios"]

    alarms = {"adwin": [None] * len(streams), "kswin": [None] * len(streams),
              "page_hinkley": [None] * len(streams)}
    timing = {name: {"seconds": 0.0, "events": 0} for name in alarms}

    def timed(name, index, make):
        detector = make()
        start = time.perf_counter()
        alarms[name][index] = run(detector, values[index])
        timing[name]["seconds"] += time.perf_counter() - start
        timing[name]["events"] += len(values[index])

    for name, make in (("adwin", drift.ADWIN), ("page_hinkley", drift.PageHinkley)):
        for k in range(len(streams)):
            timed(name, k, make)
        print(f"river: {name}: {timing[name]['seconds']:.2f} s", file=sys.stderr)

    def kswin(seed):
        return lambda: drift.KSWIN(alpha=0.005, window_size=100, stat_size=30, seed=seed)

    # KSWIN on replicas (seeds k) 0..k_seeds-1 of every scenario, replica-major so a cut keeps
    # every scenario; the detector's own seed is the stream's RNG seed.
    order = sorted(range(len(streams)), key=lambda k: (streams[k]["replica"], k))
    fixed = manifest.get("kswin_seeds")
    # The budget covers the whole River run: what ADWIN and PageHinkley used is taken off.
    budget = float(manifest.get("kswin_budget_s", 120.0))
    budget -= timing["adwin"]["seconds"] + timing["page_hinkley"]["seconds"]
    if fixed is not None:
        k_seeds = min(int(fixed), seeds)
        reason = f"set by --kswin-seeds {fixed}"
    else:
        first = order[0]
        timed("kswin", first, kswin(streams[first]["seed"]))
        per_stream = timing["kswin"]["seconds"]
        full = per_stream * len(streams)
        if full <= budget:
            k_seeds = seeds
            reason = f"fits the budget, est. {full:.0f} s"
        else:
            k_seeds = max(1, min(seeds, math.floor(budget / (per_stream * scenarios))))
            reason = (f"all seeds would take ~{full:.0f} s at {per_stream:.1f} s per stream, "
                      f"over the {budget:.0f} s left of the River run's "
                      f"{manifest.get('kswin_budget_s', 120.0):.0f} s budget")
    todo = [k for k in order if streams[k]["replica"] < k_seeds and alarms["kswin"][k] is None]
    for n, k in enumerate(todo, 1):
        timed("kswin", k, kswin(streams[k]["seed"]))
        if n % scenarios == 0 or n == len(todo):
            print(f"river: kswin: {n}/{len(todo)} streams, {timing['kswin']['seconds']:.1f} s",
                  file=sys.stderr)

    json.dump({"river_version": river.__version__, "alarms": alarms, "timing": timing,
               "kswin_seeds": k_seeds, "kswin_reason": reason}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
