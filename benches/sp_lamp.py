#!/usr/bin/env python3
"""SP-LAMP against uniform L1 and global LAMP at equal measured onnxruntime latency.

Run from the repository root after `cargo build --release --features onnxruntime`, with the
environment of benches/latency.py (onnxruntime, onnx, numpy, matplotlib; docs/benchmarks.md):

    target/ort-venv/bin/python benches/sp_lamp.py

This one command regenerates docs/latency/sp_lamp/results.json (every number, every command,
the machine, load averages, the nnirc commit), docs/latency/sp_lamp/table.md (also printed)
and docs/latency/sp_lamp/sp_lamp.svg. `--replot` redraws the table and the plot from
results.json. Every model runs with seeded random weights (`--random-weights 0`): the zoo
files have no weights, so kept scores are scores of random weights.

Per model (default: the six of examples/zoo):

1. The latency table docs/latency/tables/MODEL.json. If it is missing it is measured
   (`nnirc latency measure examples/zoo/MODEL.nnir -o docs/latency/tables/MODEL.json`, its
   wall time recorded in docs/latency/sp_lamp/tables.json); an existing table is used as it
   is, never re-measured. If another process is writing its cache (MODEL.json.cache changed in
   the last two minutes), this script waits for the table instead.
2. The dense model: `nnirc export`, its params (`nnirc optimize --mode naive --report`) and its
   whole-model prediction (`nnirc latency predict`).
3. For each budget fraction f (default 0.5, 0.7, 0.85) of the dense model's *measured*
   latency: `nnirc prune --method sp-lamp --side output --latency-budget b --latency-table T`,
   `nnirc optimize` (upscale, views; no --align), `nnirc export`; the first shot uses b = f (a
   fraction of the knapsack's dense predicted latency). The exported model is timed against
   the dense one (--calib-runs interleaved rounds, ratio of medians r). While |r / f - 1| >
   --calib-tol and fewer than --corrections corrections were made, the budget is scaled by
   the measured miss, b <- b * f / r (clipped to (0, 1]), and the model pruned again. The shot
   whose r is closest to f is kept. Once two shots bracket f, the next budget interpolates
   linearly between the closest bracketing pair instead (regula falsi). The wall time of every `nnirc prune` call is recorded.
4. Baselines at the same latency: uniform L1 (`--method l1 --side output --amount A`) and
   global LAMP (`--method lamp --global --side output --amount A`), A found by bisection on
   [0, --max-amount] so that `nnirc latency predict` of the optimized model matches the
   prediction of the kept SP-LAMP model (--bisect steps, or until within 0.5%; the closest
   A is kept). Where the table lacks the widths a baseline produces (`latency predict` fails),
   the bisection runs on measured latency instead (each step exported and timed against the
   dense model, aiming at SP-LAMP's measured ratio), and results.json says so.
5. The dense model and the three pruned models are timed in one process: one
   onnxruntime.InferenceSession each (CPUExecutionProvider, intra_op_num_threads=1,
   inter_op_num_threads=1, ORT_SEQUENTIAL), the same seeded input, --warmup warm-up runs, then
   --runs rounds each running every variant once in a seeded shuffled order (the functions of
   benches/latency.py). Reported: medians, quartiles, ratios to dense, kept parameters
   (after.params of the optimize report) and kept SP-LAMP score (`sp_lamp_score` of
   `nnirc prune --json`: per coupled group, the LAMP-normalised squared filter norms plus
   gamma^2 of the kept channels, summed; the same score for all three methods).

With `--side input` every method prunes input channels instead (one `keep_in` per consumer,
unconstrained; output in docs/latency/sp_lamp_input/): SP-LAMP is then the export-aware
variant, whose budget b is a fraction of the dense model's *whole* predicted latency and is
checked on the predicted latency of the `nnirc optimize` export of its masks (docs/cli.md), and
the score is per consumer (LAMP of the squared weight-column norms).

A step that fails is recorded with its error in results.json and the table, and the run
exits 1 at the end; nothing is skipped silently.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import latency as lt  # noqa: E402  (benches/latency.py: sessions, round-robin timing, stats)

REPO = lt.REPO
ZOO = lt.ZOO
METHODS = [
    ("sp-lamp", None),
    ("l1", ["--method", "l1"]),
    ("lamp-global", ["--method", "lamp", "--global"]),
]
VARIANTS = ["dense"] + [m for m, _ in METHODS]


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (head -60 benches/sp_lamp.py) and docs/benchmarks.md.",
    )
    p.add_argument("--models", nargs="+", default=ZOO, metavar="MODEL",
                   help="zoo names (examples/zoo/NAME.nnir; default: all six)")
    p.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.7, 0.85], metavar="F",
                   help="target latencies as fractions of the dense model's measured latency "
                        "(default: 0.5 0.7 0.85)")
    p.add_argument("--runs", type=int, default=30,
                   help="timed rounds of the final side-by-side measurement (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per variant (default 5)")
    p.add_argument("--calib-runs", type=int, default=15,
                   help="interleaved rounds (dense against a candidate) when calibrating the "
                        "budget (default 15)")
    p.add_argument("--corrections", type=int, default=2,
                   help="budget corrections after the first shot, at most (default 2)")
    p.add_argument("--calib-tol", type=float, default=0.02,
                   help="no correction when the measured ratio is within this of the target "
                        "(relative; default 0.02)")
    p.add_argument("--bisect", type=int, default=9,
                   help="bisection steps for the baselines' amount (default 9)")
    p.add_argument("--max-amount", type=float, default=0.95,
                   help="upper end of the baselines' amount bisection (default 0.95)")
    p.add_argument("--tol", type=float, default=0.05,
                   help="the bound the table checks: |measured / budget - 1| (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input and the order (default 0)")
    p.add_argument("--weights-seed", type=int, default=0, help="--random-weights seed (default 0)")
    p.add_argument("--tables", default=os.path.join(REPO, "docs", "latency", "tables"),
                   help="latency tables directory (default: docs/latency/tables)")
    p.add_argument("--side", choices=["output", "input"], default="output",
                   help="what every method prunes: output (coupled groups, structured; default) or input "
                        "(one mask per consumer, unconstrained; sp-lamp is then priced by its export)")
    p.add_argument("--out", default=None,
                   help="output directory (default: docs/latency/sp_lamp, or docs/latency/sp_lamp_input "
                        "with --side input)")
    p.add_argument("--work", default=None,
                   help="keep generated .nnir/.onnx/reports here (default: a temporary directory, removed)")
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"),
                   help="the nnirc binary (default: target/release/nnirc)")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite table.md and the plot from OUT/results.json")
    args = p.parse_args()
    if args.out is None:
        args.out = os.path.join(REPO, "docs", "latency", "sp_lamp" if args.side == "output" else "sp_lamp_input")
    return args


class StepError(Exception):
    pass


def nnirc(args, argv, log):
    """Runs nnirc; returns (completed process, wall seconds)."""
    cmd = [args.nnirc] + argv + ["--color", "never"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    s = time.perf_counter() - t
    shown = " ".join(cmd).replace(args.work_dir + os.sep, "WORK/").replace(REPO + os.sep, "")
    log.append({"cmd": shown, "rc": r.returncode, "s": round(s, 3)})
    if r.returncode != 0:
        raise StepError(f"`{shown}` exited {r.returncode}: {r.stderr.strip()[-1500:]}")
    return r, s


def load(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- the latency table

def ensure_table(args, label, log):
    table = os.path.join(args.tables, label + ".json")
    rec_path = os.path.join(args.out, "tables.json")
    rec = load(rec_path) if os.path.exists(rec_path) else {}
    cache = table + ".cache"
    # another process measuring the same table: wait for it
    while not os.path.exists(table) and os.path.exists(cache) and time.time() - os.path.getmtime(cache) < 120:
        print(f"sp_lamp.py: {label}: {cache} is being written by another process; waiting", file=sys.stderr)
        time.sleep(10)
    if os.path.exists(table):
        # An existing table is used as it is; its own `measured` field says when it was made
        # (a record of an earlier run of this script may describe an older table).
        info = {"measured_by_this_script": False, "note": "the table existed; not re-measured",
                "table_measured": load(table).get("measured")}
    else:
        l0 = os.getloadavg()
        rel = os.path.relpath(table, REPO)
        _, s = nnirc(args, ["latency", "measure", f"examples/zoo/{label}.nnir", "-o", rel], log)
        info = {"measured_by_this_script": True, "rc": 0, "seconds": round(s, 1),
                "loadavg_start": l0, "loadavg_end": os.getloadavg()}
        rec = load(rec_path) if os.path.exists(rec_path) else {}
        rec[label] = info
        with open(rec_path, "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
    return table, info


# ---------------------------------------------------------------- one pruned variant

def build(args, model, table, prune_flags, base, log, export=True, predict=True):
    """prune -> optimize -> predict [-> export]. Returns the variant's numbers."""
    w = ["--random-weights", str(args.weights_seed)]
    masked, small = base + ".masked.nnir", base + ".nnir"
    _, prune_s = nnirc(args, ["prune", model, *w, "--side", args.side, *prune_flags,
                              "--json", base + ".prune.json", "-o", masked], log)
    rep = load(base + ".prune.json")
    nnirc(args, ["optimize", masked, *w, "-o", small, "--report", base + ".opt.json"], log)
    opt = load(base + ".opt.json")
    if predict:
        nnirc(args, ["latency", "predict", small, "--table", table, "--json", base + ".pred.json"], log)
    out = {
        "prune_s": round(prune_s, 3),
        "score_kept": rep["sp_lamp_score"]["kept"],
        "score_total": rep["sp_lamp_score"]["total"],
        "params": opt["after"]["params"],
        "macs": opt["after"]["macs"],
        "predicted_ms": load(base + ".pred.json")["total_us"] / 1e3 if predict else None,
        "kept_channels": sum(l["kept"] for l in rep["layers"]),
        "masked_layers": len(rep["layers"]),
    }
    if rep.get("latency"):
        lat = rep["latency"]
        out["knapsack"] = {k: lat[k] for k in ("budget_ms", "dense_ms", "predicted_ms", "constant_ms",
                                               "score", "max_score", "width_step", "rounds", "converged")}
    if export:
        nnirc(args, ["export", small, "-o", base + ".onnx"], log)
        out["onnx"] = base + ".onnx"
    return out


