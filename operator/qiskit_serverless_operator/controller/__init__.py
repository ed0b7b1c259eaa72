"""kopf handlers: functions, jobs (the scheduler, pod and build handlers join them later)."""
