from __future__ import annotations

import factory

from modelhub.models import Endpoint, Engine, Model


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
