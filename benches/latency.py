#!/usr/bin/env python3
"""onnxruntime CPU latency of the zoo exports: unpruned, union, naive and upscale.

Run from the repository root after `cargo build --release` (environment: docs/benchmarks.md,
section "Latency in onnxruntime"):

    python3 benches/latency.py

This one command regenerates docs/latency/results.json (every number, the machine and the
versions), docs/latency/table.md (also printed on stdout) and docs/latency/latency.svg.
`python3 benches/latency.py --replot` redraws the table and the plot from results.json.

For each model (default: the six of examples/zoo) and each amount of input-side L1 pruning
(default 0.3 and 0.5), with seeded random weights (`--random-weights 0`, the same weights for
every variant):

    nnirc prune    --random-weights 0 --amount A --side input MODEL.nnir -o pruned.nnir
    nnirc export   --random-weights 0 MODEL.nnir -o unpruned.onnx     (the dense model)
    nnirc export   --random-weights 0 pruned.nnir -o masked.onnx      (the masked program:
                                                                       reference outputs only)
    nnirc optimize --random-weights 0 pruned.nnir --mode M [--cost-model C] -o V.nnir --report V.json
    nnirc export   V.nnir -o V.onnx

with V = union (`--mode union`), naive (`--mode naive`), upscale-views (`--mode
upscale --cost-model views`), upscale-graph (`--mode upscale --cost-model graph`) and
upscale-align8 (`--mode upscale --cost-model views --align 8`: channel counts rounded up to
multiples of 8, onnxruntime's NCHWc block with AVX2) and ort-cpu (`--mode upscale --target
ort-cpu --latency-table docs/latency/tables/MODEL.json`: the deploy target, segment widths and
whole reads chosen under the measured latency model). MACs,
params and copies come from the reports (the unpruned ones from `nnirc optimize --mode naive` of
the unmasked model).

All variants of one model and amount are then measured in this process: one
onnxruntime.InferenceSession per variant (CPUExecutionProvider, intra_op_num_threads=1,
inter_op_num_threads=1, ORT_SEQUENTIAL, default graph optimizations), the same seeded input for
all; a sanity check (naive and both upscale exports must equal the masked program's outputs,
relative error <= --rtol; union prunes more, so only its deviation is recorded); warm-up
runs; then --runs rounds, each running every variant once in an order shuffled by a seeded RNG,
every `run` timed with time.perf_counter (garbage collection off). Reported: median, quartiles,
min and mean per variant. Then, per variant, a fresh session with enable_profiling=True runs
1 + --profile-runs times (the first run is left out); from the JSON profile (events with cat
"Node", args.op_name; each node's median kernel time) comes the share of node time spent in
Gather, Slice and Concat nodes, and the count of such nodes (in the ONNX graph and as executed
after onnxruntime's graph rewrites).

A variant that fails to prune, optimize, export, load or check is reported with the exact error
(on stderr, in results.json and in the table) and the run exits 1 at the end; nothing is
skipped silently.
"""

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1"]
# name -> `nnirc optimize` flags (None: the unmasked model, exported directly)
VARIANTS = [
    ("unpruned", None),
    ("union", ["--mode", "union"]),
    ("naive", ["--mode", "naive"]),
    ("upscale-views", ["--mode", "upscale", "--cost-model", "views"]),
    ("upscale-graph", ["--mode", "upscale", "--cost-model", "graph"]),
    ("upscale-align8", ["--mode", "upscale", "--cost-model", "views", "--align", "8"]),
    # the deploy target; {table}: docs/latency/tables/MODEL.json
    ("ort-cpu", ["--mode", "upscale", "--target", "ort-cpu", "--latency-table", "{table}"]),
]
# variants that compute exactly the masked program
EXACT = ["naive", "upscale-views", "upscale-graph", "upscale-align8", "ort-cpu"]
# what the deploy target must not be slower than (issue 9)
RIVALS = ["naive", "upscale-views", "upscale-align8", "unpruned"]
# the upscale variants the speed-up columns compare
UPSCALE = ["upscale-views", "upscale-graph", "upscale-align8"]
SELECTION_OPS = ("Gather", "Slice", "Concat")


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (head -45 benches/latency.py) and docs/benchmarks.md.",
    )
    p.add_argument("--models", nargs="+", default=ZOO, metavar="MODEL",
                   help="zoo names (examples/zoo/NAME.nnir) or paths to .nnir files (default: all six)")
    p.add_argument("--amounts", nargs="+", type=float, default=[0.3, 0.5], metavar="A",
                   help="input-side L1 pruning amounts (default: 0.3 0.5)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per variant (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per variant (default 5)")
    p.add_argument("--profile-runs", type=int, default=10,
                   help="profiled runs per variant after one warm-up run (default 10; 0: no profiling)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the input and of the round-robin order (default 0)")
    p.add_argument("--weights-seed", type=int, default=0, help="--random-weights seed (default 0)")
    p.add_argument("--rtol", type=float, default=1e-4,
                   help="sanity check: max |out - masked| / max |masked| for exact variants (default 1e-4)")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "latency"),
                   help="output directory (default: docs/latency)")
    p.add_argument("--work", default=None,
                   help="keep the generated .nnir/.onnx/reports/profiles here (default: a temporary directory, removed)")
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"),
                   help="the nnirc binary (default: target/release/nnirc)")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite table.md and the plot from OUT/results.json")
    return p.parse_args()


