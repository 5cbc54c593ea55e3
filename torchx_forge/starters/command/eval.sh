#!/bin/sh
# Evaluates one training run: gets that run's latest checkpoint as $FORGE_INPUT_CHECKPOINT.
set -eu
echo "evaluating run $FORGE_RUN_ID from $FORGE_INPUT_CHECKPOINT (step $(cat "$FORGE_INPUT_CHECKPOINT"))"
