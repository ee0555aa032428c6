"""Convert the RSE-RL authors' released CelebA VAEs (Keras 2 SavedModels) into the weights this
project ships (`models/weights/authors_celeba/`), once, with the project's own importer.

    python scripts/convert_authors_weights.py --authors_weights ../shared/data/weights/rse_rl_authors

Why a script: the shipped files must be reproducible from the authors' release. The result is
our model format (config.json + vae.weights.h5, see models/io.py), loaded by name with
`models.io.load_named("authors")`, so users need neither the SavedModels nor Keras 2.
The authors' MIT licence notice is written beside the files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)

from data.errors import run_cli  # noqa: E402
from models.io import AUTHORS_LICENCE, SHIPPED_WEIGHTS, import_authors_weights, save_model  # noqa: E402
from utils import atomic_write_text  # noqa: E402


def convert(authors_weights: str, out_dir: Path) -> Path:
    """Import the three channel models and save them in our format, with the licence notice."""
    model = import_authors_weights(authors_weights)
    save_model(model, out_dir)
    atomic_write_text(out_dir / "LICENSE", AUTHORS_LICENCE)
    print(f"{authors_weights} -> {out_dir} ({sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6:.1f} MB)")
    return out_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors_weights", required=True, help="folder with the authors' celeba_{y,u,v}_no SavedModels")
    p.add_argument("--out_dir", default=str(SHIPPED_WEIGHTS["authors"]), help="where to write (default: the shipped copy)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up lines")
    args = p.parse_args(argv)
    return run_cli(convert, args.authors_weights, Path(args.out_dir))


if __name__ == "__main__":
    sys.exit(main())
