"""Fine-tuning jobs' staff pages (included under training/)."""

from django.urls import path

from collection.training import views

urlpatterns = [
    path("", views.jobs_page, name="training"),
    path("launch/", views.job_launch, name="training-launch"),
    path("<int:job_id>/", views.job_page, name="training-job"),
    path("<int:job_id>/cancel/", views.job_cancel, name="training-cancel"),
    path("<int:job_id>/resume/", views.job_resume, name="training-resume"),
    path("<int:job_id>/promote/", views.job_promote, name="training-promote"),
]
