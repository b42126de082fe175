"""The model registry, kept as plain data.

Each entry says where a model comes from, what it outputs and how its input is prepared.
Nothing here loads anything; see ``embedders`` for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInput

Kind = Literal["onnx", "phash"]
Metric = Literal["cosine", "hamming"]
Pooling = Literal["none", "cls", "mean"]


@dataclass(frozen=True)
class TextTowerSpec:
    """The text encoder of a two-tower (CLIP-style) model: texts land in the image space.

    ``repo`` is a hub repository (None: a local folder, the files relative to it);
    ``model_file`` takes int64 ``input_ids`` and, when the graph declares it,
    ``attention_mask`` (each fed only if the graph has it, with the graph's integer type);
    ``tokenizer_file`` is a ``tokenizers`` JSON file; texts are cut to ``max_tokens``
    tokens. ``output`` names the embedding output (None: ``text_embeds`` if present, else
    the first output); ``pooling`` as for images.
    """

    repo: str | None
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    max_tokens: int = 77
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    output: str | None = "text_embeds"
    pooling: Pooling = "none"
    size_mb: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Description of one embedding model.

    ``model_file`` and ``preprocessor_file`` are paths inside ``repo`` (a Hugging Face hub
    repository) or inside a local model folder. ``output`` names the tensor to use (None:
    the first output): a graph output or any intermediate tensor, which is then exposed as
    an output of the loaded graph (see ``models/expose.py``: a classifier's pooled features
    before its last layer); ``pooling`` reduces a (batch, tokens, dim) output to (batch,
    dim) ("cls" takes token 0, "mean" averages the tokens) and a (batch, channels, height,
    width) feature map to (batch, channels) ("mean" over the spatial dims).
    """

    name: str
    kind: Kind
    dim: int
    metric: Metric
    repo: str | None = None
    model_file: str | None = None
    preprocessor_file: str | None = "preprocessor_config.json"
    output: str | None = None
    pooling: Pooling = "none"
    grayscale: bool = False  # preprocessing step 0 (models/preprocess.py): 3-channel gray
    clahe: tuple[float, int] | None = None  # (clip limit, tile grid): OpenCV CLAHE
    license: str = ""
    description: str = ""
    size_mb: int | None = None
    text: TextTowerSpec | None = None

    @property
    def binary(self) -> bool:
        return self.metric == "hamming"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="clip-vit-b32",
            kind="onnx",
            dim=512,
            metric="cosine",
            repo="Qdrant/clip-ViT-B-32-vision",
            model_file="model.onnx",
            output="image_embeds",
            license="MIT",
            description="OpenAI CLIP ViT-B/32 image encoder (ONNX export by Qdrant).",
            size_mb=352,
            text=TextTowerSpec(repo="Qdrant/clip-ViT-B-32-text", size_mb=254),
        ),
        ModelSpec(
            name="dinov2-small",
            kind="onnx",
            dim=384,
            metric="cosine",
            repo="Xenova/dinov2-small",
            model_file="onnx/model.onnx",
            output="last_hidden_state",
            pooling="cls",
            license="Apache-2.0",
            description="Meta DINOv2 ViT-S/14; the embedding is the CLS token.",
            size_mb=88,
        ),
        ModelSpec(
            name="resnet50",
            kind="onnx",
            dim=2048,
            metric="cosine",
            repo="Qdrant/resnet50-onnx",
            model_file="model.onnx",
            license="Apache-2.0",
            description="Microsoft ResNet-50 pooled features (ONNX export by Qdrant).",
            size_mb=94,
        ),
        ModelSpec(
            name="resnet18",
            kind="onnx",
            dim=512,
            metric="cosine",
            repo="Xenova/resnet-18",
            model_file="onnx/model.onnx",
            # a classifier (its graph output is the 1,000 ImageNet logits): the embedding is
            # the pooled features before the classifier, exposed by name (torch.onnx export
            # naming of transformers' ResNetModel pooler; not checked against the hub file)
            output="/resnet/pooler/GlobalAveragePool_output_0",
            license="Apache-2.0",
            description="Microsoft ResNet-18 pooled features (the ImageNet classifier's "
            "penultimate layer; ONNX export by Xenova).",
            size_mb=45,
        ),
        ModelSpec(
            name="vgg16",
            kind="onnx",
            dim=512,
            metric="cosine",
            # no hub repository with an ONNX VGG16 and a preprocessor_config.json is known:
            # export one (docs/models.md) and use it with --model-path, or a local
            # lookalike.json naming this output; the registry entry documents the layout
            repo=None,
            model_file="model.onnx",
            output="/features/features.30/MaxPool_output_0",
            pooling="mean",
            license="CC-BY-4.0 (torchvision weights)",
            description="VGG16 (torchvision, ImageNet) last conv block, mean-pooled over "
            "space to 512 dims; bring your own export (see docs/models.md).",
            size_mb=528,
        ),
        ModelSpec(
            name="phash",
            kind="phash",
            dim=64,
            metric="hamming",
            preprocessor_file=None,
            license="BSD-2-Clause (algorithm as in imagehash)",
            description="Weight-free 64-bit DCT perceptual hash; Hamming-distance search.",
        ),
    )
}

DEFAULT_MODEL = "clip-vit-b32"


def text_models() -> list[str]:
    """Names of the registry models with a text tower (they answer text queries)."""
    return [name for name, spec in MODELS.items() if spec.text is not None]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise InvalidInput(f"unknown model {name!r}; known models: {known}") from None
