"""Deployment helpers: container health checks and a status monitor (Dockerfiles, compose and
Kubernetes manifests live beside this package as plain files)."""
