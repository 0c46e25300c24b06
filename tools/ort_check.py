#!/usr/bin/env python3
"""Cross-checks nnirc against onnxruntime (f32, relative error <= --rtol, default 1e-4).

Needs onnxruntime, onnx, numpy and safetensors from PyPI (about 100 MB); `.ci/run` installs
pinned versions into target/ort-venv and runs this script after `cargo test`:

    target/ort-venv/bin/python tools/ort_check.py --nnirc target/debug/nnirc

With no MODEL it runs every suite (pick some with --suite):

  examples   every examples/*.nnir (they carry masks), seeded weights (--random-weights,
             default 0) and seeded inputs: expected = `nnirc run` of the masked program; then
             the masked program itself (`nnirc export`), `nnirc optimize --mode naive`,
             `--mode upscale` and `--mode upscale --align 8`, each exported to ONNX, validated
             with the ONNX checker (full_check) and run in onnxruntime: variants masked,
             naive, upscale, upscale-align8, and ort-cpu (`--target ort-cpu` with the
             model's docs/latency/tables/NAME.json) where such a table exists.
  zoo        the same for every examples/zoo/*.nnir, after the reference recipe
             `nnirc prune --amount 0.5 --side input --random-weights SEED`.
  trained    the same for every examples/*/*.nnir with a weights file (the trained
             Fashion-MNIST model), with its own weights, after `nnirc prune --amount 0.3`.
  roundtrip  every tests/data/onnx/zoo/*.onnx (TorchScript exporter, opset 17, and
             *.dynamo.onnx, dynamo exporter, opset 20), committed graph-only: each external
             initializer gets seeded random data (Kaiming-scaled conv and gemm weights, then
             rescaled so that every layer's output has rms ~1 on the seeded input; positive
             batch-norm variances), checked to give a finite output that is not ~0 and
             depends on the input. Then `nnirc import` -> `nnirc run` (variant import-run)
             and `nnirc export` -> onnxruntime (variant round-trip), both against
             onnxruntime on the original.
  zeros      every filled TorchScript zoo model with a seeded 30-50% of the input channels
             (weight columns) of each conv (groups == 1, the stem included) and Gemm
             (transB=1) zeroed, independently per layer (unconstrained pruning, as
             torch.nn.utils.prune leaves it); expected = onnxruntime on that masked
             original. `nnirc import --masks-from-zeros` must write one keep_in per zeroed
             layer; then `nnirc run` of it (import-run), `nnirc optimize --mode upscale
             --verify` (verify: the f32 deviation it reports) and `nnirc export` of the
             result -> onnxruntime (upscale).

With MODEL arguments, each is checked by hand:

    python3 tools/ort_check.py examples/*.nnir --random-weights 0
    python3 tools/ort_check.py examples/zoo/resnet18.nnir --random-weights 0 --prune 0.5
    python3 tools/ort_check.py tests/data/onnx/zoo/resnet50.onnx   # roundtrip + zeros
    python3 tools/ort_check.py model.onnx --inputs in.safetensors --expected out.safetensors

A .nnir model gets the examples checks (its weights file unless --random-weights); a .onnx
model the roundtrip and zeros checks (external data that is absent is filled with seeded
random data), or, with --inputs and --expected (`nnirc run -o` outputs), only the checker and
a comparison of onnxruntime with those outputs.

Prints one line per check (model, variant, max relative deviation: max |want - got| over
max |want|, worst output) and a summary. Exit status 0 when every check agrees within --rtol,
1 on any mismatch or error (a failing nnirc command is printed with its stderr; rerun with
--keep DIR to keep the files it read).
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["examples", "zoo", "trained", "roundtrip", "zeros"]


class CheckError(Exception):
    """A step of a check failed (a command, the checker, a bad model): reported, not raised."""


def rel(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def stable_seed(*parts):
    """A seed that depends only on the base seed and the names, not on Python's hash salt."""
    return zlib.crc32("\0".join(str(p) for p in parts).encode())


