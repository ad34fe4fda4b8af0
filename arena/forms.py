from __future__ import annotations

from django import forms

from arena.models import Mode


class PromptForm(forms.Form):
    prompt = forms.CharField(max_length=8000, strip=True)
    image = forms.FileField(required=False)


class BattleStartForm(PromptForm):
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.ANONYMOUS, required=False)
    model_a = forms.CharField(required=False)
    model_b = forms.CharField(required=False)


class VoteForm(forms.Form):
    turn = forms.IntegerField()
    choice = forms.CharField(max_length=10)


class FlagForm(forms.Form):
    reason = forms.CharField(max_length=200, required=False)
