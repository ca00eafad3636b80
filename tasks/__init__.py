"""Celery side of the service: `celery -A tasks worker` and `celery -A tasks beat`."""

from app import config
from tasks.celery_app import make_celery

celery = make_celery(config.settings_or_exit())
app = celery
