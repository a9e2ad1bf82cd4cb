"""The SAP paper's reported CIFAR-10 numbers (its own pre-activation ResNet-20, full test set), to print beside ours.

Keys are (model, attack family, lambda); accuracies in percent. Families: ``FGSM`` (white-box, Monte-Carlo for
stochastic models), ``iterative`` (step 1; 10 MC samples per step for SAP), ``iterative transfer from dense``.
"""

from __future__ import annotations

from collections.abc import Sequence

REPORTED: dict[tuple[str, str, float], float] = {
    ("dense", "FGSM", 0.0): 89.8,
    ("dense", "FGSM", 1.0): 66.3,
    ("dense", "FGSM", 2.0): 56.4,
    ("dense", "iterative", 0.0): 89.8,
    ("dense", "iterative", 1.0): 66.3,
    ("dense", "iterative", 2.0): 50.1,
    ("dense", "iterative", 4.0): 31.0,
    ("SAP-100", "iterative", 0.0): 83.3,
    ("SAP-100", "iterative", 1.0): 82.0,
    ("SAP-100", "iterative", 2.0): 80.2,
    ("SAP-100", "iterative", 4.0): 76.7,
    ("SAP-100", "iterative transfer from dense", 0.0): 83.3,
    ("SAP-100", "iterative transfer from dense", 1.0): 75.2,
    ("SAP-100", "iterative transfer from dense", 2.0): 67.0,
    ("SAP-100", "iterative transfer from dense", 4.0): 50.8,
    ("ADV", "FGSM", 0.0): 75.0,
    ("ADV", "FGSM", 1.0): 72.9,
    ("ADV", "FGSM", 2.0): 70.9,
    ("ADV", "FGSM", 4.0): 67.5,
    ("ADV+SAP-100", "FGSM", 0.0): 74.1,
}


def family(attack: str) -> str:
    """The paper's name for one of our attack labels (``FGSM MC n=100`` -> ``FGSM``, ``iterative MC n=10`` ->
    ``iterative``); others unchanged."""
    if attack.startswith("FGSM MC") or attack == "FGSM":
        return "FGSM"
    if attack.startswith("iterative MC") or attack == "iterative":
        return "iterative"
    return attack


def comparison_rows(rows: Sequence[dict]) -> list[dict[str, object]]:
    """Our accuracy (percent) beside the paper's wherever the paper reports the same model, attack and lambda."""
    out = []
    for row in rows:
        reported = REPORTED.get((str(row["model"]), family(str(row["attack"])), float(row["lambda"])))
        if reported is not None:
            ours = 100 * float(row["accuracy"])
            out.append(
                {
                    "model": row["model"],
                    "attack": row["attack"],
                    "lambda": row["lambda"],
                    "ours_%": round(ours, 1),
                    "paper_%": reported,
                    "difference": round(ours - reported, 1),
                }
            )
    return out
