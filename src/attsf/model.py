"""ATTSF-Net: Attention-Based Similarity Fusion Network for audio-visual emotion recognition.

Zhang, Zhang, Ju, IEEE Transactions on Affective Computing, 2025. Equation numbers below
are the paper's. The file reads top to bottom: building blocks (front-ends, temporal
layer, CMB and its Table VIII replacement SEB, SAB, AVAM, fusion), the config, the
networks, and one factory per variant.

Shapes: audio MFCC ``(B, 12, T_a)``; visual either face frames ``(B, T_v, 3, 224, 224)``
(uint8 or float in [0, 1]) or precomputed per-frame features ``(B, T_v, F)``; optional
text features ``(B, D_t)`` or ``(B, T_t, D_t)``. Streams inside the network are
``(B, T, d)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from attsf.efficientface import EfficientFace, PixelNorm
from attsf.fields import bounded, validate

Tensor = torch.Tensor


# --------------------------------------------------------------------------- front-ends
class AudioFrontEnd(nn.Module):
    """Paper §III-B: 4 x [Conv1d(k=3, s=1, p=0) -> BN -> ReLU -> MaxPool1d(2, stride 1)].

    ``input_norm`` adds a BatchNorm over the 12 MFCC channels before the first conv (the
    paper is silent on input scaling; MFCC c0 is two orders of magnitude above the rest).
    """

    def __init__(self, n_mfcc: int, channels: tuple[int, ...], input_norm: bool) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_mfcc) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        c_in = n_mfcc
        for c_out in channels:
            layers += [nn.Conv1d(c_in, c_out, 3), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True), nn.MaxPool1d(2, 1)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)

    def forward(self, mfcc: Tensor) -> Tensor:  # (B, 12, T) -> (B, T - 12, C)
        return self.convs(self.input_norm(mfcc)).transpose(1, 2)


def _temporal_convs(c_in: int, channels: tuple[int, ...], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_out in channels:
        norm = nn.BatchNorm1d(c_out) if batch_norm else nn.Identity()
        layers += [nn.Conv1d(c_in, c_out, 3, padding=1), norm, nn.ReLU(inplace=True)]
        c_in = c_out
    return nn.Sequential(*layers)


class VisualFrontEnd(nn.Module):
    """Paper §III-B: a per-frame face encoder, then temporal Conv1d blocks to ``d`` channels.

    ``mode="efficientface"``: EfficientFace on each 224x224 face crop (1024-d per frame).
    ``mode="features"``: precomputed per-frame features of width ``in_dim`` (any T_v >= 1),
    standardised by a BatchNorm over feature channels. Convolutions keep the length T_v.
    ``norm="none"`` drops the input BatchNorm and those of the conv blocks (EfficientFace
    keeps its own): with one feature vector per clip (T_v = 1) each BN normalises over the
    batch alone, and on speaker-normalised AUs the network without them scores higher
    (docs/results.md).
    """

    def __init__(self, mode: str, in_dim: int, channels: tuple[int, ...], norm: str = "batch") -> None:
        super().__init__()
        self.mode = mode
        if mode == "efficientface":
            self.encoder = EfficientFace()
            in_dim = EfficientFace.out_dim
            self.pixel_norm = PixelNorm()
            self.input_norm: nn.Module = nn.Identity()
        else:
            self.input_norm = nn.BatchNorm1d(in_dim) if norm == "batch" else nn.Identity()
        self.convs = _temporal_convs(in_dim, channels, norm == "batch")

    def encode_frames(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 or [0, 1] float -> (B, T, 1024)."""
        b, t = frames.shape[:2]
        return self.encoder(self.pixel_norm(frames.flatten(0, 1))).view(b, t, -1)

    def forward(self, visual: Tensor) -> Tensor:  # -> (B, T_v, d)
        x = self.encode_frames(visual) if self.mode == "efficientface" else visual.float()
        x = self.input_norm(x.transpose(1, 2))
        return self.convs(x).transpose(1, 2)


