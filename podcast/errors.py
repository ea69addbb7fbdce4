"""Every error this package raises, in one tree.

Callers catch :class:`PodcastError` and read four attributes that decide what happens
next, so no caller needs to know the concrete class:

- ``code``: a stable machine-readable string (goes into the JSON error body),
- ``http_status``: the status an HTTP caller should see,
- ``transient``: whether trying the same thing again later can succeed,
- ``retry_after``: seconds to wait before that retry, when known.

Which status a failure gets follows one rule, so that the default retry policies of
Power Automate and Logic Apps (which repeat 408, 429 and 5xx four times) repeat only what
can succeed, and never pay again for what cannot:

- ``transient`` (trying again later can succeed): 429, 503 or 504, always with ``Retry-After``;
- the request can never succeed as sent (invalid, or Azure OpenAI already spent tokens on it
  and refused or could not read it verbatim): 4xx, never ``Retry-After``; the token-costing
  ones are 422;
- the service is misconfigured or a peer refused it (a missing setting, rejected
  credentials, an unknown deployment, Storage refusing, an upstream refusal of unknown
  cause): 500, 502 or 503 without ``Retry-After``. The operator fixes these, not the caller;
  most fail before any token is spent, so a default retry costs nothing but time.
  The one token-costing 502, :class:`ScriptInvalidError` (the issue asks for a 502), is
  remembered by content key and answered again from Storage, so a default retry is not billed.

::

                                          status transient
    PodcastError                            500   no   the base; raised as such: a bug (internal_error)
    ├── ConfigurationError                  503   no   a setting is missing or malformed
    │   └── UpstreamConfigurationError      503   no   Azure OpenAI refused the deployment (its code, message)
    ├── RequestValidationError              400   no   a request field is invalid (names the field)
    │   ├── TextTooLongError                413   no
    │   │   └── RequestTooLargeError        413   no   a body larger than any valid request
    │   ├── DocumentError                   400   no   an uploaded document that can never be narrated
    │   ├── BlobNameError                   400   no   a name that could leave its container
    │   └── IdempotencyKeyReusedError       422   no   an Idempotency-Key reused with another request
    ├── NarrationError                      502   no   Azure OpenAI refused or failed the narration
    │   ├── AuthenticationError             502   no   401/403 at the handshake
    │   ├── DeploymentNotFoundError         502   no   404 at the handshake
    │   ├── RateLimitedError                429   yes  keeps retry-after (handshake or in-session)
    │   ├── QuotaExceededError              402   no   insufficient_quota: check quota/billing
    │   ├── ServiceUnavailableError         503   yes  5xx or unreachable
    │   ├── ConnectionLostError             503   yes  closed before response.done
    │   ├── NarrationTimeoutError           504   yes  no response.done in time
    │   ├── RealtimeServerError         503 / 502 yes / no  an ``error`` event: transient if server_error
    │   ├── ResponseIncompleteError     422 / 502 no   status "incomplete": content_filter or
    │   │                                              max_output_tokens 422, other reasons 502
    │   ├── ResponseFailedError         503 / 502 yes / no  status "failed": transient if server_error
    │   ├── ResponseCancelledError          502   no   status "cancelled"
    │   ├── EmptyAudioError                 503   yes  "completed" without any audio
    │   ├── FidelityError                   422   no   the transcript kept straying from the text
    │   └── ScriptInvalidError              502   no   the model's script kept being unusable (answered
    │                                              again from the script cache, never re-billed)
    ├── StorageError                        502   no   Blob Storage refused an operation
    │   └── StorageUnavailableError         503   yes  Storage unreachable or busy
    ├── SupersededError                     409   no   a newer version of the document took over its narration
    ├── ScriptInProgressError               503   yes  an identical script is still being written elsewhere
    ├── JobNotFoundError                    404   no   no narration job with this id
    │   └── NarrationNotFoundError          404   no   no stored narration (or file of it) with this id
    ├── JobStalledError                     503   no   a job made no progress, also after a re-enqueue
    └── ShowNotFoundError                   404   no   no show with this name, or not its feed token

    AudioFormatError (a ValueError)        bytes that are not PCM16 mono: a bug, never a caller's

Messages never contain secrets (keys, tokens, SAS signatures) or the user's text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from podcast.wire import Usage


DEFAULT_RETRY_AFTER_SECONDS: Final = 10
"""The ``Retry-After`` of a transient error whose own wait is not known."""


class PodcastError(Exception):
    """Base of every error raised on purpose by this package.

    ``code``, ``http_status`` and ``transient`` are class defaults that a subclass, or an
    instance whose details decide them (e.g. an ``error`` event of type ``server_error``),
    may override.
    """

    code: str = "internal_error"
    http_status: int = 500
    transient: bool = False
    message: str
    retry_after: float | None
    _billed_usage: Usage | None = None

    @property
    def billed_usage(self) -> Usage:
        """Tokens Azure OpenAI billed for the work that failed (every attempt of it), if any."""
        if self._billed_usage is None:
            # Imported here: the error tree loads at cold start, the wire models on first use.
            from podcast.wire import Usage

            self._billed_usage = Usage()
        return self._billed_usage

    @billed_usage.setter
    def billed_usage(self, usage: Usage) -> None:
        self._billed_usage = usage

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def retry_after_header(self) -> int | None:
        """The ``Retry-After`` (whole seconds, at least 1) an answer with this error carries:
        ``retry_after`` when known, else :data:`DEFAULT_RETRY_AFTER_SECONDS` for a transient
        error; ``None`` (no header) for a permanent one."""
        if not self.transient and self.retry_after is None:
            return None
        seconds = self.retry_after if self.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        return max(1, math.ceil(seconds))

    def to_dict(self) -> dict[str, Any]:
        """The error's details: ``{"code", "message"}`` plus subclass details."""
        return {"code": self.code, "message": self.message}

    def body(self) -> dict[str, Any]:
        """The JSON error body every answer and record uses: ``{"error": {...}}``, which
        always has ``code``, ``message`` and ``field``."""
        return {"error": {"field": None, **self.to_dict()}}


