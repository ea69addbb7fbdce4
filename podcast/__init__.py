"""podcast: text to podcast-style narration with Azure OpenAI ``gpt-realtime-mini``.

The public surface is small; see the modules for details:

- :mod:`podcast.errors`: every error this package raises, in one tree.
- :mod:`podcast.config`: settings read from the environment.
- :mod:`podcast.realtime`: :class:`~podcast.engine.realtime.Narrator`, one narration over the
  GA Realtime WebSocket API.
- :mod:`podcast.audio`: PCM16 and WAV helpers.
- :mod:`emulator`: a local Realtime API server for tests and development.
"""

__version__ = "0.1.0"
