#!/usr/bin/env bash
# Quickstart on the built-in synthetic data, CPU only, about 6-8 minutes on 2 cores:
# install, make a synthetic dataset in the official Market-1501 format, train PG2 (both stages, reduced
# width --ngf 32 so that it learns in minutes; the paper's network is --ngf 128), generate the test set,
# and compare with the copy-the-source baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_CONSTRAINT="$PWD/constraints.txt" python -m pip install -q -r requirements.txt

DATA=datasets/synthetic/quickstart_market
NAME=${NAME:-quickstart_pg2}
STEPS1=${STEPS1:-350}
STEPS2=${STEPS2:-150}
COMMON=(--model PG2 --dataset_mode market --dataroot "$DATA" --gpu_ids -1 --ngf 32 --num_threads 1)

[ -f "$DATA/market-pairs-test.csv" ] || python -m datasets.make_synthetic --format market --out "$DATA" --people 32 --seed 0

echo "== PG2 stage 1 (G1, $STEPS1 iterations)"
python train.py "${COMMON[@]}" --name "${NAME}_stage1" --stage 1 --batchSize 4 --max_steps "$STEPS1" --niter 1000 \
    --display_freq 400 --print_freq 40 --lr 2e-4
echo "== PG2 stage 2 (G2 + D, $STEPS2 iterations)"
python train.py "${COMMON[@]}" --name "$NAME" --stage 2 --stage1_name "${NAME}_stage1" --batchSize 4 \
    --max_steps "$STEPS2" --niter 1000 --display_freq 400 --print_freq 40 --lr 2e-4
echo "== test"
python test.py "${COMMON[@]}" --name "$NAME" --stage 2 --which_epoch latest --results_dir "results/$NAME"
python -m scripts.copy_baseline --results_dir "results/$NAME" --dataroot "$DATA"

echo
echo "Results:            results/$NAME/ (one <source>_2_<target>_vis.jpg per test pair)"
echo "Test panels (HTML): results/$NAME/web/index.html"
echo "Training pages:     checkpoints/${NAME}_stage1/web/index.html, checkpoints/$NAME/web/index.html"