class ConfigurationError(PodcastError):
    """A required setting is missing or malformed. Names the setting, never its value."""

    code = "not_configured"
    http_status = 503

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting} {problem}")
        self.setting = setting

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "setting": self.setting}


class UpstreamConfigurationError(ConfigurationError):
    """Azure OpenAI refused the handshake in a way only a setting can fix (e.g. HTTP 400
    ``OperationNotSupported``: the deployment is not a Realtime model).

    Carries the service's ``upstream_code`` and ``upstream_message`` (never a credential);
    not transient: retrying cannot help until the setting is changed.
    """

    code = "upstream_not_configured"

    def __init__(
        self, setting: str, problem: str, *, upstream_code: str | None, upstream_message: str
    ) -> None:
        super().__init__(setting, problem)
        self.upstream_code = upstream_code
        self.upstream_message = upstream_message

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "upstream_code": self.upstream_code}


class RequestValidationError(PodcastError):
    """A caller's request is invalid; ``field`` names the offending field (or ``None``)."""

    code = "invalid_request"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field}


class TextTooLongError(RequestValidationError):
    """The text is longer than this endpoint accepts."""

    code = "text_too_long"
    http_status = 413

    def __init__(self, length: int, limit: int, *, field: str = "text") -> None:
        super().__init__(f"{field} has {length} characters; the limit is {limit}", field=field)
        self.length = length
        self.limit = limit


class RequestTooLargeError(TextTooLongError):
    """The body is larger than any valid request could be (413); ``field`` is ``None``."""

    code = "request_too_large"

    def __init__(self, size: int, max_body_bytes: int, max_text_characters: int) -> None:
        super().__init__(size, max_body_bytes)
        self.message = (
            f"the request body has {size:,} bytes; at most {max_body_bytes:,} are accepted "
            f"(text may have at most {max_text_characters:,} characters)"
        )
        self.args = (self.message,)
        self.field = None


class DocumentError(RequestValidationError):
    """A document that can never be narrated (wrong type, encoding, size, or content)."""

    code = "unsupported_document"


class BlobNameError(RequestValidationError):
    """A blob name built from input that Storage could resolve outside its container, or
    that Azure refuses (see :mod:`podcast.storage.names`). The message says which rule the
    name breaks and never quotes it."""

    code = "invalid_blob_name"


# --- Azure OpenAI Realtime -------------------------------------------------------------


class NarrationError(PodcastError):
    """Azure OpenAI could not narrate the text."""

    code = "narration_failed"
    http_status = 502


class AuthenticationError(NarrationError):
    """Azure OpenAI rejected our credentials (HTTP 401 or 403 at the handshake)."""

    code = "upstream_authentication_failed"


