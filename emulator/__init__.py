"""A local emulator of the Azure OpenAI GA Realtime WebSocket API (what Azurite is for Storage).

It speaks the GA protocol closely enough that the production client works against it
unchanged and every event it sends validates against the ``openai`` SDK's types; it
produces real speech when espeak-ng (or Piper) is installed; and it injects faults.

::

    async with RealtimeEmulator() as emulator:            # or emulator.start_in_thread()
        emulator.inject(Fault(FaultKind.HANDSHAKE_429, retry_after=2))
        client = AsyncOpenAI(websocket_base_url=emulator.websocket_base_url, api_key="emulator-key")
        async with client.realtime.connect(model="gpt-realtime-mini") as connection: ...

Run it stand-alone with ``python -m emulator --port 8765`` (add ``--pace real``, or set
``REALTIME_EMULATOR_PACE=real``, for a pace near the service's: ``RealtimeEmulator(pace="real")``).
"""

from emulator.faults import Fault, FaultKind, paraphrase, parse_fault
from emulator.server import (
    DEFAULT_API_KEY,
    DEFAULT_MODELS,
    INSTANT_PACE,
    REAL_PACE,
    HandshakeRecord,
    Pace,
    RealtimeEmulator,
    parse_pace,
)
from emulator.session import ResponseRecord, SessionRecord
from emulator.speech import ENGINE_NAMES, SpeechEngine, SpeechEngineUnavailable, espeak_available, make_engine

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODELS",
    "ENGINE_NAMES",
    "INSTANT_PACE",
    "REAL_PACE",
    "Fault",
    "FaultKind",
    "HandshakeRecord",
    "Pace",
    "RealtimeEmulator",
    "ResponseRecord",
    "SessionRecord",
    "SpeechEngine",
    "SpeechEngineUnavailable",
    "espeak_available",
    "make_engine",
    "paraphrase",
    "parse_fault",
    "parse_pace",
]
