"""Calibration of predicted probabilities: reliability-diagram bins and expected calibration error (ECE).

Guo et al. (2017): split predictions into equal-width confidence bins; a calibrated model's accuracy in each
bin equals its mean confidence. ECE = sum_b (n_b / n) * |accuracy_b - confidence_b|. The SAP paper's
calibration figure plots confidence against accuracy per bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlrobust._checks import check_count, check_labels


@dataclass
class ReliabilityBins:
    """Per-bin statistics: edges (B+1,), counts (B,), mean confidence (B,), accuracy (B,); empty bins are NaN."""

    edges: torch.Tensor
    counts: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor

    @property
    def ece(self) -> float:
        """Expected calibration error over the non-empty bins."""
        filled = self.counts > 0
        weights = self.counts[filled].double() / self.counts.sum()
        return float((weights * (self.accuracy[filled] - self.confidence[filled]).abs()).sum())


def reliability_bins(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> ReliabilityBins:
    """Bin predictions (N, C) of class probabilities by confidence (max probability) against labels ``y``.

    >>> probs = torch.tensor([[0.9, 0.1], [0.85, 0.15], [0.65, 0.35], [0.7, 0.3]])
    >>> bins = reliability_bins(probs, torch.tensor([0, 0, 1, 0]), bins=5)
    >>> bins.counts.tolist(), bins.accuracy[3:].tolist()  # (0.6, 0.8]: one of two right; (0.8, 1]: both
    ([0, 0, 0, 2, 2], [0.5, 1.0])
    >>> round(bins.ece, 3)  # half the images at |0.5 - 0.675|, half at |1 - 0.875|
    0.15
    """
    check_count(bins, "bins")
    if probs.ndim != 2 or not probs.is_floating_point():
        raise ValueError(f"probs must be a float tensor of shape (N, C), got {tuple(probs.shape)} {probs.dtype}")
    if (probs < -1e-6).any() or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-3):
        raise ValueError("probs must be probabilities (non-negative rows that sum to 1); apply softmax first")
    y = check_labels(y, probs.shape[0], probs.shape[1])
    confidence, predicted = probs.double().max(dim=1)
    correct = (predicted == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence.cpu(), edges[1:-1], right=False)  # bin b holds (edge_b, edge_b+1]
    counts = torch.bincount(index, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence.cpu())
    correct_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct.cpu())
    nan = torch.full((bins,), float("nan"), dtype=torch.float64)
    filled = counts > 0
    return ReliabilityBins(
        edges=edges,
        counts=counts,
        confidence=torch.where(filled, conf_sum / counts.clamp_min(1), nan),
        accuracy=torch.where(filled, correct_sum / counts.clamp_min(1), nan),
    )


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """ECE of class probabilities ``probs`` (N, C) against labels ``y`` with ``bins`` equal-width bins.

    >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    >>> round(expected_calibration_error(probs, torch.tensor([0, 0])), 3)  # under-confident: 90 % sure, always right
    0.1
    """
    return reliability_bins(probs, y, bins).ece
