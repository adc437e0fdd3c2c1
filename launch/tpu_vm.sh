#!/usr/bin/env bash
# Train STBIR on a Cloud TPU VM slice (single- or multi-host).
#
#   TPU_NAME=stbir-v4-32 ZONE=us-central2-b ACCELERATOR=v4-32 \
#   WORKDIR=gs://my-bucket/stbir/run1 CONFIG=configs/base.py ./launch/tpu_vm.sh [create]
#
# `create` first creates the TPU VM. Then every worker gets this repository, installs it with
# jax[tpu] and runs the same command; jax.distributed.initialize() (--distributed) discovers the
# slice from the TPU metadata. Checkpoints, TensorBoard logs and results go to WORKDIR (a GCS
# path works: orbax and TensorBoard write to gs:// directly; the `gcs` extra installed below adds
# the google-cloud-storage client that orbax lists checkpoints with). Rerunning resumes exactly.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (e.g. gs://bucket/run)}"
ACCELERATOR="${ACCELERATOR:-v4-8}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
CONFIG="${CONFIG:-configs/base.py}"
REPO="${REPO:-https://github.com/stbir-jax/stbir_jax.git}"
BRANCH="${BRANCH:-main}"
EXTRA_FLAGS="${EXTRA_FLAGS:-}"

if [ "${1:-}" = "create" ]; then
  gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
    --accelerator-type="$ACCELERATOR" --version="$RUNTIME"
fi

read -r -d '' REMOTE <<SCRIPT || true
set -euo pipefail
if [ ! -d stbir_jax ]; then git clone --branch $BRANCH $REPO stbir_jax; fi
cd stbir_jax && git fetch -q && git checkout -q $BRANCH && git pull -q
python3 -m venv ~/stbir-venv && . ~/stbir-venv/bin/activate
pip install -q -e '.[gcs]' 'jax[tpu]>=0.10.2,<0.11'
export TFDS_DATA_DIR=\${TFDS_DATA_DIR:-\$HOME/tensorflow_datasets}
python -m stbir_jax.main --config=$CONFIG --workdir=$WORKDIR --distributed $EXTRA_FLAGS
SCRIPT

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$REMOTE"