# ---------------------------------------------------------------------------------------------
# Helpers: nnirc, onnxruntime, comparison.


class Step:
    def __init__(self, checker, model, variant):
        self.checker, self.model, self.variant, self.ok = checker, model, variant, False

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if kind is None:
            self.ok = True
            return False
        if not issubclass(kind, Exception):
            return False  # KeyboardInterrupt and the like
        msg = str(e) if isinstance(e, CheckError) else f"{kind.__name__}: {e}"
        if self.checker.args.verbose and not isinstance(e, CheckError):
            traceback.print_exception(kind, e, tb)
        self.checker.record(self.model, self.variant, None, False, msg)
        return True


class Checker:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.results = []  # (model, variant, deviation or None, ok, note)
        self.used = set()

    # -- reporting ------------------------------------------------------------------------------

    def record(self, model, variant, dev, ok, note=""):
        self.results.append((model, variant, dev, ok, note))
        dev_s = f"{dev:.2e}" if dev is not None else "-"
        status = "ok" if ok else "FAILED"
        line = f"{model:<48} {variant:<14} max rel dev {dev_s:>8}  {status}"
        if note:
            line += f"  ({note})" if ok else f"\n    {note}"
        print(line, flush=True)

    def step(self, model, variant):
        """A context that records a failing step (any exception) instead of raising it; its
        `ok` says whether the step finished, so that steps depending on it can be left out."""
        return Step(self, model, variant)

    def compare(self, model, variant, want, got, note=""):
        """Compares two lists of arrays (outputs in model order); records one line."""
        if len(want) != len(got):
            self.record(model, variant, None, False, f"{len(got)} outputs, expected {len(want)}")
            return False
        worst = 0.0
        for i, (w, g) in enumerate(zip(want, got)):
            w = np.asarray(w, dtype=np.float64)
            g = np.asarray(g, dtype=np.float64)
            if w.shape != g.shape:
                self.record(model, variant, None, False, f"output {i}: shape {g.shape} != {w.shape}")
                return False
            if not np.all(np.isfinite(g)):
                self.record(model, variant, None, False, f"output {i} is not finite")
                return False
            scale = max(float(np.abs(w).max(initial=0.0)), 1e-6)
            worst = max(worst, float(np.abs(w - g).max(initial=0.0)) / scale)
        ok = worst <= self.args.rtol
        self.record(model, variant, worst, ok, note)
        return ok

    # -- tools ------------------------------------------------------------------------------------

    def nnirc(self, *argv):
        cmd = [self.args.nnirc, "--color", "never", *[str(a) for a in argv]]
        if self.args.verbose:
            print("  $ " + shlex.join(cmd), flush=True)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            err = "\n".join(("    | " + l) for l in p.stderr.strip().splitlines()[-20:])
            raise CheckError(f"exit {p.returncode}: {shlex.join(cmd)}\n{err}")
        return p.stdout, p.stderr

    def workdir(self, kind, name):
        """A fresh directory for one model's files (named after it, for --keep); returns a
        prefix to append file names to."""
        base = os.path.join(self.tmp, kind, name)
        d, n = base, 1
        while d in self.used:
            n += 1
            d = f"{base}-{n}"
        self.used.add(d)
        os.makedirs(d, exist_ok=True)
        return d + os.sep


def check_onnx(path):
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # onnx raises several checker/inference error types
        raise CheckError(f"ONNX checker (full_check) rejects {path}: {e}") from None


def run_ort(path, inputs):
    """Runs `path` on `inputs` (a list in graph-input order); outputs in graph-output order."""
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        if len(names) != len(inputs):
            raise CheckError(f"{path}: {len(names)} inputs, expected {len(inputs)}")
        return sess.run(None, dict(zip(names, inputs)))
    except CheckError:
        raise
    except Exception as e:
        raise CheckError(f"onnxruntime fails on {path}: {e}") from None


def nnir_weights_file(path):
    """The file named by a .nnir model's `weights "..."` line, or None."""
    with open(path) as f:
        for line in f:
            m = re.match(r'\s*weights\s+"([^"]+)"', line)
            if m:
                return m.group(1)
    return None


