"""The RSE-RL run shared by the experiment scripts.

    data -> round 0: VAE + T -> latent clusters -> SAC agent (kept only if it beats the VAE
            alone on held-out training pairs)
         -> round r >= 1: round r-1's enhanced training inputs join the training set;
            VAE, clusters and agent are fine-tuned
         -> evaluation of every stage on the test set -> table, results.json/csv, figures

The experiment scripts add their dataset flags and build the data (`RunData`); `main`
turns the flags into a `RunConfig` once, and nothing below it reads flags. Each phase
writes its artefacts atomically and records itself in `<out_dir>/state.json`, so
`--resume` after an interruption (Ctrl-C included) skips finished phases, and VAE
training resumes from its last epoch checkpoint.

Modules, one reason to change each:
- `config`: flags -> `RunConfig` (the typed configs of every stage, defaults, --smoke);
- `state`: the run's folder (lock, earlier runs, --overwrite) and its finished phases;
- `streams`: the images each round trains on, is checked on and enhances;
- `rounds`: one round's VAE and cluster phases, its models, the enhancement for the next;
- `agent`: one round's agent phase and its do-no-harm check;
- `evaluate`: every stage on the test set, the baselines, the SIDD submission;
- `run`: the whole run and the scripts' entry point.
"""
from pipeline.config import RunConfig, add_common_flags, build_run_config
from pipeline.run import main, run
from pipeline.streams import RunData

__all__ = ["RunConfig", "RunData", "add_common_flags", "build_run_config", "main", "run"]
