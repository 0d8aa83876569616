"""The running system around the library: the embedded Prefect and MLflow servers, the
deployment server, the inbox watcher and the pid-file bookkeeping that starts and stops them.

Only this package and ``flows/`` import prefect. Nothing here trains or reads recordings beyond
listing and hashing the inbox (the watcher's start-up scan).
"""
