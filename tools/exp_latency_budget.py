#!/usr/bin/env python3
"""SP-LAMP against uniform L1, L2, FPGM and global LAMP at equal latency (issue 11, part 3b).

Run from the repository root with the venv that has onnxruntime and matplotlib (as for
tools/exp_sparsity.py, whose steps, timing and summaries this script imports), the system
Python's torch for fine-tuning and a release build of nnirc:

    target/exp-venv/bin/python tools/exp_latency_budget.py          # (or target/ort-venv)

One command writes docs/experiments/latency-budget/results.json (every number, the settings,
the machine), table.md and acc_vs_latency.svg, and the table between the `latency-budget-table`
markers of docs/experiments.md. `--replot` redraws those from results.json; `--collect` rebuilds
them from the work directory without computing anything new (what an interrupted run finished).

Every method prunes the output side (`--side output`: one structured mask per coupled group),
except the two `-input` ones (`--side input`: one mask per consumer, unconstrained):
`sp-lamp-input` (export-aware SP-LAMP with an absolute budget: sp-lamp's predicted latency for
that seed and budget, so both are priced the same way) and `l1-input` (uniform L1, the UPSCALE
recipe, at the amount matched like the baselines below).
For each seed's trained model (exp_sparsity.SEED_MODELS) and each budget f (BUDGETS, a fraction
of the dense model's predicted latency), in the work directory (--work, default
target/exp-latency-budget; every step skipped when its output exists, so a run resumes):

    nnirc prune MODEL --method sp-lamp --side output --latency-budget f --latency-table T
                -o sp-lamp/pruned.nnir --json sp-lamp/prune.json
    nnirc optimize pruned.nnir --mode upscale --verify -o upscale.nnir --report upscale.report.json
    nnirc latency predict upscale.nnir --table T --json predict.json       -> the target

and for l1, l2, fpgm (`--method M --amount A`, the same A in every coupled group) and global
LAMP (`--method lamp --global --amount A`) the amount A whose optimized model's predicted latency
(`nnirc latency predict` of `nnirc optimize --mode upscale` of the pruned model, total with
reorders and overhead) is closest to sp-lamp's for that seed and budget. The predicted latency
is NOT monotone in A (a width that leaves a multiple of the NCHWc block is slower than a
narrower multiple: for seed 0, l1 at A = 1/16 predicts 1.47x dense), so bisection would stop
at whichever step it met first. Instead every distinct A is tried: A = j / C_max for the
per-group methods (the widths floor(A * C) change only there; C_max = 64 here) and j / total for
global LAMP (total = the channels of all groups, 256 here), j = 0, 1, ...; the scan is done once
per seed and method (scan/METHOD.json) and reused for every budget. The closest A is taken
(ties: the smaller A, which keeps more channels); TOLERANCE (5%) is the relative gap to
sp-lamp's prediction accepted as "equal", and a configuration beyond it is flagged in
results.json (`within_tolerance`) and in the table.

Then for every method, as in tools/exp_sparsity.py: `nnirc eval` of the masked program (all
10,000 test images), tools/finetune_fashion.py (--ft-images, default 10,240: the fixed subset
of exp_sparsity's short budget, 80 steps, 0.17 epoch, not an epoch) and `nnirc eval` again,
`nnirc export` of the masked program (the reference) and of the upscale model. Latency: per
seed and budget, one process times the dense export and the five methods' upscale exports side
by side (exp_sparsity.time_sessions: onnxruntime, 1 thread, batch 1, --runs interleaved
rounds, output checked against the masked program); reported as each median over the dense
median, and that ratio over f.

Equal *measured* latency (`l1@measured`, `lamp-global@measured`; --phase measured, part of the
default --phase all): the predictor is far off for narrow groups here, so equal predicted
latency is not equal measured latency. For l1 and global LAMP, every distinct amount's upscale
export is timed (SCAN_RUNS rounds) in one process together with the dense export and sp-lamp's
exports of every budget (scan-measured/METHOD.json), and the amount whose measured ratio to
dense is closest to sp-lamp's is taken; those configurations then go through the same eval,
fine-tuning and side-by-side timing (bF/latency-measured.json, with the dense model and sp-lamp
again). L2 and FPGM give the same widths as L1 at every amount, so they are not repeated.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exp_sparsity as xs  # noqa: E402  (steps, timing, summaries)
from exp_sparsity import REPO, SEED_MODELS, load, save, step, summary  # noqa: E402

TABLE = "docs/latency/tables/fashion_cnn.json"
BUDGETS = [0.5, 0.7, 0.85]
# method -> `nnirc prune` flags besides --side and --amount; the sp-lamp ones set a budget
METHODS = {
    "sp-lamp": ["--method", "sp-lamp"],
    "sp-lamp-input": ["--method", "sp-lamp"],
    "l1-input": ["--method", "l1"],
    "l1": ["--method", "l1"],
    "l2": ["--method", "l2"],
    "fpgm": ["--method", "fpgm"],
    "lamp-global": ["--method", "lamp", "--global"],
}
# methods that prune the input side (unconstrained, per consumer); the others prune outputs
INPUT_SIDE = {"sp-lamp-input", "l1-input"}
# methods with a latency budget instead of an amount
BUDGETED = {"sp-lamp", "sp-lamp-input"}
TOLERANCE = 0.05
# Matched by *measured* latency instead (the predictor is far off for narrow groups; see
# docs/experiments.md): name -> the method whose flags it uses.
MEASURED = {"l1@measured": "l1", "lamp-global@measured": "lamp-global"}
ALL_METHODS = list(METHODS) + list(MEASURED)
SCAN_RUNS, SCAN_WARMUP = 100, 5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (head -60 tools/exp_latency_budget.py).")
    p.add_argument("--seeds", nargs="+", type=int, default=sorted(SEED_MODELS))
    p.add_argument("--budgets", nargs="+", type=float, default=BUDGETS)
    p.add_argument("--ft-images", type=int, default=10240)
    p.add_argument("--no-finetune", action="store_true", help="skip fine-tuning (its columns stay empty)")
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--table", default=os.path.join(REPO, TABLE))
    p.add_argument("--work", default=os.path.join(REPO, "target", "exp-latency-budget"))
    p.add_argument("--out", default=os.path.join(REPO, "docs", "experiments", "latency-budget"))
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"))
    p.add_argument("--torch-python", default="/usr/bin/python3")
    p.add_argument("--replot", action="store_true", help="only redraw table and plot from OUT/results.json")
    p.add_argument("--collect", action="store_true", help="build the outputs from the work directory, compute nothing")
    p.add_argument("--phase", choices=["all", "predicted", "measured"], default="all",
                   help="predicted: the five methods at equal predicted latency; measured: the @measured ones")
    return p.parse_args()


# ---------------------------------------------------------------- steps

def with_weights(args, seed, d):
    """Make `d` a directory where a pruned copy of the seed's model finds its weights."""
    base, model, wfile = xs.seed_dir(args, seed)
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(f"{d}/{wfile}"):
        os.link(os.path.join(base, wfile), f"{d}/{wfile}")
    return model


