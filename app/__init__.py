"""Domain and persistence for the scheduled-trigger service (no Flask, no Celery)."""
