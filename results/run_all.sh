#!/usr/bin/env bash
# Every row of the README's evaluation table, one command each; `ecg-pipeline table results`
# rebuilds the table from the summary.json files these write. On the 2-core CPU, one thread per
# run, this takes about 13 hours in a row (half that as two lanes side by side); each command can also be run on its own.
# Needs the datasets ingested first (README, "Real datasets"):
#   ecg-pipeline ingest ../shared/datasets/dp-motion-ecg/data --config configs/dp-motion.toml
#   ecg-pipeline ingest ../shared/datasets/ecg-id --config configs/ecg-id.toml
#   make run   # the demo cohort
set -euo pipefail
cd "$(dirname "$0")/.."
# One thread per run: two runs side by side use the 2 cores better than one run on both.
train() { .venv/bin/ecg-pipeline train --out results --no-progress --set training.cpu_threads=1 "$@"; }
DP=configs/dp-motion.toml
ID=configs/ecg-id.toml
TUNED=configs/recipes/tuned.toml

# dp-motion-ecg: leave-one-electrode-session-out (3 folds) and the paper's window split
train --config $DP --seeds 0 1 2 --name dp-motion/loso-paper
train --config $DP --recipe $TUNED --seeds 0 1 2 --name dp-motion/loso-tuned
train --config $DP --seeds 0 1 --set model.name=resnet1d --name dp-motion/loso-paper-no-sca
train --config $DP --seeds 0 1 --set training.weighting=equal --name dp-motion/loso-paper-no-gradnorm
train --config $DP --recipe $TUNED --seeds 0 1 --set model.name=resnet1d --name dp-motion/loso-tuned-no-sca
train --config $DP --recipe $TUNED --seeds 0 1 --set training.weighting=equal --name dp-motion/loso-tuned-no-gradnorm
train --config $DP --split window --seeds 0 1 2 --name dp-motion/window-paper
train --config $DP --recipe $TUNED --split window --seeds 0 1 2 --name dp-motion/window-tuned
# The DT4ECG recipe chosen per seed and fold on an inner leave-one-session-out of the training side
train --config $DP --candidate paper= --candidate tuned=$TUNED --seeds 0 1 2 --name dp-motion/loso-selected --resume
# ECG-SL with beat segments at 100 Hz (the default on 2026-12-03 only; README "The segment rate"),
# in a store of their own: from scratch, and fine-tuned from encoders pre-trained on dp-motion-ecg
# + ECG-ID without each fold's held-out session (one per fold), for each objective. The stored
# commands of these rows ran when 100 Hz was the default; the recipe re-creates that setting.
S100="--recipe configs/recipes/segments-100hz.toml"
.venv/bin/ecg-pipeline ingest ../shared/datasets/dp-motion-ecg/data --config $DP $S100 --no-progress
.venv/bin/ecg-pipeline ingest ../shared/datasets/ecg-id --config $ID $S100 --no-progress
train --config $DP $S100 --set model.name=ecg_sl --seeds 0 1 2 --name dp-motion/loso-ecgsl-100hz --resume
for objective in masked_beats contrastive; do
  .venv/bin/ecg-pipeline pretrain --config $DP $S100 --set training.cpu_threads=1 --objective $objective \
    --datasets dp-motion ecg-id --out results/pretrained --resume --name dp-motion-loso-$objective-pooled-100hz --no-progress
  train --config $DP $S100 --set model.name=ecg_sl --set model.pretrained=results/pretrained/dp-motion-loso-$objective-pooled-100hz \
    --seeds 0 1 2 --name dp-motion/loso-ecgsl-100hz-${objective%%_*}-pooled --resume
done
# ... and on the window split, whose test windows depend on the seed: one pre-training per seed
train --config $DP $S100 --set model.name=ecg_sl --split window --seeds 0 1 2 --name dp-motion/window-ecgsl-100hz --resume
for objective in masked_beats contrastive; do
  .venv/bin/ecg-pipeline pretrain --config $DP $S100 --set training.cpu_threads=1 --set training.split=window \
    --objective $objective --datasets dp-motion ecg-id --seeds 0 1 2 --out results/pretrained --resume \
    --name dp-motion-window-$objective-pooled-100hz --no-progress
  train --config $DP $S100 --set model.name=ecg_sl --split window --set model.pretrained=results/pretrained/dp-motion-window-$objective-pooled-100hz \
    --seeds 0 1 2 --name dp-motion/window-ecgsl-100hz-${objective%%_*}-pooled --resume
