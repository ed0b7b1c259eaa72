"""The REST gateway: the Qiskit Serverless gateway API over the custom resources."""
