#!/bin/sh
# Stands in for your own command. It honours torchx-forge's contract: resume from
# $FORGE_RESUME_FROM, save numbered checkpoints into $FORGE_CHECKPOINT_DIR, write
# metrics into $FORGE_RESULT_DIR/metrics.json.
set -eu
step=0
if [ -n "${FORGE_RESUME_FROM:-}" ]; then step=$(cat "$FORGE_RESUME_FROM"); fi
echo "run $FORGE_RUN_ID (lr=$LR) attempt $FORGE_ATTEMPT starts at step $step"
while [ "$step" -lt "$STEPS" ]; do
    sleep 1
    step=$((step + 1))
    echo "$step" > "$FORGE_CHECKPOINT_DIR/step_$step.txt.tmp" && mv "$FORGE_CHECKPOINT_DIR/step_$step.txt.tmp" "$FORGE_CHECKPOINT_DIR/step_$step.txt"
    echo "step $step" >> "train-$FORGE_RUN_ID.log"
done
printf '{"loss": %s}\n' "$(awk -v lr="$LR" -v s="$step" 'BEGIN { print 1 / (1 + lr * s) }')" > "$FORGE_RESULT_DIR/metrics.json"
echo "done after $step steps"