done

# ECG-SL with beat segments at 250 Hz (the default): from scratch, and fine-tuned from contrastive
# encoders pre-trained on dp-motion-ecg + ECG-ID without each fold's held-out session
train --config $DP --set model.name=ecg_sl --seeds 0 1 2 --name dp-motion/loso-ecgsl --resume
train --config $DP --set model.name=ecg_sl --split window --seeds 0 1 2 --name dp-motion/window-ecgsl --resume
.venv/bin/ecg-pipeline pretrain --config $DP --set training.cpu_threads=1 --objective contrastive \
  --datasets dp-motion ecg-id --out results/pretrained --resume --name dp-motion-loso-contrastive-pooled
train --config $DP --set model.name=ecg_sl --set model.pretrained=results/pretrained/dp-motion-loso-contrastive-pooled \
  --seeds 0 1 2 --name dp-motion/loso-ecgsl-contrastive-pooled --resume
# The label-scarcity curve of both (README "Fewer labels"; 250 Hz): fine-tuning with the labels
# of 10 %, 25 % and 50 % of the training recordings (one per person at least, spread over
# activities); the two rows above are its 100 % points.
for pct in 10 25 50; do
  train --config $DP --set model.name=ecg_sl --set training.label_fraction=0.$pct \
    --seeds 0 1 2 --name dp-motion/loso-ecgsl-labels-$pct --resume
  train --config $DP --set model.name=ecg_sl --set model.pretrained=results/pretrained/dp-motion-loso-contrastive-pooled \
    --set training.label_fraction=0.$pct --seeds 0 1 2 --name dp-motion/loso-ecgsl-contrastive-pooled-labels-$pct --resume
done
.venv/bin/ecg-pipeline table results --curve results/label-scarcity.png

# ECG-ID: identity only
train --config $ID --seeds 0 1 2 --name ecg-id/last-record-paper
train --config $ID --recipe $TUNED --seeds 0 1 2 --name ecg-id/last-record-tuned
train --config $ID --seeds 0 1 2 --set training.group_column=later_date --name ecg-id/later-date-paper
train --config $ID --recipe $TUNED --seeds 0 1 2 --set training.group_column=later_date --name ecg-id/later-date-tuned
train --config $ID --split window --seeds 0 1 2 --name ecg-id/window-paper
# The DT4ECG recipe chosen per seed on an inner fold of the training side (never the test side)
train --config $ID --candidate paper= --candidate tuned=$TUNED --seeds 0 1 2 --name ecg-id/last-record-selected

# The DT4ECG recipe chosen on inner folds for the cross-day split too
train --config $ID --set training.group_column=later_date --candidate paper= --candidate tuned=$TUNED \
  --seeds 0 1 2 --name ecg-id/later-date-selected --resume

