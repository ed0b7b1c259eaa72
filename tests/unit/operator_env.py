"""The least configuration the operator starts with, for tests that build an OperatorConfig
(each adds what it is about)."""

REQUIRED = {
    "QSO_S3_ENDPOINT": "http://s3",
    "QSO_S3_BUCKET": "b",
    "QSO_S3_ACCESS_KEY": "a",
    "QSO_S3_SECRET_KEY": "s",
    "QSO_RUNTIME_IMAGE": "reg/runtime:1",
}
