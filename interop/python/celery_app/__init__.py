"""The Celery interop scenarios' package: `tasks` is the Celery app the worker runs
(`celery -A celery_app.tasks worker`), `harness` the scenario side that starts and stops it."""