# ---------------------------------------------------------------- preparation (nnirc)

class StepError(Exception):
    pass


def nnirc(args, argv, log):
    cmd = [args.nnirc] + argv + ["--color", "never"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    shown = " ".join(cmd).replace(args.work_dir + os.sep, "WORK/").replace(REPO + os.sep, "")
    log.append({"cmd": shown, "rc": r.returncode, "s": round(time.perf_counter() - t, 3)})
    if r.returncode != 0:
        raise StepError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.strip()}")
    return r


def model_path(name):
    return name if name.endswith(".nnir") else os.path.join(REPO, "examples", "zoo", name + ".nnir")


def report_numbers(path):
    with open(path) as f:
        rep = json.load(f)
    after = rep["after"]
    out = {k: after[k] for k in ("macs", "params", "selection_ops", "copying_ops", "bytes_copied")}
    if "union_extra_pruned" in rep:
        out["union_extra_pruned"] = rep["union_extra_pruned"]
    return out


def prepare_unpruned(args, model, wdir, log):
    """The dense model: ONNX export and its MACs/params (naive optimize of the unmasked model)."""
    w = ["--random-weights", str(args.weights_seed)]
    onnx_path = os.path.join(wdir, "unpruned.onnx")
    nnirc(args, ["export", model, *w, "-o", onnx_path], log)
    rep = os.path.join(wdir, "unpruned.json")
    nnirc(args, ["optimize", model, *w, "--mode", "naive", "--report", rep], log)
    return onnx_path, report_numbers(rep)


def prepare_amount(args, model, amount, wdir, log):
    """Masks at `amount`, the masked reference and every pruned variant. Returns
    (masked onnx or error, {variant: (onnx, numbers) or StepError})."""
    w = ["--random-weights", str(args.weights_seed)]
    pruned = os.path.join(wdir, "pruned.nnir")
    nnirc(args, ["prune", model, "--amount", str(amount), "--side", "input", *w, "-o", pruned], log)
    masked = os.path.join(wdir, "masked.onnx")
    try:
        nnirc(args, ["export", pruned, *w, "-o", masked], log)
    except StepError as e:
        masked = e
    out = {}
    for name, flags in VARIANTS:
        if flags is None:
            continue
        base = os.path.join(wdir, name)
        table = os.path.join(REPO, "docs", "latency", "tables",
                             os.path.basename(model).removesuffix(".nnir") + ".json")
        flags = [table if f == "{table}" else f for f in flags]
        try:
            nnirc(args, ["optimize", pruned, *w, *flags, "-o", base + ".nnir", "--report", base + ".json"], log)
            nnirc(args, ["export", base + ".nnir", "-o", base + ".onnx"], log)
            out[name] = (base + ".onnx", report_numbers(base + ".json"))
        except StepError as e:
            out[name] = e
    return masked, out


# ---------------------------------------------------------------- measurement (onnxruntime)

