"""SIDD: SIDD-Medium noisy/ground-truth pairs, the validation/benchmark `.mat` blocks and
the benchmark submission file.

- SIDD-Medium sRGB: `SIDD_Medium_Srgb/Data/<scene>/<id>_GT_SRGB_010.PNG` and
  `<id>_NOISY_SRGB_010.PNG` (also `_011`), ~4000x3000 each. Pairs are matched by folder
  and stem; `sidd_crops_dataset` streams random crops without holding the images.
- `.mat` blocks (40, 32, 256, 256, 3) uint8, in MATLAB v5 (scipy) or v7.3/HDF5 (h5py)
  files; HDF5 stores MATLAB arrays with the axes reversed, which is undone here.
- Submission: `SubmitSrgb.mat` in the layout of the official SIDD Python script
  (`DenoisedBlocksSrgb` a 40x32 cell array of 256x256x3 uint8, `israw`, `eval_version`).
"""
from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.images import IMAGE_SUFFIXES, read_image
from utils import atomic_write

LOG = logging.getLogger("rse_rl")
MAT_KEYS = ("ValidationNoisyBlocksSrgb", "ValidationGtBlocksSrgb", "BenchmarkNoisyBlocksSrgb")
SUBMISSION_FILE = "SubmitSrgb.mat"
SUBMISSION_KEY = "DenoisedBlocksSrgb"

_SIDD_NAME = re.compile(r"^(?P<id>.+)_(?P<kind>GT|NOISY)_(?P<rest>SRGB_\d+)$", re.IGNORECASE)
_ROLE_TOKEN = re.compile(r"(?<![A-Za-z])(NOISY|GT|CLEAN)(?![A-Za-z])", re.IGNORECASE)


