#!/usr/bin/env python3
"""The PyTorch pruning round trip, end to end (needs torch, torchvision, onnx, onnxruntime; run
by hand, not by CI, which checks the same path on weight columns zeroed with numpy).

For each zoo model: torchvision's architecture (seed 0, eval mode), every conv with groups == 1
and the classifier pruned with `torch.nn.utils.prune.ln_structured(..., n=1, dim=1)` (the L1
norm of input channels, each layer on its own: unconstrained pruning) and the pruning made
permanent, so pruned input channels are zero weight columns; exported by the TorchScript
exporter (opset 17) and by the dynamo exporter; then

    nnirc import --masks-from-zeros MODEL.onnx -o m.nnir
    nnirc optimize m.nnir --verify [--align 8] -o opt.nnir
    nnirc export opt.nnir -o opt.onnx

and onnxruntime on opt.onnx must match the masked PyTorch model (and onnxruntime on its own
export) within --rtol, relative to the largest |output|.

Usage: python3 tools/torch_prune_check.py [--amount 0.3] [--nnirc target/release/nnirc] [MODEL ...]
"""
import argparse
import os
import subprocess
import sys
import tempfile

MODELS = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1"]


def rel_dev(want, got):
    import numpy as np

    return float(np.abs(want - got).max() / max(np.abs(want).max(), 1e-30))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--amount", type=float, default=0.3)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--nnirc", default="target/release/nnirc")
    p.add_argument("models", nargs="*", default=MODELS)
    args = p.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    import torch.nn.utils.prune as prune
    import torchvision

    def nnirc(*cmd):
        r = subprocess.run([args.nnirc, *cmd], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"failed: nnirc {' '.join(cmd)}\n{r.stderr}")
        return r.stderr

    def ort_run(path, x):
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = getattr(torchvision.models, name)(weights=None).eval()
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d) and m.groups == 1 or isinstance(m, torch.nn.Linear):
                    prune.ln_structured(m, "weight", amount=args.amount, n=1, dim=1)
                    prune.remove(m, "weight")
            x = torch.randn(1, 3, 224, 224)
            with torch.no_grad():
                want = model(x).numpy()
            xn = x.numpy()
            for exporter in ["torchscript", "dynamo"]:
                base = os.path.join(tmp, f"{name}.{exporter}")
                onnx_path = base + ".onnx"
                kw = {"opset_version": 17} if exporter == "torchscript" else {}
                torch.onnx.export(model, (x,), onnx_path, dynamo=exporter == "dynamo",
                                  input_names=["x"], output_names=["logits"], **kw)
                original = ort_run(onnx_path, xn)
                nnirc("import", "--masks-from-zeros", onnx_path, "-o", base + ".nnir")
                masks = open(base + ".nnir").read().count("keep_in=")
                for align in ["1", "8"]:
                    opt = f"{base}.align{align}.nnir"
                    nnirc("optimize", base + ".nnir", "--verify", "--align", align, "-o", opt)
                    nnirc("export", opt, "-o", opt + ".onnx")
                    got = ort_run(opt + ".onnx", xn)
                    d_torch, d_ort = rel_dev(want, got), rel_dev(original, got)
                    ok = max(d_torch, d_ort) <= args.rtol
                    failed += not ok
                    print(f"{name:<16} {exporter:<11} align {align}: {masks:3} keep_in masks, "
                          f"optimized ONNX vs masked torch {d_torch:.2e}, vs its ONNX export "
                          f"{d_ort:.2e} {'ok' if ok else 'FAILED'}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
