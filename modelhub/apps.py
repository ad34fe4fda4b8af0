from typing import Any

from django.apps import AppConfig


class ModelhubConfig(AppConfig):
    name = "modelhub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from modelhub.models import Endpoint

        post_save.connect(_endpoint_saved, sender=Endpoint, dispatch_uid="modelhub.endpoint_saved")


def _endpoint_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A new endpoint starts with no serving figures. They live in Redis under the endpoint's id,
    which outlives the database that gave the id (a test database, a reset): without this, a fresh
    endpoint could show an old one's requests and errors."""
    if created:
        from modelhub import metrics

        metrics.endpoint_reset(instance.id)
