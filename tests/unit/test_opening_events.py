"""The narrator sends its opening events raw: exactly what the SDK's ``connection.send`` would."""

from __future__ import annotations

import json
from typing import Literal, Union

import pytest
from openai._utils._transform import async_maybe_transform
from openai.types.realtime import RealtimeClientEventParam
from openai.types.realtime.response_create_event_with_references_param import (
    ResponseCreateEventWithReferencesParam,
)

from podcast.engine.instructions import DEFAULT_READ_INSTRUCTIONS
from podcast.engine.realtime import opening_events

# The type connection.send() transforms a dict event with (openai.resources.realtime.realtime).
SENT = Union[RealtimeClientEventParam, ResponseCreateEventWithReferencesParam]  # noqa: UP007


@pytest.mark.parametrize("max_output_tokens", [1, 4096, "inf"])
async def test_the_sdks_transform_leaves_each_event_as_it_is(max_output_tokens: int | Literal["inf"]) -> None:
    events = opening_events(
        'Ünïcode "quoted" text.\n\nTwo paragraphs.', "marin", DEFAULT_READ_INSTRUCTIONS, max_output_tokens
    )
    assert [event["type"] for event in events] == [
        "session.update",
        "conversation.item.create",
        "response.create",
    ]
    for event in events:
        transformed = await async_maybe_transform(event, SENT)
        assert json.dumps(transformed) == json.dumps(event)