def optimize_predict(args, pruned, d, log, verify=True):
    """upscale.nnir (+report, +onnx when verify) and predict.json in d; returns predicted total us."""
    n = args.nnirc
    step(f"{d}/upscale.report.json", [n, "optimize", pruned, "--mode", "upscale", *(["--verify"] if verify else []),
                                      "-o", f"{d}/upscale.nnir", "--report", f"{d}/upscale.report.json",
                                      "--color", "never"], log)
    step(f"{d}/predict.json", [n, "latency", "predict", f"{d}/upscale.nnir", "--table", args.table,
                               "--json", f"{d}/predict.json", "--color", "never"], log)
    return load(f"{d}/predict.json")["total_us"]


def scan(args, seed, method, log):
    """Predicted latency (us) of the optimized model at every distinct amount; cached per seed."""
    base, _, _ = xs.seed_dir(args, seed)
    path = f"{base}/scan/{method}.json"
    if os.path.exists(path):
        return {float(a): v for a, v in load(path).items()}
    d = f"{base}/scan/{method}.tmp"
    model = with_weights(args, seed, d)
    steps = 256 if "--global" in METHODS[method] else 64
    quiet = []  # the scan's 64 or 256 probes are not logged one by one
    t0 = time.perf_counter()
    out = {}
    for j in range(steps):
        a = j / steps
        for f in ("pruned.nnir", "upscale.report.json", "predict.json"):
            if os.path.exists(f"{d}/{f}"):
                os.remove(f"{d}/{f}")
        step(f"{d}/pruned.nnir", [args.nnirc, "prune", model, "--side", side(method), *METHODS[method], "--amount",
                                  repr(a), "-o", f"{d}/pruned.nnir", "--color", "never"], quiet)
        out[repr(a)] = optimize_predict(args, f"{d}/pruned.nnir", d, quiet, verify=False)
    save(path, out)
    log.append({"cmd": f"scan seed {seed} {method} ({steps} amounts)", "s": round(time.perf_counter() - t0, 1)})
    return {float(a): v for a, v in out.items()}


