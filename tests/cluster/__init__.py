"""A real single-node Kubernetes cluster for development and CI, built from package registries.

Run ``python -m tests.cluster --help``; docs/cluster.md explains what runs where.
"""
