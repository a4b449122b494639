"""Graph metrics: train-versus-test floors and wall time on the standard test sets.

For each data set (seed 0 recipes of generative.graphs.datasets) this prints the biased MMD^2 of the
test split against the train split per descriptor, with the kernel family the papers use on it
(Comm20: Gaussian-EMD as GDSS; planar and SBM: Gaussian-TV as DiGress), the seconds each
descriptor takes, and V.U.N. of the test graphs against the train graphs with the data set's
validity test (the best a generator can score on that split).

    python -m benchmarks.graph_metrics [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from generative.graphs import datasets, mmd, validity

CASES = (("comm20", "gaussian_emd", None), ("planar", "gaussian_tv", "planar"))
CASES += (("sbm", "gaussian_tv", "sbm"),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="median over this many timings")
    args = parser.parse_args()
    print(f"{'data':8s} {'kernel':13s} {'metric':11s} {'train-vs-test':>14s} {'seconds':>8s}")
    for name, kernel, valid in CASES:
        splits = datasets.load_dataset(name)
        test, train = splits["test"], splits["train"]
        for descriptor in mmd.DESCRIPTORS:
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                value = mmd.graph_mmd(test, train, descriptors=[descriptor], kernel=kernel)
                seconds.append(time.perf_counter() - start)
            print(
                f"{name:8s} {kernel:13s} {descriptor:11s} {value[descriptor]:14.6f} "
                f"{np.median(seconds):8.2f}"
            )
        start = time.perf_counter()
        scores = validity.vun(test, train, validity=valid)
        seconds = time.perf_counter() - start
        for key in ("valid", "unique", "novel", "vun"):
            print(f"{name:8s} {str(valid):13s} {key:11s} {scores[key]:14.3f} {seconds:8.2f}")
        print(f"({len(test)} test graphs against {len(train)} train graphs)")


if __name__ == "__main__":
    main()
