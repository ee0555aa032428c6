"""The run's folder: an earlier run is refused unless --resume or --overwrite, --overwrite removes only
what a run wrote, --resume with other settings names them, a checked folder is not created."""
import pytest

from data.errors import ConfigError
from models.clusters import ClusterConfig
from pipeline import RunConfig
from pipeline.state import RunState, check_out_dir, remove_earlier_run


def _earlier_run(out_dir):
    for name in ("state.json", "results.json", "figures/grid.png", "work/round0/vae/history.json",
                 "model/round0/vae/config.json", "enhanced/round0/enhanced-00000-of-00001.tfrecords"):
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text("x")
    (out_dir / "notes.txt").write_text("the user's own file")


def test_earlier_run_is_refused_unless_resume_or_overwrite(tmp_path):
    _earlier_run(tmp_path)
    with pytest.raises(ConfigError, match=r"--out_dir .*holds an earlier run \(state.json\); add --resume .* --overwrite"):
        check_out_dir(RunConfig(out_dir=tmp_path))
    check_out_dir(RunConfig(out_dir=tmp_path, resume=True))
    check_out_dir(RunConfig(out_dir=tmp_path, overwrite=True))
    check_out_dir(RunConfig(out_dir=tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists()  # checking a folder does not create it


def test_overwrite_removes_only_what_a_run_wrote(tmp_path):
    _earlier_run(tmp_path)
    remove_earlier_run(RunConfig(out_dir=tmp_path, overwrite=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_resume_with_other_settings_names_them(tmp_path):
    state = RunState.open(tmp_path, resume=False, config=RunConfig(knn=8).record())
    state.mark("round0/vae", {"history": []})
    again = RunState.open(tmp_path, resume=True, config=RunConfig(knn=8).record())
    assert again.finished("round0/vae")
    with pytest.raises(ConfigError, match=r"different settings \(clusters.num_clusters\)"):
        RunState.open(tmp_path, resume=True,
                      config=RunConfig(knn=8, clusters=ClusterConfig(num_clusters=3)).record())
    flags = RunConfig(flags={"knn": 8}).record()
    RunState.open(tmp_path / "f", resume=False, config=flags)
    with pytest.raises(ConfigError, match=r"different settings \(knn\)"):
        RunState.open(tmp_path / "f", resume=True, config=RunConfig(flags={"knn": 9}).record())
