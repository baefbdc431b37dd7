#!/bin/sh
# Entrypoint of the actor image (deploy/Dockerfile.actor): give each container its own actor id,
# then run the command (by default `python -m actor`).
#
# Why: `python -m actor` defaults its id to its pid, and that is 1 in every container, so all
# replicas of `docker compose up --scale actor=N` (or of the Kubernetes actor Deployment) would
# report as actor 1 and seed their envs alike. The container's host name is unique per replica
# (compose) and per pod (Kubernetes), so the id is derived from it the way
# `launcher.py --actors-only` derives its id base: crc(host name) % 100000 * 1000.
# An explicit MARIO_ACTOR_ID (or --actor-id) still wins.
set -eu
if [ -z "${MARIO_ACTOR_ID:-}" ]; then
  host="${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}"
  crc=$(printf '%s' "$host" | cksum | cut -d ' ' -f 1)
  MARIO_ACTOR_ID=$((crc % 100000 * 1000))
  export MARIO_ACTOR_ID
fi
exec "$@"