def choose_amount(table, target):
    """The amount whose predicted latency is closest to target (ties: the smaller amount)."""
    a = min(sorted(table), key=lambda x: abs(table[x] - target))
    return a, table[a] / target - 1


def side(method):
    """`nnirc prune --side` of a method."""
    return "input" if MEASURED.get(method, method) in INPUT_SIDE else "output"


def prepare_config(args, seed, budget, method, amount, log):
    base, _, _ = xs.seed_dir(args, seed)
    d = f"{base}/b{budget:.2f}/{method}"
    model = with_weights(args, seed, d)
    n = args.nnirc
    pruned = f"{d}/pruned.nnir"
    if method == "sp-lamp":
        flags = ["--latency-budget", f"{budget:g}", "--latency-table", args.table]
    elif method == "sp-lamp-input":  # `amount`: sp-lamp's predicted latency in us, as the budget
        flags = ["--latency-budget", f"{amount / 1e3:.6f}ms", "--latency-table", args.table]
    else:
        flags = ["--amount", repr(amount)]
    step(pruned, [n, "prune", model, "--side", side(method), *METHODS[MEASURED.get(method, method)], *flags, "-o", pruned,
                  "--json", f"{d}/prune.json", "--color", "never"], log)
    optimize_predict(args, pruned, d, log)
    step(f"{d}/upscale.onnx", [n, "export", f"{d}/upscale.nnir", "-o", f"{d}/upscale.onnx", "--color", "never"], log)
    step(f"{d}/masked.onnx", [n, "export", pruned, "-o", f"{d}/masked.onnx", "--color", "never"], log)
    step(f"{d}/eval_pruned.json", xs.eval_cmd(args, pruned, f"{d}/eval_pruned.json"), log)
    return d


def finetune_config(args, seed, d, log):
    ft = f"{d}/finetuned_{args.ft_images}.nnir"
    step(f"{d}/finetuned_{args.ft_images}.json",
         [args.torch_python, "tools/finetune_fashion.py", f"{d}/pruned.nnir", "-o", ft,
          "--images", str(args.ft_images), "--seed", str(seed)], log)
    ev = f"{d}/eval_finetuned_{args.ft_images}.json"
    step(ev, xs.eval_cmd(args, ft, ev), log)


def side_by_side(args, seed, budget, names, file, label, log):
    """`names`' upscale exports of one seed and budget timed with the dense export in one process
    (their outputs checked against their masked programs); cached in bF/`file`."""
    base, _, _ = xs.seed_dir(args, seed)
    bdir = f"{base}/b{budget:.2f}"
    path = f"{bdir}/{file}"
    if os.path.exists(path):
        old = load(path)
        if set(old["median_ms"]) == {"dense", *names} and old["runs"] == args.runs:
            return old
    files = {"dense": f"{base}/dense.onnx", **{m: f"{bdir}/{m}/upscale.onnx" for m in names}}
    refs = {m: f"{bdir}/{m}/masked.onnx" for m in names}
    r = xs.time_sessions(files, refs, seed, args.runs, args.warmup, label)
    out = {"seed": seed, "budget": budget, "runs": args.runs, "warmup": args.warmup, "seconds": round(r["seconds"], 1),
           "loadavg": os.getloadavg()[0], "median_ms": r["median_ms"],
           "q1_ms": {n: v[0] for n, v in r["quartiles_ms"].items()},
           "q3_ms": {n: v[2] for n, v in r["quartiles_ms"].items()}, "rel_dev_from_masked": r["rel_dev_from_masked"]}
    save(path, out)
    print(f"  {r['seconds']:6.1f} s  latency {label}", flush=True)
    log.append({"cmd": f"latency {label}", "s": round(r["seconds"], 1)})
    return out


