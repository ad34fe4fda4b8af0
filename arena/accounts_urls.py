"""The log-in page, throttled (arena.accounts), mounted by config.urls under accounts/ ahead of
Django's own account views, whose other pages it keeps."""

from django.urls import path

from arena import accounts

urlpatterns = [
    path("login/", accounts.login_throttled, name="login"),
]