def quick_ratio(args, ort, sessions, x, cand, seed):
    """Median latency of `cand` over the dense model's, interleaved."""
    s = {"dense": sessions["dense"], "cand": lt.session(ort, cand)}
    t = lt.time_round_robin(s, x, args.calib_runs, 3, seed)
    d, c = lt.stats(t["dense"])["median"], lt.stats(t["cand"])["median"]
    return c / d, d, c


def next_budget(shots, f):
    """The next budget: b * f / r from the last shot, or, once two shots bracket the target,
    linear interpolation between the closest bracketing pair (regula falsi)."""
    pts = [(s["budget_arg"], s["quick_ratio"]) for s in shots if "quick_ratio" in s]
    b, r = pts[-1]
    below = [p for p in pts if p[1] < f]
    above = [p for p in pts if p[1] > f]
    if below and above:
        (b0, r0), (b1, r1) = max(below, key=lambda p: p[1]), min(above, key=lambda p: p[1])
        if r1 != r0:
            return round(min(1.0, max(1e-3, b0 + (f - r0) * (b1 - b0) / (r1 - r0))), 6)
    return round(min(1.0, max(1e-3, b * f / r)), 6)


def calibrate(args, ort, sessions, x, model, table, f, bdir, log, seed):
    """SP-LAMP shots: the first at b = f, then b <- b * f / r. Returns (shots, index kept)."""
    shots, b = [], f
    for i in range(args.corrections + 1):
        base = os.path.join(bdir, f"sp-lamp.shot{i}")
        shot = {"budget_arg": round(b, 6)}
        shots.append(shot)
        try:
            shot.update(build(args, model, table, ["--method", "sp-lamp", "--latency-budget", f"{b:.6f}",
                                                   "--latency-table", table], base, log))
        except StepError as e:
            shot["error"] = str(e)
            break
        r, d, c = quick_ratio(args, ort, sessions, x, shot["onnx"], seed + i)
        shot.update({"quick_ratio": r, "quick_dense_ms": d, "quick_ms": c, "quick_error": r / f - 1})
        print(f"  f={f:g} shot {i}: budget {b:.4f} -> measured {r:.3f} of dense "
              f"({100 * (r / f - 1):+.1f}%), prune {shot['prune_s']:.2f} s", file=sys.stderr)
        if abs(r / f - 1) <= args.calib_tol or i == args.corrections:
            break
        nb = next_budget(shots, f)
        if nb == b:
            break
        b = nb
    ok = [i for i, s in enumerate(shots) if "quick_ratio" in s]
    if not ok:
        return shots, None
    return shots, min(ok, key=lambda i: abs(shots[i]["quick_ratio"] / f - 1))