class TemporalLayer(nn.Module):
    """Paper §III-B: an LSTM (or, in the replacement study, a Linear layer) and a Conv1d
    (k=3, padding 1) read the same sequence; their outputs are summed."""

    def __init__(self, d: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.seq = nn.LSTM(d, d, batch_first=True) if kind == "lstm" else nn.Linear(d, d)
        self.conv = nn.Conv1d(d, d, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        seq = self.seq(x)[0] if self.kind == "lstm" else self.seq(x)
        return seq + self.conv(x.transpose(1, 2)).transpose(1, 2)


class PositionalEmbedding(nn.Module):
    """Learned positional embedding added to a stream of at most ``max_len`` steps."""

    def __init__(self, max_len: int, d: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(1, max_len, d) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of {x.shape[1]} steps exceeds model.max_len={self.max_len}")
        return x + self.weight[:, : x.shape[1]]


class FeedForward(nn.Sequential):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, d))


# --------------------------------------------------------------------------- CMB
class CrossModalLayer(nn.Module):
    """One layer of a CMB branch, eqs. (3)-(9), shown for the video-dominant branch v->a.

    Q comes from the dominant stream, K and V from the other one (eq. 6)::

        x_bar   = LN(x_v + CrossAttn(Q=x_v, K=V=x_a))      (7)
        x_tilde = LN(x_bar + MHA(x_bar))                   (8)
        out     = LN(x_tilde + FFN(x_tilde))               (9)

    Dropout acts inside the FFN and on each sub-layer's output before it joins the
    residual path; dropout on attention weights is a separate option (``attn_dropout``).
    """

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, batch_first=True)
        self.ffn = FeedForward(d, ffn, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.cross_attn(x, other, other, need_weights=False)[0]))
        x = self.norm2(x + self.drop(self.self_attn(x, x, x, need_weights=False)[0]))
        return self.norm3(x + self.drop(self.ffn(x)))


