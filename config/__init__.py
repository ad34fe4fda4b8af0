# Load the Celery app with Django so that shared tasks enqueue on the configured broker.
from worker.celery import app as celery_app

__all__ = ("celery_app",)
