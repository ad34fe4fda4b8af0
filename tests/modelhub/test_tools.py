"""The tools themselves, the registry's checks of a call, and the client's reading of streamed
tool calls."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from django.forms import modelform_factory
from PIL import Image

from modelhub import client as oai
from modelhub import tools
from modelhub.admin import ModelForm
from modelhub.models import Model
from modelhub.services import ModelConfigError, models_load
from modelhub.supervisor import spec_from_model, vllm_command
from modelhub.tools.calculator import evaluate

CONTEXT = tools.ToolContext()


def _call(name: str, arguments: str, offered: tuple[str, ...] = ("calculator",)) -> tools.Outcome:
    return tools.tool_call_run(
        name=name, arguments=arguments, offered=offered, context=CONTEXT, timeout_s=5
    )


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12 * (3 + 4)", 84),
        ("7 / 2", 3.5),
        ("-2 ** 10", -1024),
        ("17 // 5 % 2", 1),
        ("1.5e3", 1500.0),
    ],
)
def test_it_evaluates_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "(1).__class__",
        "x + 1",
        "[1, 2][0]",
        "1 < 2",
        "'a' * 3",
        "True + 1",
        "lambda: 1",
        "1j * 1j",
        "2 ** 2 ** 2 ** 2 ** 2",
        "9 ** 99999",
    ],
)
def test_it_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(tools.ToolError):
        evaluate(expression)


def test_it_reports_a_refused_expression_as_the_calls_error() -> None:
    outcome = _call("calculator", json.dumps({"expression": "__import__('os')"}))
    assert outcome.result == "" and outcome.error.startswith("Call is not allowed")
    assert _call("calculator", '{"expression": "1/0"}').error == "division by zero"


def test_it_refuses_calls_that_are_not_offered_or_do_not_fit_the_schema() -> None:
    assert _call("convert", '{"value": 1, "from": "km", "to": "m"}').error.startswith(
        "there is no tool named 'convert'"
    )
    assert _call("calculator", "{nope").error.startswith("the arguments are not valid JSON")
    assert _call("calculator", "[1]").error == "the arguments must be a JSON object"
    refused = _call("calculator", '{"expression": 5}')
    assert refused.error.startswith("the arguments do not match the tool's schema: expression")


def test_it_converts_units_and_dates() -> None:
    offered = ("convert", "date")
    assert _call("convert", '{"value": 5, "from": "km", "to": "m"}', offered).result == "5000 m"
    assert _call("convert", '{"value": 1, "from": "kg", "to": "m"}', offered).error.startswith(
        "cannot convert"
    )
    assert _call("convert", '{"value": 1, "from": "__class__", "to": "m"}', offered).error
    days = _call("date", '{"date": "2026-12-07", "until": "2026-12-25"}', offered).result
    assert days.startswith("18 days") and "Monday" in days
    assert _call("date", '{"date": "2026-12-07", "add_days": 7}', offered).result == (
        "2026-12-14 (Monday)"
    )


def test_it_crops_the_prompts_image() -> None:
    picture = Image.new("RGB", (100, 50), "white")
    picture.paste((255, 0, 0), (50, 0, 100, 50))
    raw = io.BytesIO()
    picture.save(raw, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(raw.getvalue()).decode()
    messages = [{"role": "user", "content": [oai.text_part("what is right?"), oai.image_part(url)]}]
    outcome = tools.tool_call_run(
        name="crop_image",
        arguments='{"left": 0.5, "top": 0, "right": 1, "bottom": 1}',
        offered=["crop_image"],
        context=tools.ToolContext(messages=messages),
        timeout_s=5,
    )
    assert outcome.error == "" and outcome.image_url is not None
    crop = Image.open(io.BytesIO(base64.b64decode(outcome.image_url.split(",", 1)[1])))
    assert crop.convert("RGB").getpixel((1, 1)) == (255, 0, 0)
    assert crop.size == (200, 200)  # a 50x50 region, zoomed in at most 4x


def test_it_offers_the_image_tool_only_to_vision_prompts() -> None:
    enabled = ["calculator", "crop_image"]
    wanted = ["crop_image", "calculator", "search"]
    assert tools.tools_offered(enabled=enabled, wanted=wanted, vision=False) == ["calculator"]
    assert tools.tools_offered(enabled=enabled, wanted=wanted, vision=True) == [
        "crop_image",
        "calculator",
    ]


def test_it_sends_tools_only_when_offered() -> None:
    spec = tools.tool_specs(["calculator"])
    payload = oai.build_payload("m", [], {}, tools=spec)
    assert payload["tools"][0]["function"]["name"] == "calculator"
    assert payload["tool_choice"] == "auto"
    assert "tools" not in oai.build_payload("m", [], {})


def test_it_puts_streamed_tool_calls_together_by_index() -> None:
    parser = oai.SSEParser()

    def feed(delta: dict[str, object], reason: str | None = None) -> list[oai.Delta]:
        chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        return parser.feed("data: " + json.dumps(chunk))

    first = {"index": 0, "id": "a1", "type": "function", "function": {"name": "calculator"}}
    second = {"index": 1, "id": "b2", "function": {"name": "date", "arguments": ""}}
    assert feed({"content": "Let me check. "}) == [oai.Delta("Let me check. ")]
    feed({"tool_calls": [first, second]})
    feed({"tool_calls": [{"index": 0, "function": {"arguments": '{"expression": '}}]})
    feed({"tool_calls": [{"index": 1, "function": {"arguments": '{"date": "2026-01-01"}'}}]})
    feed({"tool_calls": [{"index": 0, "function": {"arguments": '"1+1"}'}}]})
    feed({}, "tool_calls")
    parser.feed("data: [DONE]")
    finish = parser.finish()
    assert finish.reason == "tool_calls"
    assert finish.tool_calls == [
        oai.ToolCall("a1", "calculator", '{"expression": "1+1"}'),
        oai.ToolCall("b2", "date", '{"date": "2026-01-01"}'),
    ]


def test_it_refuses_tool_calls_that_are_not_a_list() -> None:
    parser = oai.SSEParser()
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": "calculator"}}]}
    with pytest.raises(oai.MalformedStream):
        parser.feed("data: " + json.dumps(chunk))


def test_it_starts_vllm_with_the_models_tool_call_parser(tmp_path: Path) -> None:
    model = Model(name="m", engine="vllm", path="m", tool_call_parser="hermes")
    argv = vllm_command(spec_from_model(model, port=8123, models_dir=tmp_path))
    joined = " ".join(argv)
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in joined
    model.tool_call_parser = ""
    assert "--tool-call-parser" not in vllm_command(
        spec_from_model(model, 8123, models_dir=tmp_path)
    )


@pytest.mark.django_db
def test_it_loads_a_models_tools_from_configuration_and_refuses_unknown_ones() -> None:
    entry = {"name": "tooled", "tools": ["calculator", "search"], "tool_call_parser": "hermes"}
    (model,) = models_load(entries=[entry])
    assert model.tools == ["calculator", "search"] and model.tool_call_parser == "hermes"
    with pytest.raises(ModelConfigError, match="Unknown tools: shell"):
        models_load(entries=[{"name": "tooled", "tools": ["calculator", "shell"]}])


@pytest.mark.django_db
def test_it_refuses_unknown_tools_in_the_admins_model_form() -> None:
    form_class = modelform_factory(Model, form=ModelForm, fields=["name", "tools"])
    refused = form_class(data={"name": "tooled", "tools": "calculator,shell"})
    assert not refused.is_valid()
    assert "Unknown tools: shell" in refused.errors["tools"][0]
    assert form_class(data={"name": "tooled", "tools": "calculator,search"}).is_valid()
