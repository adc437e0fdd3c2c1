#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all local GPUs per process.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/gpu_slurm.sh WORKDIR [CONFIG] [extra flags...]
#
# jax.distributed.initialize() reads SLURM's environment (coordinator = first node).
# Without SLURM, set the variables yourself on every node and run the same python command:
#   JAX_COORDINATOR_ADDRESS=host0:12345 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=<0|1> \
#   python -m stbir_jax.main --config=configs/base.py --workdir=/shared/run --distributed
#SBATCH --job-name=stbir
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --signal=TERM@120
set -euo pipefail
WORKDIR="${1:?usage: gpu_slurm.sh WORKDIR [CONFIG] [flags...]}"
CONFIG="${2:-configs/base.py}"
shift $(( $# >= 2 ? 2 : 1 ))
# Install once per node into a venv on local disk: pip install -e . 'jax[cuda12]>=0.10.2,<0.11'
VENV="${VENV:-$HOME/stbir-venv}"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# --signal=TERM@120 gives the run two minutes to save a checkpoint on preemption.
srun --kill-on-bad-exit=1 python -m stbir_jax.main --config="$CONFIG" --workdir="$WORKDIR" \
  --distributed "$@"
