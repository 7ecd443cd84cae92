"""Encoded images (JPEG, PNG) in, the raw pixel tensor the baked graph expects out.

Normalisation (scale, mean, std) is already inside the graph, so decoding only has to produce
pixels 0..255 in the model's size, channel count and layout.

Only PNG and JPEG are opened (Pillow would otherwise try every format it knows), and the pixel
count is read from the header and checked before anything is decoded: a small PNG can declare
a 50000x50000 image, and decoding it would take gigabytes.
"""

from __future__ import annotations

import io

import numpy as np

FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 4096 * 4096
"""Default cap on one image's width x height, before it is decoded."""


class ImageError(ValueError):
    """An element of a BYTES input that is not a decodable image."""


def decode_images(
    blobs: np.ndarray,
    channels: int,
    height: int,
    width: int,
    layout: str = "NCHW",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """A float32 batch [N, C, H, W] (or [N, H, W, C]) from N encoded images."""
    from PIL import Image, UnidentifiedImageError

    # The cap below replaces Pillow's own (a warning at 89 Mpixel, an error at twice that),
    # checked from the header just the same, but with the runtime's limit and message.
    Image.MAX_IMAGE_PIXELS = None
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ImageError(f"images need 1, 3 or 4 channels; the model takes {channels}")
    out = np.empty((len(blobs), height, width, channels), dtype=np.float32)
    for i, blob in enumerate(blobs.reshape(-1)):
        data = blob if isinstance(blob, bytes) else bytes(blob)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            with image:
                w, h = image.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"element {i} is a {w}x{h} image ({w * h} pixels); "
                        f"the limit is {max_pixels} pixels"
                    )
                pixels = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                out[i] = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)
        except (UnidentifiedImageError, OSError) as err:
            raise ImageError(f"element {i} is not a JPEG or PNG image ({err})") from err
    return out.transpose(0, 3, 1, 2).copy() if layout == "NCHW" else out
