// The pod sandbox ("pause") process: registry.k8s.io is unreachable here, so the
// harness builds its own equivalent of kubernetes/build/pause from this file.
module qiskit-serverless-operator/cluster/pause

go 1.24.0
