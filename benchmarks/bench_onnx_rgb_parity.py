"""onnx-rgb parity: the largest probability difference between the app (torchvision preprocessing
+ PyTorch) and the onnx-rgb preprocessing graph, on Fashion-MNIST's 28 px images upscaled and on
scikit-image's photos downscaled, for the graph of this checkout and for ONNX ``Resize`` on uint8
(the graph before issue #23: ``antialias=1``, half-pixel, on uint8).

The network is EfficientNet-Lite0 (the offline ImageNet weights) at 112 px (resize 128) and at
224 px, with a 10-class head fitted by logistic regression on the frozen features of 1,000
Fashion-MNIST *training* images; the differences are judged on 500 *test* images and 9 photos, so
the head is not chosen on the images it is judged on. Both graphs feed the same PyTorch network,
so only the preprocessing differs.

    python benchmarks/bench_onnx_rgb_parity.py        # needs the Debian package dataset-fashion-mnist
"""

from __future__ import annotations

import gzip
import os
import platform

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from transfer_gui.engine.catalog import build_model
from transfer_gui.engine.onnxpre import preprocessing_graph
from transfer_gui.engine.preprocess import eval_transform

FMNIST = "/usr/share/datasets/fashion-mnist"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "immunohistochemistry", "motorcycle_left",
          "retina")


def fashion(split: str, n: int) -> tuple[list[Image.Image], np.ndarray]:
    with gzip.open(f"{FMNIST}/{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{FMNIST}/{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return [Image.fromarray(images[i]).convert("RGB") for i in range(n)], labels[:n].astype(np.int64)


def photos() -> list[Image.Image]:
    from skimage import data

    out = []
    for name in PHOTOS:
        try:
            out.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # noqa: BLE001 - a photo scikit-image cannot fetch offline is left out
            pass
    return out


def onnx_resize_graph(pre):
    """The previous preprocessing graph: ONNX Resize (antialias=1, half-pixel, Keys a = -0.5) on uint8."""
    from onnx import TensorProto, helper, numpy_helper

    import transfer_gui.engine.onnxpre as cur

    c = lambda name, v, t=np.int64: helper.make_node("Constant", [], [name],  # noqa: E731
                                                     value=numpy_helper.from_array(np.asarray(v, t), name))
    mode = {"bicubic": "cubic", "bilinear": "linear"}[pre.interpolation]
    extra = {"cubic_coeff_a": -0.5} if mode == "cubic" else {}
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]), *cur._size_nodes(pre.resize_size),
             *cur._crop_nodes(pre.input_size), c("ax23", [2, 3]), c("zero", [0]),
             helper.make_node("Slice", ["shape", "zero", "c_two"], ["nc"]),
             helper.make_node("Concat", ["nc", "new_h", "new_w"], ["sizes"], axis=0),
             helper.make_node("Resize", ["nchw", "", "", "sizes"], ["resized"], mode=mode, antialias=1,
                              exclude_outside=1, coordinate_transformation_mode="half_pixel", **extra),
             helper.make_node("Concat", ["top_h", "top_w"], ["starts"], axis=0),
             helper.make_node("Add", ["starts", "c_s"], ["ends"]),
             helper.make_node("Slice", ["resized", "starts", "ends", "ax23"], ["crop"]),
             helper.make_node("Cast", ["crop"], ["f"], to=TensorProto.FLOAT), c("k255", [255.0], np.float32),
             c("mean", np.reshape(pre.mean, (1, 3, 1, 1)), np.float32),
             c("std", np.reshape(pre.std, (1, 3, 1, 1)), np.float32),
             helper.make_node("Div", ["f", "k255"], ["u"]), helper.make_node("Sub", ["u", "mean"], ["m"]),
             helper.make_node("Div", ["m", "std"], ["pixels"])]
    graph = helper.make_graph(nodes, "before", [helper.make_tensor_value_info("image", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def pixels(graph, images) -> torch.Tensor:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return torch.cat([torch.from_numpy(session.run(None, {"image": np.asarray(im)[None]})[0]) for im in images])


def fitted_head(features: torch.Tensor, labels: np.ndarray) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], 10)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200)
    y = torch.from_numpy(labels)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), y) + 1e-4 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def features(net, images, tf) -> torch.Tensor:
    """The frozen network's pooled features (its classifier set aside)."""
    saved = net.classifier
    net.classifier = torch.nn.Identity()
    with torch.no_grad():
        out = net(torch.stack([tf(im) for im in images]))
    net.classifier = saved
    return out.clone()


def measure(net, head, pre, images) -> dict[str, float]:
    """The max abs probability difference of each graph against the app, on ``images``."""
    tf, saved = eval_transform(pre), net.classifier
    net.classifier = head
    with torch.inference_mode():
        app = torch.softmax(net(torch.stack([tf(im) for im in images])), 1)
        rows = {name: float((torch.softmax(net(pixels(graph, images)), 1) - app).abs().max())
                for name, graph in (("before (ONNX Resize on uint8)", onnx_resize_graph(pre)),
                                    ("after (this checkout's graph)", preprocessing_graph(pre)))}
    net.classifier = saved
    return rows


def main() -> None:
    torch.set_num_threads(1)
    built = build_model("efficientnet_lite0", "pretrained")
    net = built.model.eval()
    train_im, train_y = fashion("train", 1000)
    test_im, _ = fashion("t10k", 500)
    pics = photos()
    print(f"CPU: {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}; "
          f"{len(test_im)} Fashion-MNIST test images (28 px, upscaled), {len(pics)} photos (downscaled)")
    for size in (112, 224):
        pre = built.preprocessing.at_size(size)
        head = fitted_head(features(net, train_im, eval_transform(pre)), train_y)
        for kind, images in (("fashion-mnist 28 px up", test_im), ("photos down", pics)):
            for name, diff in measure(net, head, pre, images).items():
                print(f"{size} px ({pre.interpolation}), {kind}: {name}: max abs probability difference {diff:.2e}")


if __name__ == "__main__":
    main()
