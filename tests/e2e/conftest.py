from tests.kube import api_client, cluster, core, crds, namespace, operator  # noqa: F401
