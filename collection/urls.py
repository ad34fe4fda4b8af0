"""Quests, the game's rules and boards, and the contributor profile."""

from django.urls import include, path

from collection import anomaly_views, augment_views, dataset_views, views
from collection.api import api as researcher_api

urlpatterns = [
    path("quests/", views.quests_home, name="quests"),
    path("quests/rules/", views.rules_page, name="quest-rules"),
    path("quests/leaderboard/", views.contributor_leaderboard, name="contributor-leaderboard"),
    path("quests/quality/", views.quality_page, name="quest-quality"),
    path("quests/a/<int:assignment_id>/submit/", views.quest_submit, name="quest-submit"),
    path("quests/a/<int:assignment_id>/skip/", views.quest_skip, name="quest-skip"),
    path("quests/i/<int:item_id>/draft/", views.quest_draft, name="quest-draft"),
    path("quests/i/<int:item_id>/image/", views.quest_image, name="quest-image"),
    path("quests/<slug:quest_type>/", views.quest_page, name="quest"),
    path("me/", views.profile_page, name="me"),
    path("me/leaderboard/", views.profile_board_visibility, name="me-board-visibility"),
    path("api/v1/", researcher_api.urls),
    path("staff/anomalies/", anomaly_views.anomalies_page, name="staff-anomalies"),
    path(
        "staff/anomalies/<int:hold_id>/decide/",
        anomaly_views.anomaly_decide,
        name="staff-anomaly-decide",
    ),
    path("datasets/", dataset_views.datasets_page, name="datasets"),
    path("datasets/review/", dataset_views.review_page, name="datasets-review"),
    path(
        "datasets/review/<int:item_id>/decide/",
        dataset_views.review_decide,
        name="datasets-review-decide",
    ),
    path(
        "datasets/review/<int:item_id>/change/",
        dataset_views.review_change,
        name="datasets-review-change",
    ),
    path("datasets/review/bulk/", dataset_views.review_bulk, name="datasets-review-bulk"),
    path(
        "datasets/review/filters/",
        dataset_views.review_filter_save,
        name="datasets-review-filter-save",
    ),
    path(
        "datasets/review/filters/<int:filter_id>/delete/",
        dataset_views.review_filter_delete,
        name="datasets-review-filter-delete",
    ),
    path("datasets/<int:dataset_id>/freeze/", dataset_views.dataset_freeze, name="dataset-freeze"),
    path(
        "datasets/<int:dataset_id>/preview/", dataset_views.dataset_preview, name="dataset-preview"
    ),
    path("datasets/v/<int:version_id>/", dataset_views.version_page, name="dataset-version"),
    path(
        "datasets/v/<int:version_id>/datasheet.md",
        dataset_views.version_datasheet,
        name="dataset-datasheet",
    ),
    path(
        "datasets/v/<int:version_id>/manifest.json",
        dataset_views.version_manifest,
        name="dataset-manifest",
    ),
    path(
        "datasets/v/<int:version_id>/delete/",
        dataset_views.version_delete,
        name="dataset-version-delete",
    ),
    path(
        "datasets/v/<int:version_id>/resume/",
        augment_views.version_resume,
        name="dataset-version-resume",
    ),
    path(
        "datasets/v/<int:version_id>/augment/",
        augment_views.version_augment,
        name="dataset-augment",
    ),
    path(
        "datasets/v/<int:version_id>/augmentations/<int:job_id>.jsonl",
        augment_views.augmentation_download,
        name="dataset-augmentation-download",
    ),
    path(
        "datasets/v/<int:version_id>/<slug:export_format>.jsonl",
        dataset_views.version_download,
        name="dataset-download",
    ),
    path(
        "datasets/v/<int:version_id>/<slug:export_format>.parquet",
        dataset_views.version_download,
        {"file_type": "parquet"},
        name="dataset-download-parquet",
    ),
    path("training/", include("collection.training.urls")),
]
