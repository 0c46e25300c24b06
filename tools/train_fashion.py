#!/usr/bin/python3
"""Train the Fashion-MNIST example model and import it: examples/fashion/fashion_cnn.{nnir,safetensors,json}.

By hand, with Debian's CPU-only torch for the system Python and the data set:

    apt-get install python3-torch dataset-fashion-mnist
    cargo build --release
    nice -n 10 /usr/bin/python3 tools/train_fashion.py

Seeded and deterministic (torch.manual_seed, deterministic algorithms, a fixed thread count):
the same torch build on the same machine gives the same weights. Steps:

1. read the IDX files (gzipped, as Debian ships them) from --data-dir;
2. train FashionCNN (below) with SGD, Nesterov momentum, a one-cycle learning rate and random
   horizontal flips, for --epochs epochs on the 60k training images;
3. measure top-1 in torch on all 10k test images (and on the first 1000, the CI subset);
4. export to ONNX with the TorchScript exporter (opset 17, eval mode: batch norms that follow
   a conv are folded into it), input `image` f32[1, 1, 28, 28], output `logits` f32[1, 10];
5. `nnirc import` it into --out (writes OUT.nnir and OUT.safetensors);
6. `nnirc eval` the import on the 10k test images and on the first 1000;
7. write OUT.json with the seed, epochs, parameter counts, the torch and nnirc accuracies,
   the training time, the date and the torch version.

Input: raw pixels scaled to [0, 1] (byte / 255), as `nnirc eval` feeds them. The model's first
op normalises them with the training set's mean and standard deviation: a batch norm with fixed
statistics (`%normalize` in the .nnir file), so nothing outside the model has to know.

--from-checkpoint skips training (steps 1-2) and reloads the state dict this script saved.
"""

import argparse
import datetime
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fashion-MNIST training set, pixels in [0, 1].
MEAN, STD = 0.2860, 0.3530


HEADER = """\
# A CNN trained on Fashion-MNIST (real weights): residual adds, a concat of two branches and a
# depthwise-separable block. Written by tools/train_fashion.py (PyTorch, TorchScript ONNX
# export with batch norms folded into the convs, then `nnirc import`); do not edit by hand.
# Input: raw pixels scaled to [0, 1]; %normalize applies the training set's mean and std.
# Accuracy (examples/fashion/fashion_cnn.json, docs/experiments.md): `nnirc eval
# examples/fashion/fashion_cnn.nnir --dataset fashion-mnist`.

"""


def read_idx(path):
    """An IDX file of unsigned bytes (gzipped or not) as a numpy array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:3] != b"\x00\x00\x08":
        sys.exit(f"error: {path}: not an unsigned-byte IDX file")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        sys.exit(f"error: {path}: dimensions {dims} do not match {body.size} data bytes")
    return body.reshape(dims)


def load_split(data_dir, prefix):
    def find(base):
        for name in (base, base + ".gz"):
            p = os.path.join(data_dir, name)
            if os.path.exists(p):
                return p
        sys.exit(
            f"error: {base}(.gz) not found in {data_dir}; "
            "install it with `apt-get install dataset-fashion-mnist`"
        )

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class ConvBN(nn.Module):
    """A conv without bias and its batch norm (the exporter folds the norm into the conv)."""

    def __init__(self, cin, cout, k, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class Normalize(nn.Module):
    """(x - MEAN) / STD as an inference-mode batch norm with fixed buffers (never trained)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.ones(1))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("running_mean", torch.tensor([MEAN]))
        self.register_buffer("running_var", torch.tensor([STD * STD]))

    def forward(self, x):
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=0.0
        )


class Residual(nn.Module):
    """Two 3x3 conv + BN, added to the input (a residual add), then ReLU."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = ConvBN(c, c, 3)
        self.relu1 = nn.ReLU()
        self.conv2 = ConvBN(c, c, 3)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + x)


class Mixed(nn.Module):
    """Two branches (1x1 and 3x3 conv + BN + ReLU) concatenated on channels."""

    def __init__(self, cin, cbranch):
        super().__init__()
        self.branch1 = ConvBN(cin, cbranch, 1)
        self.relu1 = nn.ReLU()
        self.branch3 = ConvBN(cin, cbranch, 3)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        return torch.cat([self.relu1(self.branch1(x)), self.relu3(self.branch3(x))], dim=1)


class Separable(nn.Module):
    """A depthwise 3x3 conv + BN + ReLU, then a pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = ConvBN(cin, cin, 3, groups=cin)
        self.relu1 = nn.ReLU()
        self.pointwise = ConvBN(cin, cout, 1)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.pointwise(self.relu1(self.depthwise(x))))


