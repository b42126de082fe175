"""Text embedder: the text tower of a CLIP-style model, run by onnxruntime on the CPU.

Texts become token ids with the ``tokenizers`` library (imported on first use), cut to the
tower's ``max_tokens`` and padded; the ONNX model maps them into the image tower's space.
Batching and L2 normalisation are the ``Embedder`` base's: ``tokenize`` is this embedder's
"preparer" (one fixed-width (2, max_tokens) int64 array per text: ids, then the attention
mask) and ``_embed_batch`` trims a stacked batch to its longest text before running it.

What the graph gets: ``input_ids`` and, when the graph declares it, ``attention_mask``,
each with the graph's integer type (int64 for the Qdrant CLIP export, as exported from
transformers' ``CLIPTextModelWithProjection``: output ``text_embeds``, (batch, 512)).
Padding uses the tokenizer file's own padding settings when it has them, else id 0 with
mask 0; CLIP reads the end-of-text token (the largest id) so padding does not move it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InvalidInput, MissingDependency, ModelUnavailable
from ..registry import ModelSpec, TextTowerSpec
from .base import Embedder, Preparer
from .session import create_session, ort_message, pool_output

if TYPE_CHECKING:
    import onnxruntime

    from ..hub import TextFiles

logger = logging.getLogger(__name__)

_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
#: The most texts one query may carry, and the most characters in one text.
MAX_TEXT_CHARS = 2000


class TextEmbedder(Embedder):
    """A text tower. ``spec`` is the whole model's spec (its ``dim`` is the shared space)
    or a callable returning it (a local folder's spec is only known once its image model is
    read); ``resolver`` returns the tower's files and is called once, on first use."""

    def __init__(
        self,
        spec: ModelSpec | Callable[[], ModelSpec],
        tower: TextTowerSpec,
        resolver: Callable[[], TextFiles],
        *,
        threads: int | None = None,
    ) -> None:
        self._spec_value = spec if isinstance(spec, ModelSpec) else None
        self._spec_fn = None if isinstance(spec, ModelSpec) else spec
        self.tower = tower
        self._resolver = resolver
        self._threads = threads
        self._lock = threading.RLock()
        self._files: TextFiles | None = None
        self._tokenizer: Any = None
        self._pad_id = 0
        self._session: onnxruntime.InferenceSession | None = None
        self._feeds: dict[str, Any] = {}  # "ids"/"mask" -> (input name, numpy dtype)
        self._output = ""

    @property
    def spec(self) -> ModelSpec:  # type: ignore[override]
        if self._spec_value is None:
            assert self._spec_fn is not None
            self._spec_value = self._spec_fn()
        return self._spec_value

    @spec.setter
    def spec(self, value: ModelSpec) -> None:
        self._spec_value = value

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def files(self) -> TextFiles:
        with self._lock:
            if self._files is None:
                self._files = self._resolver()
            return self._files

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "tower": "text"}

    # -- tokenizing --------------------------------------------------------------------

    def _load_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is not None:
                return self._tokenizer
            try:
                from tokenizers import Tokenizer
            except ImportError as exc:  # pragma: no cover - a dependency of the package
                raise MissingDependency(
                    "text queries need the tokenizers package: pip install tokenizers"
                ) from exc
            path = self.files.tokenizer_path
            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises a plain Exception for bad files
                raise ModelUnavailable(
                    f"the tokenizer of model {self.name!r} ({path}) cannot be read: {exc}"
                ) from exc
            padding = tokenizer.padding
            self._pad_id = int(padding["pad_id"]) if padding else 0
            tokenizer.no_padding()
            tokenizer.enable_truncation(self.tower.max_tokens)
            self._tokenizer = tokenizer
            return tokenizer

    def tokenize(self, text: str) -> np.ndarray:
        """One text as a (2, max_tokens) int64 array: token ids, then the attention mask."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("a text query must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"a text query may have at most {MAX_TEXT_CHARS} characters")
        encoding = self._load_tokenizer().encode(text)
        ids = list(encoding.ids)[: self.tower.max_tokens]
        width = self.tower.max_tokens
        row = np.full((2, width), 0, dtype=np.int64)
        row[0, :] = self._pad_id
        row[0, : len(ids)] = ids
        row[1, : len(ids)] = 1
        return row

    def preparer(self) -> Preparer:
        raise InvalidInput(f"model {self.name!r}: the text tower embeds texts, not images")

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors (len(texts), dim) in the image tower's space."""
        return self.embed([self.tokenize(t) for t in texts], batch_size=batch_size)

    # -- inference ---------------------------------------------------------------------

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            self._load_tokenizer()
            files = self.files
            session = create_session(
                files.model_path,
                threads=self._threads,
                fix_hint=f"Replace {files.model_path} with a valid ONNX export of the text tower.",
            )
            inputs = {i.name: i.type for i in session.get_inputs()}
            feeds: dict[str, Any] = {}
            for key, name in (("ids", self.tower.input_ids), ("mask", self.tower.attention_mask)):
                if name in inputs:
                    dtype = _INT_TYPES.get(inputs[name])
                    if dtype is None:
                        raise ModelUnavailable(
                            f"text model {files.model_path} takes {name} as {inputs[name]};"
                            " expected int64 or int32."
                        )
                    feeds[key] = (name, dtype)
            unknown = sorted(set(inputs) - {f[0] for f in feeds.values()})
            if "ids" not in feeds or unknown:
                raise ModelUnavailable(
                    f"text model {files.model_path} has inputs {sorted(inputs)}; expected"
                    f" {self.tower.input_ids!r} and optionally {self.tower.attention_mask!r}."
                )
            outputs = [o.name for o in session.get_outputs()]
            wanted = self.tower.output
            if wanted is None:
                output = "text_embeds" if "text_embeds" in outputs else outputs[0]
            elif wanted in outputs:
                output = wanted
            else:
                raise ModelUnavailable(
                    f"text model {files.model_path} has no output {wanted!r}; its outputs are:"
                    f" {', '.join(outputs)}."
                )
            self._feeds, self._output, self._session = feeds, output, session
            logger.info("loaded text tower of %s from %s", self.name, files.source)

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        self.load()
        session = self._session
        assert session is not None
        if batch.ndim != 3 or batch.shape[1] != 2:
            raise InvalidInput(f"expected tokenized texts (N, 2, tokens), got shape {batch.shape}")
        width = max(int(batch[:, 1, :].sum(axis=1).max()), 1)
        ids, mask = batch[:, 0, :width], batch[:, 1, :width]
        feed = {self._feeds["ids"][0]: np.ascontiguousarray(ids, dtype=self._feeds["ids"][1])}
        if "mask" in self._feeds:
            name, dtype = self._feeds["mask"]
            feed[name] = np.ascontiguousarray(mask, dtype=dtype)
        try:
            (out,) = session.run([self._output], feed)
        except Exception as exc:
            raise ModelUnavailable(
                f"the text tower of {self.name!r} failed on a batch of shape {ids.shape}:"
                f" {ort_message(exc)}"
            ) from exc
        return pool_output(np.asarray(out), self.tower.pooling)

    def __repr__(self) -> str:
        return f"TextEmbedder({self.tower.repo or self.tower.model_file!r}, loaded={self.loaded})"
