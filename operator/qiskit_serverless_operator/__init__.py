"""Kubernetes-native Qiskit Serverless: custom resources reconciled by a kopf operator."""

__version__ = "0.1.0"