class DeploymentNotFoundError(NarrationError):
    """The deployment named by ``AZURE_OPENAI_AUDIO_DEPLOYMENT`` does not exist (404)."""

    code = "deployment_not_found"


class RateLimitedError(NarrationError):
    """Azure OpenAI is rate limiting us (429); ``retry_after`` says for how long."""

    code = "rate_limited"
    http_status = 429
    transient = True


class QuotaExceededError(NarrationError):
    """Azure OpenAI reports ``insufficient_quota``: the quota or billing of the resource is
    exhausted. Permanent (no ``retry_after``): waiting does not help until an operator acts."""

    code = "insufficient_quota"
    http_status = 402

    def __init__(self, detail: str | None = None) -> None:
        message = (
            "Azure OpenAI reports insufficient quota for this deployment; check the Azure OpenAI "
            "resource's quota (Azure AI Foundry > Quotas) and the subscription's billing"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class ServiceUnavailableError(NarrationError):
    """Azure OpenAI answered 5xx at the handshake or could not be reached."""

    code = "upstream_unavailable"
    http_status = 503
    transient = True


class ConnectionLostError(NarrationError):
    """The WebSocket closed before ``response.done`` arrived."""

    code = "upstream_connection_lost"
    http_status = 503
    transient = True


class NarrationTimeoutError(NarrationError):
    """No ``response.done`` arrived within the response timeout."""

    code = "narration_timeout"
    http_status = 504
    transient = True


class RealtimeServerError(NarrationError):
    """The service sent an ``error`` event.

    ``server_code`` and ``error_type`` are the event's ``error.code`` and ``error.type``;
    errors of type ``server_error`` are transient.
    """

    code = "upstream_error"

    def __init__(
        self, message: str, *, server_code: str | None, error_type: str | None, param: str | None = None
    ) -> None:
        super().__init__(f"Azure OpenAI error ({server_code or error_type or 'unknown'}): {message}")
        self.server_code = server_code
        self.error_type = error_type
        self.param = param
        self.transient = error_type == "server_error"
        self.http_status = 503 if self.transient else 502

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "upstream_code": self.server_code}


class ResponseIncompleteError(NarrationError):
    """The response ended ``incomplete``; ``reason`` is ``max_output_tokens`` or ``content_filter``.

    Both are 422: tokens were spent and the same text would be refused again (the content
    filter) or run over the output cap again (the narrator already halved it as often as it
    may), so a caller's automatic retry must not repeat it. Any other reason is 502.
    """

    code = "narration_incomplete"

    def __init__(self, reason: str | None, *, audio_seconds: float = 0.0) -> None:
        message = {
            "max_output_tokens": "the narration reached the output token limit before the end of the text",
            "content_filter": "Azure OpenAI's content filter stopped the narration",
        }.get(reason or "", f"the narration ended incomplete ({reason or 'no reason given'})")
        super().__init__(message)
        self.reason = reason
        self.audio_seconds = audio_seconds
        if reason == "content_filter":
            self.code = "content_filtered"
        if reason in ("content_filter", "max_output_tokens"):
            self.http_status = 422

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "reason": self.reason}