def measure(args, seed, budget, log):
    """Every method of the predicted phase, side by side (bF/latency.json)."""
    return side_by_side(args, seed, budget, list(METHODS), "latency.json", f"seed {seed} budget {budget}", log)


def measured_scan(args, seed, method, log):
    """Measured latency / dense of the upscale export at every distinct amount, side by side with
    the dense export and sp-lamp's exports of every budget (one process; SCAN_RUNS rounds)."""
    base, _, _ = xs.seed_dir(args, seed)
    path = f"{base}/scan-measured/{method}.json"
    if os.path.exists(path):
        return load(path)
    files = {"dense": f"{base}/dense.onnx"}
    files.update({f"sp-lamp/b{b:.2f}": f"{base}/b{b:.2f}/sp-lamp/upscale.onnx" for b in args.budgets})
    while not all(os.path.exists(f) for f in files.values()):  # the predicted phase makes them
        time.sleep(10)
    d = f"{base}/scan-measured/{method}.tmp"
    model = with_weights(args, seed, d)
    steps = 256 if "--global" in METHODS[method] else 64
    quiet = []
    t0 = time.perf_counter()
    n = args.nnirc
    for j in range(steps):
        a = j / steps
        step(f"{d}/a{j}.nnir", [n, "prune", model, "--side", "output", *METHODS[method], "--amount", repr(a),
                                "-o", f"{d}/a{j}.nnir", "--color", "never"], quiet)
        step(f"{d}/a{j}.up.nnir", [n, "optimize", f"{d}/a{j}.nnir", "--mode", "upscale", "-o", f"{d}/a{j}.up.nnir",
                                   "--color", "never"], quiet)
        step(f"{d}/a{j}.onnx", [n, "export", f"{d}/a{j}.up.nnir", "-o", f"{d}/a{j}.onnx", "--color", "never"], quiet)
        files[repr(a)] = f"{d}/a{j}.onnx"
    r = xs.time_sessions(files, {}, seed, SCAN_RUNS, SCAN_WARMUP, f"scan seed {seed} {method}")
    dense = r["median_ms"]["dense"]
    out = {"runs": SCAN_RUNS, "warmup": SCAN_WARMUP, "loadavg": os.getloadavg()[0],
           "ratio": {k: v / dense for k, v in r["median_ms"].items()}}
    save(path, out)
    shutil.rmtree(d)
    log.append({"cmd": f"measured scan seed {seed} {method} ({steps} amounts)",
                "s": round(time.perf_counter() - t0, 1)})
    return out


def measure_matched(args, seed, budget, log):
    """The @measured configurations timed side by side with the dense model and sp-lamp."""
    return side_by_side(args, seed, budget, ["sp-lamp", *MEASURED], "latency-measured.json",
                        f"seed {seed} budget {budget} (measured)", log)


def compute_measured(args, log):
    for seed in args.seeds:
        dirs = []
        for name, method in MEASURED.items():
            sc = measured_scan(args, seed, method, log)
            amounts = {float(k): v for k, v in sc["ratio"].items() if k != "dense" and not k.startswith("sp-lamp")}
            for budget in args.budgets:
                target = sc["ratio"][f"sp-lamp/b{budget:.2f}"]
                a, err = choose_amount(amounts, target)
                print(f"seed {seed} budget {budget}: {name} amount {a:.4f} measures {amounts[a]:.3f} x dense "
                      f"(sp-lamp {target:.3f}, {100 * err:+.1f}%)", flush=True)
                dirs.append(prepare_config(args, seed, budget, name, a, log))
        for budget in args.budgets:
            measure_matched(args, seed, budget, log)
        if not args.no_finetune:
            for d in dirs:
                finetune_config(args, seed, d, log)


