#!/usr/bin/env python3
"""Writes foreign.onnx (built with onnx.helper, not by nnirc) with seeded inputs and the
outputs onnxruntime computes for them, for tests/onnx.rs. Run once from this directory:

    python3 make_foreign.py   # needs onnx, onnxruntime, numpy, safetensors

It exercises import paths nnirc's exporter never writes: float_data initializers listed as
graph inputs, a Constant node, Dropout, Mul/Add by per-channel constants, Gemm with transB=0,
MatMul + Add, Reshape to [0, -1], Gather with negative indices, Slice with an INT64_MAX end and
an explicit full-range axis, Clip(0, 6), and names outside the .nnir charset.
"""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


def float_data(name, arr):
    # float_data rather than raw_data
    return helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.flatten().tolist())


inits = [
    float_data("conv:w", f32(6, 3, 3, 3)),
    float_data("conv:b", f32(6)),
    numpy_helper.from_array(f32(1, 6, 1, 1), "scale"),
    numpy_helper.from_array(f32(6, 1, 1), "shift"),
    numpy_helper.from_array(np.array([-1, 0, 2, -3], dtype=np.int64), "idx"),
    numpy_helper.from_array(np.array([1, 0], dtype=np.int64), "starts"),
    numpy_helper.from_array(np.array([2**63 - 1, 4], dtype=np.int64), "ends"),
    numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
    numpy_helper.from_array(np.array(0.0, dtype=np.float32), "lo"),
    numpy_helper.from_array(np.array(6.0, dtype=np.float32), "hi"),
    numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat"),
    numpy_helper.from_array(f32(24, 5), "gemm_w"),  # [in, out]: transB = 0
    numpy_helper.from_array(f32(5), "gemm_b"),
    numpy_helper.from_array(f32(5, 3), "mm_w"),
    numpy_helper.from_array(f32(3), "mm_b"),
]
nodes = [
    helper.make_node("Conv", ["x", "conv:w", "conv:b"], ["c"], name="conv 1", pads=[1, 1, 1, 1], strides=[2, 2]),
    helper.make_node("Mul", ["scale", "c"], ["m"], name="mul/scale"),
    helper.make_node("Add", ["m", "shift"], ["a"], name="add-shift"),
    helper.make_node("Clip", ["a", "lo", "hi"], ["r"], name="relu6"),
    helper.make_node("Dropout", ["r"], ["d"], name="drop"),
    helper.make_node("Gather", ["d", "idx"], ["g"], name="gather", axis=1),
    helper.make_node("Slice", ["g", "starts", "ends", "axes"], ["s"], name="slice"),
    helper.make_node("Constant", [], ["k"], name="const", value=numpy_helper.from_array(f32(1, 3, 1, 1), "kv")),
    helper.make_node("Mul", ["s", "k"], ["sk"], name="mul_const"),
    helper.make_node("Sigmoid", ["sk"], ["sg"], name="sig"),
    helper.make_node("Mul", ["sk", "sg"], ["silu"], name="silu"),
    helper.make_node("AveragePool", ["silu"], ["p"], name="pool", kernel_shape=[2, 2], strides=[1, 1]),
    helper.make_node("Concat", ["p", "p"], ["cat"], name="cat", axis=-3),
    helper.make_node("Reshape", ["cat", "flat"], ["f"], name="flatten"),
    helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["h"], name="fc1"),
    helper.make_node("Relu", ["h"], ["hr"], name="relu"),
    helper.make_node("MatMul", ["hr", "mm_w"], ["mm"], name="fc2"),
    helper.make_node("Add", ["mm", "mm_b"], ["y:0"], name="fc2_bias"),
]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])
y = helper.make_tensor_value_info("y:0", TensorProto.FLOAT, [1, 3])
# Older exporters list initializers as graph inputs too.
init_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits[:2]]
graph = helper.make_graph(nodes, "foreign-model", [x] + init_inputs, [y], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model, full_check=True)
onnx.save(model, "foreign.onnx")

inputs = {"x": f32(1, 3, 6, 6)}
sess = ort.InferenceSession("foreign.onnx", providers=["CPUExecutionProvider"])
(out,) = sess.run(["y:0"], inputs)
save_file(inputs, "foreign.inputs.safetensors")
save_file({"y": out}, "foreign.expected.safetensors")
print(out)
