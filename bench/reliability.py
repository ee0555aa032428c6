"""Bad input and lost work: every case of issue 15, run as a new user would, one subprocess each.

For each case it prints the exit code, the first line of stderr (TensorFlow's start-up logs
left out), how many lines stderr had, the files the command left behind in the folders it
was told to write to, and a verdict: a refused input must exit non-zero with one line naming
the file or flag, no traceback and nothing left behind; a converted input (16-bit, RGBA)
must exit 0 with one warning naming the file; an output must carry the umask's mode.

    python bench/reliability.py                 # every case, about 5-10 minutes on 2 cores
    python bench/reliability.py --cases denoise  # the cases whose name contains "denoise"

Cases that train (truncated TFRecord, .mat key, tiny test image) use a tiny budget, so
they finish in a minute or two even where the input is (wrongly) accepted.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402
from evaluation import format_table  # noqa: E402

TINY_RUN = ["--epoch", "1", "--recursions", "0", "--agent_episodes", "1", "--agent_images", "2",
            "--agent_check_images", "0", "--updates_per_step", "1", "--cluster_images", "4", "--baselines", "tv",
            "--batch_size", "64", "--images_per_batch", "4", "--max_test_images", "1"]
NOISE = re.compile(r"^(WARNING: All log messages|[IWE]\d{4} |\s*$)")  # TensorFlow/absl start-up lines


@dataclass
class Case:
    name: str
    argv: list[str]  # script and flags; "{w}" is the case's work folder
    expect: str  # "refused", "warned" (converted, exit 0, one warning naming `names`) or "mode"
    names: str = ""  # what the message must name
    watch: list[str] = field(default_factory=list)  # folders (under {w}) where nothing may be left
    setup: Callable[[Path], None] | None = None
    during: Callable[[Path], Callable[[], None]] | None = None  # start something; returns its stop function


def tiny_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random colour images: valid data a tiny run can train on."""
    import cv2

    small = np.random.default_rng(seed).integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in small])


def celeba_folders(w: Path, truncate: bool = False) -> None:
    from data.celeba import write_tfrecords

    write_tfrecords(tiny_images(6, 48, 0), w / "train", prefix="train", images_per_shard=3)
    write_tfrecords(tiny_images(2, 48, 1), w / "test", prefix="validation", images_per_shard=1)
    if truncate:  # cut the second shard in the middle of its last record (its records are of equal
        shard = sorted((w / "train").glob("*.tfrecords"))[1]  # size, so 2/3 of the bytes is a boundary)
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) * 2 // 3 + 40])


def sidd_folders(w: Path, test: str) -> None:
    """SIDD-Medium training folders, and test data: .mat blocks under another key, or a tiny pair."""
    import scipy.io

    from data.images import write_image

    clean = tiny_images(4, 64, 0)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    for i in range(4):
        scene = w / "sidd" / "Data" / f"{i:04d}_001_GP_00100_00100_3200_N"
        write_image(scene / f"{i:04d}_NOISY_SRGB_010.PNG", noisy[i])
        write_image(scene / f"{i:04d}_GT_SRGB_010.PNG", clean[i])
    if test == "mat":
        blocks = tiny_images(2, 32, 5).reshape(1, 2, 32, 32, 3)
        scipy.io.savemat(w / "noisy.mat", {"SomethingElse": blocks})
        scipy.io.savemat(w / "gt.mat", {"SomethingElse": blocks})
    else:
        write_image(w / "test_noisy" / "tiny.png", noisy[0][:10, :10])
        write_image(w / "test_gt" / "tiny.png", clean[0][:10, :10])


def saved_model(w: Path) -> None:
    """A tiny saved VAE and one photo, for the denoise.py cases."""
    from data.images import write_image
    from models.io import save_model
    from models.vae import VAEConfig, build_vae

    save_model(build_vae(VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16,
                                   deconv_filters=(8, 8, 8, 4))), w / "model")
    write_image(w / "in" / "photo.png", tiny_images(1, 40, 2)[0])