class ResponseFailedError(NarrationError):
    """The response ended ``failed``; transient when the service says ``server_error``."""

    code = "narration_failed"

    def __init__(
        self, message: str, *, error_type: str | None = None, server_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.server_code = server_code
        self.transient = error_type == "server_error"
        self.http_status = 503 if self.transient else 502


class ResponseCancelledError(NarrationError):
    """The response ended ``cancelled`` (``reason`` from ``status_details``)."""

    code = "narration_cancelled"

    def __init__(self, reason: str | None) -> None:
        super().__init__(f"the narration was cancelled ({reason or 'no reason given'})")
        self.reason = reason


class EmptyAudioError(NarrationError):
    """The response completed but carried no audio (the text has something to say: a text
    without a letter or digit is refused before any session, so silence is a glitch)."""

    code = "no_audio"
    http_status = 503
    transient = True


# --- Blob Storage ----------------------------------------------------------------------


class StorageError(PodcastError):
    """Blob Storage refused an operation."""

    code = "storage_failed"
    http_status = 502


class StorageUnavailableError(StorageError):
    """Blob Storage could not be reached or is throttling us."""

    code = "storage_unavailable"
    http_status = 503
    transient = True


class FidelityError(NarrationError):
    """The narration kept straying from the text (word similarity below the threshold).

    422: every attempt was paid for, and the same text strays again (it is usually the text
    itself, e.g. a question the model answers), so an automatic retry must not repeat it.
    """

    code = "fidelity_too_low"
    http_status = 422


class ScriptInvalidError(NarrationError):
    """The model's reply to a script-writing request (an outline or a section) was not a
    valid script on every attempt: not the JSON asked for, a speaker that is not one of the
    request's, an empty turn, or cut off by the output token cap.

    502 (the issue's contract: the upstream model failed us), not transient. A caller's
    default retry policy repeats 5xx, so the failure is remembered in the script cache
    (:mod:`podcast.services.scripts`) under the request's content key: an identical request
    soon after is answered with this same body without calling the model, so it is billed
    once. ``attempts`` is how many replies were tried; ``problem`` what was wrong with the last.
    """

    code = "script_invalid"

    def __init__(self, what: str, problem: str, *, attempts: int) -> None:
        super().__init__(
            f"Azure OpenAI did not write a valid {what} in {attempts} attempts (last problem: {problem}); "
            "repeating the same request is answered from the script cache without being billed again; "
            "change the request (e.g. target_minutes, speakers) or send 'Cache-Control: no-cache' "
            "to have it written afresh"
        )
        self.what = what
        self.problem = problem
        self.attempts = attempts

    @classmethod
    def replayed(cls, message: str, attempts: int) -> ScriptInvalidError:
        """The failure as it was first answered (``message`` and ``attempts`` of its body),
        for answering a repeated request from the script cache."""
        error = cls.__new__(cls)
        PodcastError.__init__(error, message)
        error.what, error.problem, error.attempts = "script", "", attempts
        return error

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "attempts": self.attempts}


class SupersededError(PodcastError):
    """The narration of an uploaded document was abandoned before its commit: the source
    changed (a newer version is narrated instead) or another delivery took over its claim.
    Nothing of it was stored; not transient (the newer version's own delivery does the work)."""

    code = "superseded"
    http_status = 409


class ScriptInProgressError(PodcastError):
    """An identical script request is being written by another request (this instance or
    another), and it did not finish while this one waited (:mod:`podcast.services.scripts`).
    Transient (503 with ``Retry-After``): the retry is answered with that writer's outcome,
    and nothing was billed for this request."""

    code = "script_in_progress"
    http_status = 503
    transient = True


# --- Asynchronous narration jobs (podcast.services.jobs) ------------------------------------------


class JobNotFoundError(PodcastError):
    """No narration job has this id (or the id is not a well-formed job id): 404."""

    code = "job_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("there is no narration job with this id")


class NarrationNotFoundError(JobNotFoundError):
    """No stored narration has this id, or it has no such file (e.g. no captions): 404."""

    code = "narration_not_found"

    def __init__(self, what: str = "narration") -> None:
        PodcastError.__init__(self, f"there is no {what} with this id")


class IdempotencyKeyReusedError(RequestValidationError):
    """An ``Idempotency-Key`` already names a job made from a different request: 422."""

    code = "idempotency_key_reused"
    http_status = 422

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request; send a new key "
            "for a new request, or repeat the original request unchanged",
            field="Idempotency-Key",
        )


class JobStalledError(PodcastError):
    """A narration job made no progress (its worker died or its messages were lost), also
    after it was re-enqueued once: the job failed, 503.

    Not transient for the job (polling again gives the same answer); the caller may submit
    the request again, which starts a new job.
    """

    code = "job_stalled"
    http_status = 503

    def __init__(
        self, message: str = "the narration job stopped making progress; submit the request again"
    ) -> None:
        super().__init__(message)


# --- Shows and feeds (podcast.services.shows) ---------------------------------------------------


class ShowNotFoundError(PodcastError):
    """No show has this slug, or a feed was asked for with a token that is not the show's
    current one: 404, with one body for both so a feed URL is no oracle for which shows exist."""

    code = "show_not_found"
    http_status = 404

    def __init__(self, field: str = "show") -> None:
        super().__init__("there is no show with this name")
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


# --- Programming errors ----------------------------------------------------------------------


class AudioFormatError(ValueError):
    """Audio bytes that are not the PCM16 mono format this project uses (always a bug in the
    code that produced them, so it is a ``ValueError``, not a :class:`PodcastError`)."""
