"""Decoding image files with OpenCV (a dependency already), so no Pillow or torchvision is needed."""

from __future__ import annotations

import cv2
import numpy as np


def decode_rgb(data: bytes, name: str = "image") -> np.ndarray:
    """JPEG/PNG bytes -> uint8 RGB array (H, W, 3); grayscale files become three equal channels."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # always 3 channels, BGR
    if array is None:
        raise ValueError(f"cannot decode {name}: not a readable image file")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """uint8 RGB (H, W, 3) -> JPEG bytes (used to write test fixtures in the real format)."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()
