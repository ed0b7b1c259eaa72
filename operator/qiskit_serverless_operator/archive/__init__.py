"""Job history: finished ServerlessJobs, archived in PostgreSQL before their TTL deletes them.

Live jobs live in etcd (the ServerlessJob custom resources); once a job has finished and its
TTL has passed, the operator writes its summary here (``store.Archive.archive``), marks the
job archived and deletes it. Every read of a job (the REST gateway, the history API the SDK
uses) merges the live jobs with the archived ones (``query``), so a job reads the same before
and after it moved.
"""
