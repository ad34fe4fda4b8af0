from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("arena.accounts_urls")),  # the throttled log-in, before Django's
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("modelhub.urls")),
    path("", include("arena.urls")),
    path("", include("collection.urls")),
]