def find_sidd_medium_pairs(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(noisy, gt) pairs of a SIDD-Medium sRGB tree (`SIDD_Medium_Srgb`, its `Data`, or a scene).

    Files named `<id>_NOISY_SRGB_<n>.PNG` / `<id>_GT_SRGB_<n>.PNG` are paired within their
    scene folder; one without its partner is a DataError naming it. Sorted by noisy path.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such SIDD-Medium folder")
    found: dict[tuple[Path, str, str], dict[str, Path]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _SIDD_NAME.match(path.stem)
        if match:
            key = (path.parent, match["id"], match["rest"].upper())
            found.setdefault(key, {})[match["kind"].upper()] = path
    if not found:
        raise DataError(f"{root}: no SIDD-Medium images (<id>_GT_SRGB_010.PNG / <id>_NOISY_SRGB_010.PNG) found")
    pairs = []
    for key in sorted(found):
        roles = found[key]
        if "NOISY" not in roles:
            raise DataError(f"{roles['GT']}: ground-truth image without its NOISY partner")
        if "GT" not in roles:
            raise DataError(f"{roles['NOISY']}: noisy image without its GT partner")
        pairs.append((roles["NOISY"], roles["GT"]))
    return pairs


def _role_free_key(path: Path, root: Path) -> tuple[str, str]:
    """Relative folder and stem with any NOISY/GT/CLEAN word replaced, so partners compare equal."""
    return (str(path.parent.relative_to(root)), _ROLE_TOKEN.sub("*", path.stem).lower())


def _images_under(directory: Path, flag: str) -> list[Path]:
    if not directory.is_dir():
        raise DataError(f"{flag} {directory}: no such folder")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{flag} {directory}: no image files in this folder")
    return files


def pair_noisy_gt_folders(
    noisy_dir: str | os.PathLike, gt_dir: str | os.PathLike
) -> list[tuple[Path, Path]]:
    """Pair a folder of noisy images with a folder of ground truths (searched recursively).

    This is how the seed command line passes SIDD (`--train_files_path` noisy,
    `--validation_file_path` ground truth). Files pair when their relative folder and
    stem agree after NOISY <-> GT (or CLEAN) substitution, or when names are identical.
    If both flags name the same folder, it is read as a SIDD-Medium tree. A file without
    a partner is a DataError naming it.
    """
    noisy_dir, gt_dir = Path(noisy_dir), Path(gt_dir)
    if noisy_dir.resolve() == gt_dir.resolve():
        return find_sidd_medium_pairs(noisy_dir)
    noisy = _images_under(noisy_dir, "noisy folder")
    gt = _images_under(gt_dir, "ground-truth folder")
    gt_by_key: dict[tuple[str, str], Path] = {}
    for path in gt:
        key = _role_free_key(path, gt_dir)
        if key in gt_by_key:
            raise DataError(f"{path}: ambiguous ground truth, {gt_by_key[key].name} has the same stem")
        gt_by_key[key] = path
    pairs = []
    for path in noisy:
        partner = gt_by_key.pop(_role_free_key(path, noisy_dir), None)
        if partner is None:
            raise DataError(f"{path}: noisy image without a ground-truth partner in {gt_dir}")
        pairs.append((path, partner))
    if gt_by_key:
        orphan = sorted(gt_by_key.values())[0]
        raise DataError(f"{orphan}: ground-truth image without a noisy partner in {noisy_dir}")
    return pairs


def load_mat_blocks(path: str | os.PathLike, key: str | None = None, expected: str | tuple[str, ...] | None = None) -> np.ndarray:
    """Read SIDD blocks (B1, B2, H, W, C) uint8 from a MATLAB v5 or v7.3 (HDF5) `.mat` file.

    `key` names the array (the `--mat_key` flag). Without it the array must carry a SIDD
    name: `expected` when given (a name or names, e.g. ValidationGtBlocksSrgb for the GT
    file), else the one SIDD key the file holds; an array under any other name is refused, not guessed, so a
    wrong file is not silently read. A wrong key, dtype or shape is a DataError naming the file.
    """
    import h5py
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .mat file")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as fh:
            names = [k for k in fh.keys() if not k.startswith("#") and isinstance(fh[k], h5py.Dataset)]
            name = _choose_key(path, names, key, expected)
            # MATLAB writes column-major: HDF5 sees the axes in reverse order.
            array = np.asarray(fh[name][()]).transpose()
    else:
        try:
            contents = scipy.io.loadmat(path)
        except Exception as exc:  # scipy raises several types for non-mat input
            raise DataError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
        names = [k for k, v in contents.items() if not k.startswith("__") and isinstance(v, np.ndarray)]
        name = _choose_key(path, names, key, expected)
        array = contents[name]
    if array.dtype != np.uint8:
        raise DataError(f"{path}: `{name}` has dtype {array.dtype}, expected uint8 blocks")
    if array.ndim != 5 or array.shape[4] not in (1, 3):
        raise DataError(
            f"{path}: `{name}` has shape {array.shape}, expected (blocks, blocks, H, W, C) "
            f"such as (40, 32, 256, 256, 3)"
        )
    return np.ascontiguousarray(array)


def _choose_key(path: Path, names: list[str], key: str | None, expected: str | tuple[str, ...] | None) -> str:
    held = ", ".join(f"`{n}`" for n in names) or "no array"
    if key is not None:
        if key not in names:
            raise DataError(f"{path}: no array named `{key}` (--mat_key); the file holds {held}")
        return key
    wanted = [expected] if isinstance(expected, str) else list(expected or MAT_KEYS)
    known = [n for n in names if n in wanted]
    if len(known) == 1:
        return known[0]
    if len(known) > 1:
        raise DataError(f"{path}: holds several SIDD arrays ({held}); choose one with --mat_key")
    what = f"`{wanted[0]}`" if len(wanted) == 1 else "a SIDD array (" + " or ".join(f"`{w}`" for w in wanted) + ")"
    hint = f"; if `{names[0]}` is the right one, pass --mat_key {names[0]}" if len(names) == 1 else "; choose one with --mat_key"
    raise DataError(f"{path}: expected {what}, the file holds {held}{hint}")


def write_sidd_submission(blocks: np.ndarray, out_dir: str | os.PathLike) -> Path:
    """Write denoised benchmark blocks as `out_dir/SubmitSrgb.mat`, the official submission layout.

    `blocks` is uint8 (40, 32, 256, 256, 3) (any (B1, B2, H, W, C) is accepted). Written
    atomically (temporary file, then rename).
    """
    import scipy.io

    blocks = np.asarray(blocks)
    if blocks.dtype != np.uint8 or blocks.ndim != 5:
        raise DataError(
            f"submission blocks: got {blocks.dtype} {blocks.shape}, expected uint8 (40, 32, 256, 256, 3)"
        )
    cells = np.empty(blocks.shape[:2], dtype=object)
    for i in range(blocks.shape[0]):
        for j in range(blocks.shape[1]):
            cells[i, j] = blocks[i, j]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SUBMISSION_FILE
    atomic_write(target, lambda fh: scipy.io.savemat(fh, {SUBMISSION_KEY: cells, "israw": False, "eval_version": "1.0"}), mode="wb")
    return target


def load_sidd_submission(path: str | os.PathLike) -> np.ndarray:
    """Read a `SubmitSrgb.mat` back as uint8 (B1, B2, H, W, C) (to check a file before uploading)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such submission file")
    contents = scipy.io.loadmat(path)
    if SUBMISSION_KEY not in contents:
        raise DataError(f"{path}: no `{SUBMISSION_KEY}` cell array")
    cells = contents[SUBMISSION_KEY]
    return np.stack([np.stack([np.asarray(cells[i, j]) for j in range(cells.shape[1])]) for i in range(cells.shape[0])])


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file: from the PNG header when it is one, else by decoding it."""
    size = _image_size(Path(path))
    return size if size is not None else tuple(read_image(path).shape[:2])


def _image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) from a PNG header without decoding, or None for other formats."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    return None


def _crop_windows(n_pairs: int, crops: int, sizes: np.ndarray, crop: int, seed: int, draw: int) -> tuple[int, np.ndarray]:
    """Which pair draw number `draw` reads and its crop corners: a pure function of (seed, draw)."""
    epoch, position = divmod(draw, n_pairs)
    pair = int(np.random.default_rng([seed, epoch]).permutation(n_pairs)[position])
    rng = np.random.default_rng([seed, epoch, pair, 1])
    h, w = sizes[pair]
    tops = rng.integers(0, h - crop + 1, crops)
    lefts = rng.integers(0, w - crop + 1, crops)
    return pair, np.stack([tops, lefts], axis=1)


def _mirror_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Extend an image to at least height x width by mirroring at its bottom and right edges."""
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def sidd_crops_dataset(
    pairs: list[tuple[str | os.PathLike, str | os.PathLike]],
    crop: int = 256,
    crops_per_image: int = 8,
    seed: int = 0,
    epochs: int | None = 1,
    report_padding: bool = True,
):
    """Stream (noisy, clean) uint8 crops (crop, crop, 3) from SIDD-Medium pairs.

    Each draw reads one pair lazily (two PNG decodes), cuts `crops_per_image` windows,
    the SAME window from noisy and clean, and drops the images. The pair order is a
    fresh permutation each epoch and the windows are a pure function of
    (seed, epoch, pair), so the stream is reproducible from `seed`; epochs=None repeats
    forever. Image sizes are read from the PNG headers up front, so a pair whose sizes
    differ is a DataError before any decoding. A pair with a side shorter than `crop`
    is used whole: noisy and clean are mirror-padded (bottom and right edges, the same
    way) to the crop size, so a real data set with one small image still trains; the
    padded files are logged (report_padding=False: not again, for a stream rebuilt per phase).
    """
    import tensorflow as tf

    if not pairs:
        raise DataError("sidd_crops_dataset: no image pairs")
    pairs = [(Path(n), Path(g)) for n, g in pairs]
    sizes = np.zeros((len(pairs), 2), dtype=np.int64)
    padded = []
    for k, (noisy, gt) in enumerate(pairs):
        for path in (noisy, gt):
            if not path.is_file():
                raise DataError(f"{path}: no such image file")
        size_n, size_g = _image_size(noisy), _image_size(gt)
        if size_n is None or size_g is None:
            size_n = read_image(noisy).shape[:2]
            size_g = read_image(gt).shape[:2]
        if tuple(size_n) != tuple(size_g):
            raise DataError(f"{noisy}: size {size_n[1]}x{size_n[0]} differs from its ground truth {gt} {size_g[1]}x{size_g[0]}")
        if min(size_n) < crop:
            padded.append(f"{noisy.name} ({size_n[1]}x{size_n[0]})")
        sizes[k] = np.maximum(size_n, crop)
    if padded and report_padding:
        LOG.info("%d training pair(s) smaller than the %dx%d crop are used whole, mirror-padded to it: %s",
                 len(padded), crop, crop, ", ".join(padded))
    noisy_names = [str(p[0]) for p in pairs]
    gt_names = [str(p[1]) for p in pairs]

    def _crops(draw: np.int64) -> tuple[np.ndarray, np.ndarray]:
        pair, corners = _crop_windows(len(pairs), crops_per_image, sizes, crop, seed, int(draw))
        noisy = read_image(noisy_names[pair], colour=True)
        clean = read_image(gt_names[pair], colour=True)
        if noisy.shape != clean.shape:
            raise DataError(f"{noisy_names[pair]}: size differs from its ground truth {gt_names[pair]}")
        noisy, clean = (_mirror_pad(image, crop, crop) for image in (noisy, clean))
        rows = corners[:, 0, None] + np.arange(crop)  # (k, crop)
        cols = corners[:, 1, None] + np.arange(crop)
        index = (rows[:, :, None], cols[:, None, :])
        return noisy[index], clean[index]

    draws = tf.data.Dataset.range(len(pairs) * epochs) if epochs is not None else tf.data.Dataset.counter()
    spec = (crops_per_image, crop, crop, 3)
    ds = draws.map(
        lambda d: tuple(tf.ensure_shape(t, spec) for t in tf.numpy_function(_crops, [d], (tf.uint8, tf.uint8))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.unbatch()
