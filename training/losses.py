"""Losses on soft targets (vote distributions or one-hot vectors)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftTargetLoss(nn.Module):
    """Cross-entropy against a target distribution, with optional label smoothing and focal
    weighting (`gamma` > 0 down-weights classes the model already predicts confidently)."""

    def __init__(self, label_smoothing: float = 0.0, gamma: float = 0.0):
        super().__init__()
        self.label_smoothing, self.gamma = label_smoothing, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / target.shape[1]
        log_p = F.log_softmax(logits, dim=1)
        if self.gamma:
            log_p = (1 - log_p.exp()).pow(self.gamma) * log_p
        return -(target * log_p).sum(dim=1).mean()
