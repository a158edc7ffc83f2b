"""Benchmark: time to generate the embedded dataset (default sizes) with 1 and 2 worker processes.

    .venv/bin/python benchmarks/data_generate.py [--train 1500 --val 300 --calibration 200]

Prints wall time, CPU time, ms per image, files and bytes on disk, and checks that both runs wrote
the same fingerprint. No assertion on speed (figures only).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    from components.data import core

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--val", type=int, default=300)
    p.add_argument("--calibration", type=int, default=200)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args()
    total = args.train + args.val + args.calibration
    prints = set()
    print(f"{'workers':>7} {'wall s':>7} {'cpu s':>7} {'ms/img (cpu)':>12} {'files':>6} {'MB':>6}  load")
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            c0, t0 = _cpu(), time.perf_counter()
            info = core.generate_dataset(tmp, train=args.train, val=args.val,
                                         calibration=args.calibration, workers=workers)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            files = [f for f in Path(tmp).rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            prints.add(info.fingerprint)
            print(f"{workers:>7} {wall:>7.1f} {cpu:>7.1f} {1000 * cpu / total:>12.1f} {len(files):>6} "
                  f"{size / 1e6:>6.1f}  {os.getloadavg()[0]:.1f}")
    print("same fingerprint for every worker count:", len(prints) == 1, next(iter(prints)))
    return 0 if len(prints) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