class FashionCNN(nn.Module):
    """28x28 -> normalize -> stem -> pool -> residual (14x14, 32 channels) -> concat of a 1x1 and
    a 3x3 branch (64) -> depthwise-separable block -> pool -> residual (7x7, 64) -> pool -> fc."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize()
        self.stem = ConvBN(1, 32, 3)
        self.stem_relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.res1 = Residual(32)
        self.mixed = Mixed(32, 32)
        self.sep = Separable(64, 64)
        self.pool2 = nn.MaxPool2d(2)
        self.res2 = Residual(64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool1(self.stem_relu(self.stem(self.normalize(x))))  # 14x14
        x = self.pool2(self.sep(self.mixed(self.res1(x))))  # 7x7
        return self.fc(self.flatten(self.pool(self.res2(x))))


def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct.append(model(x[i : i + batch]).argmax(1) == y[i : i + batch])
    return torch.cat(correct).float()


def train(model, x, y, epochs, batch, lr, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        started, total_loss = time.time(), 0.0
        for i in range(len(x) // batch):
            idx = order[i * batch : (i + 1) * batch]
            xb, yb = x[idx], y[idx]
            flip = torch.rand(len(xb), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item()
            if (i + 1) % 50 == 0:
                print(f"  step {i + 1}: loss {loss.item():.4f}, {time.time() - started:.0f} s", flush=True)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total_loss / (len(x) // batch):.4f}, "
            f"{time.time() - started:.0f} s",
            flush=True,
        )


def nnirc(args, *cmd):
    out = subprocess.run([args.nnirc, *cmd], cwd=ROOT, check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    return out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="examples/fashion/fashion_cnn.nnir", help="the .nnir to write")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default="target/fashion/fashion_cnn.pt")
    ap.add_argument("--from-checkpoint", action="store_true", help="skip training; reload --checkpoint")
    ap.add_argument("--nnirc", default="target/release/nnirc")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.chdir(ROOT)

    model = FashionCNN()
    params = sum(p.numel() for p in model.parameters())
    print(f"FashionCNN: {params} parameters", flush=True)
    x_test, y_test = load_split(args.data_dir, "t10k")
    train_s = None
    if args.from_checkpoint:
        state = torch.load(args.checkpoint)
        model.load_state_dict(state["model"])
        train_s = state["train_s"]
    else:
        x_train, y_train = load_split(args.data_dir, "train")
        started = time.time()
        train(model, x_train, y_train, args.epochs, args.batch, args.lr, args.seed)
        train_s = time.time() - started
        os.makedirs(os.path.dirname(args.checkpoint), exist_ok=True)
        torch.save({"model": model.state_dict(), "train_s": train_s}, args.checkpoint)
    correct = accuracy(model, x_test, y_test)
    torch_top1, torch_top1_1k = correct.mean().item(), correct[:1000].mean().item()
    print(f"torch top-1: {100 * torch_top1:.2f}% (10k), {100 * torch_top1_1k:.2f}% (first 1k)")

    out = args.out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    onnx_path = os.path.splitext(args.checkpoint)[0] + ".onnx"
    model.eval()
    export_kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        onnx_path,
        input_names=["image"],
        output_names=["logits"],
        opset_version=17,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
        **export_kw,
    )
    nnirc(args, "import", onnx_path, "-o", out)
    with open(out) as f:
        text = f.read()
    with open(out, "w") as f:
        f.write(HEADER + text)
    results = {}
    for limit in (10000, 1000):
        json_path = os.path.splitext(args.checkpoint)[0] + f".eval{limit}.json"
        nnirc(args, "eval", out, "--dataset", "fashion-mnist", "--data-dir", args.data_dir,
              "--limit", str(limit), "--json", json_path)
        with open(json_path) as f:
            results[limit] = json.load(f)
    record = {
        "model": os.path.basename(out),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "max_lr": args.lr,
        "torch_params": params,
        "torch_top1": round(torch_top1, 6),
        "torch_top1_first_1000": round(torch_top1_1k, 6),
        "nnirc_top1": results[10000]["top1"],
        "nnirc_correct": results[10000]["correct"],
        "nnirc_top1_first_1000": results[1000]["top1"],
        "nnirc_correct_first_1000": results[1000]["correct"],
        "train_seconds": round(train_s, 1),
        "threads": args.threads,
        "date": datetime.date.today().isoformat(),
        "torch_version": torch.__version__,
    }
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