# ECG-SL on ECG-ID (beat segments at 100 Hz; README "Training (ECG-SL)"): from scratch, and
# fine-tuned from encoders pre-trained without the test side (one per fold; results/pretrained/,
# git-ignored weights, encoder.json kept), on both hold-outs
for hold in last_record later_date; do
  row=${hold//_/-}
  train --config $ID $S100 --set model.name=ecg_sl --set training.group_column=$hold --seeds 0 1 2 --name ecg-id/$row-ecgsl-100hz --resume
  for objective in masked_beats contrastive; do
    .venv/bin/ecg-pipeline pretrain --config $ID $S100 --set training.cpu_threads=1 --set training.group_column=$hold \
      --objective $objective --out results/pretrained --resume --name ecg-id-$row-$objective-100hz --no-progress
    train --config $ID $S100 --set model.name=ecg_sl --set training.group_column=$hold \
      --set model.pretrained=results/pretrained/ecg-id-$row-$objective-100hz --seeds 0 1 2 --name ecg-id/$row-ecgsl-100hz-${objective%%_*} --resume
  done
done
# ... and the same at 250 Hz (the default)
train --config $ID --set model.name=ecg_sl --seeds 0 1 2 --name ecg-id/last-record-ecgsl
train --config $ID --set model.name=ecg_sl --set training.group_column=later_date --seeds 0 1 2 --name ecg-id/later-date-ecgsl
for objective in masked_beats contrastive; do
  .venv/bin/ecg-pipeline pretrain --config $ID --set training.cpu_threads=1 --objective $objective \
    --out results/pretrained --resume --name ecg-id-last-record-$objective
done
train --config $ID --set model.name=ecg_sl --set model.pretrained=results/pretrained/ecg-id-last-record-masked_beats \
  --seeds 0 1 2 --name ecg-id/last-record-ecgsl-masked
train --config $ID --set model.name=ecg_sl --set model.pretrained=results/pretrained/ecg-id-last-record-contrastive \
  --seeds 0 1 2 --name ecg-id/last-record-ecgsl-contrastive
for objective in contrastive masked_beats; do
  .venv/bin/ecg-pipeline pretrain --config $ID --set training.cpu_threads=1 --set training.group_column=later_date \
    --objective $objective --out results/pretrained --resume --name ecg-id-later-date-$objective --no-progress
done
train --config $ID --set model.name=ecg_sl --set training.group_column=later_date \
  --set model.pretrained=results/pretrained/ecg-id-later-date-contrastive --seeds 0 1 2 --name ecg-id/later-date-ecgsl-contrastive --resume
train --config $ID --set model.name=ecg_sl --set training.group_column=later_date \
  --set model.pretrained=results/pretrained/ecg-id-later-date-masked_beats --seeds 0 1 2 --name ecg-id/later-date-ecgsl-masked --resume

# Choices made on validation (results/selection/, `ecg-pipeline table results/selection
# --validation`): the beat segments' rate, 100 / 250 / 500 Hz, each in a store of its own
for hz in 100 500; do
  .venv/bin/ecg-pipeline ingest ../shared/datasets/ecg-id --config configs/selection/ecg-id-segment-${hz}hz.toml --no-progress
done
for cfg in configs/selection/ecg-id-segment-100hz.toml:100hz $ID:250hz configs/selection/ecg-id-segment-500hz.toml:500hz; do
  .venv/bin/ecg-pipeline train --out results/selection --no-progress --set training.cpu_threads=1 \
    --config ${cfg%%:*} --set model.name=ecg_sl --set training.epochs=20 --seeds 0 1 2 \
    --name ecg-id-segment-rate/${cfg##*:} --resume
done
# ... and at the evaluation rows' own length (50 epochs): 500 Hz here; 100 and 250 Hz are the
# validation scores of ecg-id/last-record-ecgsl-100hz and ecg-id/last-record-ecgsl
# (`ecg-pipeline table results --validation`)
.venv/bin/ecg-pipeline train --out results/selection --no-progress --set training.cpu_threads=1 \
  --config configs/selection/ecg-id-segment-500hz.toml --set model.name=ecg_sl --seeds 0 1 2 \
  --name ecg-id-segment-rate-50-epochs/500hz --resume

# Verification (README "Verifying people"): 30 people left out of training (15 calibrate the
# "unknown" threshold, 15 are the test strangers), then EER, FAR/FRR and the open-set rates on
# the later-date records; writes results/verification/<name>.json and .png
train --config $ID --set training.group_column=later_date --set training.holdout_people=30 \
  --seeds 0 1 2 --name ecg-id/later-date-verify
.venv/bin/ecg-pipeline verify results/ecg-id/later-date-verify --name ecg-id-later-date-dt4ecg
train --config $ID --set training.group_column=later_date --set training.holdout_people=30 \
  --set model.name=ecg_sl --seeds 0 1 2 --name ecg-id/later-date-verify-ecgsl
.venv/bin/ecg-pipeline verify results/ecg-id/later-date-verify-ecgsl --name ecg-id-later-date-ecgsl
# dp-motion-ecg: each electrode session held out as its own run, seed 0 (4 of the 10 people left
# out), pooled by one verify
for session in 01 02 03; do
  train --config $DP --set training.holdout_people=4 --set "training.test_groups=[\"$session\"]" \
    --seeds 0 --name dp-motion/session$session-verify
done
.venv/bin/ecg-pipeline verify results/dp-motion/session0{1,2,3}-verify --name dp-motion-sessions-dt4ecg

# The synthetic demo cohort: a pipeline check, not an accuracy claim
train --config configs/demo.toml --epochs 50 --seeds 0 1 2 --name demo/time-block-paper

# Signal quality: the window grade against dp-motion-ecg's manual artefact grades (README,
# "Signal quality"); writes results/quality/agreement.json
.venv/bin/python bench/quality_agreement.py
# ... and the heartbeat test's measure on every real recording (results/quality/heartbeat_periodicity.json)
.venv/bin/python bench/heartbeat_periodicity.py
