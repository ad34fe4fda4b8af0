"""Fine-tuning jobs' staff pages: the list with the launch form, a job's page (its progress
panel polls itself while the job is active), cancel, resume and promote."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from collection.dataset_views import staff_permission
from collection.models import DatasetVersion, FinetuneJob, JobState, TrainMethod
from collection.training import selectors, services
from modelhub.models import Model

VIEW = "collection.view_finetunejob"
LAUNCH = "collection.add_finetunejob"
CHANGE = "collection.change_finetunejob"


class LaunchForm(forms.Form):
    version = forms.ModelChoiceField(queryset=DatasetVersion.objects.none())
    method = forms.ChoiceField(choices=TrainMethod.choices)
    base_model = forms.ModelChoiceField(queryset=Model.objects.none(), to_field_name="name")
    judge_model = forms.ModelChoiceField(
        queryset=Model.objects.none(), to_field_name="name", required=False
    )
    hyperparameters = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = selectors.launch_choices()
        self.fields["version"].queryset = choices["versions"]  # type: ignore[attr-defined]
        self.fields["base_model"].queryset = choices["models"]  # type: ignore[attr-defined]
        self.fields["judge_model"].queryset = choices["models"]  # type: ignore[attr-defined]

    def clean_hyperparameters(self) -> dict[str, Any]:
        text = self.cleaned_data["hyperparameters"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not JSON: {error}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Write an object, e.g. {"lora": true, "max_steps": 50}.')
        return value


def _page(request: HttpRequest, form: LaunchForm, status: int = 200) -> HttpResponse:
    context = {
        "jobs": selectors.jobs_recent(),
        "form": form,
        "can_launch": request.user.has_perm(LAUNCH),
    }
    return render(request, "collection/training.html", context, status=status)


@staff_permission(VIEW)
@require_GET
def jobs_page(request: HttpRequest) -> HttpResponse:
    return _page(request, LaunchForm())


@staff_permission(LAUNCH)
@require_POST
def job_launch(request: HttpRequest) -> HttpResponse:
    form = LaunchForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    data = form.cleaned_data
    try:
        job = services.job_create(
            version=data["version"],
            method=data["method"],
            base_model=data["base_model"],
            judge_model=data["judge_model"],
            hyperparameters=data["hyperparameters"],
            seed=data["seed"],
            user=request.user,
        )
    except services.JobError as error:
        form.add_error(None, str(error))
        return _page(request, form, status=400)
    return redirect("training-job", job_id=job.id)


@staff_permission(VIEW)
@require_GET
def job_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_detail(job_id=job_id)
    if job is None:
        raise Http404("No such job.")
    context = {
        "job": job,
        "curve": selectors.loss_curve(job.loss_history),
        "active": job.state in services.ACTIVE,
        "verdicts": job.verdicts.all() if job.state in (JobState.DONE, JobState.PROMOTED) else [],
        "can_change": request.user.has_perm(CHANGE),
        "can_cancel": job.state in (JobState.QUEUED, JobState.RUNNING, JobState.EVALUATING),
        "can_resume": job.state in (JobState.CANCELLED, JobState.FAILED)
        or services.job_is_orphaned(job),
        "can_promote": job.state == JobState.DONE,
    }
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "collection/training_job.html#progress", context)
    return render(request, "collection/training_job.html", context)


def _act(request: HttpRequest, job_id: int, action: str) -> HttpResponse:
    """One state change, then back to the job's page; 409 with the reason when the job's state
    does not allow it (nothing changes)."""
    get_object_or_404(FinetuneJob, id=job_id)
    change = {
        "cancel": services.job_cancel,
        "resume": services.job_resume,
        "promote": services.job_promote,
    }[action]
    try:
        change(job_id=job_id)
    except services.JobError as error:
        return HttpResponse(str(error), status=409, content_type="text/plain; charset=utf-8")
    return redirect("training-job", job_id=job_id)


@staff_permission(CHANGE)
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    return _act(request, job_id, "cancel")


@staff_permission(LAUNCH)
@require_POST
def job_resume(request: HttpRequest, job_id: int) -> HttpResponse:
    return _act(request, job_id, "resume")


@staff_permission(CHANGE)
@require_POST
def job_promote(request: HttpRequest, job_id: int) -> HttpResponse:
    return _act(request, job_id, "promote")
