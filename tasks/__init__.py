"""Celery side of the service: `celery -A tasks worker` and `celery -A tasks beat`."""

from tasks.celery_app import make_celery

celery = make_celery()
app = celery
