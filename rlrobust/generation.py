"""Generating images from a classifier read as an energy-based model (Mirza et al. 2024, "WEAT", Sec. 6).

Start from a class-wise PCA sample of the training images of class ``y`` and run SGLD with momentum down the
joint energy ``E(x, y) = -f(x)[y]``:

    v <- m * v - (eta / 2) * grad_x E(x, y)
    x <- clip(x + v + alpha * N(0, sigma^2), 0, 1),   alpha = sqrt(2 * eta) by default, sigma = 0.001.

The PCA start follows the WEAT code: keep the leading components up to a retained variance (0.95), and draw
``mean + sum_i s_i * sigma_pca * z_i * u_i`` with ``s_i`` the singular values and ``z_i ~ N(0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlrobust._checks import check_count, check_generator, check_input, check_number, check_positive, check_scores
from rlrobust.energy import joint_energy

_UNIT_HINT = "generation works on images scaled to [0, 1] (divide 0-255 images by 255)"


@dataclass
class ClassPCA:
    """Principal components of one class's images, flattened: mean (D,), components (K, D), singular values (K,)."""

    mean: torch.Tensor
    components: torch.Tensor
    singular_values: torch.Tensor
    image_shape: tuple[int, ...]


def fit_class_pca(images: torch.Tensor, retained_variance: float = 0.95) -> ClassPCA:
    """Fit the PCA of a class's images (N, C, H, W) in [0, 1], keeping components up to ``retained_variance``.

    >>> images = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> pca = fit_class_pca(images, retained_variance=0.8)
    >>> pca.components.shape, pca.image_shape  # 6 of the 9 components of 10 images keep 80 % of the variance
    (torch.Size([6, 48]), (3, 4, 4))
    """
    if images.ndim < 2 or images.shape[0] < 2:
        raise ValueError(f"need at least 2 images of shape (N, ...) to fit a PCA, got {tuple(images.shape)}")
    check_input(images, (0.0, 1.0), "images", _UNIT_HINT)  # NaN stops the SVD; samples are clipped to [0, 1]
    if not 0.0 < retained_variance <= 1.0:
        raise ValueError(f"retained_variance must be in (0, 1], got {retained_variance}")
    flat = images.reshape(images.shape[0], -1).double()
    mean = flat.mean(dim=0)
    _, singular, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    explained = singular.square()
    cumulative = explained.cumsum(0) / explained.sum().clamp_min(1e-30)
    keep = int(torch.searchsorted(cumulative, torch.tensor(retained_variance, dtype=cumulative.dtype))) + 1
    keep = min(keep, singular.numel())
    return ClassPCA(mean.float(), vh[:keep].float(), singular[:keep].float(), tuple(images.shape[1:]))


def sample_class_pca(
    pca: ClassPCA, count: int, *, sigma: float = 0.005, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``count`` starting images from a class PCA, clipped to [0, 1].

    >>> pca = fit_class_pca(torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    >>> starts = sample_class_pca(pca, 5, sigma=0.005, generator=torch.Generator().manual_seed(1))
    >>> starts.shape, bool((starts - pca.mean.view(3, 4, 4)).abs().max() < 0.1)  # near the class mean image
    (torch.Size([5, 3, 4, 4]), True)
    """
    check_count(count, "count")
    check_positive(sigma, "sigma")
    check_generator(generator, pca.mean.device)
    z = torch.randn((count, pca.singular_values.numel()), generator=generator, device=pca.mean.device)
    flat = pca.mean + (z * pca.singular_values * sigma) @ pca.components
    return flat.clamp(0, 1).view(count, *pca.image_shape)


def sgld_sample(
    model: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 50,
    step_size: float = 0.8,
    momentum: float = 0.9,
    noise_std: float = 0.001,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run SGLD with momentum down ``E(x, y)`` from ``x0`` (N, C, H, W) in [0, 1]; returns the samples.

    ``noise_scale`` is alpha (default ``sqrt(2 * step_size)``). ``callback(step, x, energy)`` sees each state.
    The model's mode is not changed (call ``model.eval()`` first, as the WEAT code does).

    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    >>> x0, y = torch.full((2, 3, 4, 4), 0.5), torch.tensor([3, 7])
    >>> energies = []
    >>> x = sgld_sample(model, x0, y, steps=20, callback=lambda step, x, e: energies.append(e))
    >>> bool((energies[-1] < energies[0]).all()), bool(x.min() >= 0 and x.max() <= 1)  # E(x, y) went down
    (True, True)
    """
    check_count(steps, "steps")
    step_size = check_positive(step_size, "step_size")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    noise_std = _check_non_negative(noise_std, "noise_std")
    alpha = math.sqrt(2 * step_size) if noise_scale is None else _check_non_negative(noise_scale, "noise_scale")
    check_generator(generator, x0.device)
    check_input(x0, (0.0, 1.0), "x0", _UNIT_HINT)  # the chain is clipped to [0, 1]: other scales would be cut
    x = x0.detach().clone()
    velocity = torch.zeros_like(x)
    for step in range(steps):
        x.requires_grad_(True)
        energy = joint_energy(check_scores(model(x), x.shape[0]), y)
        (grad,) = torch.autograd.grad(energy.sum(), x)
        velocity = momentum * velocity - 0.5 * step_size * grad
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * noise_std
        x = (x.detach() + velocity + alpha * noise).clamp(0, 1)
        if callback is not None:
            callback(step, x, energy.detach())
    return x.detach()


def _check_non_negative(value: float, name: str) -> float:
    value = check_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value
