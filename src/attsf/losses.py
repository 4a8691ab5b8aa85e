"""ATTSF-Net's objective, eq. (18): ``L_total = L_av + λ_a L_a + λ_v L_v + λ_sim L_sim``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from attsf.fields import bounded, validate

Tensor = torch.Tensor


def batch_gaussian_sym_kl(p: Tensor, q: Tensor, eps: float = 1e-5, reduction: str = "sum") -> Tensor:
    """Symmetric KL between per-dimension Gaussians fitted over a mini-batch: for features
    (B, d), ``N(μ_j, σ_j² + eps)`` is fitted to each column of p and of q, and
    ``KL(P‖Q) + KL(Q‖P)`` is summed (eq. 18 with L1) or averaged over the d dimensions
    (eqs. 15-16)."""
    mu_p, mu_q = p.mean(dim=0), q.mean(dim=0)
    var_p = p.var(dim=0, unbiased=False) + eps
    var_q = q.var(dim=0, unbiased=False) + eps
    diff2 = (mu_p - mu_q) ** 2
    kl_pq = 0.5 * (torch.log(var_q / var_p) + (var_p + diff2) / var_q - 1.0)
    kl_qp = 0.5 * (torch.log(var_p / var_q) + (var_q + diff2) / var_p - 1.0)
    kl = kl_pq + kl_qp
    return kl.mean() if reduction == "mean" else kl.sum()


def similarity_loss(h_learn: Tensor, h_a2v: Tensor, h_v2a: Tensor, eps: float = 1e-5, reduction: str = "sum") -> Tensor:
    """L_sim, eq. (17): ½ (L_{a-l} + L_{v-l})."""
    kl_a = batch_gaussian_sym_kl(h_learn, h_a2v, eps, reduction)
    return 0.5 * (kl_a + batch_gaussian_sym_kl(h_learn, h_v2a, eps, reduction))


@dataclass(frozen=True)
class LossConfig:
    lambda_a: float = bounded(0.5, ge=0)
    lambda_v: float = bounded(0.5, ge=0)
    lambda_sim: float = bounded(0.3, ge=0)  # 0 is the "without L_sim" ablation
    eps: float = bounded(1e-5, gt=0)
    # "sum" over the d dimensions is the default; "mean" divides L_sim by d, which keeps it on the
    # scale of the cross-entropy terms (with "sum" it is ~20-100x larger early in training).
    sim_reduction: Literal["sum", "mean"] = "sum"
    label_smoothing: float = bounded(0.0, ge=0, le=1)  # of the cross-entropy terms (0: the paper's plain CE)
    # L_sim fits a Gaussian per dimension over the batch; a batch smaller than this (the last
    # validation batch, a DDP rank's remainder) adds no L_sim: at B = 1 the variance is 0 and
    # the KL reaches ~1e7, at B = 2-3 it rests on one or two differences
    sim_min_batch: int = bounded(4, ge=2)

    def __post_init__(self) -> None:
        validate(self)


def _task_loss(logits: Tensor, target: Tensor, regression: bool, smoothing: float = 0.0) -> Tensor:
    """L1 for regression; cross-entropy against class indices or (mixup) class probabilities."""
    if regression:
        return F.l1_loss(logits.squeeze(-1), target.float())
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def total_loss(out: dict[str, Tensor], target: Tensor, cfg: LossConfig, regression: bool = False) -> dict[str, Tensor]:
    """All terms of eq. (18) that the network's output supports, and their weighted sum."""
    terms = {"loss_av": _task_loss(out["logits"], target, regression, cfg.label_smoothing)}
    total = terms["loss_av"]
    for key, weight in (("a", cfg.lambda_a), ("v", cfg.lambda_v)):
        if f"logits_{key}_avam" in out:  # L_a, L_v: the AVAM heads
            terms[f"loss_{key}"] = _task_loss(out[f"logits_{key}_avam"], target, regression, cfg.label_smoothing)
            total = total + weight * terms[f"loss_{key}"]
    if "h_learn" in out and cfg.lambda_sim > 0 and target.shape[0] >= cfg.sim_min_batch:
        terms["loss_sim"] = similarity_loss(out["h_learn"], out["h_a2v"], out["h_v2a"], cfg.eps, cfg.sim_reduction)
        total = total + cfg.lambda_sim * terms["loss_sim"]
    terms["loss"] = total
    return terms
