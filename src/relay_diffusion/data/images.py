"""Single images: decode with Pillow into uint8 NumPy arrays [H, W, C] (C = 1 or 3), crop,
resize and encode as PNG. Every source and the loader go through these, so the rules on image
modes live in one place:

- "1" and "L" stay grey (1 channel); "LA" is composited on white and stays grey.
- "RGB", "RGBX", "YCbCr" and palette "P" become RGB; "RGBA", "PA" and "P" with transparency
  are composited on white (a fully transparent pixel becomes 255, 255, 255).
- Every other mode (CMYK, I, I;16, F, LAB, HSV, ...) is rejected with a DatasetError: turning it
  into 8-bit grey or RGB needs a choice (an ICC profile, a value range) we should not guess.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError

TRANSFORMS = ("center-crop", "center-crop-dhariwal", "none")
RESIZE_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}

# Files with these suffixes (any case) are taken as images; any other file is ignored.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm", ".pnm", ".tga"})

_GREY_MODES = frozenset({"1", "L", "LA"})
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "YCbCr"})


def is_image_name(name: str) -> bool:
    """True for a file name with an image suffix that is not hidden nor macOS zip debris."""
    parts = name.replace("\\", "/").split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    dot = parts[-1].rfind(".")
    return dot > 0 and parts[-1][dot:].lower() in IMAGE_EXTENSIONS


def channels_for_mode(mode: str, name: str) -> int:
    """Channels an image of Pillow `mode` will have after decoding (1 or 3); `name` is the file
    named in the error for an unsupported mode."""
    if mode in _GREY_MODES:
        return 1
    if mode in _COLOUR_MODES:
        return 3
    raise DatasetError(f"{name}: unsupported image mode {mode!r} (use 8-bit grey, RGB, RGBA or "
                       f"palette images; convert CMYK/16-bit/float images first)", path=name)


def composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend uint8 `colour` [H, W, C] over a white background with uint8 `alpha` [H, W]."""
    a = alpha.astype(np.int32)[..., None]
    out = (colour.astype(np.int32) * a + 255 * (255 - a) + 127) // 255   # exact at a = 0 and 255
    return out.astype(np.uint8)


def pil_to_array(im: Image.Image, name: str) -> np.ndarray:
    """Convert a loaded Pillow image into uint8 [H, W, 1|3] by the module's mode rules."""
    mode = im.mode
    channels_for_mode(mode, name)
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))[..., None]
    if mode == "LA":
        la = np.asarray(im)
        return composite_on_white(la[..., :1], la[..., 1])
    if mode in ("RGBA", "PA") or (mode == "P" and _has_transparency(im)):
        rgba = np.asarray(im.convert("RGBA"))
        return composite_on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(im.convert("RGB"))


def _has_transparency(im: Image.Image) -> bool:
    return "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode image file bytes into uint8 [H, W, 1|3]; `name` is used in the error message.
    Raises DatasetError for anything that is not a complete, supported image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()                      # forces the full decode: truncated files fail here
            return pil_to_array(im, name)
    except DatasetError:
        raise
    except MemoryError:
        raise
    except Exception as e:                 # Pillow raises many types for broken files
        raise DatasetError(f"{name}: cannot decode image ({type(e).__name__}: {e})",
                           path=name) from e


def peek_channels(fileobj, name: str) -> int:
    """Read only the header of an image (a binary file object) and return its channel count
    after decoding (1 or 3). Raises DatasetError for a non-image or an unsupported mode."""
    try:
        with Image.open(fileobj) as im:
            mode = im.mode
    except Exception as e:
        raise DatasetError(f"{name}: cannot decode image ({type(e).__name__}: {e})",
                           path=name) from e
    return channels_for_mode(mode, name)


def array_to_pil(img: np.ndarray) -> Image.Image:
    """uint8 [H, W, 1|3] to a Pillow "L" or "RGB" image."""
    return Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)