def nnir_interface(path):
    """(inputs as [(name, shape)], output names) from a .nnir model's header."""
    text = open(path).read()
    m = re.search(r"^model\s+[^\s(]+\s*\((.*?)\)\s*->\s*\((.*?)\)", text, re.S | re.M)
    if not m:
        raise CheckError(f"{path}: no model header")
    inputs = [(n, [int(d) for d in dims.split(",")])
              for n, dims in re.findall(r"%([^\s:,]+)\s*:\s*\w+\[([^\]]*)\]", m.group(1))]
    outputs = re.findall(r"%([^\s,)]+)", m.group(2))
    return inputs, outputs


def seeded_inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes]


def nnirc_run(ck, model_path, names, inputs, stem, random_weights=None):
    """`nnirc run` on `inputs` (named `names`); outputs in the model's output order."""
    _, outputs = nnir_interface(model_path)
    in_path, out_path = stem + ".in.safetensors", stem + ".out.safetensors"
    save_file(dict(zip(names, inputs)), in_path)
    argv = ["run", model_path, "--inputs", in_path, "-o", out_path]
    if random_weights is not None:
        argv += ["--random-weights", random_weights]
    ck.nnirc(*argv)
    got = load_file(out_path)
    missing = [o for o in outputs if o not in got]
    if missing:
        raise CheckError(f"nnirc run {model_path}: outputs {missing} missing from {out_path}")
    return [got[o] for o in outputs]


def export_and_check(ck, nnir_path, onnx_path, random_weights=None):
    argv = ["export", nnir_path, "-o", onnx_path]
    if random_weights is not None:
        argv += ["--random-weights", random_weights]
    ck.nnirc(*argv)
    check_onnx(onnx_path)


# ---------------------------------------------------------------------------------------------
# Suite "examples" / "zoo": masked, naive and upscale exports against `nnirc run`.


def check_nnir(ck, path, random_weights, prune=None):
    args = ck.args
    name = os.path.splitext(os.path.basename(path))[0]
    label = rel(path) + (f" (pruned {prune:g})" if prune is not None else "")
    work = ck.workdir("nnir", name)
    rw = ["--random-weights", random_weights] if random_weights is not None else []
    with ck.step(label, "masked") as st:
        if prune is not None:
            pruned = work + "pruned.nnir"
            ck.nnirc("prune", path, "--amount", prune, "--side", "input", "-o", pruned, *rw)
            if random_weights is None:
                # The pruned copy names its weights file relative to itself.
                weights = nnir_weights_file(path)
                if weights is not None:
                    shutil.copy(os.path.join(os.path.dirname(path), weights), work + weights)
            path = pruned
        inputs_decl, _ = nnir_interface(path)
        names = [n for n, _ in inputs_decl]
        inputs = seeded_inputs([s for _, s in inputs_decl], stable_seed(args.seed, name))
        expected = nnirc_run(ck, path, names, inputs, work + "masked", random_weights)
        masked_onnx = work + "masked.onnx"
        export_and_check(ck, path, masked_onnx, random_weights)
        ck.compare(label, "masked", expected, run_ort(masked_onnx, inputs))
    if not st.ok:
        return
    # variant -> `nnirc optimize` flags; upscale-align8 pads channel counts (zero columns)
    variants = {
        "naive": ["--mode", "naive"],
        "upscale": ["--mode", "upscale"],
        "upscale-align8": ["--mode", "upscale", "--align", "8"],
    }
    # the deploy target, for models with a committed latency table (the zoo, the trained model)
    table = os.path.join(ROOT, "docs", "latency", "tables", name + ".json")
    if os.path.exists(table):
        variants["ort-cpu"] = ["--mode", "upscale", "--target", "ort-cpu", "--latency-table", table]
    for variant, flags in variants.items():
        with ck.step(label, variant):
            opt = work + variant + ".nnir"
            ck.nnirc("optimize", path, *flags, "-o", opt, *rw)
            opt_onnx = work + variant + ".onnx"
            export_and_check(ck, opt, opt_onnx)  # reads the weights optimize wrote
            ck.compare(label, variant, expected, run_ort(opt_onnx, inputs))


