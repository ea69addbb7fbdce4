"""podcast: text to podcast-style narration with Azure OpenAI ``gpt-realtime-mini``.

The public surface is small; see the modules for details:

- :mod:`podcast.app`: :class:`~podcast.app.App`, the object graph every entry point uses.
- :mod:`podcast.settings`: :class:`~podcast.settings.Settings`, every app setting, read once.
- :mod:`podcast.errors`: every error this package raises, in one tree.
- :mod:`podcast.wire`: the JSON documents it sends and stores.
- :mod:`podcast.engine.realtime`: :class:`~podcast.engine.realtime.Narrator`, one text over
  the GA Realtime WebSocket API.

Layers (enforced by ``lint-imports``): ``http`` → ``app`` → ``services`` → ``storage`` →
``engine`` → ``models``, ``settings``, ``errors``, ``wire``, ``voices``, ``languages``. The
Realtime API emulator and the test support are the top-level development packages
``emulator`` and ``testkit``, which this package never imports.
"""

__version__ = "0.1.0"