class CMB(nn.Module):
    """Cross-Multimodal Block, eqs. (1)-(2): two branches of ``n_layers`` CrossModalLayers.

    Branch ``a2v`` (audio dominant) keeps the audio length and reads the video stream;
    branch ``v2a`` (video dominant) keeps the video length and reads the audio stream.
    Every layer reads the front-end stream of the other modality, as in MulT. Returns the
    output of every layer of both branches, since SAB layer i reads CMB layer i.
    """

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float, attn_dropout: float, n_layers: int) -> None:
        super().__init__()
        self.a2v = nn.ModuleList(CrossModalLayer(d, n_heads, ffn, dropout, attn_dropout) for _ in range(n_layers))
        self.v2a = nn.ModuleList(CrossModalLayer(d, n_heads, ffn, dropout, attn_dropout) for _ in range(n_layers))

    def forward(self, x_a: Tensor, x_v: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        h_a2v, h_v2a, outs_a2v, outs_v2a = x_a, x_v, [], []
        for layer_a2v, layer_v2a in zip(self.a2v, self.v2a):
            h_a2v, h_v2a = layer_a2v(h_a2v, x_v), layer_v2a(h_v2a, x_a)
            outs_a2v.append(h_a2v)
            outs_v2a.append(h_v2a)
        return outs_a2v, outs_v2a


class EnhancementLayer(nn.Module):
    """Pre-norm attention block of ATTANET: ``h = Attn(Q=LN(x_q), K=V=LN(x_k))``, then
    ``h + MLP(LN(h))`` (MLP ratio 2, GELU). As in ATTANET, no residual joins the attention
    output to its query."""

    def __init__(self, d: int, n_heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_k, self.norm_out = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, bias=False, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x_q: Tensor, x_k: Tensor) -> Tensor:
        k = self.norm_k(x_k)
        h = self.drop(self.attn(self.norm_q(x_q), k, k, need_weights=False)[0])
        return h + self.drop(self.mlp(self.norm_out(h)))


class SEB(nn.Module):
    """Similarity-aware Enhancement Block of ATTANET (Fan et al., ICASSP 2024; the paper's
    ref. [27]), the replacement for the CMB in Table VIII, with the CMB's interface.

    The audio stream is first refined by self-attention (``x_a' = Enh(x_a, x_a)``); then one
    cross-attention block *shared by both directions* maps each modality onto the other in
    the same projection space (the "similarity-aware" part), and each result enhances the
    stream that gave its queries::

        x_a'  = Enh_aa(x_a, x_a)
        a2v   = x_a' + Enh_av(Q=x_a', K=V=x_v)
        v2a   = x_v  + Enh_av(Q=x_v,  K=V=x_a')

    One block, as in the authors' network; its outputs stand in for the CMB's last layer.
    """

    def __init__(self, d: int, n_heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.self_audio = EnhancementLayer(d, n_heads, dropout, attn_dropout)
        self.cross = EnhancementLayer(d, n_heads, dropout, attn_dropout)

    def forward(self, x_a: Tensor, x_v: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        x_a = self.self_audio(x_a, x_a)
        return [x_a + self.cross(x_a, x_v)], [x_v + self.cross(x_v, x_a)]


# --------------------------------------------------------------------------- SAB
class SABLayer(nn.Module):
    """One layer of the Similarity Adjustment Block, eqs. (11)-(13)::

        x_tilde = LN(att_{learn->a}(att_{learn->v}(x_learn)))   (11)
        x_tilde = LN(MHA(x_tilde) + x_tilde)                    (12)
        x_learn = LN(FFN(x_tilde) + x_tilde)                    (13)

    The token first attends to the video stream, the result then to the audio stream; eq.
    (11) has no residual, so none is added there.
    """

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.attn_v = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, batch_first=True)
        self.attn_a = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(d, n_heads, dropout=attn_dropout, batch_first=True)
        self.ffn = FeedForward(d, ffn, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, token: Tensor, video: Tensor, audio: Tensor) -> Tensor:
        t = self.attn_v(token, video, video, need_weights=False)[0]
        t = self.attn_a(t, audio, audio, need_weights=False)[0]
        x = self.norm1(self.drop(t))
        x = self.norm2(x + self.drop(self.self_attn(x, x, x, need_weights=False)[0]))
        return self.norm3(x + self.drop(self.ffn(x)))


class SAB(nn.Module):
    """Similarity Adjustment Block, eq. (10): a learnable token ``x_learn`` (1 x d) is the
    query of ``n_layers`` SABLayers; layer i reads layer i of both CMB branches (the
    video-dominant branch as the video stream, the audio-dominant one as the audio
    stream). Returns ``x_learn*``, shape (B, d)."""

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float, attn_dropout: float, n_layers: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.layers = nn.ModuleList(SABLayer(d, n_heads, ffn, dropout, attn_dropout) for _ in range(n_layers))

    def forward(self, outs_a2v: list[Tensor], outs_v2a: list[Tensor]) -> Tensor:
        x = self.token.expand(outs_a2v[0].shape[0], -1, -1)
        for i, layer in enumerate(self.layers):
            j = min(i, len(outs_a2v) - 1)
            x = layer(x, outs_v2a[j], outs_a2v[j])
        return x[:, 0]


# --------------------------------------------------------------------------- AVAM
class AVAM(nn.Module):
    """Audio-Visual Auxiliary Module (§III-E): a standard Transformer encoder on one
    modality's stream, mean pooled over time (``x_a*`` or ``x_v*``), with its own linear
    classifier trained by an auxiliary loss. ``n_layers=0`` is the "AVAM -> temporal
    pooling" replacement: the stream is pooled directly."""

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float, n_layers: int, n_out: int) -> None:
        super().__init__()
        self.encoder: nn.Module = nn.Identity()
        if n_layers > 0:
            layer = nn.TransformerEncoderLayer(d, n_heads, ffn, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.classifier = nn.Linear(d, n_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.encoder(x).mean(dim=1)
        return pooled, self.classifier(pooled)


# --------------------------------------------------------------------------- fusion
class Fusion(nn.Module):
    """Joins a branch's pooled CMB feature ``H_av`` with the dominant modality's AVAM
    feature ``H_m`` (§III-F): ``sum`` eq. (19) (ATTSF-Net), ``l2`` eqs. (20)-(21)
    (ATTSF-L2, per-sample weights from the L2 norms), ``gate`` (ATTSF-Gat, a Linear(2d -> 2)
    "learning layer" whose softmax gives the two weights)."""

    def __init__(self, d: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.gate = nn.Linear(2 * d, 2) if kind == "gate" else None

    def forward(self, h_av: Tensor, h_m: Tensor) -> Tensor:
        if self.kind == "sum":
            return h_av + h_m
        if self.kind == "l2":
            n_av, n_m = h_av.norm(dim=-1, keepdim=True), h_m.norm(dim=-1, keepdim=True)
            total = n_av + n_m + 1e-8
            return (n_av / total) * h_av + (n_m / total) * h_m
        w = torch.softmax(self.gate(torch.cat([h_av, h_m], dim=-1)), dim=-1)
        return w[:, :1] * h_av + w[:, 1:] * h_m


# --------------------------------------------------------------------------- config
Fusions = Literal["sum", "l2", "gate"]


@dataclass(frozen=True)
class ATTSFConfig:
    """Every architectural choice of ATTSF-Net; defaults are the paper's RAVDESS setting."""

    n_classes: int = bounded(8, ge=1)  # 1 with task="regression"
    task: Literal["classification", "regression"] = "classification"
    modalities: Literal["av", "a", "v"] = "av"  # "a"/"v": the unimodal rows of Table IV
    d_model: int = bounded(128, ge=1)
    n_heads: int = bounded(8, ge=1)
    max_len: int = bounded(128, ge=1)  # positional embedding length ("sequence length" of Table II)
    dropout: float = bounded(0.4, ge=0, le=1)  # between layers, in FFNs and on each sub-layer's residual input
    attn_dropout: float = bounded(0.0, ge=0, le=1)  # on attention weights (the paper names none)
    n_mfcc: int = bounded(12, ge=1)
    audio_channels: tuple[int, ...] = bounded((64, 128, 256, 128), ge=1)
    audio_input_norm: bool = True
    visual_mode: Literal["efficientface", "features"] = "efficientface"
    # safetensors of the AffectNet-pretrained EfficientFace (`attsf convert-weights`), loaded
    # strictly into the trainable front-end before training; "" starts it from random weights
    visual_weights: str = ""
    visual_dim: int = bounded(1024, ge=1)  # width of precomputed features (mode "features")
    visual_channels: tuple[int, ...] = bounded((64, 64, 128, 128), ge=1)
    visual_norm: Literal["batch", "none"] = "batch"  # BatchNorms of the visual front-end, or none
    temporal: Literal["lstm", "linear"] = "lstm"
    n_cmb: int = bounded(6, ge=1)
    n_sab: int = bounded(6, ge=1)
    n_avam: int = bounded(2, ge=0)
    ffn_cmb: int = bounded(256, ge=1)
    ffn_sab: int = bounded(256, ge=1)
    ffn_avam: int = bounded(256, ge=1)
    auxiliary: Literal["avam", "pool"] = "avam"
    fusion: Fusions = "sum"
    cross_block: Literal["cmb", "seb"] = "cmb"  # "seb": ATTANET's block in place of the CMB (Table VIII)
    use_sab: bool = True
    use_audio_aux: bool = True
    use_visual_aux: bool = True
    text_dim: int = bounded(0, ge=0)  # > 0 joins text features at the head (IEMOCAP / MOSI A+V+T)

    def __post_init__(self) -> None:
        validate(self)  # every choice field and range, also when built from Python
        if self.audio_channels[-1] != self.d_model or self.visual_channels[-1] != self.d_model:
            raise ValueError("the last audio_channels and visual_channels entries must equal d_model")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.task == "regression" and self.n_classes != 1:
            raise ValueError("task=regression needs n_classes=1")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- networks
class _Stream(nn.Module):
    """Front-end -> temporal layer -> positional embedding, for one modality."""

    def __init__(self, front: nn.Module, cfg: ATTSFConfig) -> None:
        super().__init__()
        self.front = front
        self.temporal = TemporalLayer(cfg.d_model, cfg.temporal)
        self.pos = PositionalEmbedding(cfg.max_len, cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.pos(self.temporal(self.front(x)))


def _audio_stream(cfg: ATTSFConfig) -> _Stream:
    return _Stream(AudioFrontEnd(cfg.n_mfcc, cfg.audio_channels, cfg.audio_input_norm), cfg)


def _visual_stream(cfg: ATTSFConfig) -> _Stream:
    return _Stream(VisualFrontEnd(cfg.visual_mode, cfg.visual_dim, cfg.visual_channels, cfg.visual_norm), cfg)


def _aux(cfg: ATTSFConfig) -> AVAM:
    n_layers = cfg.n_avam if cfg.auxiliary == "avam" else 0
    return AVAM(cfg.d_model, cfg.n_heads, cfg.ffn_avam, cfg.dropout, n_layers, cfg.n_classes)


class TextProjection(nn.Module):
    """Text features joined only at the final concatenation (§IV-B): Linear to d, mean
    pooled when a sequence is given."""

    def __init__(self, text_dim: int, d: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim, d)

    def forward(self, text: Tensor) -> Tensor:
        h = self.proj(text.float())
        return h.mean(dim=1) if h.dim() == 3 else h


class ATTSFNet(nn.Module):
    """The full audio-visual network (paper Fig. 1).

    ``forward`` returns a dict: ``logits`` (fused head), ``logits_a_avam`` / ``logits_v_avam``
    (the AVAM heads, when present), ``h_a2v``, ``h_v2a`` (pooled CMB outputs, for L_sim),
    ``h_learn`` (SAB token, when present) and ``features`` (the vector the head reads).
    """

    def __init__(self, cfg: ATTSFConfig) -> None:
        super().__init__()
        if cfg.modalities != "av":
            raise ValueError("ATTSFNet is audio-visual; use UnimodalNet for modalities 'a' or 'v'")
        self.cfg = cfg
        d = cfg.d_model
        self.audio = _audio_stream(cfg)
        self.visual = _visual_stream(cfg)
        self.cmb = (CMB(d, cfg.n_heads, cfg.ffn_cmb, cfg.dropout, cfg.attn_dropout, cfg.n_cmb) if cfg.cross_block == "cmb"
                    else SEB(d, cfg.n_heads, cfg.dropout, cfg.attn_dropout))
        self.sab = SAB(d, cfg.n_heads, cfg.ffn_sab, cfg.dropout, cfg.attn_dropout, cfg.n_sab) if cfg.use_sab else None
        self.aux_a = _aux(cfg) if cfg.use_audio_aux else None
        self.aux_v = _aux(cfg) if cfg.use_visual_aux else None
        self.fuse_a2v = Fusion(d, cfg.fusion) if cfg.use_audio_aux else None
        self.fuse_v2a = Fusion(d, cfg.fusion) if cfg.use_visual_aux else None
        self.text = TextProjection(cfg.text_dim, d) if cfg.text_dim > 0 else None
        n_parts = 2 + int(cfg.use_sab) + int(cfg.text_dim > 0)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_parts * d, cfg.n_classes))

    def forward(self, audio: Tensor, visual: Tensor, text: Tensor | None = None) -> dict[str, Tensor]:
        x_a, x_v = self.audio(audio), self.visual(visual)
        outs_a2v, outs_v2a = self.cmb(x_a, x_v)
        out = {"h_a2v": outs_a2v[-1].mean(dim=1), "h_v2a": outs_v2a[-1].mean(dim=1)}
        h_a2v, h_v2a = out["h_a2v"], out["h_v2a"]
        if self.aux_a is not None:  # the dominant modality's auxiliary joins its branch
            x_a_star, out["logits_a_avam"] = self.aux_a(x_a)
            h_a2v = self.fuse_a2v(h_a2v, x_a_star)
        if self.aux_v is not None:
            x_v_star, out["logits_v_avam"] = self.aux_v(x_v)
            h_v2a = self.fuse_v2a(h_v2a, x_v_star)
        parts = [h_a2v, h_v2a]
        if self.sab is not None:
            out["h_learn"] = self.sab(outs_a2v, outs_v2a)
            parts.append(out["h_learn"])
        if self.text is not None:
            if text is None:
                raise ValueError("this model was built with text_dim > 0 and needs text features")
            parts.append(self.text(text))
        out["features"] = torch.cat(parts, dim=-1)
        out["logits"] = self.head(out["features"])
        return out


class UnimodalNet(nn.Module):
    """The paper's "audio only" / "visual only" rows: one modality's front-end, temporal
    layer, AVAM encoder and classifier. ``forward`` returns ``logits`` and ``features``."""

    def __init__(self, cfg: ATTSFConfig) -> None:
        super().__init__()
        if cfg.modalities not in ("a", "v"):
            raise ValueError("UnimodalNet needs modalities 'a' or 'v'")
        self.cfg = cfg
        self.stream = _audio_stream(cfg) if cfg.modalities == "a" else _visual_stream(cfg)
        self.aux = _aux(cfg)

    def forward(self, audio: Tensor | None = None, visual: Tensor | None = None,
                text: Tensor | None = None) -> dict[str, Tensor]:
        x = audio if self.cfg.modalities == "a" else visual
        if x is None:
            raise ValueError(f"this unimodal model needs its '{'audio' if self.cfg.modalities == 'a' else 'visual'}' input")
        features, logits = self.aux(self.stream(x))
        return {"logits": logits, "features": features}


class WithFallbacks(nn.Module):
    """A fused network with unimodal networks beside it that answer when a modality is
    missing (``train.fallback_audio`` / ``fallback_visual``): the fused outputs plus
    ``logits_a_fallback`` / ``logits_v_fallback``, the unimodal networks' answers. The fused
    path, AVAM heads included, is untouched."""

    def __init__(self, fused: nn.Module, fallback_audio: nn.Module | None = None,
                 fallback_visual: nn.Module | None = None) -> None:
        super().__init__()
        self.fused, self.fallback_audio, self.fallback_visual = fused, fallback_audio, fallback_visual
        self.cfg = fused.cfg

    def forward(self, audio: Tensor, visual: Tensor, text: Tensor | None = None) -> dict[str, Tensor]:
        out = self.fused(audio, visual, text)
        if self.fallback_audio is not None:
            out["logits_a_fallback"] = self.fallback_audio(audio=audio)["logits"]
        if self.fallback_visual is not None:
            out["logits_v_fallback"] = self.fallback_visual(visual=visual)["logits"]
        return out


def alone_logits(out: Mapping[str, Any], modality: str) -> Any:
    """The answer from one modality alone (``"a"`` or ``"v"``) in a fused network's outputs:
    its fallback network where it has one, else its AVAM head; None without either."""
    return out.get(f"logits_{modality}_fallback", out.get(f"logits_{modality}_avam"))


# --------------------------------------------------------------------------- factories
def build_model(cfg: ATTSFConfig) -> nn.Module:
    """The network a config describes: ATTSFNet for ``modalities="av"``, else UnimodalNet."""
    return ATTSFNet(cfg) if cfg.modalities == "av" else UnimodalNet(cfg)


def visual_encoder(model: nn.Module) -> EfficientFace | None:
    """The trainable EfficientFace of a fused or visual-only network (None without one)."""
    stream = getattr(model, "visual", None) or getattr(model, "stream", None)
    front = getattr(stream, "front", None)
    return getattr(front, "encoder", None)


def attsf_net(**overrides) -> ATTSFNet:
    """ATTSF-Net: element-wise sum fusion (eq. 19); 88.67 % on RAVDESS in the paper."""
    return ATTSFNet(replace(ATTSFConfig(fusion="sum"), **overrides))


def attsf_l2(**overrides) -> ATTSFNet:
    """ATTSF-L2: L2-norm weighted fusion (eqs. 20-21); 87.87 % on RAVDESS in the paper."""
    return ATTSFNet(replace(ATTSFConfig(fusion="l2"), **overrides))


def attsf_gat(**overrides) -> ATTSFNet:
    """ATTSF-Gat: learned gate fusion (Fig. 3); 85.50 % on RAVDESS in the paper."""
    return ATTSFNet(replace(ATTSFConfig(fusion="gate"), **overrides))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