# ---------------------------------------------------------------------------------------------
# Suites "roundtrip" and "zeros": real exporter graphs, filled with seeded random weights.


def real_consumers(graph):
    """Maps a value name to its consumers [(node, input index)], looking through Identity."""
    direct = {}
    for node in graph.node:
        for i, v in enumerate(node.input):
            direct.setdefault(v, []).append((node, i))

    def resolve(v, seen=()):
        out = []
        for node, i in direct.get(v, []):
            if node.op_type == "Identity" and node.output[0] not in seen:
                out += resolve(node.output[0], seen + (node.output[0],))
            else:
                out.append((node, i))
        return out

    return resolve


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def fill_tensor(tensor, consumers, rng):
    """Seeded random data for an initializer, by its role in its first consumer.

    Returns (data, role): role "weight" (conv, gemm and matmul weights, Kaiming-scaled),
    "additive" (biases, batch-norm bias and mean, added constants) or "factor" (batch-norm scale
    and variance, multiplied constants: positive, near 1)."""
    shape = tuple(tensor.dims)
    op, idx, node = ("", -1, None)
    if consumers:
        node, idx = consumers[0]
        op = node.op_type

    def kaiming(fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1)), "weight"

    if op == "Conv" and idx == 1:
        data, role = kaiming(int(np.prod(shape[1:])))
    elif op == "Gemm" and idx == 1:
        data, role = kaiming(shape[1] if attr(node, "transB", 0) else shape[0])
    elif op == "MatMul" and idx == 1 and len(shape) == 2:
        data, role = kaiming(shape[0])
    elif (op == "BatchNormalization" and idx in (1, 4)) or op in ("Mul", "Div"):
        data, role = rng.uniform(0.5, 1.5, size=shape), "factor"  # variances must be > 0
    else:
        data, role = rng.uniform(-0.1, 0.1, size=shape), "additive"
    return data.astype(np.float32), role


def set_data(tensor, data):
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = np.ascontiguousarray(data, dtype=np.float32).tobytes()