def session(ort, path, profile_prefix=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run_once(sess, x):
    return sess.run(None, {sess.get_inputs()[0].name: x})


def rel_dev(ref, got):
    import numpy as np
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        return float("inf")
    scale = max(max(float(np.abs(a).max(initial=0.0)) for a in ref), 1e-30)
    return max(float(np.abs(a - b).max(initial=0.0)) for a, b in zip(ref, got)) / scale


def graph_ops(path):
    import onnx
    m = onnx.load(path)
    counts = {op: 0 for op in SELECTION_OPS}
    for n in m.graph.node:
        if n.op_type in counts:
            counts[n.op_type] += 1
    counts["nodes"] = len(m.graph.node)
    return counts


def stats(times_ms):
    s = sorted(times_ms)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
    return {"median": statistics.median(s), "q1": q[0], "q3": q[2], "min": s[0],
            "mean": statistics.fmean(s), "n": len(s)}


def time_round_robin(sessions, x, runs, warmup, seed):
    """sessions: {name: session}. Warm-up, then `runs` rounds in a seeded shuffled order."""
    names = list(sessions)
    for _ in range(warmup):
        for n in names:
            run_once(sessions[n], x)
    rng = random.Random(seed)
    times = {n: [] for n in names}
    feeds = {n: {sessions[n].get_inputs()[0].name: x} for n in names}
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            rng.shuffle(names)
            for n in names:
                s, feed = sessions[n], feeds[n]
                t0 = time.perf_counter()
                s.run(None, feed)
                times[n].append((time.perf_counter() - t0) * 1e3)
    finally:
        gc.enable()
    return times


def profile(ort, path, x, runs, prefix):
    """Per-op node time from onnxruntime's profiler: each node's median kernel time over `runs`
    runs after one warm-up run (a median, so that a run preempted by another process does not
    skew the shares), summed per op type."""
    sess = session(ort, path, prefix)
    for _ in range(runs + 1):
        run_once(sess, x)
    prof = sess.end_profiling()
    del sess
    with open(prof) as f:
        events = json.load(f)
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[1:]
    durs, ops = {}, {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in windows):
            continue
        durs.setdefault(e["name"], []).append(e["dur"])
        ops[e["name"]] = e.get("args", {}).get("op_name", "?")
    by_op, count = {}, {}
    for node, d in durs.items():
        op = ops[node]
        by_op[op] = by_op.get(op, 0.0) + statistics.median(d)
        count[op] = count.get(op, 0) + 1
    total = sum(by_op.values())
    sel = sum(by_op.get(op, 0.0) for op in SELECTION_OPS)
    return {
        "runs": len(windows),
        "node_time_ms": total / 1e3,
        "by_op_ms": {op: round(v / 1e3, 4) for op, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "nodes_by_op": count,
        "gsc_share": sel / total if total else 0.0,
        "gsc_nodes_executed": {op: count.get(op, 0) for op in SELECTION_OPS},
        "file": os.path.basename(prof),
    }


def measure(args, ort, np, onnx_paths, masked, wdir, seed):
    """onnx_paths: {variant: path}. Returns {variant: measurements}, errors."""
    res, errors = {v: {} for v in onnx_paths}, []
    sessions = {}
    for v, p in onnx_paths.items():
        try:
            sessions[v] = session(ort, p)
            res[v]["onnx_ops"] = graph_ops(p)
        except Exception as e:  # noqa: BLE001 -- reported, not hidden
            errors.append(f"{v}: onnxruntime could not load {p}: {e}")
            res[v]["error"] = str(e)
    if not sessions:
        return res, errors
    shape = [d if isinstance(d, int) else 1 for d in next(iter(sessions.values())).get_inputs()[0].shape]
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    # sanity check against the masked program
    ref = None
    if isinstance(masked, str):
        try:
            ref = run_once(session(ort, masked), x)
        except Exception as e:  # noqa: BLE001
            errors.append(f"masked reference: onnxruntime failed on {masked}: {e}")
    for v, s in list(sessions.items()):
        try:
            out = run_once(s, x)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{v}: onnxruntime run failed: {e}")
            res[v]["error"] = str(e)
            del sessions[v]
            continue
        if not all(np.isfinite(o).all() for o in out):
            errors.append(f"{v}: non-finite outputs")
        if ref is not None:
            dev = rel_dev(ref, out)
            res[v]["rel_dev_from_masked"] = dev
            if v in EXACT and not dev <= args.rtol:
                errors.append(f"{v}: output differs from the masked program (relative {dev:.3e} > {args.rtol})")
        if v in EXACT and v != "naive" and "naive" in sessions:
            dev = rel_dev(run_once(sessions["naive"], x), out)
            res[v]["rel_dev_from_naive"] = dev
            if not dev <= args.rtol:
                errors.append(f"{v}: output differs from naive's (relative {dev:.3e} > {args.rtol})")
    times = time_round_robin(sessions, x, args.runs, args.warmup, seed)
    for v, t in times.items():
        res[v]["latency_ms"] = stats(t)
        res[v]["times_ms"] = [round(a, 4) for a in t]
    del sessions
    gc.collect()
    if args.profile_runs > 0:
        for v, p in onnx_paths.items():
            if "error" in res[v]:
                continue
            res[v]["profile"] = profile(ort, p, x, args.profile_runs, os.path.join(wdir, f"profile_{v}"))
    return res, errors


# ---------------------------------------------------------------- report

def machine_info():
    import numpy
    import onnx
    import onnxruntime
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip() != ""
    except OSError:
        commit, dirty = "unknown", None
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": numpy.__version__,
        "nnirc_commit": commit,
        "nnirc_tree_dirty": dirty,
    }


def fmt_ms(r):
    if "error" in r or "latency_ms" not in r:
        return "failed"
    return f"{r['latency_ms']['median']:.2f}"


def ratio(res, a, b, stat="median"):
    """stat(a) / stat(b): > 1 means b is faster."""
    try:
        return res[a]["latency_ms"][stat] / res[b]["latency_ms"][stat]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}x"


