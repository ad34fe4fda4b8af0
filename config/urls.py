from django.contrib import admin
from django.urls import include, path

from arena import accounts

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", accounts.login_throttled, name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("modelhub.urls")),
    path("", include("arena.urls")),
    path("", include("collection.urls")),
]
