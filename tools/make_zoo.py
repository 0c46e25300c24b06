#!/usr/bin/env python3
"""Regenerates examples/zoo/*.nnir from torchvision's architectures (needs torch; CI does not run it).

For each model: torchvision's architecture with its default random initialisation (seed 0), in
eval mode, exported by the legacy TorchScript ONNX exporter (opset 17, batch norm folded into
convolutions as the exporter does), then imported with
`nnirc import --no-weights MODEL.onnx -o examples/zoo/MODEL.nnir`: the committed file is exactly
what the importer prints, with parameters declared but no weights (run the zoo with
`--random-weights SEED`). The ONNX files go to a temporary directory (pass --keep DIR to keep
them, e.g. to check that importing them reproduces the committed text byte for byte).

Usage: python3 tools/make_zoo.py [--nnirc target/release/nnirc] [--keep DIR] [MODEL ...]
"""
import argparse
import os
import subprocess
import sys
import tempfile

MODELS = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnirc", default="target/release/nnirc")
    parser.add_argument("--keep", help="directory to keep the ONNX files in")
    parser.add_argument("models", nargs="*", default=MODELS)
    args = parser.parse_args()

    import torch
    import torchvision

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out_dir = os.path.join(root, "examples", "zoo")
    onnx_dir = args.keep or tempfile.mkdtemp(prefix="nnirc-zoo-")
    os.makedirs(onnx_dir, exist_ok=True)
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        onnx_path = os.path.join(onnx_dir, name + ".onnx")
        torch.onnx.export(model, (x,), onnx_path, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"], do_constant_folding=True)
        target = os.path.join(out_dir, name + ".nnir")
        if os.path.exists(target):
            os.remove(target)
        subprocess.run([args.nnirc, "import", "--no-weights", onnx_path, "-o", target], check=True)
        print(f"{name}: {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