def compute(args, log):
    if args.phase != "predicted":
        if args.phase == "all":
            compute(argparse.Namespace(**{**vars(args), "phase": "predicted"}), log)
        compute_measured(args, log)
        return
    for seed in args.seeds:
        xs.prepare_dense(args, seed, log)
        base, model, _ = xs.seed_dir(args, seed)
        with_weights(args, seed, f"{base}/dense-predict")
        dense_pred = optimize_predict(args, model, f"{base}/dense-predict", log, verify=False)
        print(f"seed {seed}: dense predicted {dense_pred:.1f} us", flush=True)
        scans = {m: scan(args, seed, m, log) for m in METHODS if m not in BUDGETED}
        dirs = []
        for budget in args.budgets:
            d = prepare_config(args, seed, budget, "sp-lamp", None, log)
            target = load(f"{d}/predict.json")["total_us"]
            dirs.append(d)
            dirs.append(prepare_config(args, seed, budget, "sp-lamp-input", target, log))
            for m, table in scans.items():
                a, err = choose_amount(table, target)
                print(f"seed {seed} budget {budget}: {m} amount {a:.4f} predicts {table[a]:.1f} us "
                      f"(sp-lamp {target:.1f} us, {100 * err:+.1f}%)", flush=True)
                dirs.append(prepare_config(args, seed, budget, m, a, log))
            measure(args, seed, budget, log)
        if not args.no_finetune:
            for d in dirs:
                finetune_config(args, seed, d, log)


# ---------------------------------------------------------------- results

def collect(args):
    dense, runs = [], []
    for seed in args.seeds:
        base = os.path.join(args.work, f"seed{seed}")
        if not os.path.exists(f"{base}/eval_dense.json"):
            continue
        rep = load(f"{base}/dense.report.json")["after"]
        dense_pred = load(f"{base}/dense-predict/predict.json")["total_us"]
        dense.append({"seed": seed, "top1": load(f"{base}/eval_dense.json")["top1"], "macs": rep["macs"],
                      "params": rep["params"], "predicted_us": dense_pred})
        for budget in args.budgets:
            bdir = f"{base}/b{budget:.2f}"
            if not os.path.exists(f"{bdir}/latency.json"):
                continue
            target = load(f"{bdir}/sp-lamp/predict.json")["total_us"]
            for m in ALL_METHODS:
                d = f"{bdir}/{m}"
                lat_path = f"{bdir}/latency-measured.json" if m in MEASURED else f"{bdir}/latency.json"
                if not (os.path.exists(lat_path) and os.path.exists(f"{d}/eval_pruned.json")):
                    continue
                lat = load(lat_path)
                pj = load(f"{d}/prune.json")
                pred = load(f"{d}/predict.json")["total_us"]
                rep = load(f"{d}/upscale.report.json")["after"]
                ev_ft = f"{d}/eval_finetuned_{args.ft_images}.json"
                ft = f"{d}/finetuned_{args.ft_images}.json"
                ratio = lat["median_ms"][m] / lat["median_ms"]["dense"]
                # the gap to sp-lamp in what the method was matched by
                gap = (lat["median_ms"][m] / lat["median_ms"]["sp-lamp"] - 1) if m in MEASURED else pred / target - 1
                runs.append({
                    "seed": seed, "budget": budget, "method": m,
                    "match": "measured" if m in MEASURED else "predicted",
                    "gap_vs_sp_lamp": gap,
                    "amount": pj["amount"],
                    "widths": {lay["name"]: lay["kept"] for lay in pj["layers"]},
                    "sp_lamp_latency": pj["latency"] and {k: pj["latency"][k] for k in
                                                          ("budget_ms", "dense_ms", "predicted_ms", "score",
                                                           "max_score", "converged", "rounds", "width_step")},
                    "predicted_us": pred, "predicted_ratio": pred / dense_pred,
                    "predicted_vs_sp_lamp": pred / target - 1,
                    "within_tolerance": abs(gap) <= TOLERANCE,
                    "macs": rep["macs"], "params": rep["params"],
                    "params_ratio": rep["params"] / dense[-1]["params"],
                    "macs_ratio": rep["macs"] / dense[-1]["macs"],
                    "latency_ms": lat["median_ms"][m], "dense_latency_ms": lat["median_ms"]["dense"],
                    "latency_ratio": ratio, "latency_over_budget": ratio / budget,
                    "top1_pruned": load(f"{d}/eval_pruned.json")["top1"],
                    "top1_finetuned": load(ev_ft)["top1"] if os.path.exists(ev_ft) else None,
                    "finetune": ({k: load(ft)[k] for k in ("images", "steps", "lr", "seconds", "loss_first",
                                                             "loss_last10")} if os.path.exists(ft) else None),
                })
    return dense, runs