def bisect(args, ort, sessions, x, model, table, flags, target, bdir, name, log, seed):
    """The amount A whose optimized model's predicted latency is closest to `target`
    (target[0]: SP-LAMP's predicted ms). Where the table cannot predict a step (it lacks the
    widths the baseline produces), the bisection starts again on measured latency instead:
    each step exported and timed against the dense model, aiming at SP-LAMP's measured ratio
    (target[1])."""
    mode = "predicted"
    try:
        return _bisect(args, ort, sessions, x, model, table, flags, target, bdir, name, log, seed, mode)
    except StepError as e:
        if "no measurement" not in str(e):
            raise
        why = str(e)[-600:]
    print(f"  {name}: the table cannot predict it; bisecting on measured latency", file=sys.stderr)
    v = _bisect(args, ort, sessions, x, model, table, flags, target, bdir, name, log, seed, "measured")
    v["bisection_fallback"] = why
    return v


def _bisect(args, ort, sessions, x, model, table, flags, target, bdir, name, log, seed, mode):
    lo, hi, steps, best = 0.0, args.max_amount, [], None
    goal = target[0] if mode == "predicted" else target[1]
    for i in range(args.bisect):
        a = round((lo + hi) / 2, 6)
        base = os.path.join(bdir, f"{name}.{mode}.a{i}")
        if mode == "predicted":
            v = build(args, model, table, [*flags, "--amount", f"{a}"], base, log, export=False)
            got = v["predicted_ms"]
        else:
            v = build(args, model, table, [*flags, "--amount", f"{a}"], base, log, predict=False)
            got = quick_ratio(args, ort, sessions, x, v["onnx"], seed + i)[0]
        steps.append({"amount": a, mode: got})
        if best is None or abs(got - goal) < abs(best[1] - goal):
            best = (a, got)
        if abs(got / goal - 1) < 0.005:
            break
        if got > goal:
            lo = a
        else:
            hi = a
    a = best[0]
    base = os.path.join(bdir, name)
    v = build(args, model, table, [*flags, "--amount", f"{a}"], base, log, predict=(mode == "predicted"))
    v["amount"] = a
    v["bisection"] = {"on": mode, "steps": steps}
    return v


