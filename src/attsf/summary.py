"""``attsf summary``: the model's blocks and parameter counts, as a table."""

from __future__ import annotations

from torch import nn

from attsf.model import ATTSFConfig, build_model, count_parameters


def summary_rows(model: nn.Module, depth: int = 2) -> list[tuple[str, str, int]]:
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if 0 < level <= depth:
            rows.append(("  " * (level - 1) + name.rsplit(".", 1)[-1], type(module).__name__, count_parameters(module)))
    return rows


def summary_text(cfg: ATTSFConfig) -> str:
    model = build_model(cfg)
    rows = summary_rows(model)
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{type(model).__name__}  (fusion={cfg.fusion}, temporal={cfg.temporal}, auxiliary={cfg.auxiliary}, "
             f"visual={cfg.visual_mode}, modalities={cfg.modalities})",
             f"{'block':<{width}}{'type':<24}{'parameters':>12}"]
    lines += [f"{n:<{width}}{t:<24}{p:>12,}" for n, t, p in rows]
    lines.append(f"{'total':<{width}}{'':<24}{count_parameters(model):>12,}")
    return "\n".join(lines)
