"""A tiny random-weight twin of insightface's ``inswapper_128.onnx`` (its weights cannot be
downloaded here): the released file's interface — inputs ``target`` (1, 3, 128, 128) RGB in
[0, 1] and ``source`` (1, 512) latent, output (1, 3, 128, 128) in [0, 1], the 512×512 ``emap``
as the graph's last initializer — with a few random convolutions inside, run by the real
onnxruntime through the real :class:`~facegen.pipelines.inswapper.InswapperSwapPipeline`.  Its
faces are not faces: it measures the machinery, not the swap's quality.

The buffalo_l encoder is not available either: :class:`DlibAsBuffalo` detects with dlib and
labels a 512-D vector made from the dlib descriptor as ``buffalo_l-w600k-r50``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_inswapper_twin(folder: Path, seed: int = 0, width: int = 8) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, a: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.ascontiguousarray(a), name)

    inits = [init("w1", rng.normal(0, 0.3, (width, 3, 3, 3)).astype(np.float32)),
             init("b1", np.zeros(width, np.float32)),
             init("wg", rng.normal(0, 0.05, (512, width)).astype(np.float32)),
             init("shape", np.array([1, width, 1, 1], np.int64)),
             init("w2", rng.normal(0, 0.3, (3, width, 3, 3)).astype(np.float32)),
             init("half", np.array([0.5], np.float32)),
             init("emap", rng.normal(0, 1, (512, 512)).astype(np.float32))]      # the last initializer
    nodes = [helper.make_node("Conv", ["target", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MatMul", ["source", "wg"], ["g"]),
             helper.make_node("Reshape", ["g", "shape"], ["g4"]),
             helper.make_node("Add", ["r1", "g4"], ["h"]),
             helper.make_node("Conv", ["h", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c2"], ["s"]),
             helper.make_node("Mul", ["s", "half"], ["s2"]),
             helper.make_node("Mul", ["target", "half"], ["t2"]),
             helper.make_node("Add", ["s2", "t2"], ["output"])]
    graph = helper.make_graph(
        nodes, "inswapper-twin",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inswapper_128.onnx"
    onnx.save(model, str(path))
    return path


class DlibAsBuffalo:
    """dlib detection + a buffalo_l-labelled 512-D vector (the dlib descriptor, tiled)."""

    def __init__(self) -> None:
        from facegen.id.encoders import get_analyzer

        self.dlib = get_analyzer("dlib-resnet-v1")

    def detect(self, rgb: np.ndarray) -> list:
        return self.dlib.detect(rgb)

    def embed(self, rgb: np.ndarray, face) -> "object":
        from facegen.id.embedding import IDEmbedding

        v = np.tile(self.dlib.embed(rgb, face).vector, 4)
        return IDEmbedding(v / np.linalg.norm(v), "buffalo_l-w600k-r50", face=face)


def inswapper_twin(folder: Path):
    """The real inswapper pipeline on the twin (licence accepted: the test's own random file)."""
    from facegen.paths import ModelAccess
    from facegen.pipelines.inswapper import InswapperSwapPipeline

    build_inswapper_twin(folder)
    return InswapperSwapPipeline(ModelAccess(folder, accept_license=True), providers="cpu", encoder=DlibAsBuffalo())
