"""The grid's predictions as tables: accuracy and expected calibration error per (variant, attack, lambda), and the
reliability-diagram bins behind the paper's calibration figure (confidence against accuracy)."""

from __future__ import annotations

from classifiers.experiments.sap_grid import GridResult
from rlrobust.calibration import reliability_bins


def result_rows(result: GridResult, bins: int = 10) -> list[dict[str, object]]:
    """One row per (variant, attack, lambda): accuracy, mean confidence and ECE of the same predictions."""
    rows = []
    for case in result.cases:
        for lam in case.lambdas:
            key = (case.variant, case.attack, lam)
            if key not in result.probs:  # an interrupted grid: not run yet
                continue
            probs = result.probs[key]
            stats = reliability_bins(probs, result.labels, bins)
            rows.append(
                {
                    "model": case.variant,
                    "attack": case.attack,
                    "lambda": lam,
                    "accuracy": (probs.argmax(1) == result.labels).float().mean().item(),
                    "confidence": probs.max(1).values.mean().item(),
                    "ece": stats.ece,
                    "images": len(result.labels),
                    "seconds": round(result.seconds.get(key, 0.0), 2),
                }
            )
    return rows


def reliability_rows(result: GridResult, bins: int = 10) -> list[dict[str, object]]:
    """The bins of each variant's paper attack (FGSM / Monte-Carlo FGSM) at each lambda; empty bins left out."""
    rows = []
    for case in (c for c in result.cases if c.paper_attack):
        for lam in case.lambdas:
            if (case.variant, case.attack, lam) not in result.probs:
                continue
            stats = reliability_bins(result.probs[(case.variant, case.attack, lam)], result.labels, bins)
            for b in range(bins):
                if stats.counts[b] == 0:
                    continue
                rows.append(
                    {
                        "model": case.variant,
                        "attack": case.attack,
                        "lambda": lam,
                        "bin_low": round(stats.edges[b].item(), 4),
                        "bin_high": round(stats.edges[b + 1].item(), 4),
                        "count": int(stats.counts[b]),
                        "confidence": stats.confidence[b].item(),
                        "accuracy": stats.accuracy[b].item(),
                    }
                )
    return rows
