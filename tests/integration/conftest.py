from tests.kube import api_client, cluster, core, namespace  # noqa: F401 (pytest fixtures)
