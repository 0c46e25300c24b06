#!/usr/bin/env python3
"""Writes the small safetensors fixtures under tests/data/errors (stdlib only; rerun to refresh).

weights.safetensors: conv.weight f32[8,4,3,3], conv.bias f32[8], steps i64[8].
truncated.safetensors: the same file cut in the middle of its data.
"""
import json
import os
import struct

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "errors")


def safetensors(tensors):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def main():
    conv = [((i * 37) % 17 - 8) / 16.0 for i in range(8 * 4 * 3 * 3)]
    blob = safetensors({
        "conv.weight": ("F32", [8, 4, 3, 3], f32(conv)),
        "conv.bias": ("F32", [8], f32([0.125 * i for i in range(8)])),
        "steps": ("I64", [8], struct.pack("<8q", *range(8))),
    })
    with open(os.path.join(HERE, "weights.safetensors"), "wb") as f:
        f.write(blob)
    with open(os.path.join(HERE, "truncated.safetensors"), "wb") as f:
        f.write(blob[: len(blob) - 200])


if __name__ == "__main__":
    main()