def photo_variants(w: Path) -> None:
    import cv2

    saved_model(w)
    rgb = tiny_images(1, 40, 3)[0]
    cv2.imwrite(str(w / "in16.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    cv2.imwrite(str(w / "rgba.png"), np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                                     np.full((40, 40, 1), 255, np.uint8)], axis=2))
    cv2.imwrite(str(w / "tiny.png"), rgb[:8, :8])


def earlier_run(w: Path) -> None:
    (w / "out").mkdir()
    (w / "out" / "state.json").write_text('{"config": {}, "done": {"round0/vae": {}}}')
    (w / "out" / "results.json").write_text("{}")


def hold_lock(w: Path) -> Callable[[], None]:
    """Another process holding --out_dir's run lock, as a running experiment does."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from utils import folder_lock\n"
            "with folder_lock(sys.argv[2], '--out_dir'):\n    print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(w / "out")], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return lambda: (holder.terminate(), holder.wait())


def cases() -> list[Case]:
    celeba = ["experiment_celeba.py", "--train_files_path", "{w}/train", "--test_files_path", "{w}/test"]
    denoise = ["denoise.py", "--model_dir", "{w}/model"]
    return [
        Case("training TFRecord truncated mid-record", [*celeba, "--out_dir", "{w}/out", *TINY_RUN], "refused",
             "tfrecords", ["out"], lambda w: celeba_folders(w, truncate=True)),
        Case("SIDD .mat whose array has another key",
             ["experiment_sidd_denoise.py", "--train_files_path", "{w}/sidd", "--validation_file_path", "{w}/sidd",
              "--test_files_path", "{w}/noisy.mat", "--test_validation_files_path", "{w}/gt.mat", "--crop", "32",
              "--crops_per_image", "2", "--out_dir", "{w}/out", *TINY_RUN], "refused", "noisy.mat", ["out"],
             lambda w: sidd_folders(w, "mat")),
        Case("test image smaller than one patch (SIDD folders)",
             ["experiment_sidd_denoise.py", "--train_files_path", "{w}/sidd", "--validation_file_path", "{w}/sidd",
              "--test_files_path", "{w}/test_noisy", "--test_validation_files_path", "{w}/test_gt", "--crop", "32",
              "--crops_per_image", "2", "--out_dir", "{w}/out", *TINY_RUN], "refused", "tiny.png", ["out"],
             lambda w: sidd_folders(w, "tiny")),
        Case("denoise.py --output on an existing file", [*denoise, "--input", "{w}/in/photo.png", "--output", "{w}/in/photo.png"],
             "refused", "--output", ["in"], saved_model),
        Case("denoise.py --output a file, --input a folder", [*denoise, "--input", "{w}/in", "--output", "{w}/in/photo.png"],
             "refused", "--output", ["in"], saved_model),
        Case("denoise.py --output under an unwritable folder", [*denoise, "--input", "{w}/in/photo.png", "--output", "/proc/x.png"],
             "refused", "--output", [], saved_model),
        Case("denoise.py image smaller than one patch", [*denoise, "--input", "{w}/tiny.png", "--output", "{w}/out"],
             "refused", "tiny.png", ["out"], photo_variants),
        Case("denoise.py 16-bit input", [*denoise, "--input", "{w}/in16.png", "--output", "{w}/out"], "warned", "in16.png",
             setup=photo_variants),
        Case("denoise.py RGBA input", [*denoise, "--input", "{w}/rgba.png", "--output", "{w}/out"], "warned", "rgba.png",
             setup=photo_variants),
        Case("denoise.py output file mode", [*denoise, "--input", "{w}/in/photo.png", "--output", "{w}/out"], "mode",
             setup=saved_model),
        Case("experiment --out_dir in use by a running experiment", [*celeba, "--out_dir", "{w}/out", *TINY_RUN],
             "refused", "pid", ["out"], celeba_folders, hold_lock),
        Case("experiment --out_dir holding an earlier run", [*celeba, "--out_dir", "{w}/out", *TINY_RUN],
             "refused", "--resume", ["out"], lambda w: (celeba_folders(w), earlier_run(w))),
        Case("experiment fails validation (--overlap 16)", [*celeba, "--out_dir", "{w}/out", "--overlap", "16"],
             "refused", "--overlap", ["out"], celeba_folders),
        Case("experiment --out_dir under an unwritable folder", [*celeba, "--out_dir", "/proc/rse_rl"],
             "refused", "--out_dir", [], celeba_folders),
    ]


def snapshot(folders: list[Path]) -> set[str]:
    return {str(p) for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file() or not any(p.iterdir())}


def run_case(case: Case, work: Path, timeout: float) -> dict:
    work.mkdir(parents=True)
    if case.setup:
        case.setup(work)
    watch = [work / name for name in case.watch]
    stop = case.during(work) if case.during else None
    before = snapshot(watch) | {str(f) for f in watch if f.exists()}
    argv = [a.replace("{w}", str(work)) for a in case.argv]
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / argv[0]), *argv[1:]], capture_output=True, text=True,
                              cwd=ROOT, timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, stderr = None, f"(timed out after {timeout:.0f} s)"
    seconds = time.perf_counter() - started
    left = sorted(p.replace(str(work) + "/", "") for p in (snapshot(watch) | {str(f) for f in watch if f.exists()}) - before)
    if stop:
        stop()
    lines = [line.replace(str(work), "{w}") for line in stderr.splitlines() if not NOISE.match(line)]
    first = lines[0] if lines else ""
    if case.expect == "mode":
        mask = os.umask(0)
        os.umask(mask)
        outputs = [Path(p) for p in snapshot([work / "out"])]
        modes = sorted({oct(p.stat().st_mode & 0o777)[2:] for p in outputs})
        first = f"output mode {', '.join(modes) or '-'} (umask {mask:03o})"
        ok = rc == 0 and modes == [oct(0o666 & ~mask)[2:]]
    elif case.expect == "warned":
        ok = rc == 0 and case.names in first and "warning" in first.lower() and len(lines) <= 2
    else:
        ok = (rc not in (0, None) and len(lines) == 1 and first.startswith("error:") and case.names in first
              and "Traceback" not in stderr and not left)
    return {"case": case.name, "exit": "-" if rc is None else rc, "stderr (first line)": first[:140],
            "stderr lines": len(lines), "files left behind": f"{len(left)}" + (f" ({', '.join(left[:2])}...)" if left else ""),
            "seconds": round(seconds, 1), "verdict": "ok" if ok else "FAIL"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="", help="run only the cases whose name contains this text")
    p.add_argument("--timeout", type=float, default=600, help="seconds per case")
    p.add_argument("--keep", action="store_true", help="keep the work folders (printed at the end)")
    args = p.parse_args(argv)
    selected = [c for c in cases() if args.cases.lower() in c.name.lower()]
    root = Path(tempfile.mkdtemp(prefix="rse_rl_reliability."))
    rows = []
    for i, case in enumerate(selected):
        rows.append(run_case(case, root / f"case{i:02d}", args.timeout))
        print(f"{case.name}: exit {rows[-1]['exit']}, {rows[-1]['verdict']}", file=sys.stderr, flush=True)
    print(format_table(rows, ["case", "exit", "stderr (first line)", "files left behind", "verdict"],
                       title="Bad input (issue 15): exit code, first line of stderr ({w}: the case's work folder), "
                             "files left behind"))
    print(f"{sum(r['verdict'] == 'ok' for r in rows)} of {len(rows)} cases as required")
    if args.keep:
        print(f"work folders: {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
