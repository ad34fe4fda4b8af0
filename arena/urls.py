"""Battles, accounts and API tokens, leaderboards and their exports."""

from django.urls import path

from arena import accounts, leaderboard_views, status_views, views

urlpatterns = [
    path("", views.arena_home, name="arena-home"),
    path("tools/", views.arena_tools, name="arena-tools"),
    path("side-by-side/", views.arena_named, name="arena-named"),
    path("chat/", views.arena_direct, name="arena-direct"),
    path("battles/", views.battle_start, name="battle-start"),
    path("b/<uuid:battle_id>/", views.battle_page, name="battle"),
    path("b/<uuid:battle_id>/continue/", views.battle_continue_view, name="battle-continue"),
    path("b/<uuid:battle_id>/regenerate/", views.battle_regenerate_view, name="battle-regenerate"),
    path("b/<uuid:battle_id>/vote/", views.battle_vote_view, name="battle-vote"),
    path("b/<uuid:battle_id>/flag/", views.battle_flag_view, name="battle-flag"),
    path("b/<uuid:battle_id>/image/", views.battle_image, name="battle-image"),
    path("b/<uuid:battle_id>/answer/<uuid:generation_id>/", views.answer_view, name="answer"),
    path("s/<uuid:battle_id>/", views.battle_share, name="battle-share"),
    path("status/", status_views.status_page, name="status"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/tokens/", accounts.api_tokens, name="api-tokens"),
    path(
        "accounts/tokens/<int:token_id>/revoke/",
        accounts.api_token_revoke,
        name="api-token-revoke",
    ),
]

urlpatterns += [
    path("leaderboard/", leaderboard_views.leaderboard_page, name="leaderboard"),
    path(
        "leaderboard/<int:snapshot_id>/export.json",
        leaderboard_views.snapshot_export_json,
        name="leaderboard-export-json",
    ),
    path(
        "leaderboard/<int:snapshot_id>/export.csv",
        leaderboard_views.snapshot_export_csv,
        name="leaderboard-export-csv",
    ),
    path(
        "leaderboard/<int:snapshot_id>/battles.jsonl",
        leaderboard_views.snapshot_battles_jsonl,
        name="leaderboard-battles",
    ),
]
