from django.apps import AppConfig


class CollectionConfig(AppConfig):
    name = "collection"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The arena's one hand-off (arena.signals.vote_cast, sent after a vote commits): the
        # receiver only enqueues; collection.tasks turns the vote into quests and goal progress.
        from arena.signals import vote_cast
        from collection.receivers import quests_from_vote_enqueue

        vote_cast.connect(quests_from_vote_enqueue, dispatch_uid="collection-quests-from-vote")

        # An account's deletion revokes its battles from every dataset. It must run before the
        # delete: afterwards the battles no longer name the account.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_delete

        from collection.receivers import datasets_revoke_user

        pre_delete.connect(
            datasets_revoke_user, sender=get_user_model(), dispatch_uid="collection-revoke-user"
        )

        # The curation roles: made by a migration, and again after a database flush (tests that
        # run in transactions) when they are missing; an operator's changes to them stand.
        from django.db.models.signals import post_migrate

        from collection.roles import roles_ensure

        post_migrate.connect(roles_ensure, sender=self, dispatch_uid="collection-roles")