# ---------------------------------------------------------------- report

def pct(v):
    return "-" if v is None else f"{100 * v:+.1f}%"


def table_md(data):
    s = data["settings"]
    m = data["machine"]
    lines = [
        f"Measured {data['date']} on {m['cpu']} ({m['logical_cpus']} logical CPUs), onnxruntime "
        f"{m['onnxruntime']}, CPUExecutionProvider, 1 thread, batch 1, f32, seeded random weights; "
        f"medians of {s['runs']} interleaved rounds after {s['warmup']} warm-up runs; load average "
        f"{data['loadavg_start'][0]:.2f} at the start, {data['loadavg_end'][0]:.2f} at the end; "
        f"nnirc {m['nnirc_commit'][:10]}{' (dirty tree)' if m['nnirc_tree_dirty'] else ''}; "
        f"wall time {data.get('wall_s', '?')} s. Command:",
        "",
        "```sh",
        data["command"],
        "```",
        "",
        "Budget: f of the dense model's measured latency. SP-LAMP first shot: `--latency-budget f`; "
        "measured/budget - 1 from the calibration timing. Kept: the shot closest to the budget "
        "(after at most "
        f"{s['corrections']} corrections: b <- b * f / r, or regula falsi once two shots bracket f). Measured: the final side-by-side timing "
        "(ratio of medians to dense; in brackets the error against the budget). Score: kept SP-LAMP "
        "score, % of the dense total. Params in millions (dense in the model column).",
    ]
    if s.get("side", "output") == "input":
        lines += [
            "",
            "Every method prunes the **input side** (`--side input`: one `keep_in` per consumer, "
            "unconstrained). SP-LAMP is the export-aware variant: its budget (a fraction of the dense "
            "model's predicted latency) is checked on the predicted latency of the `nnirc optimize` "
            "export; the score is per consumer (LAMP of the squared weight-column norms).",
        ]
    lines += [
        "",
        "| model (dense ms, M params) | f | SP-LAMP first shot | shots | SP-LAMP measured | "
        "L1 measured | LAMP-global measured | score SP-LAMP / L1 / LAMP-g | params SP-LAMP / L1 / LAMP-g | "
        "prune s (SP-LAMP / L1 / LAMP-g) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mr in data["results"]:
        if "error" in mr and not mr.get("budgets"):
            lines.append(f"| {mr['model']} | - | failed: {mr['error'][:200]} | | | | | | | |")
            continue
        dense = mr["dense"]
        head = f"{mr['model']} ({dense.get('final_ms', dense.get('quick_ms', 0)):.2f}, {dense['params'] / 1e6:.2f})"
        for br in mr["budgets"]:
            f = br["f"]
            if "error" in br:
                lines.append(f"| {head} | {f:g} | failed: {br['error'][:200]} | | | | | | | |")
                continue
            first = br["shots"][0]
            v = br["variants"]

            def meas(name):
                x = v.get(name, {})
                if "ratio" not in x:
                    return "failed"
                return f"{x['ratio']:.3f} ({pct(x['ratio'] / f - 1)})"

            def cell(key, fmt):
                return " / ".join(fmt(v[n][key]) if key in v.get(n, {}) else "-" for n, _ in METHODS)

            lines.append(
                f"| {head} | {f:g} | {pct(first.get('quick_error'))} | {len(br['shots'])} | {meas('sp-lamp')} | "
                f"{meas('l1')} (A={v.get('l1', {}).get('amount', float('nan')):.3f}) | "
                f"{meas('lamp-global')} (A={v.get('lamp-global', {}).get('amount', float('nan')):.3f}) | "
                + " / ".join(f"{100 * v[n]['score_kept'] / v[n]['score_total']:.1f}%" if "score_kept" in v.get(n, {}) else "-"
                             for n, _ in METHODS)
                + f" | {cell('params', lambda p: f'{p / 1e6:.2f}')} | {cell('prune_s', lambda t: f'{t:.2f}')} |"
            )
    errs = [f"{mr['model']}: {e}" for mr in data["results"] for e in mr.get("errors", [])]
    if errs:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in errs]
    return "\n".join(lines) + "\n"


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.fonttype"] = "none"
    plt.rcParams["svg.hashsalt"] = "nnirc-sp-lamp"
    res = [mr for mr in data["results"] if mr.get("budgets")]
    if not res:
        return
    fig, axes = plt.subplots(2, len(res), figsize=(3.2 * len(res), 6.0), squeeze=False)
    style = {"sp-lamp": ("#8e44ad", "o"), "l1": ("#e07b39", "s"), "lamp-global": ("#3b75af", "^")}
    for j, mr in enumerate(res):
        for row, (key, label) in enumerate([("score", "kept SP-LAMP score (% of dense)"),
                                            ("params", "kept params (% of dense)")]):
            ax = axes[row, j]
            for name, _ in METHODS:
                xs, ys = [], []
                for br in mr["budgets"]:
                    v = br.get("variants", {}).get(name, {})
                    if "ratio" not in v:
                        continue
                    xs.append(v["ratio"])
                    ys.append(100 * (v["score_kept"] / v["score_total"] if key == "score"
                                     else v["params"] / mr["dense"]["params"]))
                c, mk = style[name]
                ax.plot(xs, ys, marker=mk, color=c, label=name, linewidth=0.8)
            for br in mr["budgets"]:
                ax.axvline(br["f"], color="grey", linewidth=0.5, linestyle=":")
            ax.set_xlabel("measured latency / dense")
            if j == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(mr["model"], fontsize="medium")
            ax.grid(linewidth=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=3, fontsize="small", loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def write_outputs(data, out):
    tab = table_md(data)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(tab)
    plot(data, os.path.join(out, "sp_lamp.svg"))
    return tab


# ---------------------------------------------------------------- main

def run_model(args, ort, np, label, mi):
    model = os.path.join(REPO, "examples", "zoo", label + ".nnir")
    mdir = os.path.join(args.work_dir, label)
    os.makedirs(mdir, exist_ok=True)
    log = []
    mr = {"model": label, "file": os.path.relpath(model, REPO), "nnirc": log, "errors": [], "budgets": []}
    t0 = time.perf_counter()
    try:
        table, mr["table"] = ensure_table(args, label, log)
        mr["table"]["file"] = os.path.relpath(table, REPO)
        w = ["--random-weights", str(args.weights_seed)]
        dense_onnx = os.path.join(mdir, "dense.onnx")
        nnirc(args, ["export", model, *w, "-o", dense_onnx], log)
        nnirc(args, ["optimize", model, *w, "--mode", "naive", "--report", os.path.join(mdir, "dense.opt.json")], log)
        nnirc(args, ["latency", "predict", model, "--table", table, "--json", os.path.join(mdir, "dense.pred.json")], log)
        opt = load(os.path.join(mdir, "dense.opt.json"))
        mr["dense"] = {"params": opt["after"]["params"], "macs": opt["after"]["macs"],
                       "predicted_ms": load(os.path.join(mdir, "dense.pred.json"))["total_us"] / 1e3}
    except StepError as e:
        mr["error"] = str(e)
        mr["errors"].append(str(e))
        return mr
    dense_sess = lt.session(ort, dense_onnx)
    shape = [d if isinstance(d, int) else 1 for d in dense_sess.get_inputs()[0].shape]
    x = np.random.default_rng(args.seed + 1000 * mi).standard_normal(shape, dtype=np.float32)
    sessions = {"dense": dense_sess}
    t = lt.time_round_robin(sessions, x, args.calib_runs, args.warmup, args.seed)
    mr["dense"]["quick_ms"] = lt.stats(t["dense"])["median"]
    print(f"{label}: dense {mr['dense']['quick_ms']:.2f} ms measured, {mr['dense']['predicted_ms']:.2f} ms "
          f"predicted", file=sys.stderr)
    for bi, f in enumerate(args.budgets):
        tb = time.perf_counter()
        br = {"f": f}
        mr["budgets"].append(br)
        bdir = os.path.join(mdir, f"f{f:g}")
        os.makedirs(bdir, exist_ok=True)
        seed = args.seed + 1000 * mi + 100 * bi
        shots, kept = calibrate(args, ort, sessions, x, model, table, f, bdir, log, seed)
        br["shots"] = [{k: v for k, v in s.items() if k != "onnx"} for s in shots]
        if kept is None:
            br["error"] = "sp-lamp failed: " + shots[-1].get("error", "?")
            mr["errors"].append(f"f={f:g}: {br['error']}")
            continue
        br["kept_shot"] = kept
        sp = shots[kept]
        variants = {"sp-lamp": dict(sp)}
        for name, flags in METHODS[1:]:
            try:
                variants[name] = bisect(args, ort, sessions, x, model, table, flags,
                                        (sp["predicted_ms"], sp["quick_ratio"]), bdir, name, log, seed + 10)
            except StepError as e:
                variants[name] = {"error": str(e)}
                mr["errors"].append(f"f={f:g} {name}: {e}")
        paths = {"dense": dense_onnx}
        paths.update({n: v["onnx"] for n, v in variants.items() if "onnx" in v})
        sess = {n: (dense_sess if n == "dense" else lt.session(ort, p)) for n, p in paths.items()}
        times = lt.time_round_robin(sess, x, args.runs, args.warmup, seed + 50)
        del sess
        br["dense"] = lt.stats(times["dense"])
        br["dense"]["times_ms"] = [round(a, 4) for a in times["dense"]]
        dmed = br["dense"]["median"]
        for n, v in variants.items():
            v.pop("onnx", None)
            if n in times:
                v["latency_ms"] = lt.stats(times[n])
                v["times_ms"] = [round(a, 4) for a in times[n]]
                v["ratio"] = v["latency_ms"]["median"] / dmed
                v["error_vs_budget"] = v["ratio"] / f - 1
        br["variants"] = variants
        br["seconds"] = round(time.perf_counter() - tb, 1)
        line = ", ".join(f"{n} {v['ratio']:.3f} score {100 * v['score_kept'] / v['score_total']:.1f}% "
                         f"params {v['params'] / 1e6:.2f}M" for n, v in variants.items() if "ratio" in v)
        print(f"{label} f={f:g}: {line} ({br['seconds']} s)", file=sys.stderr)
    dense_ms = [br["dense"]["median"] for br in mr["budgets"] if "dense" in br]
    if dense_ms:
        mr["dense"]["final_ms"] = sorted(dense_ms)[len(dense_ms) // 2]
    mr["seconds"] = round(time.perf_counter() - t0, 1)
    return mr


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        print(write_outputs(load(os.path.join(args.out, "results.json")), args.out), end="")
        return 0
    import numpy as np
    import onnxruntime as ort
    if not os.path.exists(args.nnirc):
        sys.exit(f"sp_lamp.py: {args.nnirc} not found (cargo build --release --features onnxruntime)")
    t_start = time.perf_counter()
    data = {
        "command": "target/ort-venv/bin/python benches/sp_lamp.py" + "".join(" " + a for a in sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": lt.machine_info(),
        "loadavg_start": os.getloadavg(),
        "settings": {k: getattr(args, k) for k in ("budgets", "runs", "warmup", "calib_runs", "corrections",
                                                    "calib_tol", "bisect", "max_amount", "tol", "seed",
                                                    "weights_seed", "side")},
        "session": "CPUExecutionProvider, intra_op_num_threads=1, inter_op_num_threads=1, ORT_SEQUENTIAL, "
                   "default graph optimizations",
        "methods": {"sp-lamp": f"nnirc prune --side {args.side} --method sp-lamp --latency-budget b --latency-table T",
                    "l1": f"nnirc prune --side {args.side} --method l1 --amount A",
                    "lamp-global": f"nnirc prune --side {args.side} --method lamp --global --amount A",
                    "then": "nnirc optimize MASKED --random-weights 0 -o SMALL.nnir --report R.json; "
                            "nnirc latency predict SMALL.nnir --table T; nnirc export SMALL.nnir -o SMALL.onnx"},
        "results": [],
    }
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="nnirc-sp-lamp-")
    os.makedirs(work, exist_ok=True)
    args.work_dir = work
    try:
        for mi, label in enumerate(args.models):
            mr = run_model(args, ort, np, label, mi)
            mr["loadavg_after"] = os.getloadavg()
            data["results"].append(mr)
            for e in mr["errors"]:
                print(f"sp_lamp.py: {label}: {e}", file=sys.stderr)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    data["loadavg_end"] = os.getloadavg()
    data["wall_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(write_outputs(data, args.out), end="")
    print(f"sp_lamp.py: {data['wall_s']} s; wrote {args.out}/results.json, table.md, sp_lamp.svg", file=sys.stderr)
    return 1 if any(mr["errors"] for mr in data["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
