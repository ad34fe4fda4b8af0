"""`manage.py apitoken create USER --name NAME` prints a new API token (once); `list [USER]` and
`revoke ID` manage them, for operators who provision researchers' scripts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena import apitokens
from arena.models import ApiToken


class Command(BaseCommand):
    help = "Create, list and revoke researchers' API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="print a new token for USER")
        create.add_argument("username")
        create.add_argument("--name", required=True)
        listing = sub.add_parser("list", help="tokens, of USER or of everyone")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="delete token ID")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            user = get_user_model().objects.filter(username=options["username"]).first()
            if user is None:
                raise CommandError(f"no user {options['username']!r}")
            try:
                _, raw = apitokens.token_create(user=user, name=options["name"])
            except apitokens.TokenError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(raw)
        elif action == "list":
            tokens = ApiToken.objects.select_related("user")
            if options["username"]:
                tokens = tokens.filter(user__username=options["username"])
            for token in tokens:
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(
                    f"{token.id}\t{token.user.get_username()}\t{token.prefix}…\t{token.name}\t{used}"
                )
        else:
            deleted, _ = ApiToken.objects.filter(id=options["token_id"]).delete()
            if not deleted:
                raise CommandError(f"no token {options['token_id']}")
            self.stdout.write(f"revoked token {options['token_id']}")
