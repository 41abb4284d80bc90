""""Export as job": a folder with the run's config and ready launchers for a GPU server or a
SLURM cluster, so a run set up in the window moves without retyping anything."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from transfer_gui import config as config_mod
from transfer_gui.config import RunConfig
from transfer_gui.atomic import atomic_write_text


@dataclass(frozen=True)
class JobSpec:
    nodes: int = 1
    gpus_per_node: int = 1
    job_name: str = "transfer_gui"
    time_limit: str = "04:00:00"
    partition: str = ""
    cpus_per_gpu: int = 8
    python: str = "python"  # the interpreter on the cluster that has transfer_gui installed

    def validate(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 1:
            raise ValueError(f"GPUs per node must be >= 1, got {self.gpus_per_node}")


def torchrun_command(spec: JobSpec, config_file: str, rendezvous: str = "$MASTER_ADDR:29500") -> str:
    py = shlex.quote(spec.python)
    if spec.nodes == 1:
        return f"{py} -m torch.distributed.run --standalone --nproc_per_node={spec.gpus_per_node} " \
               f"-m transfer_gui train {shlex.quote(config_file)}"
    return (f"{py} -m torch.distributed.run --nnodes={spec.nodes} --nproc_per_node={spec.gpus_per_node} "
            f"--rdzv_backend=c10d --rdzv_endpoint={rendezvous} --rdzv_id=$JOB_ID "
            f"-m transfer_gui train {shlex.quote(config_file)}")


def write_job(cfg: RunConfig, folder: str | Path, spec: JobSpec, run_dir: str = "run") -> dict[str, Path]:
    """Write ``config.toml``, ``run_torchrun.sh`` and ``job.slurm`` into ``folder``.

    The config's run folder is made relative to the job folder (``run_dir``), so the whole
    folder can be copied to the cluster; bring ``run_dir`` back and open it in the window.
    Image folders stay as they are: edit ``data.folders`` if the cluster mounts them elsewhere.
    """
    spec.validate()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # "auto" picks each rank's own GPU under torchrun (and the CPU where there is none).
    job_cfg = cfg.replace(**{"output.dir": run_dir, "train.device": "auto",
                             "data.folders": [str(Path(f).resolve()) for f in cfg.data.folders],
                             "data.val_folders": [str(Path(f).resolve()) for f in cfg.data.val_folders]})
    paths = {"config": folder / "config.toml", "torchrun": folder / "run_torchrun.sh", "slurm": folder / "job.slurm"}
    config_mod.save(job_cfg, paths["config"])

    single = torchrun_command(spec, "config.toml").replace("$JOB_ID", "transfer_gui")
    atomic_write_text(paths["torchrun"], f"""#!/usr/bin/env bash
# Run on one machine with {spec.gpus_per_node} GPU(s); for several machines, run the same command
# on each with --nnodes={spec.nodes} --rdzv_endpoint=FIRST_HOST:29500 (see job.slurm).
set -euo pipefail
cd "$(dirname "$0")"
{single}
# Continue after an interruption:
#   {spec.python} -m torch.distributed.run --standalone --nproc_per_node={spec.gpus_per_node} -m transfer_gui train --resume {run_dir}
""")
    partition = f"#SBATCH --partition={spec.partition}\n" if spec.partition else ""
    atomic_write_text(paths["slurm"], f"""#!/usr/bin/env bash
#SBATCH --job-name={spec.job_name}
#SBATCH --nodes={spec.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={spec.gpus_per_node}
#SBATCH --cpus-per-task={spec.cpus_per_gpu * spec.gpus_per_node}
#SBATCH --time={spec.time_limit}
{partition}#SBATCH --output=%x-%j.out
# Submit from this folder: sbatch job.slurm
set -euo pipefail
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export JOB_ID=$SLURM_JOB_ID
srun {torchrun_command(spec, "config.toml")}
""")
    for key in ("torchrun", "slurm"):
        paths[key].chmod(0o755)
    return paths
