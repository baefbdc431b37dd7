#!/bin/sh
# Entrypoint of the learner image (deploy/Dockerfile.learner): continue the run instead of
# restarting it, then run the command (by default `python -m learner --run-dir ...`).
#
# Why: a learner container is restarted by Docker (restart: on-failure), by Kubernetes (a failed
# probe, a rescheduled pod) or by a later `docker compose up`, always with the same --run-dir on
# the same volume. Started plainly it would train from scratch there, and its early checkpoints
# would rank below the old run's and be pruned. So when the command is `python -m learner`, names
# --run-dir, has no --resume, and that run directory holds a checkpoint, `--resume latest` is
# appended. TODO: drop this script once `python -m learner` has `--resume auto`.
set -eu
if [ "$#" -ge 3 ] && [ "$1" = python ] && [ "$2" = -m ] && [ "$3" = learner ]; then
  run_dir=""
  prev=""
  resume=no
  for arg in "$@"; do
    case "$arg" in
      --run-dir=*) run_dir=${arg#--run-dir=} ;;
      --resume | --resume=*) resume=yes ;;
    esac
    if [ "$prev" = --run-dir ]; then run_dir=$arg; fi
    prev=$arg
  done
  if [ -n "$run_dir" ] && [ "$resume" = no ]; then
    for ckpt in "$run_dir"/checkpoints/ckpt-*.pt; do
      if [ -f "$ckpt" ]; then
        echo "learner-entrypoint: $run_dir has checkpoints; continuing with --resume latest" >&2
        set -- "$@" --resume latest
        break
      fi
    done
  fi
fi
exec "$@"
