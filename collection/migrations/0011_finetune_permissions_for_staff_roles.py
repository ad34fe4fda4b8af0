"""Fine-tuning in the staff roles (see collection.roles): admins watch, launch, resume, cancel and
promote jobs; curators watch them."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "curator": ("view_finetunejob",),
    "admin": ("view_finetunejob", "add_finetunejob", "change_finetunejob"),
}


def _permissions(apps: Any, role: str) -> list[Any]:
    Permission = apps.get_model("auth", "Permission")
    return list(
        Permission.objects.filter(content_type__app_label="collection", codename__in=ROLES[role])
    )


def grant(apps: Any, schema_editor: Any) -> None:
    # Permissions are made after every migration has run; a fresh database needs them now.
    app_config = apps.get_app_config("collection")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0)
    app_config.models_module = None
    for group in apps.get_model("auth", "Group").objects.filter(name__in=ROLES):
        group.permissions.add(*_permissions(apps, group.name))


def revoke(apps: Any, schema_editor: Any) -> None:
    for group in apps.get_model("auth", "Group").objects.filter(name__in=ROLES):
        group.permissions.remove(*_permissions(apps, group.name))


class Migration(migrations.Migration):
    dependencies = [
        ("collection", "0010_reliability_counts_arena_votes"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
