"""Staff roles for curation, as Django groups holding model permissions (made by a data
migration; an operator adds people to a group in the admin, a superuser holds every permission).

- **curator**: works the review queue (approve, reject, redact, edit, bulk, saved filters), builds
  datasets (defines them in the admin) and freezes new versions, reads versions and datasheets,
  and watches fine-tuning jobs (their progress and evaluation gate).
- **admin**: all a curator does, plus what cannot be undone or reaches outside curation: deleting
  dataset versions and datasets, revoking anyone's API tokens, reading revocations, and
  fine-tuning: launching and resuming jobs (they hold the train queue's machine for minutes to
  hours), cancelling them and promoting their models into the arena.

Views check these permissions, not merely ``is_staff``: staff without a role see no curation page.
"""

from __future__ import annotations

from typing import Any

CURATOR = "curator"
ADMIN = "admin"

# Permission codenames as "app_label.codename".
REVIEW = "collection.change_reviewitem"
REVIEW_VIEW = "collection.view_reviewitem"
DATASETS_VIEW = "collection.view_dataset"
VERSION_FREEZE = "collection.add_datasetversion"
VERSION_DELETE = "collection.delete_datasetversion"
FINETUNE_VIEW = "collection.view_finetunejob"
FINETUNE_LAUNCH = "collection.add_finetunejob"
FINETUNE_CHANGE = "collection.change_finetunejob"

CURATOR_PERMISSIONS = (
    REVIEW_VIEW,
    REVIEW,
    DATASETS_VIEW,
    "collection.add_dataset",
    "collection.change_dataset",
    "collection.view_datasetversion",
    VERSION_FREEZE,
    FINETUNE_VIEW,
)
ADMIN_PERMISSIONS = (
    *CURATOR_PERMISSIONS,
    VERSION_DELETE,
    "collection.delete_dataset",
    "collection.view_revokedsource",
    "arena.view_apitoken",
    "arena.delete_apitoken",
    FINETUNE_LAUNCH,
    FINETUNE_CHANGE,
)
ROLES: dict[str, tuple[str, ...]] = {CURATOR: CURATOR_PERMISSIONS, ADMIN: ADMIN_PERMISSIONS}


def roles_ensure(**kwargs: Any) -> None:
    """Create each role that is missing with its permissions (a post_migrate receiver: after the
    migrations and after a flush); a role that exists is left as the operator set it."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    missing = [name for name in ROLES if not Group.objects.filter(name=name).exists()]
    if not missing:
        return
    for label in ("collection", "arena"):  # their permissions may come after this receiver
        create_permissions(apps.get_app_config(label), verbosity=0)
    for name in missing:
        group, created = Group.objects.get_or_create(name=name)
        if not created:
            continue
        codenames = ROLES[name]
        for full in codenames:
            app_label, codename = full.split(".")
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)
