"""Encoded images (JPEG, PNG) in, the raw pixel tensor the baked graph expects out.

Normalisation (scale, mean, std) is already inside the graph, so decoding only has to produce
pixels 0..255 in the model's size, channel count and layout.
"""

from __future__ import annotations

import io

import numpy as np


class ImageError(ValueError):
    """An element of a BYTES input that is not a decodable image."""


def decode_images(
    blobs: np.ndarray, channels: int, height: int, width: int, layout: str = "NCHW"
) -> np.ndarray:
    """A float32 batch [N, C, H, W] (or [N, H, W, C]) from N encoded images."""
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ImageError(f"images need 1, 3 or 4 channels; the model takes {channels}")
    out = np.empty((len(blobs), height, width, channels), dtype=np.float32)
    for i, blob in enumerate(blobs.reshape(-1)):
        data = blob if isinstance(blob, bytes) else bytes(blob)
        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                out[i] = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)
        except (UnidentifiedImageError, OSError) as err:
            raise ImageError(f"element {i} is not a JPEG or PNG image ({err})") from err
    return out.transpose(0, 3, 1, 2).copy() if layout == "NCHW" else out
