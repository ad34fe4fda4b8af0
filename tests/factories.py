from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from modelhub.models import Endpoint, Engine, Model

PASSWORD = "pw-persona-123"


class UserFactory(factory.django.DjangoModelFactory[User]):
    """Accounts with a known password (PASSWORD), for client.login or force_login."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)


class ModelFactory(factory.django.DjangoModelFactory[Model]):
    class Meta:
        model = Model

    name = factory.Sequence(lambda n: f"fake-model-{n}")
    served_name = "fake"
    display_name = factory.LazyAttribute(lambda m: m.name.title())
    organization = "Test Org"
    engine = Engine.OPENAI
    temperature = 0.0


class EndpointFactory(factory.django.DjangoModelFactory[Endpoint]):
    class Meta:
        model = Endpoint

    model = factory.SubFactory(ModelFactory)
    base_url = "http://127.0.0.1:9/v1"