def aggregate(data):
    rows = []
    for budget in sorted({r["budget"] for r in data["runs"]}):
        for m in ALL_METHODS:
            rs = [r for r in data["runs"] if r["budget"] == budget and r["method"] == m]
            if not rs:
                continue
            row = {"budget": budget, "method": m, "seeds": [r["seed"] for r in rs],
                   "amounts": [r["amount"] for r in rs],
                   "all_within_tolerance": all(r["within_tolerance"] for r in rs)}
            for k in ("top1_pruned", "top1_finetuned", "predicted_ratio", "gap_vs_sp_lamp", "latency_ratio",
                      "latency_over_budget", "params_ratio", "macs_ratio"):
                row[k] = summary([r[k] for r in rs])
            rows.append(row)
    return rows


def cell(s, scale=100, digits=1, sd=True):
    if s is None:
        return "-"
    t = f"{scale * s['mean']:.{digits}f}"
    if sd:
        t += f" ± {scale * s['sd']:.{digits}f}"
    return t


def table(data):
    d = data["dense"]
    top = summary([x["top1"] for x in d])
    s = data["settings"]
    sides = ("Every method prunes the output side (coupled groups)."
             if not any(r["method"] in INPUT_SIDE for r in data["summary"]) else
             "The `-input` methods prune the input side (one mask per consumer, unconstrained; sp-lamp-input "
             "priced by its export), the others the output side (coupled groups).")
    lines = [
        f"Dense models (seeds {', '.join(str(x['seed']) for x in d)}): top-1 {cell(top)}%, "
        f"{d[0]['params']:,} params, predicted {d[0]['predicted_us']:.0f} us. {sides} "
        f"Accuracy: mean ± sd over the seeds; fine-tuning on {s['ft_images']:,} "
        f"images ({s['ft_images'] / 60000:.2f} epoch). Latency: onnxruntime, 1 thread, median of {s['runs']} "
        f"interleaved runs over the dense median, mean (min–max) over the seeds; \"/ f\" divides it by the "
        f"budget. Predicted: `nnirc latency predict` of the upscale model over the dense prediction; "
        f"\"vs sp-lamp\": the gap of the method's prediction to sp-lamp's (for the @measured rows: "
        f"of its measured latency, same process) (tolerance "
        f"{100 * s['tolerance']:.0f}%; * = some seed beyond it).",
        "",
        "| budget f | method | amount (per seed) | predicted / dense | vs sp-lamp | measured / dense | measured / f "
        "| params kept | top-1 % pruned | top-1 % fine-tuned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["summary"]:
        amounts = "budget" if r["method"] in BUDGETED else ", ".join(f"{a:.3f}" for a in r["amounts"])
        flag = "" if r["all_within_tolerance"] else " *"
        vs = "-" if r["method"] == "sp-lamp" else (
            f"{100 * r['gap_vs_sp_lamp']['min']:+.1f} to {100 * r['gap_vs_sp_lamp']['max']:+.1f}%{flag}")
        lines.append(
            f"| {r['budget']:.2f} | {r['method']} | {amounts} | {xs.ratio_cell(r['predicted_ratio'])} | {vs} "
            f"| {xs.ratio_cell(r['latency_ratio'])} | {xs.ratio_cell(r['latency_over_budget'])} | {xs.ratio_cell(r['params_ratio'])} "
            f"| {cell(r['top1_pruned'])} | {cell(r['top1_finetuned'])} |")
    return "\n".join(lines) + "\n"


STYLE = {"sp-lamp": ("tab:red", "o"), "sp-lamp-input": ("tab:orange", "P"), "l1-input": ("tab:olive", "X"),
         "l1": ("tab:blue", "s"), "l2": ("tab:cyan", "v"),
         "fpgm": ("tab:green", "D"), "lamp-global": ("tab:purple", "^"),
         "l1@measured": ("tab:blue", "s"), "lamp-global@measured": ("tab:purple", "^")}


def plot(data, out):
    plt = xs.pyplot()

    rows = data["summary"]
    dense = summary([x["top1"] for x in data["dense"]])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for ax, key, title in ((axes[0], "top1_pruned", "post-training (no fine-tuning)"),
                           (axes[1], "top1_finetuned", f"fine-tuned ({data['settings']['ft_images']:,} images)")):
        for b in sorted({r["budget"] for r in rows}):
            ax.axvline(b, color="gray", linestyle=":", linewidth=0.8)
        for m in ALL_METHODS:
            rs = [r for r in rows if r["method"] == m and r[key] is not None]
            if not rs:
                continue
            colour, marker = STYLE[m]
            ax.errorbar([r["latency_ratio"]["mean"] for r in rs], [100 * r[key]["mean"] for r in rs],
                        xerr=[[max(0.0, r["latency_ratio"]["mean"] - r["latency_ratio"]["min"]) for r in rs],
                              [max(0.0, r["latency_ratio"]["max"] - r["latency_ratio"]["mean"]) for r in rs]],
                        yerr=[[max(0.0, 100 * (r[key]["mean"] - r[key]["min"])) for r in rs],
                              [max(0.0, 100 * (r[key]["max"] - r[key]["mean"])) for r in rs]],
                        color=colour, marker=marker, capsize=2, markersize=5, linewidth=1,
                        linestyle="--" if m in MEASURED else "-", mfc="white" if m in MEASURED else colour,
                        label=m)
        ax.errorbar([1.0], [100 * dense["mean"]], yerr=[[max(0.0, 100 * (dense["mean"] - dense["min"]))],
                    [max(0.0, 100 * (dense["max"] - dense["mean"]))]], color="black", marker="*", markersize=9,
                    capsize=2, linestyle="none", label="dense")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("measured onnxruntime latency / dense (dotted: the budgets f)")
        ax.set_ylabel("top-1 % (10k test images)")
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("Fashion-MNIST, output-side pruning at equal predicted latency: accuracy against measured latency "
                 "(mean over seeds, bars: min–max)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "acc_vs_latency.svg"), metadata={"Date": None})
    plt.close(fig)


def write_outputs(data, out):
    data["summary"] = aggregate(data)
    text = table(data)
    xs.write_files(data, text, out, "tools/exp_latency_budget.py")
    plot(data, out)
    print(text)


def main():
    args = parse_args()
    os.chdir(REPO)
    if args.replot:
        write_outputs(load(os.path.join(args.out, "results.json")), args.out)
        return
    started = time.time()
    log = []
    if not args.collect:
        compute(args, log)
    dense, runs = collect(args)
    data = {
        "date": datetime.date.today().isoformat(),
        "command": "python tools/exp_latency_budget.py " + " ".join(sys.argv[1:]),
        "settings": {"seeds": args.seeds, "budgets": args.budgets, "methods": METHODS, "measured_methods": MEASURED,
                     "scan_runs": SCAN_RUNS, "scan_warmup": SCAN_WARMUP, "side": "output",
                     "tolerance": TOLERANCE, "latency_table": os.path.relpath(args.table, REPO),
                     "ft_images": args.ft_images, "runs": args.runs, "warmup": args.warmup,
                     "optimize": ["--mode", "upscale"], "seed_models": {s: SEED_MODELS[s] for s in args.seeds}},
        "machine": xs.machine_info(),
        "seconds_this_invocation": round(time.time() - started, 1),
        "steps_run": log,
        "dense": dense,
        "runs": runs,
    }
    write_outputs(data, args.out)


if __name__ == "__main__":
    main()
