#!/usr/bin/env python3
"""Validation of `nnirc latency predict` against onnxruntime: predicted vs measured latency of
the zoo models, dense and pruned.

Run from the repository root after `cargo build --release --features onnxruntime` and with the
tables of docs/latency/tables/ (made by `nnirc latency measure examples/zoo/M.nnir -o
docs/latency/tables/M.json`; this script measures a missing one first):

    target/ort-venv/bin/python benches/latency_validate.py

It writes docs/latency/validation.json (every number, the machine, the commands) and
docs/latency/validation.md (also printed). `--replot` rewrites the markdown from the JSON.

For each zoo model and each amount (default 0.3 and 0.5) the variants are the ones of
benches/latency.py (input-side L1 masks, seeded random weights: union, naive, upscale-views,
upscale-graph, upscale-align8) plus `constrained`: coupled output-side L1 masks at the same
amount (`nnirc prune --side output`), exported with `nnirc optimize --mode upscale`. The dense
model is measured once per model. Every variant of one model is timed side by side in this
process as benches/latency.py does (one session each, 1 thread, sequential, default graph
optimizations; warm-up, then rounds in a seeded shuffled order; median), and predicted with
`nnirc latency predict V.nnir --table docs/latency/tables/M.json`.

Reported: each (model, variant) pair's error (predicted / measured - 1), the share of the
pruned variants within +-10% (the dense model calibrated its table, so its own error is
in-sample and not counted), and per model the Spearman rank correlation between predicted and
measured latency over all its variants.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import latency as bench  # noqa: E402  (benches/latency.py: variants, sessions, timing)

REPO = bench.REPO


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring and docs/benchmarks.md.")
    p.add_argument("--models", nargs="+", default=bench.ZOO, metavar="MODEL")
    p.add_argument("--amounts", nargs="+", type=float, default=[0.3, 0.5], metavar="A")
    p.add_argument("--runs", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs per variant (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", default=os.path.join(REPO, "docs", "latency", "tables"),
                   help="directory of MODEL.json tables (default docs/latency/tables)")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "latency"),
                   help="where validation.json and validation.md go (default docs/latency)")
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"))
    p.add_argument("--replot", action="store_true", help="only rewrite validation.md")
    return p.parse_args()


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise bench.StepError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.strip()}")
    return r


def predict_ms(args, nnir, table):
    # Into the work directory: the dense model's .nnir is the zoo file itself.
    out = os.path.join(args.work_dir, os.path.basename(nnir) + f".{abs(hash(nnir))}.prediction.json")
    run([args.nnirc, "latency", "predict", nnir, "--table", table, "--json", out])
    with open(out) as f:
        return json.load(f)["total_us"] / 1e3


def spearman(xs, ys):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else float("nan")


def markdown(data):
    # The dense model calibrates its table (docs/latency.md): its own error is in-sample, so
    # the counts are over the pruned variants.
    rows = [r for r in data["rows"] if "predicted_ms" in r and "measured_ms" in r
            and r["variant"] != "dense"]
    within = [r for r in rows if abs(r["error"]) <= 0.10]
    lines = [
        f"Measured {data['date']} on {data['machine']['cpu']} "
        f"({data['machine'].get('logical_cpus', '?')} logical CPUs), onnxruntime "
        f"{data['machine']['onnxruntime']}; load average {data['loadavg_start'][0]:.2f} at the start, "
        f"{data['loadavg_end'][0]:.2f} at the end; {data['wall_s']} s. Command: `{data['command']}`.",
        "",
        f"**{len(within)} of {len(rows)} (model, pruned variant) pairs predicted within +-10% "
        f"({100 * len(within) / max(len(rows), 1):.0f}%)**; mean |error| "
        f"{100 * sum(abs(r['error']) for r in rows) / max(len(rows), 1):.1f}%.",
        "",
        "| model | Spearman (predicted vs measured ranking) | pairs | within +-10% | worst error |",
        "|---|---|---|---|---|",
    ]
    for m, s in data["spearman"].items():
        mine = [r for r in rows if r["model"] == m]
        worst = max(mine, key=lambda r: abs(r["error"]), default=None)
        lines.append(f"| {m} | {s:.3f} | {len(mine)} | {sum(abs(r['error']) <= 0.10 for r in mine)} | "
                     + (f"{100 * worst['error']:+.1f}% ({worst['variant']} @{worst['amount']:g})" if worst else "-")
                     + " |")
    lines += ["", "| model | amount | variant | measured ms [IQR] | predicted ms | error |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        if "error_text" in r:
            lines.append(f"| {r['model']} | {r['amount']:g} | {r['variant']} | failed: {r['error_text'][:80]} | | |")
            continue
        lat = r["latency"]
        lines.append(f"| {r['model']} | {r['amount']:g} | {r['variant']} | {lat['median']:.2f} "
                     f"[{lat['q1']:.2f}-{lat['q3']:.2f}] | {r['predicted_ms']:.2f} | {100 * r['error']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    if args.replot:
        with open(os.path.join(args.out, "validation.json")) as f:
            data = json.load(f)
        text = markdown(data)
        with open(os.path.join(args.out, "validation.md"), "w") as f:
            f.write(text)
        print(text, end="")
        return 0
    import numpy as np
    import onnxruntime as ort
    t_start = time.perf_counter()
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {
        "command": "python benches/latency_validate.py" + "".join(" " + a for a in sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "machine": bench.machine_info(),
        "loadavg_start": os.getloadavg(),
        "settings": {"runs": args.runs, "warmup": args.warmup, "seed": args.seed},
        "rows": [],
        "table_seconds": {},
        "spearman": {},
    }
    os.makedirs(args.out, exist_ok=True)
    args.work_dir = tempfile.mkdtemp(prefix="nnirc-validate-")
    args.weights_seed = 0
    failed = False
    for mi, name in enumerate(args.models):
        model = bench.model_path(name)
        label = os.path.basename(model)[:-len(".nnir")]
        table = os.path.join(args.tables, label + ".json")
        if not os.path.exists(table):
            t0 = time.perf_counter()
            run([args.nnirc, "latency", "measure", model, "-o", table])
            data["table_seconds"][label] = round(time.perf_counter() - t0, 1)
        mdir = os.path.join(args.work_dir, label)
        os.makedirs(mdir, exist_ok=True)
        log = []
        paths, nnirs, meta = {}, {}, {}
        dense_onnx, _ = bench.prepare_unpruned(args, model, mdir, log)
        paths["dense"], nnirs["dense"], meta["dense"] = dense_onnx, model, (0.0, "dense")
        for amount in args.amounts:
            adir = os.path.join(mdir, f"a{amount:g}")
            os.makedirs(adir, exist_ok=True)
            _, variants = bench.prepare_amount(args, model, amount, adir, log)
            for v, got in variants.items():
                key = f"{v}@{amount:g}"
                if isinstance(got, bench.StepError):
                    data["rows"].append({"model": label, "amount": amount, "variant": v, "error_text": str(got)})
                    failed = True
                    continue
                paths[key], nnirs[key], meta[key] = got[0], got[0][:-len(".onnx")] + ".nnir", (amount, v)
            # constrained: coupled output-side masks at the same amount, exported small.
            base = os.path.join(adir, "constrained")
            try:
                w = ["--random-weights", "0"]
                bench.nnirc(args, ["prune", model, "--amount", str(amount), "--side", "output", *w, "-o", base + ".masked.nnir"], log)
                bench.nnirc(args, ["optimize", base + ".masked.nnir", *w, "--mode", "upscale", "-o", base + ".nnir"], log)
                bench.nnirc(args, ["export", base + ".nnir", "-o", base + ".onnx"], log)
                key = f"constrained@{amount:g}"
                paths[key], nnirs[key], meta[key] = base + ".onnx", base + ".nnir", (amount, "constrained")
            except bench.StepError as e:
                data["rows"].append({"model": label, "amount": amount, "variant": "constrained", "error_text": str(e)})
                failed = True
        sessions = {k: bench.session(ort, p) for k, p in paths.items()}
        shape = [d if isinstance(d, int) else 1 for d in sessions["dense"].get_inputs()[0].shape]
        x = np.random.default_rng(args.seed + mi).standard_normal(shape, dtype=np.float32)
        times = bench.time_round_robin(sessions, x, args.runs, args.warmup, args.seed + mi)
        del sessions
        measured, predicted = [], []
        for key in paths:
            amount, v = meta[key]
            row = {"model": label, "amount": amount, "variant": v, "latency": bench.stats(times[key])}
            try:
                row["predicted_ms"] = predict_ms(args, nnirs[key], table)
                row["measured_ms"] = row["latency"]["median"]
                row["error"] = row["predicted_ms"] / row["measured_ms"] - 1
                measured.append(row["measured_ms"])
                predicted.append(row["predicted_ms"])
            except bench.StepError as e:
                row["error_text"] = str(e)
                failed = True
            data["rows"].append(row)
        data["spearman"][label] = spearman(predicted, measured)
        print(f"{label}: spearman {data['spearman'][label]:.3f}; "
              + ", ".join(f"{r['variant']}@{r['amount']:g} {100 * r['error']:+.1f}%"
                          for r in data["rows"] if r["model"] == label and "error" in r), file=sys.stderr)
    shutil.rmtree(args.work_dir, ignore_errors=True)
    data["loadavg_end"] = os.getloadavg()
    data["wall_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(args.out, "validation.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    text = markdown(data)
    with open(os.path.join(args.out, "validation.md"), "w") as f:
        f.write(text)
    print(text, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