def table(data):
    names = [v for v, _ in VARIANTS]
    upscale = ", ".join(u.removeprefix("upscale-") for u in UPSCALE)

    def latency_rows(stat, cell):
        """The header and one row per model and amount: each variant's latency as `cell` shows
        it, then the speed-ups of the upscale variants by `stat`."""
        rows = [
            "| model | amount | " + " | ".join(names)
            + f" | naive / upscale ({upscale}) | unpruned / upscale ({upscale}) |",
            "|---|---|" + "---|" * len(names) + "---|---|",
        ]
        for r in data["results"]:
            res = r["variants"]
            cells = [cell(res[v]["latency_ms"]) if "latency_ms" in res.get(v, {}) else "failed" for v in names]
            rows.append(
                f"| {r['model']} | {r['amount']:g} | " + " | ".join(cells)
                + " | " + ", ".join(fmt_x(ratio(res, "naive", u, stat)) for u in UPSCALE)
                + " | " + ", ".join(fmt_x(ratio(res, "unpruned", u, stat)) for u in UPSCALE) + " |"
            )
        return rows

    m = data["machine"]
    s = data["settings"]
    lines = [
        f"Measured {data['date']} on {m['cpu']} ({m['logical_cpus']} logical CPUs), onnxruntime "
        f"{m['onnxruntime']}, CPUExecutionProvider, 1 thread, batch 1, 224x224, f32; median of "
        f"{s['runs']} interleaved runs after {s['warmup']} warm-up runs; load average "
        f"{data['loadavg_start'][0]:.2f} at the start, {data['loadavg_end'][0]:.2f} at the end. Command:",
        "",
        "```sh",
        data["command"],
        "```",
        "",
    ]
    lines += ["Latency (ms, median; in brackets: interquartile range), and speed-ups (a ratio of medians; "
              "> 1: upscale is faster):", ""]
    lines += latency_rows("median", lambda l: f"{l['median']:.2f} [{l['q1']:.2f}-{l['q3']:.2f}]")
    lines += ["", "The fastest run of each variant (ms; less sensitive to other processes on the machine than "
              "the median), and the speed-ups by these minima:", ""]
    lines += latency_rows("min", lambda l: f"{l['min']:.2f}")
    lines += [
        "",
        "The deploy target (`--target ort-cpu`, priced by the model's table in docs/latency/tables/) "
        "against the fastest of " + ", ".join(RIVALS) + " in the same row (ratio of medians, and of "
        "minima; <= 1: ort-cpu is as fast or faster), and against upscale-align8:",
        "",
        "| model | amount | fastest rival | ort-cpu / fastest (median) | ort-cpu / fastest (min) "
        "| ort-cpu / align8 (median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        res = r["variants"]
        have = [v for v in RIVALS if "latency_ms" in res.get(v, {})]
        if "latency_ms" not in res.get("ort-cpu", {}) or not have:
            lines.append(f"| {r['model']} | {r['amount']:g} | - | - | - | - |")
            continue
        fastest = min(have, key=lambda v: res[v]["latency_ms"]["median"])
        fastest_min = min(have, key=lambda v: res[v]["latency_ms"]["min"])
        lines.append(
            f"| {r['model']} | {r['amount']:g} | {fastest} | {fmt_x(ratio(res, 'ort-cpu', fastest, 'median'))} "
            f"| {fmt_x(ratio(res, 'ort-cpu', fastest_min, 'min'))} ({fastest_min}) "
            f"| {fmt_x(ratio(res, 'ort-cpu', 'upscale-align8', 'median'))} |")
    lines += [
        "",
        "Share of onnxruntime node time spent in Gather + Slice + Concat nodes (from its profiler: "
        f"each node's median kernel time over {s['profile_runs']} runs), and in brackets how many such "
        "nodes the exported ONNX graph has (Gather/Slice/Concat):",
        "",
        "| model | amount | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in data["results"]:
        cells = []
        for v in names:
            x = r["variants"].get(v, {})
            if "profile" in x:
                o = x["onnx_ops"]
                cells.append(f"{100 * x['profile']['gsc_share']:.1f}% ({o['Gather']}/{o['Slice']}/{o['Concat']})")
            else:
                cells.append("failed" if "error" in x else "-")
        lines.append(f"| {r['model']} | {r['amount']:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "MMACs / M params per inference (from the `nnirc optimize` reports):",
        "",
        "| model | amount | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in data["results"]:
        cells = []
        for v in names:
            x = r["variants"].get(v, {})
            cells.append(f"{x['macs'] / 1e6:.0f} / {x['params'] / 1e6:.2f}" if "macs" in x else "failed")
        lines.append(f"| {r['model']} | {r['amount']:g} | " + " | ".join(cells) + " |")
    errs = [e for r in data["results"] for e in r["errors"]]
    if errs:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in errs]
    return "\n".join(lines) + "\n"


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.fonttype"] = "none"
    plt.rcParams["svg.hashsalt"] = "nnirc-latency"
    amounts = sorted({r["amount"] for r in data["results"]})
    models = list(dict.fromkeys(r["model"] for r in data["results"]))
    shown = [v for v, _ in VARIANTS if v != "unpruned"]
    colors = {"union": "#9e9e9e", "naive": "#e07b39", "upscale-views": "#3b75af", "upscale-graph": "#6aa84f",
              "upscale-align8": "#8e44ad", "ort-cpu": "#c0392b"}
    fig, axes = plt.subplots(len(amounts), 1, figsize=(10, 3.4 * len(amounts)), squeeze=False)
    width = 0.8 / len(shown)
    for ax, amount in zip(axes[:, 0], amounts):
        rows = {r["model"]: r["variants"] for r in data["results"] if r["amount"] == amount}
        for i, v in enumerate(shown):
            xs, ys, lo, hi = [], [], [], []
            for j, m in enumerate(models):
                res = rows.get(m, {})
                try:
                    base = res["unpruned"]["latency_ms"]["median"]
                    l = res[v]["latency_ms"]
                except KeyError:
                    continue
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(l["median"] / base)
                lo.append((l["median"] - l["q1"]) / base)
                hi.append((l["q3"] - l["median"]) / base)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=colors.get(v), label=v,
                   error_kw={"elinewidth": 0.8})
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_ylabel("latency / unpruned")
        ax.set_title(f"input-side L1 pruning {amount:g}: onnxruntime CPU, 1 thread (median, IQR)")
        ax.grid(axis="y", linewidth=0.3)
        ax.set_axisbelow(True)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=len(shown), fontsize="small", loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)