def resize_square(img: np.ndarray, size: int, resize_filter: str = "lanczos") -> np.ndarray:
    """Resize uint8 [H, W, C] to [size, size, C] with Pillow ("lanczos" or "box")."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    out = np.asarray(array_to_pil(img).resize((size, size), RESIZE_FILTERS[resize_filter]))
    return out.reshape(size, size, img.shape[2])


def center_crop(img: np.ndarray, resolution: int | None, resize_filter: str = "lanczos"
                ) -> np.ndarray:
    """EDM dataset_tool's center-crop: cut the largest centred square, then resize it to
    `resolution` (None keeps the short side)."""
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    return img if resolution is None else resize_square(img, resolution, resize_filter)


def center_crop_dhariwal(img: np.ndarray, resolution: int) -> np.ndarray:
    """ADM's (Dhariwal & Nichol) ImageNet crop: halve with BOX while the short side is at least
    twice the target, BICUBIC-resize so the short side equals the target, then centre-crop."""
    pil = array_to_pil(img)
    while min(pil.size) >= 2 * resolution:
        pil = pil.resize(tuple(x // 2 for x in pil.size), resample=Image.Resampling.BOX)
    scale = resolution / min(pil.size)
    pil = pil.resize(tuple(round(x * scale) for x in pil.size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(pil).reshape(pil.size[1], pil.size[0], img.shape[2])
    y, x = (arr.shape[0] - resolution) // 2, (arr.shape[1] - resolution) // 2
    return arr[y:y + resolution, x:x + resolution]


def transform_image(img: np.ndarray, resolution: int | None, transform: str, resize_filter: str,
                    name: str) -> np.ndarray:
    """Apply one of TRANSFORMS to uint8 [H, W, C].

    img: the decoded image. resolution: output side, or None for the native size (not allowed
    with center-crop-dhariwal). transform: "center-crop", "center-crop-dhariwal" or "none" (the
    image must be square; it is only resized). resize_filter: "lanczos" or "box" (the Dhariwal
    crop always uses its own BOX + BICUBIC). name: the file named in errors."""
    if transform == "none":
        h, w = img.shape[:2]
        if h != w:
            raise DatasetError(f"{name}: image is {w}x{h}, but transform 'none' needs square "
                               f"images (use --transform center-crop)", path=name)
        return img if resolution is None else resize_square(img, resolution, resize_filter)
    if transform == "center-crop":
        return center_crop(img, resolution, resize_filter)
    if transform == "center-crop-dhariwal":
        if resolution is None:
            raise DatasetError("transform 'center-crop-dhariwal' needs a resolution")
        return center_crop_dhariwal(img, resolution)
    raise DatasetError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")


def encode_png(img: np.ndarray, compress_level: int = 0) -> bytes:
    """uint8 [H, W, 1|3] to PNG bytes ("L" or "RGB"). Level 0, as EDM's dataset_tool, makes
    the fastest files to read back; 1-9 trade speed for size."""
    buf = io.BytesIO()
    array_to_pil(img).save(buf, format="png", compress_level=compress_level, optimize=False)
    return buf.getvalue()


def image_files(directory) -> list[Path]:
    """The image files directly in `directory` (by `is_image_name`), sorted by name."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and is_image_name(p.name))


def read_image(path, channels: int, size: int | None = None, what: str = "the model") -> np.ndarray:
    """One image file as uint8 [H, W, channels] by this module's mode rules (16-bit, float and
    CMYK files are refused, not clipped); grey and colour are converted to `channels`. With
    `size`, an image that is not size×size is refused, naming `what` expects it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})", path=str(path)) from None
    img = decode_image(data, str(path))
    if size is not None and img.shape[:2] != (size, size):
        raise DatasetError(f"{path} is {img.shape[1]}×{img.shape[0]}; {what} takes {size}×{size}", path=str(path))
    if img.shape[2] != channels:
        img = np.asarray(array_to_pil(img).convert("L" if channels == 1 else "RGB")).reshape(*img.shape[:2], channels)
    return img
