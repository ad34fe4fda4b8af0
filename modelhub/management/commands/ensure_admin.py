"""Create the first staff account for `make run` when LUDUS_ADMIN_PASSWORD is set."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an admin user from LUDUS_ADMIN_USER / LUDUS_ADMIN_PASSWORD if none exists."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = os.environ.get("LUDUS_ADMIN_PASSWORD")
        username = os.environ.get("LUDUS_ADMIN_USER", "admin")
        if not password:
            self.stdout.write(
                "No admin account yet: set LUDUS_ADMIN_PASSWORD (and LUDUS_ADMIN_USER) and rerun, or run `manage.py createsuperuser`."
            )
            return
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"created admin user {username!r}")