def write_outputs(data, out):
    tab = table(data)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(tab)
    plot(data, os.path.join(out, "latency.svg"))
    return tab


# ---------------------------------------------------------------- main

def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        with open(os.path.join(args.out, "results.json")) as f:
            data = json.load(f)
        print(write_outputs(data, args.out), end="")
        return 0
    import numpy as np
    import onnxruntime as ort

    if not os.path.exists(args.nnirc):
        sys.exit(f"latency.py: {args.nnirc} not found (run `cargo build --release` or pass --nnirc)")
    t_start = time.perf_counter()
    data = {
        "command": "python3 benches/latency.py" + "".join(" " + a for a in sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "loadavg_start": os.getloadavg(),
        "settings": {
            "runs": args.runs, "warmup": args.warmup, "profile_runs": args.profile_runs,
            "seed": args.seed, "weights_seed": args.weights_seed, "rtol": args.rtol,
            "session": "CPUExecutionProvider, intra_op_num_threads=1, inter_op_num_threads=1, "
                       "ORT_SEQUENTIAL, default graph optimization level (ORT_ENABLE_ALL)",
            "order": "warm-up, then each round runs every variant once in a seeded shuffled order",
        },
        "variants": {v: ("nnirc export of the unmasked model" if f is None else "nnirc optimize " + " ".join(f))
                     for v, f in VARIANTS},
        "results": [],
    }
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="nnirc-latency-")
    args.work_dir = work
    failed = False
    try:
        for mi, name in enumerate(args.models):
            model = model_path(name)
            label = os.path.basename(model)[: -len(".nnir")]
            with open(model, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            mdir = os.path.join(work, label)
            os.makedirs(mdir, exist_ok=True)
            log = []
            try:
                unpruned = prepare_unpruned(args, model, mdir, log)
            except StepError as e:
                unpruned = e
            for ai, amount in enumerate(args.amounts):
                t0 = time.perf_counter()
                adir = os.path.join(mdir, f"amount_{amount:g}")
                os.makedirs(adir, exist_ok=True)
                alog = list(log) if ai == 0 else []
                entry = {"model": label, "file": os.path.relpath(model, REPO), "sha256": sha,
                         "amount": amount, "variants": {}, "errors": [], "nnirc": alog}
                data["results"].append(entry)
                try:
                    masked, variants = prepare_amount(args, model, amount, adir, alog)
                except StepError as e:
                    entry["errors"].append(str(e))
                    print(f"latency.py: {label} @{amount:g}: {e}", file=sys.stderr)
                    failed = True
                    continue
                variants["unpruned"] = unpruned
                if isinstance(masked, StepError):
                    entry["errors"].append(f"masked reference: {masked}")
                paths = {}
                for v, _ in VARIANTS:
                    got = variants[v]
                    if isinstance(got, StepError):
                        entry["variants"][v] = {"error": str(got)}
                        entry["errors"].append(f"{v}: {got}")
                    else:
                        paths[v] = got[0]
                        entry["variants"][v] = dict(got[1])
                t_prep = time.perf_counter() - t0
                if paths:
                    res, errs = measure(args, ort, np, paths, masked, adir, args.seed + 1000 * mi)
                    for v, r in res.items():
                        entry["variants"][v].update(r)
                    entry["errors"] += errs
                entry["seconds"] = {"prepare": round(t_prep, 2), "measure": round(time.perf_counter() - t0 - t_prep, 2)}
                for e in entry["errors"]:
                    print(f"latency.py: {label} @{amount:g}: {e}", file=sys.stderr)
                failed |= bool(entry["errors"])
                med = ", ".join(f"{v} {fmt_ms(entry['variants'][v])}" for v, _ in VARIANTS)
                print(f"{label} @{amount:g}: {med} ms ({entry['seconds']['prepare']:.1f} s prepare, "
                      f"{entry['seconds']['measure']:.1f} s measure)", file=sys.stderr)
                if not args.work:
                    shutil.rmtree(adir, ignore_errors=True)
            if not args.work:
                shutil.rmtree(mdir, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    data["loadavg_end"] = os.getloadavg()
    data["wall_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(write_outputs(data, args.out), end="")
    print(f"latency.py: {data['wall_s']} s; wrote {args.out}/results.json, table.md, latency.svg", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
