"""River 0.26.1's ADWIN update rate on this machine, for calibrating `cargo bench --bench detectors -- adwin`.

The issue's ADWIN target (>= 40M updates/s) was set against River at ~4.3M/s "on this machine
class"; the VM's speed swings between runs, so BENCHMARKS.md reports both rates measured back
to back. The stream has the bench's shape: uniform [0, 1) noise with the mean shifted by 0.5
every 100,000 elements, default parameters.

Run: `$(scripts/pyenv.sh) benches/adwin_river_rate.py [runs]`
"""

import sys
import time

import numpy as np
from river.drift import ADWIN


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rng = np.random.default_rng(7)
    n = 1_000_000
    shift = np.where((np.arange(n) // 100_000) % 2 == 0, 0.0, 0.5)
    stream = (shift + rng.random(n)).tolist()
    for run in range(1, runs + 1):
        detector = ADWIN()
        detections = 0
        started = time.perf_counter()
        for x in stream:
            detector.update(x)
            detections += detector.drift_detected
        seconds = time.perf_counter() - started
        print(f"run {run}: {seconds:.2f} s per 1M updates = {n / seconds / 1e6:.2f}M updates/s ({detections} detections)")


if __name__ == "__main__":
    main()
