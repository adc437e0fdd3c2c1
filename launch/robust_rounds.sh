#!/usr/bin/env bash
# Robustness rounds for one seed (issue 13; docs/results.md, "More paired rounds"):
#   1. demo_budget's clean run, 2,712 steps (python -m stbir_jax.compare, as documented)
#   2. round 1: demo_robust from its params
#   3. rounds 2..ROUNDS: demo_robust on 1,024 training families with clean pairs and the learned
#      sketch warp, each begun again from the round before (params only, fresh optimiser)
# Each round is followed by its validation evaluation. On 2 CPU cores: about 19 + 21 min, then
# 32 - 44 min a paired round: 2 h 13 min for ROUNDS=4 on seed 1 (seeds 0, 1 and 2: test
# moderate / clean 0.529x, 0.525x and 0.513x).
#
#   ROOT=workdirs/robust SEED=0 ROUNDS=4 launch/robust_rounds.sh [extra --config flags...]
#   CONTROL=1 ...   the same rounds on clean queries (curriculum.kind=none): the clean-cost control
#   DRY_RUN=1 ...   print the commands, run nothing
#
# Rerunning the script resumes: a finished run (its results.json, a round's validation results)
# is skipped, a run cut short resumes from its last checkpoint. The extra flags go to every
# round after the clean run.
set -euo pipefail
ROOT="${ROOT:-workdirs/robust}"
SEED="${SEED:-0}"
ROUNDS="${ROUNDS:-4}"
CONTROL="${CONTROL:-0}"
if ! [[ "$SEED" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]]; then
  echo "robust_rounds.sh: SEED must be an integer >= 0 and ROUNDS >= 1 (got SEED=$SEED ROUNDS=$ROUNDS)" >&2
  exit 2
fi

step() {  # a command, printed under DRY_RUN=1, else run
  if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "$*"; else "$@"; fi
}
done_run() {  # a workdir, the file its last command writes
  [[ "${DRY_RUN:-0}" != 1 ]] && compgen -G "$1/$2" > /dev/null
}

clean="$ROOT/clean/stbir/seed_$SEED"
if ! done_run "$clean" results.json; then
  step python -m stbir_jax.compare --config=configs/base.py:demo_budget \
    --config.train.num_steps=2712 --config.evals.retrieval.every_steps=2712 \
    --config.evals.robustness.every_steps=2712 --workdir="$ROOT/clean" --seeds="$SEED" \
    --methods=stbir --out="$ROOT/clean/results_seed_$SEED.md"
fi

if [[ "$CONTROL" == 1 ]]; then
  round_flags=(--config.curriculum.kind=none)
  tag=clean_round
else
  round_flags=(--config.loss.clean_pairs=1.0 --config.model.sketch_align=True
               --config.loss.align_jitter=1.0)
  tag=round
fi
previous="$clean"
for (( r = 1; r <= ROUNDS; r++ )); do
  if (( r == 1 )); then
    name="$ROOT/round1_seed_$SEED"; flags=()  # the first round is shared by both chains
  else
    name="$ROOT/${tag}${r}_seed_$SEED"
    flags=(--config.data.synth.train_families=1024 "${round_flags[@]}")
  fi
  if ! done_run "$name" "results_validation*.json"; then
    step python -m stbir_jax.main --config=configs/base.py:demo_robust \
      "${flags[@]}" --config.train.seed="$SEED" "$@" \
      --config.train.init_from="$previous" --workdir="$name"
    step python -m stbir_jax.evaluate --workdir="$name" --split=validation
  fi
  previous="$name"
done
echo "robust_rounds.sh: the last round is $previous (results.json: test; results_validation_*.json)"
