#!/usr/bin/env python3
"""Check `nnirc export` against onnxruntime (not part of CI: needs onnxruntime, onnx, numpy,
safetensors from PyPI, about 100 MB).

For a .nnir model: export it to ONNX, validate it with the ONNX checker (full shape inference),
draw seeded inputs, run `nnirc run --inputs` and onnxruntime on them, and compare every output.

    python3 tools/ort_check.py examples/*.nnir --random-weights 0
    python3 tools/ort_check.py model.onnx --inputs in.safetensors --expected out.safetensors

Exit status 0 when every model agrees within --rtol (relative to the largest |output|).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file, save_file


def run_ort(model_path, inputs):
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs)))


def compare(label, expected, got, rtol):
    worst = 0.0
    for name, want in expected.items():
        have = got[name]
        if want.shape != have.shape:
            print(f"{label}: output {name}: shape {have.shape} != {want.shape}")
            return False
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-6)
        worst = max(worst, float(np.abs(want - have).max(initial=0.0)) / scale)
    ok = worst <= rtol
    print(f"{label}: max relative deviation {worst:.3e} {'ok' if ok else 'FAILED'}")
    return ok


def check_onnx(model_path):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)


def check_nnir(path, args, tmp):
    base = os.path.join(tmp, os.path.splitext(os.path.basename(path))[0])
    onnx_path = base + ".onnx"
    export = [args.nnirc, "export", path, "-o", onnx_path]
    if args.random_weights is not None:
        export += ["--random-weights", str(args.random_weights)]
    subprocess.run(export, check=True)
    check_onnx(onnx_path)
    model = onnx.load(onnx_path)
    rng = np.random.default_rng(args.seed)
    inputs = {}
    for i in model.graph.input:
        shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
        inputs[i.name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    save_file(inputs, base + ".in.safetensors")
    run = [args.nnirc, "run", path, "--inputs", base + ".in.safetensors", "-o", base + ".out.safetensors"]
    if args.random_weights is not None:
        run += ["--random-weights", str(args.random_weights)]
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
    expected = load_file(base + ".out.safetensors")
    return compare(path, expected, run_ort(onnx_path, inputs), args.rtol)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".nnir models (exported here) or one .onnx model")
    p.add_argument("--random-weights", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--nnirc", default=os.environ.get("NNIRC", "target/debug/nnirc"))
    p.add_argument("--inputs", help="(.onnx mode) inputs as safetensors, named like the ONNX inputs")
    p.add_argument("--expected", help="(.onnx mode) `nnirc run -o` outputs as safetensors")
    args = p.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.models:
            if m.endswith(".onnx"):
                check_onnx(m)
                if args.inputs and args.expected:
                    got = run_ort(m, load_file(args.inputs))
                    ok &= compare(m, load_file(args.expected), got, args.rtol)
                else:
                    print(f"{m}: passes the ONNX checker")
            else:
                ok &= check_nnir(m, args, tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
