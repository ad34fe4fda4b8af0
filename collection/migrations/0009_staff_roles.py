"""The staff roles curator and admin as groups with their permissions (see collection.roles)."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

CURATOR = (
    "collection.view_reviewitem",
    "collection.change_reviewitem",
    "collection.view_dataset",
    "collection.add_dataset",
    "collection.change_dataset",
    "collection.view_datasetversion",
    "collection.add_datasetversion",
)
ADMIN = (
    *CURATOR,
    "collection.delete_datasetversion",
    "collection.delete_dataset",
    "collection.view_revokedsource",
    "arena.view_apitoken",
    "arena.delete_apitoken",
)
ROLES = {"curator": CURATOR, "admin": ADMIN}


def roles_create(apps: Any, schema_editor: Any) -> None:
    # Permissions are made after every migration has run; a fresh database needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for full in codenames:
            app_label, codename = full.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def roles_delete(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("collection", "0008_gold_items_reliability_and_held_xp"),
        ("arena", "0006_api_token_scopes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
