"""Inception Score and FID of generated images through torch-fidelity, with Inception weights the user supplies.

Nothing is downloaded: torch-fidelity is imported only here and only when asked, and it is given the weights file
``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's conversion of the TensorFlow Inception-v3 that FID and
IS were defined with; pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` is a different file for another model
class). Missing weights or a missing library give an error that names the file or the packages to install.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch.utils.data import Dataset

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS
INSTALL_HINT = (
    "pip install torch-fidelity (it imports torchvision, which must be the build matching your torch, e.g. "
    "torchvision 0.28 for torch 2.13; on a CPU-only torch use the CPU wheel from download.pytorch.org)"
)


class MetricsUnavailable(ModuleNotFoundError):
    """IS/FID cannot be computed here: the message says what to install (a user error: one line on the command
    line, as :data:`rlrobust.cli.USER_ERRORS` has every missing module)."""


def check_inception_weights(path: str | Path) -> Path:
    """``path`` if it is a readable weights file, else a FileNotFoundError naming the file needed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights not found at {path}: IS and FID need torch-fidelity's {INCEPTION_WEIGHTS} (about "
            f"91 MB, from {INCEPTION_URL}); download it on a machine with internet access and pass its path with "
            f"--inception-weights, or leave the flag out to skip IS/FID"
        )
    if path.stat().st_size < 1_000_000:
        raise ValueError(f"{path} is too small to be {INCEPTION_WEIGHTS} (about 91 MB): truncated download?")
    return path


def import_torch_fidelity() -> ModuleType:
    """The torch_fidelity module, or :class:`MetricsUnavailable` saying what to install."""
    try:
        import torch_fidelity
    except Exception as err:  # ImportError, or a RuntimeError from a torchvision built for another torch
        raise MetricsUnavailable(
            f"IS/FID need torch-fidelity, which cannot be imported ({err}): {INSTALL_HINT}"
        ) from None
    return torch_fidelity


class _UInt8Images(Dataset):
    """uint8 (N, H, W, C) images as the uint8 (C, H, W) tensors torch-fidelity reads."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        self.images = images.cpu()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].permute(2, 0, 1).contiguous()


def inception_metrics(
    samples: torch.Tensor, reference: torch.Tensor, weights: str | Path, *, cuda: bool = False
) -> dict[str, float]:
    """IS of ``samples`` and FID between ``samples`` and ``reference`` (both uint8 (N, H, W, 3))."""
    weights = check_inception_weights(weights)
    try:
        import torch_fidelity
    except Exception as err:  # ImportError, or a RuntimeError from a torchvision built for another torch
        raise MetricsUnavailable(
            f"IS/FID need torch-fidelity, which cannot be imported ({err}): {INSTALL_HINT}"
        ) from None
    metrics = torch_fidelity.calculate_metrics(
        input1=_UInt8Images(samples),
        input2=_UInt8Images(reference),
        cuda=cuda,
        isc=True,
        fid=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights),
        isc_splits=max(1, min(10, len(samples) // 2)),
        cache=False,
        verbose=False,
    )
    return {
        "inception_score": float(metrics[torch_fidelity.KEY_METRIC_ISC_MEAN]),
        "inception_score_std": float(metrics[torch_fidelity.KEY_METRIC_ISC_STD]),
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
    }
