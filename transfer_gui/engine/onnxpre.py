"""The ``onnx-rgb`` export: the preprocessing inside the ONNX graph, so that onnxruntime and an
image library alone reproduce the app.

Input ``image``: uint8 RGB pixels ``(N, H, W, 3)`` (what ``np.asarray(pil_image.convert("RGB"))``
gives, with a batch axis), any height and width (the images of one call share a size). In the
graph, in the app's order (:func:`transfer_gui.engine.preprocess.preprocessing_spec`):

1. NHWC -> NCHW, still uint8;
2. the shorter side resized to ``resize_size`` and the long side to ``int(resize_size * long /
   short)`` (integer division), with ONNX ``Resize`` (opset 18) ``antialias=1``,
   ``exclude_outside=1``, ``cubic_coeff_a=-0.5``, half-pixel centres, on uint8: onnxruntime's CPU
   kernel then follows Pillow's antialiased filter (measured within 1 grey level of Pillow's
   ``Image.resize`` on under 0.03 % of the pixels; the app's torchvision resize is within 1 level
   of Pillow too);
3. the centre crop, its offsets rounded half to even like Python's ``round``;
4. ``/ 255``, ``(x - mean) / std``;
5. the network (divided by the temperature), output ``logits``, and ``probabilities`` = their
   softmax beside them.

Decoding (EXIF rotation, alpha over white, grey to RGB, the JPEG draft reduction) stays outside
the graph: the deploy kit's ``predict.py`` does it with Pillow.
"""

from __future__ import annotations

import numpy as np

from transfer_gui.engine.preprocess import Preprocessing

OPSET = 18  # Resize's antialias attribute
INPUT = "image"
PIXELS = "pixels"  # the preprocessed tensor, fed to the network's "input"
_MODES = {"bicubic": "cubic", "bilinear": "linear", "nearest": "nearest"}


def _const(name: str, values, dtype=np.int64):
    from onnx import numpy_helper
    from onnx.helper import make_node

    return make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype=dtype), name))


def _size_nodes(n: int) -> list:
    """Shape -> ``sizes`` for Resize: the shorter side ``n``, the long side ``(n * long) // short``."""
    from onnx.helper import make_node as node

    return [
        _const("c_n", [n]), _const("c_two", [2]), _const("c_three", [3]), _const("c_four", [4]), _const("c_zero", [0]),
        node("Shape", ["nchw"], ["shape"]),
        node("Slice", ["shape", "c_zero", "c_two"], ["batch_ch"]),
        node("Slice", ["shape", "c_two", "c_three"], ["h"]),
        node("Slice", ["shape", "c_three", "c_four"], ["w"]),
        node("LessOrEqual", ["h", "w"], ["h_short"]),
        node("Mul", ["c_n", "h"], ["n_h"]), node("Mul", ["c_n", "w"], ["n_w"]),
        node("Div", ["n_h", "w"], ["long_h"]), node("Div", ["n_w", "h"], ["long_w"]),
        node("Where", ["h_short", "c_n", "long_h"], ["new_h"]),
        node("Where", ["h_short", "long_w", "c_n"], ["new_w"]),
        node("Concat", ["batch_ch", "new_h", "new_w"], ["sizes"], axis=0),
    ]


def _crop_nodes(s: int) -> list:
    """Centre crop ``s`` x ``s``: offset ``round(d / 2)`` half to even, i.e. ``d // 2 + (d % 2) * (d // 2 % 2)``."""
    from onnx.helper import make_node as node

    out = [_const("c_s", [s]), _const("c_axes", [2, 3])]
    for side in ("h", "w"):
        out += [node("Sub", [f"new_{side}", "c_s"], [f"d_{side}"]),
                node("Div", [f"d_{side}", "c_two"], [f"k_{side}"]),
                node("Mod", [f"d_{side}", "c_two"], [f"odd_{side}"]),
                node("Mod", [f"k_{side}", "c_two"], [f"kodd_{side}"]),
                node("Mul", [f"odd_{side}", f"kodd_{side}"], [f"up_{side}"]),
                node("Add", [f"k_{side}", f"up_{side}"], [f"top_{side}"]),
                node("Add", [f"top_{side}", "c_s"], [f"end_{side}"])]
    out += [node("Concat", ["top_h", "top_w"], ["starts"], axis=0), node("Concat", ["end_h", "end_w"], ["ends"], axis=0),
            node("Slice", ["resized", "starts", "ends", "c_axes"], ["cropped"])]
    return out


def preprocessing_graph(pre: Preprocessing):
    """An ONNX model: uint8 ``image`` (N, H, W, 3) -> float ``pixels`` (N, 3, S, S), as the app preprocesses."""
    from onnx import TensorProto, helper
    from onnx.helper import make_node as node

    mode = _MODES.get(pre.interpolation, "linear")
    resize = {"mode": mode, "coordinate_transformation_mode": "half_pixel"}
    if mode != "nearest":
        resize.update(antialias=1, exclude_outside=1)
    if mode == "cubic":
        resize["cubic_coeff_a"] = -0.5
    nodes = [node("Transpose", [INPUT], ["nchw"], perm=[0, 3, 1, 2]), *_size_nodes(pre.resize_size),
             node("Resize", ["nchw", "", "", "sizes"], ["resized"], **resize), *_crop_nodes(pre.input_size),
             node("Cast", ["cropped"], ["as_float"], to=TensorProto.FLOAT),
             _const("c_255", [255.0], np.float32),
             _const("c_mean", np.reshape(pre.mean, (1, 3, 1, 1)), np.float32),
             _const("c_std", np.reshape(pre.std, (1, 3, 1, 1)), np.float32),
             node("Div", ["as_float", "c_255"], ["unit"]), node("Sub", ["unit", "c_mean"], ["centred"]),
             node("Div", ["centred", "c_std"], [PIXELS])]
    graph = helper.make_graph(
        nodes, "transfer_gui_preprocessing",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(PIXELS, TensorProto.FLOAT, ["batch", 3, pre.input_size, pre.input_size])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def with_preprocessing(network, pre: Preprocessing, network_input: str = "input", logits: str = "logits"):
    """``network`` (an ONNX model at opset :data:`OPSET`, float NCHW ``network_input`` -> ``logits``)
    behind :func:`preprocessing_graph`, with ``probabilities`` = softmax(logits) as a second output."""
    from onnx import TensorProto, compose, helper

    pre_model = preprocessing_graph(pre)
    pre_model.ir_version = network.ir_version
    merged = compose.merge_models(pre_model, network, io_map=[(PIXELS, network_input)])
    merged.graph.node.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    merged.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", None]))
    return merged
