#!/usr/bin/env python3
"""Copies of the zoo exports under `views`: the table of docs/benchmarks.md, "Copies on the zoo".

Run from the repository root after `cargo build --release`:

    python3 benches/copies.py            # prints the markdown table
    python3 benches/copies.py --json F   # also writes every figure to F

For each zoo model, amount (0.3, 0.5: the reference recipe, input-side L1 with seeded weights)
and alignment (`--align 1`, `--align 8`):

    nnirc prune    --random-weights 0 --amount A examples/zoo/MODEL.nnir -o pruned.nnir
    nnirc optimize --random-weights 0 --align N pruned.nnir -o out.nnir --report r.json

and reads from the report the naive export's and the upscale export's copying ops, MB copied per
inference (f32, batch 1) and MMACs, the read planner's time (`timings_ms.egraph`) and the rules
that fired. Deterministic: no timing but the planner's enters the table's copy columns.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nnirc", default=os.path.join(REPO, "target", "release", "nnirc"))
    p.add_argument("--models", nargs="+", default=ZOO)
    p.add_argument("--amounts", nargs="+", default=["0.3", "0.5"])
    p.add_argument("--aligns", nargs="+", default=["1", "8"])
    p.add_argument("--json", help="write every figure to this file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            for amount in args.amounts:
                pruned = os.path.join(work, f"{model}.{amount}.nnir")
                run([args.nnirc, "prune", "--random-weights", "0", "--amount", amount,
                     os.path.join(REPO, "examples", "zoo", model + ".nnir"), "-o", pruned])
                for align in args.aligns:
                    out = os.path.join(work, f"{model}.{amount}.{align}.out.nnir")
                    report = os.path.join(work, f"{model}.{amount}.{align}.json")
                    run([args.nnirc, "optimize", "--random-weights", "0", "--align", align,
                         pruned, "-o", out, "--report", report])
                    with open(report) as f:
                        r = json.load(f)
                    rows.append({
                        "model": model, "amount": float(amount), "align": int(align),
                        "naive": stats(r["before"]), "upscale": stats(r["after"]),
                        "egraph_ms": r["timings_ms"].get("egraph"),
                        "rules_fired": {k: v for k, v in r["egraph"]["rules_fired"].items() if v},
                    })
    print("| model | amount | align | naive: ops / MB | upscale: ops / MB | upscale MMACs | read planning ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n, u = r["naive"], r["upscale"]
        print(f"| {r['model']} | {r['amount']} | {r['align']} | {n['copying_ops']} / {n['mb']:.3f} | "
              f"{u['copying_ops']} / {u['mb']:.3f} | {u['mmacs']:.1f} | {r['egraph_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def stats(s):
    return {"copying_ops": s["copying_ops"], "mb": s["bytes_copied"] / 1e6, "mmacs": s["macs"] / 1e6}


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)}\n{done.stderr}")


if __name__ == "__main__":
    main()
