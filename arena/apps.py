from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from arena.receivers import battle_leak_on_finish, battles_adopt_on_login
        from modelhub.signals import generation_finishing

        user_logged_in.connect(battles_adopt_on_login, dispatch_uid="arena.battles_adopt_on_login")
        generation_finishing.connect(
            battle_leak_on_finish, dispatch_uid="arena.battle_leak_on_finish"
        )