def load_filled(path, seed):
    """Loads `path`; external initializers whose data file is absent get seeded random data.

    Returns (model, {filled initializer: role}) (see fill_tensor)."""
    model = onnx.load(path, load_external_data=False)
    base = os.path.dirname(os.path.abspath(path))
    external = [t for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    locations = {e.value for t in external for e in t.external_data if e.key == "location"}
    if external and all(os.path.exists(os.path.join(base, loc)) for loc in locations):
        onnx.load_external_data_for_model(model, base)
        for t in external:
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
        return model, {}
    consumers = real_consumers(model.graph)
    rng = np.random.default_rng(seed)
    roles = {}
    for t in external:
        if t.data_type != onnx.TensorProto.FLOAT:
            raise CheckError(f"{path}: external initializer {t.name} is not float32 "
                             f"({onnx.TensorProto.DataType.Name(t.data_type)})")
        data, roles[t.name] = fill_tensor(t, consumers(t.name), rng)
        set_data(t, data)
    return model, roles


def rms(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


@np.errstate(all="ignore")  # overflow in exp(-x) of large inputs is harmless here
def normalize_weights(model, roles, inputs, passes=3):
    """Rescales every filled weight so that its layer's output, biases left out, has rms ~1 on
    `inputs` (LSUV-like: Kaiming alone lets deep nets explode through residual sums or vanish
    through SiLU and squeeze-excite gates).

    Each pass runs the model once in onnxruntime with every intermediate value exposed and the
    additive parameters zeroed, then walks the nodes in order and predicts every value under
    the new scales: exactly (in numpy) through elementwise ops, sums, products, concats, batch
    norms and mean pools, and as "the old value times a factor" through the layers themselves
    (a layer's output, rescaled, is its old output over its old rms) and the remaining ops."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    alias = {}
    for node in graph.node:
        if node.op_type == "Identity":
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
    weight_of = {}  # node index -> its filled weight
    for k, node in enumerate(graph.node):
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            w = alias.get(node.input[1], node.input[1])
            if roles.get(w) == "weight":
                weight_of[k] = w
    if not weight_of:
        return
    typed = onnx.shape_inference.infer_shapes(model)
    float_values = {v.name for v in list(typed.graph.value_info) + list(typed.graph.output)
                    if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    graph_inputs = [i.name for i in graph.input if i.name not in inits]
    consts = {}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)

    for _ in range(passes):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for t in probe.graph.initializer:
            if roles.get(t.name) == "additive":
                set_data(t, np.zeros(tuple(t.dims), np.float32))
        shown = {o.name for o in probe.graph.output}
        for node in probe.graph.node:
            for o in node.output:
                if o in float_values and o not in shown:
                    probe.graph.output.append(
                        onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None))
                    shown.add(o)
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        old = dict(zip(names, sess.run(None, dict(zip(graph_inputs, inputs)))))
        old.update(zip(graph_inputs, inputs))
        del sess, probe
        new = dict(zip(graph_inputs, inputs))

        def const(v):
            v = alias.get(v, v)
            if v in consts:
                return consts[v]
            if v in inits:
                t = inits[v]
                if roles.get(v) == "additive":
                    return np.zeros(tuple(t.dims), np.float32)
                return onnx.numpy_helper.to_array(t)
            return None

        def value(v, table):
            v = alias.get(v, v)
            got = table.get(v)
            return got if got is not None else const(v)

        scale = {}
        for k, node in enumerate(graph.node):
            op, out = node.op_type, (node.output[0] if node.output else None)
            if out is None or out not in old or op in ("Identity", "Constant"):
                continue
            ins_new = [value(v, new) for v in node.input]
            ins_old = [value(v, old) for v in node.input]
            x = ins_new[0] if ins_new else None
            r_old = rms(old[out])
            result = None
            try:
                if k in weight_of:
                    w = weight_of[k]
                    if w not in scale:
                        r_in_old, r_in_new = rms(ins_old[0]), rms(ins_new[0])
                        m_in = r_in_new / r_in_old if r_in_old > 0 else 1.0
                        ok = r_old > 0 and m_in > 0 and np.isfinite(r_old * m_in)
                        scale[w] = 1.0 / (m_in * r_old) if ok else 1.0
                        result = old[out] / r_old if ok else old[out]
                    else:  # a shared weight: scaled once, for its first reader
                        m_in = rms(ins_new[0]) / max(rms(ins_old[0]), 1e-30)
                        result = old[out] * (m_in * scale[w])
                elif any(a is None for a in ins_new):
                    pass
                elif op == "Relu":
                    result = np.maximum(x, 0)
                elif op == "Sigmoid":
                    result = 1 / (1 + np.exp(-x))
                elif op == "HardSigmoid":
                    result = np.clip(attr(node, "alpha", 0.2) * x + attr(node, "beta", 0.5), 0, 1)
                elif op == "HardSwish":
                    result = x * np.clip(x / 6 + 0.5, 0, 1)
                elif op == "Tanh":
                    result = np.tanh(x)
                elif op == "Clip":
                    lo = ins_new[1] if len(ins_new) > 1 and node.input[1] else None
                    hi = ins_new[2] if len(ins_new) > 2 and node.input[2] else None
                    result = np.clip(x, lo, hi) if lo is not None or hi is not None else x
                elif op in ("Add", "Sub", "Mul", "Div"):
                    a, b = ins_new
                    result = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                              "Div": np.divide}[op](a, b)
                elif op == "Concat":
                    result = np.concatenate(ins_new, axis=attr(node, "axis", 0))
                elif op == "GlobalAveragePool":
                    result = x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
                elif op == "ReduceMean":
                    axes = attr(node, "axes", None)
                    if axes is None and len(ins_new) > 1 and node.input[1]:
                        axes = [int(a) for a in np.asarray(ins_new[1]).ravel()]
                    keep = bool(attr(node, "keepdims", 1))
                    result = x.mean(axis=tuple(axes) if axes else None, keepdims=keep)
                elif op == "BatchNormalization":  # mean and bias are zero in the probe
                    c = (ins_new[1] / np.sqrt(ins_new[4] + attr(node, "epsilon", 1e-5)))
                    result = x * c.reshape((1, -1) + (1,) * (x.ndim - 2))
                elif op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout"):
                    result = np.reshape(x, old[out].shape)
            except (ValueError, TypeError, IndexError):
                result = None
            if result is None or np.shape(result) != old[out].shape:
                # pools and anything else: scale the old value by the first operand's factor
                r_in_old = rms(ins_old[0]) if ins_old and ins_old[0] is not None else 0.0
                m_in = rms(ins_new[0]) / r_in_old if r_in_old > 0 else 1.0
                result = old[out] * m_in
            new[out] = np.asarray(result, dtype=np.float32)
        for w, factor in scale.items():
            t = inits[w]
            set_data(t, onnx.numpy_helper.to_array(t) * np.float32(factor))


def onnx_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    decl = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
        if any(d <= 0 for d in dims):
            raise CheckError(f"input {i.name} has a symbolic shape {dims}")
        decl.append((i.name, dims))
    return decl


def zero_columns(model, seed):
    """Zeroes a seeded 30-50% of the input channels of every conv (groups == 1) and Gemm
    (transB=1) weight, independently per layer. Returns how many layers got zeroed columns."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    # Identity outputs that alias an initializer (the TorchScript exporter shares weights so).
    alias = {}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            alias[node.output[0]] = node.input[0]
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in alias:
            alias[node.output[0]] = alias[node.input[0]]
    rng = np.random.default_rng(seed)
    zeroed = {}  # initializer name -> number of nodes reading it
    for node in graph.node:
        if node.op_type == "Conv" and attr(node, "group", 1) == 1:
            pass
        elif node.op_type == "Gemm" and attr(node, "transB", 0) == 1:
            pass
        else:
            continue
        w_name = alias.get(node.input[1], node.input[1])
        if w_name not in inits:
            continue
        if w_name in zeroed:
            zeroed[w_name] += 1
            continue
        t = inits[w_name]
        w = onnx.numpy_helper.to_array(t).copy()
        c = w.shape[1]
        if c < 2:
            continue
        k = min(c - 1, max(1, int(round(rng.uniform(0.3, 0.5) * c))))
        cols = rng.choice(c, size=k, replace=False)
        w[:, cols] = 0
        t.CopyFrom(onnx.numpy_helper.from_array(w.astype(np.float32), w_name))
        zeroed[w_name] = 1
    return sum(zeroed.values())


def check_onnx_model(ck, path, roundtrip=True, zeros=True):
    args = ck.args
    label = rel(path)
    name = os.path.basename(path)[: -len(".onnx")]
    work = ck.workdir("onnx", name)
    with ck.step(label, "fill") as st:
        model, roles = load_filled(path, stable_seed(args.seed, "weights", name))
        decl = onnx_inputs(model)
        inputs = seeded_inputs([s for _, s in decl], stable_seed(args.seed, "inputs", name))
        normalize_weights(model, roles, inputs)
        full = work + "full.onnx"
        onnx.save(model, full)
        check_onnx(full)
        want = run_ort(full, inputs)
        other = run_ort(full, seeded_inputs([s for _, s in decl], stable_seed(args.seed, "other", name)))
        scale = max(float(np.abs(w).max(initial=0.0)) for w in want)
        finite = all(np.all(np.isfinite(w)) for w in want + other)
        sens = max(float(np.abs(w - o).max(initial=0.0)) for w, o in zip(want, other)) / max(scale, 1e-30)
        if not finite or not 1e-3 <= scale <= 1e6 or sens < 1e-3:
            raise CheckError(f"onnxruntime output of the filled model is degenerate (finite: {finite}, "
                             f"max |y| {scale:.3e}, change under another input {sens:.3e}): "
                             f"the random weights are badly scaled")
        weights = f"{len(roles)} initializers filled" if roles else "weights as stored"
        note = f"{weights}, max |y| {scale:.2e}, input sensitivity {sens:.1e}"
    if not st.ok:
        return

    # Round trip: import, run in the interpreter, export, onnxruntime.
    if roundtrip:
        with ck.step(label, "import-run") as st:
            m = work + "m.nnir"
            ck.nnirc("import", full, "-o", m)
            names = [n for n, _ in nnir_interface(m)[0]]
            ck.compare(label, "import-run", want, nnirc_run(ck, m, names, inputs, work + "m"), note)
        if st.ok:
            with ck.step(label, "round-trip"):
                back = work + "back.onnx"
                export_and_check(ck, m, back)
                ck.compare(label, "round-trip", want, run_ort(back, inputs))
        note = ""
    if not zeros:
        return

    # Masks from zeroed columns: import --masks-from-zeros, optimize --verify, export.
    label += " zeroed"
    with ck.step(label, "import-run") as st:
        n_zeroed = zero_columns(model, stable_seed(args.seed, "zeros", name))
        masked = work + "masked.onnx"
        onnx.save(model, masked)
        check_onnx(masked)
        want = run_ort(masked, inputs)
        mz = work + "mz.nnir"
        ck.nnirc("import", "--masks-from-zeros", masked, "-o", mz)
        n_masks = len(re.findall(r"\bkeep_in\s*=", open(mz).read()))
        names = [n for n, _ in nnir_interface(mz)[0]]
        got = nnirc_run(ck, mz, names, inputs, work + "mz")
        if n_masks != n_zeroed:
            ck.record(label, "import-run", None, False,
                      f"nnirc import --masks-from-zeros {masked}: {n_masks} keep_in masks, "
                      f"expected {n_zeroed} (one per layer with zeroed columns)")
        else:
            ck.compare(label, "import-run", want, got,
                       f"{n_masks} keep_in masks" + (f"; {note}" if note else ""))
    if not st.ok:
        return
    with ck.step(label, "verify") as st:
        opt, report = work + "opt.nnir", work + "opt.json"
        ck.nnirc("optimize", mz, "--mode", "upscale", "--verify", "--report", report, "-o", opt)
        v = json.load(open(report)).get("verify", {})
        ck.record(label, "verify", v.get("f32_max_rel"), True,
                  f"nnirc optimize --verify passed, f64 {v.get('f64_max_rel', float('nan')):.1e}")
    if st.ok:
        with ck.step(label, "upscale"):
            opt_onnx = work + "opt.onnx"
            export_and_check(ck, opt, opt_onnx)
            ck.compare(label, "upscale", want, run_ort(opt_onnx, inputs))


# ---------------------------------------------------------------------------------------------
# Hand-run mode: one ONNX model against stored inputs and expected outputs.


def sanitized(name):
    """An ONNX name as `nnirc import` writes it (characters outside [A-Za-z0-9_./] become _)."""
    return re.sub(r"[^A-Za-z0-9_./]", "_", name)


def pick(table, names, what):
    """The tensors of `table` for `names`: by name, by sanitized name, or the only one."""
    if len(names) == 1 and len(table) == 1:
        return list(table.values())
    got = []
    for n in names:
        for key in (n, sanitized(n)):
            if key in table:
                got.append(table[key])
                break
        else:
            raise CheckError(f"{what}: no tensor named {n!r} (it has {sorted(table)})")
    return got


def check_stored(ck, path):
    with ck.step(rel(path), "stored"):
        check_onnx(path)
        model = onnx.load(path, load_external_data=False)
        names = [n for n, _ in onnx_inputs(model)]
        inputs = pick(load_file(ck.args.inputs), names, ck.args.inputs)
        outputs = [o.name for o in model.graph.output]
        expected = pick(load_file(ck.args.expected), outputs, ck.args.expected)
        ck.compare(rel(path), "stored", expected, run_ort(path, inputs))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=".nnir or .onnx models to check (default: every suite)")
    p.add_argument("--suite", action="append", choices=SUITES,
                   help="run this suite (repeatable; default: all, when no MODEL is given)")
    p.add_argument("--nnirc", default=os.environ.get("NNIRC", os.path.join(ROOT, "target/debug/nnirc")),
                   help="the nnirc binary (default: $NNIRC or target/debug/nnirc)")
    p.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                   help="seeded weights for .nnir models (suites: default 0; MODEL: the weights file)")
    p.add_argument("--prune", type=float, default=None, metavar="A",
                   help="(.nnir MODEL) apply the reference recipe `nnirc prune --amount A` first")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs, filled weights and zeroed columns")
    p.add_argument("--rtol", type=float, default=1e-4, help="largest relative deviation (default 1e-4)")
    p.add_argument("--keep", metavar="DIR", help="write the intermediate files to DIR and keep them")
    p.add_argument("--inputs", help="(.onnx MODEL) inputs as safetensors, named like the ONNX inputs")
    p.add_argument("--expected", help="(.onnx MODEL) expected outputs as safetensors (`nnirc run -o`)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every nnirc command")
    args = p.parse_args()
    if args.models and args.suite:
        p.error("give either MODEL arguments or --suite, not both")
    if bool(args.inputs) != bool(args.expected):
        p.error("--inputs and --expected go together")
    if not os.path.exists(args.nnirc):
        p.error(f"no nnirc binary at {args.nnirc} (run `cargo build`, or pass --nnirc)")

    start = time.monotonic()
    ort.set_default_logger_severity(3)  # errors only: no warnings about initializers in inputs
    print(f"ort_check: onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}, "
          f"nnirc {rel(args.nnirc)}, rtol {args.rtol:g}", flush=True)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        tmp_ctx = None
        tmp = os.path.abspath(args.keep)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="ort_check-")
        tmp = tmp_ctx.name
    ck = Checker(args, tmp)
    try:
        if args.models:
            for m in args.models:
                if m.endswith(".onnx") and args.inputs:
                    check_stored(ck, m)
                elif m.endswith(".onnx"):
                    check_onnx_model(ck, m)
                else:
                    check_nnir(ck, m, args.random_weights, args.prune)
        else:
            seed = args.random_weights if args.random_weights is not None else 0
            suites = args.suite or SUITES
            if "examples" in suites:
                for m in sorted(glob.glob(os.path.join(ROOT, "examples", "*.nnir"))):
                    check_nnir(ck, m, seed)
            if "zoo" in suites:
                for m in sorted(glob.glob(os.path.join(ROOT, "examples", "zoo", "*.nnir"))):
                    check_nnir(ck, m, seed, prune=0.5)
            if "trained" in suites:
                for m in sorted(glob.glob(os.path.join(ROOT, "examples", "*", "*.nnir"))):
                    if nnir_weights_file(m) is not None:
                        check_nnir(ck, m, None, prune=0.3)
            for m in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "onnx", "zoo", "*.onnx"))):
                zeros = "zeros" in suites and not m.endswith(".dynamo.onnx")
                if "roundtrip" in suites or zeros:
                    check_onnx_model(ck, m, roundtrip="roundtrip" in suites, zeros=zeros)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    failed = [r for r in ck.results if not r[3]]
    devs = [r[2] for r in ck.results if r[2] is not None]
    worst = f", worst deviation {max(devs):.2e}" if devs else ""
    print(f"ort_check: {len(ck.results)} checks, {len(failed)} failed{worst} (rtol {args.rtol:g}), "
          f"{time.monotonic() - start:.1f} s", flush=True)
    for model, variant, dev, _, _ in failed:
        print(f"  FAILED {model} {variant}" + (f" (max rel dev {dev:.2e})" if dev is not None else ""))
    if failed and not args.keep:
        print("ort_check: rerun with --keep DIR (and -v) to keep the files the failing commands read")
    if not ck.results:
        print("ort_check: nothing was checked")
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
