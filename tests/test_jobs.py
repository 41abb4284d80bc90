import subprocess

import pytest

from conftest import tiny_config
from transfer_gui import config as C
from transfer_gui.engine.jobs import JobSpec, torchrun_command, write_job


def test_job_folder_has_config_and_launchers(tmp_path, image_folders):
    cfg = tiny_config(image_folders, tmp_path / "local_run")
    paths = write_job(cfg, tmp_path / "job", JobSpec(nodes=2, gpus_per_node=4, partition="gpu"))
    job_cfg = C.load(paths["config"])
    assert job_cfg.output.dir == "run" and job_cfg.train.device == "auto"
    assert job_cfg.data == cfg.data and job_cfg.layers == cfg.layers
    slurm = paths["slurm"].read_text()
    assert "#SBATCH --nodes=2" in slurm and "#SBATCH --gpus-per-node=4" in slurm and "--partition=gpu" in slurm
    assert "--nnodes=2 --nproc_per_node=4" in slurm and "--rdzv_endpoint=$MASTER_ADDR:29500" in slurm
    launcher = paths["torchrun"].read_text()
    assert "--standalone --nproc_per_node=4" in launcher and "train config.toml" in launcher
    for key in ("slurm", "torchrun"):
        assert subprocess.run(["bash", "-n", str(paths[key])]).returncode == 0
        assert paths[key].stat().st_mode & 0o111


def test_single_node_command_and_validation():
    assert torchrun_command(JobSpec(gpus_per_node=2), "c.toml").endswith(
        "--standalone --nproc_per_node=2 -m transfer_gui train c.toml")
    with pytest.raises(ValueError, match="nodes"):
        JobSpec(nodes=0).validate()
