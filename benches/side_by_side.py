#!/usr/bin/env python3
"""Times several `.nnir` models side by side in onnxruntime on the CPU (one process, round-robin).

    python3 benches/side_by_side.py A.nnir B.nnir [C.nnir ...] [--runs 50] [--warmup 5]

Each model is exported with `nnirc export` (its weights file next to it) and loaded in its own
InferenceSession (CPUExecutionProvider, 1 intra-op and 1 inter-op thread, ORT_SEQUENTIAL,
default graph optimizations). All get the same seeded input; their outputs are compared with
the first model's (max deviation relative to its largest output, printed). After the warm-up
runs, every round runs each model once in an order shuffled by a seeded RNG, timing each `run`
with time.perf_counter (garbage collection off). Prints per model the median, the quartiles
and the ratio of its median to the first model's. Meant for A/B comparisons of two builds'
exports of one model (the same weights), where benches/latency.py compares the variants of one
build.
"""

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help=".nnir files, the first is the reference")
    p.add_argument("--runs", type=int, default=50, help="timed rounds (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per model (default 5)")
    p.add_argument("--seed", type=int, default=0, help="input and shuffle seed (default 0)")
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"))
    args = p.parse_args()
    sessions = []
    with tempfile.TemporaryDirectory() as work:
        for i, model in enumerate(args.models):
            onnx = os.path.join(work, f"{i}.onnx")
            done = subprocess.run([args.nnirc, "export", model, "-o", onnx],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"error: nnirc export {model}: {done.stderr.strip()}")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sessions.append(ort.InferenceSession(onnx, options,
                                                 providers=["CPUExecutionProvider"]))
    first = sessions[0].get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    x = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32)
    feed = [{s.get_inputs()[0].name: x} for s in sessions]
    outputs = [s.run(None, f)[0] for s, f in zip(sessions, feed)]
    scale = float(np.abs(outputs[0]).max()) or 1.0
    for _ in range(args.warmup):
        for s, f in zip(sessions, feed):
            s.run(None, f)
    times = [[] for _ in sessions]
    rng = random.Random(args.seed)
    gc.disable()
    for _ in range(args.runs):
        order = list(range(len(sessions)))
        rng.shuffle(order)
        for i in order:
            start = time.perf_counter()
            sessions[i].run(None, feed[i])
            times[i].append(time.perf_counter() - start)
    gc.enable()
    reference = statistics.median(times[0])
    for model, t, out in zip(args.models, times, outputs):
        q = statistics.quantiles(t, n=4)
        deviation = float(np.abs(out - outputs[0]).max()) / scale
        print(f"{model}: median {statistics.median(t) * 1e3:.2f} ms "
              f"[{q[0] * 1e3:.2f}-{q[2] * 1e3:.2f}], "
              f"{statistics.median(t) / reference:.3f}x of the first, "
              f"max deviation {deviation:.1e}")


if __name__ == "__main__":
    main()
