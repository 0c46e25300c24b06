#!/usr/bin/env python3
"""Regenerates the torchvision zoo (needs torch and torchvision; CI does not run it).

For each model: torchvision's architecture with its default random initialisation (seed 0), in
eval mode, exported twice at input 1x3x224x224:

- by the TorchScript ONNX exporter (`dynamo=False`, opset 17, batch norm folded into the
  convolutions as the exporter does) to `tests/data/onnx/zoo/MODEL.onnx`;
- by the dynamo exporter (`dynamo=True`, its default opset) to
  `tests/data/onnx/zoo/MODEL.dynamo.onnx`, without the bulky `pkg.torch.onnx.stack_trace` and
  `pkg.torch.onnx.fx_node` node metadata.

Both are saved graph-only: every initializer of 1 KiB or more is external data in
`MODEL[.dynamo].onnx.data`, which is deleted (and git-ignored), so the committed files are small
and hold the exact graphs, names and shapes the exporters wrote. Then
`nnirc import --no-weights tests/data/onnx/zoo/MODEL.onnx -o examples/zoo/MODEL.nnir`
writes the committed `.nnir` (parameters declared, no weights: run the zoo with
`--random-weights SEED`); `tests/zoo.rs` checks that importing the committed ONNX file gives
the committed text byte for byte, and `tools/ort_check.py` fills the graph-only files with seeded
random weights for the onnxruntime round trip.

Pass `--keep DIR` to also keep complete ONNX files (with their weights) in DIR.

Usage: python3 tools/make_zoo.py [--nnirc target/release/nnirc] [--keep DIR] [MODEL ...]
"""
import argparse
import os
import subprocess
import sys
import tempfile

MODELS = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1"]
DROPPED_METADATA = {"pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node"}


def save_graph_only(model, path):
    """Saves `model` with its large initializers as external data, then deletes the data."""
    import onnx

    data = os.path.basename(path) + ".data"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=1024)
    os.remove(os.path.join(os.path.dirname(path), data))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnirc", default="target/release/nnirc")
    parser.add_argument("--keep", help="directory to keep complete ONNX files (with weights) in")
    parser.add_argument("models", nargs="*", default=MODELS)
    args = parser.parse_args()

    import onnx
    import torch
    import torchvision

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    zoo_dir = os.path.join(root, "examples", "zoo")
    onnx_dir = os.path.join(root, "tests", "data", "onnx", "zoo")
    os.makedirs(onnx_dir, exist_ok=True)
    full_dir = args.keep or tempfile.mkdtemp(prefix="nnirc-zoo-")
    os.makedirs(full_dir, exist_ok=True)
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)

        full = os.path.join(full_dir, name + ".onnx")
        torch.onnx.export(model, (x,), full, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"], do_constant_folding=True)
        legacy = os.path.join(onnx_dir, name + ".onnx")
        save_graph_only(onnx.load(full), legacy)

        full_dynamo = os.path.join(full_dir, name + ".dynamo.onnx")
        torch.onnx.export(model, (x,), full_dynamo, dynamo=True, input_names=["x"],
                          output_names=["logits"])
        dynamo = onnx.load(full_dynamo)
        for node in dynamo.graph.node:
            kept = [p for p in node.metadata_props if p.key not in DROPPED_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
        save_graph_only(dynamo, os.path.join(onnx_dir, name + ".dynamo.onnx"))

        target = os.path.join(zoo_dir, name + ".nnir")
        if os.path.exists(target):
            os.remove(target)
        subprocess.run([args.nnirc, "import", "--no-weights", legacy, "-o", target], check=True)
        print(f"{name}: {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
