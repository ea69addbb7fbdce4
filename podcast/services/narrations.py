"""From a validated request to stored audio: narrate, frame as WAV or encode as MP3, upload, sign a link.

:class:`NarrationService` guarantees that a failed narration leaves nothing in Storage and
that a result is only returned once the WAV and its transcript document are both stored.
:meth:`NarrationService.respond` is the synchronous ``POST /api/narrations``: it answers
an identical earlier request from the reuse cache (:mod:`podcast.services.reuse`) or
narrates now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from podcast.audio.captions import Cue, make_cues, srt, webvtt
from podcast.audio.id3 import Chapter, SegmentSpan, chapters, id3_tag
from podcast.engine import audio
from podcast.engine.conversation import VoicedScript, voice_script
from podcast.engine.longform import NarratedText, ProgressCallback, narrate_text
from podcast.engine.realtime import Narrator
from podcast.errors import PodcastError, RequestValidationError, StorageError
from podcast.models import DEFAULT_SPEAKERS, NarrationRequest, ScriptRequest, SubmitOptions
from podcast.services.downloads import attachment, index_name
from podcast.services.reuse import ReuseCache
from podcast.services.scripts import ScriptService
from podcast.services.shows import ShowService, episode_name
from podcast.settings import NarrationSettings, PipelineSettings
from podcast.storage.blobs import BlobStore, WavBlockWriter
from podcast.storage.documents import DocumentStore
from podcast.storage.files import BlobFiles
from podcast.storage.mp3 import Mp3BlockWriter
from podcast.storage.names import blob_name as checked_name
from podcast.storage.names import check_blob_segment
from podcast.wire import (
    DocumentSource,
    EpisodeChapter,
    EpisodeEntry,
    JsonChapter,
    JsonChapters,
    NarrationChapter,
    NarrationIndex,
    NarrationResponse,
    ScriptDocument,
    SegmentReport,
    Speaker,
    TranscriptDocument,
    TurnReport,
    Usage,
    iso_timestamp,
)

log = logging.getLogger(__name__)

NARRATION_BASE: Final = re.compile(r"\d{4}/\d{2}/\d{2}/[0-9a-f]{32}", re.IGNORECASE)
"""The names (without extension) of the narrations this service makes under their own ids,
``<yyyy>/<mm>/<dd>/<id>``: no uploaded document may write its outputs there."""
CHAPTERS_SUFFIX: Final = ".chapters.json"
"""A narration's chapters as Podcasting 2.0 JSON chapters (:class:`~podcast.wire.JsonChapters`)."""
OUTPUT_SUFFIXES: Final = (".wav", ".mp3", ".json", ".vtt", ".srt", CHAPTERS_SUFFIX)
"""What a narration's files add to its name (``<base>.wav``, ...): a name built from input
leaves room for the longest (Azure's limit is on the whole blob name)."""

CLEANUP_ATTEMPTS = 5
"""Tries to remove a failed narration's committed WAV (Storage may be failing right then),
:data:`CLEANUP_BACKOFF_SECONDS` times the try number apart."""
CLEANUP_BACKOFF_SECONDS = 0.5
EPISODE_DESCRIPTION_CHARACTERS = 600
"""How much of the transcript a show's feed item has as its description."""
MAX_EPISODE_CHAPTERS = 100
"""Most chapters a show's episode entry keeps for its feed item (the first ones)."""
MAX_CHAPTER_TITLE_CHARACTERS = 120
"""Longest chapter title an episode entry keeps; with :data:`MAX_EPISODE_CHAPTERS` an entry
stays small (one that does not fit in its blob's metadata is read from the blob itself)."""


@dataclass(frozen=True, slots=True)
class StoredNarration:
    """A stored narration, as the HTTP response and the transcript document describe it."""

    id: str
    audio_url: str | None
    """Read-only SAS link (``None`` for uploaded documents, which get no link)."""
    expires_at: datetime | None
    container: str
    blob_name: str
    transcript_blob_name: str
    transcript: str
    duration_seconds: float
    request: NarrationRequest
    usage: Usage
    created_at: datetime
    segments: tuple[SegmentReport, ...] = field(default=())
    fidelity: float | None = None
    """Overall word similarity of the transcript to the text (``None`` in episode mode)."""
    min_fidelity: float | None = None
    warnings: tuple[str, ...] = ()
    loudness_lufs: float | None = None
    captions_blob_name: str | None = None
    srt_blob_name: str | None = None
    chapters_blob_name: str | None = None
    captions_url: str | None = None
    speakers: tuple[Speaker, ...] | None = None
    """A script's speakers (``None`` for other modes)."""
    turns: tuple[TurnReport, ...] | None = None
    """A script's voiced turns, in order (``None`` for other modes)."""
    chapters: tuple[Chapter, ...] = ()
    """The chapters (the MP3's ID3 chapters, the feed's; also listed in the transcript document)."""

    def to_response(self) -> NarrationResponse:
        """The body of a successful ``POST /api/narrations``."""
        return NarrationResponse(
            id=self.id,
            audio_url=self.audio_url,
            expires_at=iso_timestamp(self.expires_at) if self.expires_at else None,
            container=self.container,
            blob_name=self.blob_name,
            transcript_blob_name=self.transcript_blob_name,
            transcript=self.transcript,
            duration_seconds=self.duration_seconds,
            # A script's voices are its speakers' (the request's own voice is never heard).
            voice=self.speakers[0].voice if self.speakers else self.request.voice,
            mode=self.request.mode,
            style=self.request.style,
            language=self.request.language,
            title=self.request.title,
            format=self.request.format,
            sample_rate=audio.SAMPLE_RATE,
            characters=len(self.request.text),
            segments=len(self.segments) or 1,
            fidelity=self.fidelity,
            warnings=self.warnings,
            usage=self.usage,
            captions_url=self.captions_url,
            captions_blob_name=self.captions_blob_name,
            srt_blob_name=self.srt_blob_name,
            chapters_blob_name=self.chapters_blob_name,
            loudness_lufs=self.loudness_lufs,
        )

    def transcript_document(self, source: DocumentSource | None = None) -> TranscriptDocument:
        """The document stored beside the WAV: the response fields (without the SAS link),
        the segment timings and, for an uploaded document, its ``source``."""
        return TranscriptDocument.from_response(
            self.to_response(),
            created_at=self.created_at,
            min_fidelity=self.min_fidelity,
            segments=self.segments,
            source=source,
            speakers=self.speakers,
            turns=self.turns,
            chapters=[
                NarrationChapter(title=c.title, start=c.start_seconds, end=c.end_seconds)
                for c in self.chapters
            ],
        )


class NarrationService:
    """Narrates requests with one :class:`Narrator` and stores results in one :class:`BlobStore`.

    Owns none of them: the object graph (:mod:`podcast.app`) closes what it made.
    """

    def __init__(
        self,
        narrator: Narrator,
        outputs: BlobStore,
        reuse: ReuseCache,
        *,
        narration: NarrationSettings,
        pipeline: PipelineSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        index: DocumentStore | None = None,
        files: BlobFiles | None = None,
        shows: ShowService | None = None,
        scripts: ScriptService | None = None,
    ) -> None:
        """``index`` (the jobs container) receives each stored narration's
        :class:`~podcast.wire.NarrationIndex`, so it can be found by its id (none when ``None``);
        ``files`` stores the captions beside the audio (none when ``None``); ``shows`` receives
        the episode entry of each narration with a ``show`` (needs ``files``; none when ``None``);
        ``scripts`` writes the script of a ``conversation`` (without it, that mode is refused
        before anything is written)."""
        self.scripts = scripts
        self.index = index
        self.files = files
        self.shows = shows if files is not None else None
        self.narrator = narrator
        self.outputs = outputs
        self.reuse = reuse
        self.narration_settings = narration
        self.pipeline_settings = pipeline
        self.clock = clock
        self.new_id = new_id
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def deployment(self) -> str:
        """The Realtime deployment that narrates (part of every reuse key)."""
        return self.narrator.settings.deployment

    async def respond(self, request: NarrationRequest, options: SubmitOptions) -> NarrationResponse:
        """The synchronous answer to ``request``: identical audio made before, with a fresh
        link (unless ``options.reuse`` is off), else a new narration, remembered for reuse
        unless ``options.remember`` is off. Raises a :class:`~podcast.errors.PodcastError`."""
        key = self.reuse.key(request, self.deployment)
        if options.reuse:
            reusable = await self.reuse.find(key)
            if reusable is not None:
                log.info("narration %s reused for a synchronous request", reusable.result.id)
                return await self.reuse.signed(reusable.result, request.sas_expiry_minutes)
        response = (await self.narrate(request, options=options)).to_response()
        if options.remember:
            await self.reuse.remember(key, None, response)
        return response

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        script: ScriptDocument | None = None,
        options: SubmitOptions | None = None,
        written_since: datetime | None = None,
    ) -> StoredNarration:
        """Narrate ``request``, store the WAV and its transcript document, return a read link.

        ``script`` (default: a script-mode request's own, :meth:`NarrationRequest.script_document`)
        is voiced turn by turn (:func:`podcast.engine.conversation.voice_script`) instead of
        ``request.text`` being read: what conversation mode passes once it has written one.

        Blobs are named ``<yyyy>/<mm>/<dd>/<id>.wav`` (or ``.mp3``) and ``.json`` (``narration_id``
        defaults to a new random id). ``on_progress(done, total)`` is awaited as segments
        finish. ``time_budget_seconds`` overrides the synchronous budget (queued jobs are
        not bound by HTTP's 230 seconds). ``options`` and ``written_since`` go to the script
        writer in conversation mode (:meth:`narrate_conversation`). Raises a
        :class:`~podcast.errors.PodcastError`; when it does, nothing of this narration is
        left in Storage.
        """
        if request.mode == "conversation" and script is None:
            return await self.narrate_conversation(
                request,
                narration_id=narration_id,
                on_progress=on_progress,
                time_budget_seconds=time_budget_seconds,
                options=options,
                written_since=written_since,
            )
        return await self._produce_new(
            request,
            narration_id=narration_id,
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
            script=script,
        )

    async def voice_script(
        self,
        request: NarrationRequest,
        script: ScriptDocument,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        usage: Usage | None = None,
    ) -> StoredNarration:
        """The voice stage's entry point for a script written elsewhere (conversation mode):
        :meth:`narrate` ``request`` with ``script`` voiced turn by turn, ``usage`` (what
        writing the script cost) added to the stored narration's. Same guarantees and errors
        as :meth:`narrate`."""
        return await self._produce_new(
            request,
            narration_id=narration_id,
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
            script=script,
            script_usage=usage,
        )

    async def _produce_new(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None,
        on_progress: ProgressCallback | None,
        time_budget_seconds: float | None,
        script: ScriptDocument | None,
        script_usage: Usage | None = None,
    ) -> StoredNarration:
        """:meth:`produce` under ``narration_id`` (default: a new id), dated now."""
        created_at = self.clock()
        narration_id = check_blob_segment(narration_id or self.new_id(), field="narration id")
        return await self.produce(
            request,
            narration_id=narration_id,
            base=f"{created_at:%Y/%m/%d}/{narration_id}",
            created_at=created_at,
            link_expires_in=timedelta(minutes=request.sas_expiry_minutes),
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
            script=script,
            script_usage=script_usage,
        )

    async def narrate_conversation(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        options: SubmitOptions | None = None,
        written_since: datetime | None = None,
    ) -> StoredNarration:
        """``mode: "conversation"``: write the script (:class:`ScriptService`: stored per
        content, so a job's second delivery does not pay for it again) for the request's
        ``speakers`` (:data:`~podcast.models.DEFAULT_SPEAKERS` when it names none), then voice
        it (:meth:`voice_script`), which stores the narration with the writing's usage added.
        The caller's ``options`` apply to the script too (``Cache-Control: no-cache`` writes it
        afresh, ``no-store`` keeps it out of the script cache); ``written_since`` as in
        :meth:`ScriptService.write <podcast.services.scripts.ScriptService.write>`.

        Raises :class:`~podcast.errors.RequestValidationError` (``mode``) before anything is
        written when this service has no script writer, and
        :class:`~podcast.errors.ScriptInvalidError` (502) when no valid script was written.
        """
        if self.scripts is None:
            raise RequestValidationError(
                "mode 'conversation' is not available from this service (it has no script writer)",
                field="mode",
                code="mode_unavailable",
            )
        written = await self.scripts.write(
            ScriptRequest(request, request.speakers or DEFAULT_SPEAKERS),
            options or SubmitOptions(),
            budget_seconds=time_budget_seconds,
            written_since=written_since,
        )
        return await self.voice_script(
            request,
            written.document,
            narration_id=narration_id,
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
            usage=written.usage,
        )

    async def produce(
        self,
        request: NarrationRequest,
        *,
        narration_id: str,
        base: str,
        created_at: datetime,
        link_expires_in: timedelta | None,
        source: DocumentSource | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        script: ScriptDocument | None = None,
        script_usage: Usage | None = None,
    ) -> StoredNarration:
        """Narrate, then store ``<base>.wav``, its index entry and then ``<base>.json`` (the
        completion mark).

        ``before_commit`` is awaited once the audio is staged, just before the first commit:
        raising there (e.g. :class:`~podcast.errors.SupersededError`) abandons the narration
        with nothing stored. Each upload is atomic (a blob is visible only once committed),
        the WAV's blocks are this call's own (:class:`~podcast.storage.blobs.WavBlockWriter`),
        and the JSON is written last. If anything fails once the WAV commit has begun, the
        WAV this call committed is removed again (shielded from cancellation, retried
        :data:`CLEANUP_ATTEMPTS` times), and with it a JSON left beside it (an older one
        describes audio that is gone), before the error propagates. Raises
        :class:`~podcast.errors.BlobNameError` before any Storage call for an unsafe ``base``.
        ``script`` as in :meth:`narrate`; ``script_usage`` is added to the narration's usage.
        """
        if script is None and request.mode == "script":
            script = request.script_document()
        started = time.monotonic()
        blob_name = checked_name(f"{base}.{request.format}", field="document")
        transcript_blob_name = checked_name(f"{base}.json", field="document")
        # Fail before paying for a narration when Storage is unreachable (or the identity
        # may not sign links) or the show is unknown: these checks and the link come first.
        if request.show is not None and self.shows is not None:
            await self.shows.require(request.show)
        await self.outputs.ensure_container()
        url: str | None = None
        expires_at: datetime | None = None
        if link_expires_in is not None:
            url, expires_at = await self.outputs.read_url(blob_name, expires_in=link_expires_in)
        # Segments are staged as blocks as they finish; nothing is visible until commit().
        writer: WavBlockWriter | Mp3BlockWriter
        if request.format == "mp3":
            writer = Mp3BlockWriter(
                self.outputs, blob_name, bitrate_kbps=self.narration_settings.mp3_bitrate_kbps
            )
        else:
            writer = self.outputs.wav_writer(blob_name)
        budget = time_budget_seconds or self.pipeline_settings.time_budget_seconds
        voiced: VoicedScript | None = None
        if script is not None:
            voiced = await voice_script(
                self.narrator,
                request,
                script,
                writer,
                self.narration_settings,
                budget_seconds=budget,
                on_progress=on_progress,
            )
            narration = voiced.narrated
        else:
            narration = await narrate_text(
                self.narrator,
                request,
                writer,
                self.narration_settings,
                budget_seconds=budget,
                on_progress=on_progress,
            )
        # An episode's words are the model's own: the source's headings are not in it.
        chapter_list: list[Chapter] = []
        if voiced is not None:
            chapter_list = list(voiced.chapters)
        elif request.mode != "episode":
            chapter_list = _chapters(narration)
        result = StoredNarration(
            id=narration_id,
            audio_url=url,
            expires_at=expires_at,
            container=self.outputs.container,
            blob_name=blob_name,
            transcript_blob_name=transcript_blob_name,
            transcript=narration.transcript if voiced is None else voiced.transcript,
            duration_seconds=narration.duration_seconds,
            request=request,
            usage=narration.usage if script_usage is None else narration.usage + script_usage,
            created_at=created_at,
            segments=narration.segments,
            fidelity=narration.fidelity,
            min_fidelity=self.narration_settings.min_fidelity,
            warnings=(
                *narration.warnings,
                *_length_warnings(request, narration.duration_seconds),
                *_episode_warnings(request),
            ),
            loudness_lufs=narration.loudness_lufs,
            speakers=None if script is None else tuple(script.speakers),
            turns=None if voiced is None else voiced.turns,
            chapters=tuple(chapter_list),
        )
        cues: list[Cue] = []
        if self.files is not None:
            cues = (
                list(voiced.cues)
                if voiced is not None
                else make_cues(narration.words, narration.speech_onsets)
            )
        if cues:
            captions_url = None
            if link_expires_in is not None:
                captions_url, _ = await self.outputs.read_url(f"{base}.vtt", expires_in=link_expires_in)
            result = replace(
                result,
                captions_blob_name=f"{base}.vtt",
                srt_blob_name=f"{base}.srt",
                captions_url=captions_url,
            )
        chapters_name = f"{base}{CHAPTERS_SUFFIX}" if chapter_list and self.files is not None else None
        result = replace(result, chapters_blob_name=chapters_name)
        if before_commit is not None:
            await before_commit()
        captions_written: list[str] = []
        indexed = False
        episode: str | None = None
        try:
            metadata = {
                "narration_id": narration_id,
                "voice": request.voice,
                "mode": request.mode,
                "style": request.style,
                "duration_seconds": f"{narration.duration_seconds:.3f}",
                "characters": str(len(request.text)),
            }
            # Named as GET .../audio names it: an ASCII name and the title itself (filename*).
            download_name = request.download_name(f".{request.format}")
            disposition = attachment(request.title, f".{request.format}")
            if isinstance(writer, Mp3BlockWriter):
                tags = self._id3(request, narration, narration_id, created_at, chapter_list)
                await writer.commit(
                    download_name=download_name, metadata=metadata, id3=tags, disposition=disposition
                )
            else:
                await writer.commit(download_name=download_name, metadata=metadata, disposition=disposition)
            # The captions and chapters (their requests at once) before anything that names
            # them is visible.
            if self.files is not None:
                files = self.files
                extras: list[tuple[str, str, str]] = []
                if cues:
                    extras.append((f"{base}.vtt", webvtt(cues), "text/vtt; charset=utf-8"))
                    extras.append((f"{base}.srt", srt(cues), "application/x-subrip; charset=utf-8"))
                if chapters_name is not None:
                    extras.append((chapters_name, _json_chapters(request, chapter_list), JSON_CHAPTERS_TYPE))
                writes: list[Awaitable[object]] = []
                for name, text, content_type in extras:
                    captions_written.append(name)
                    disposition = attachment(request.title, name[len(base) :])
                    writes.append(
                        files.put_text(name, text, content_type=content_type, disposition=disposition)
                    )
                if chapters_name is None and source is not None:
                    # A document narrated again: its old chapters are not these, and are removed
                    # as surely as its captions are replaced (a failure fails the narration).
                    writes.append(self.outputs.delete_if_exists(f"{base}{CHAPTERS_SUFFIX}"))
                await _all(writes)
            # Both documents are made before either write is started.
            document = result.transcript_document(source).model_dump(mode="json")
            documents: list[Awaitable[object]] = []
            if self.index is not None and link_expires_in is not None:  # answered with a link: findable by id
                entry = NarrationIndex(
                    result=result.to_response().without_link(), sas_expiry_minutes=request.sas_expiry_minutes
                ).model_dump(mode="json")
                indexed = True
                documents.append(self.index.put(index_name(narration_id), entry))
            documents.append(self.outputs.upload_json(transcript_blob_name, document))
            await _all(documents)
            if request.show is not None and self.shows is not None:
                episode = episode_name(request.show, narration_id, created_at)  # removed if this fails
                await self._publish(request.show, result, chapter_list)
        except BaseException:
            # The commit may have taken effect even when it raised (a lost response).
            await self._discard(blob_name, transcript_blob_name, narration_id)
            await self._discard_extras(captions_written, narration_id if indexed else None, episode)
            raise
        log.info(
            "narration %s stored: characters=%d segments=%d audio=%.2fs elapsed=%.2fs tokens=%d",
            narration_id,
            len(request.text),
            len(narration.segments),
            narration.duration_seconds,
            time.monotonic() - started,
            narration.usage.total_tokens,
        )
        return result

    def _id3(
        self,
        request: NarrationRequest,
        narration: NarratedText,
        narration_id: str,
        created_at: datetime,
        chapter_list: Sequence[Chapter],
    ) -> bytes:
        """The ID3v2 tag of an MP3 narration, with ``chapter_list`` (:func:`_chapters`)."""
        return id3_tag(
            title=request.title or "Narration",
            show=self.narration_settings.show_name,
            narration_id=narration_id,
            created_at=created_at,
            duration_seconds=narration.duration_seconds,
            chapter_list=chapter_list,
        )

    async def _publish(self, show: str, result: StoredNarration, chapter_list: Sequence[Chapter]) -> None:
        """Add the stored narration to ``show``'s feed (:meth:`ShowService.add_episode`). The
        audio is committed: its size is read back for the enclosure. The entry carries the
        first :data:`MAX_EPISODE_CHAPTERS` of ``chapter_list`` (titles cut at
        :data:`MAX_CHAPTER_TITLE_CHARACTERS`), so the feed lists them without another read, and
        links the narration's JSON chapters file (all of them), when it has one."""
        assert self.shows is not None
        assert self.files is not None
        audio = await self.files.info(result.blob_name)
        if audio is None:
            raise StorageError("the narration's audio vanished before its show's feed listed it")
        entry = EpisodeEntry(
            id=result.id,
            title=result.request.title,
            description=_excerpt(result.transcript, EPISODE_DESCRIPTION_CHARACTERS),
            created_at=iso_timestamp(result.created_at),
            audio_blob_name=result.blob_name,
            format=result.request.format,
            bytes=audio.size,
            duration_seconds=result.duration_seconds,
            transcript_blob_name=result.transcript_blob_name,
            captions_blob_name=result.captions_blob_name,
            srt_blob_name=result.srt_blob_name,
            chapters_blob_name=result.chapters_blob_name,
            chapters=[
                EpisodeChapter(
                    title=chapter.title[:MAX_CHAPTER_TITLE_CHARACTERS], start_seconds=chapter.start_seconds
                )
                for chapter in chapter_list[:MAX_EPISODE_CHAPTERS]
            ],
        )
        await self.shows.add_episode(show, entry)

    async def _discard_extras(
        self, captions: list[str], indexed_id: str | None, episode: str | None = None
    ) -> None:
        """Remove the captions, the index entry and the show's episode entry of a failed
        narration (best effort, shielded from cancellation; never masks the real error)."""
        if episode is not None and self.shows is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.shows.remove_episode(episode))
        for name in captions:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.outputs.delete_if_exists(name))
        if indexed_id is not None and self.index is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.index.delete(index_name(indexed_id)))

    async def _discard(self, wav_name: str, json_name: str, narration_id: str) -> None:
        """Remove what a failed narration made visible, shielded from cancellation; never
        masks the real error (a cleanup that keeps failing is logged)."""
        task = asyncio.ensure_future(self._remove_partial(wav_name, json_name, narration_id))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    async def _remove_partial(self, wav_name: str, json_name: str, narration_id: str) -> None:
        for attempt in range(1, CLEANUP_ATTEMPTS + 1):
            try:
                removed_wav = await self.outputs.delete_if_written_by(wav_name, narration_id)
                found = await self.outputs.documents.get(json_name)
                if found is not None and (removed_wav or found[0].get("id") == narration_id):
                    await self.outputs.documents.delete(json_name, etag=found[1])
                if removed_wav:
                    log.warning("narration %s failed after its WAV commit: the WAV was removed", narration_id)
                return
            except PodcastError as error:
                if attempt == CLEANUP_ATTEMPTS:
                    log.error(
                        "narration %s: could not remove its partial output (%s); the WAV has no "
                        "transcript document, so nothing reads it as a result",
                        narration_id,
                        error.code,
                    )
                    return
                await asyncio.sleep(CLEANUP_BACKOFF_SECONDS * attempt)


SHORT_CONVERSATION_SHARE: Final = 0.5
"""A conversation shorter than this share of its ``target_minutes`` is answered with a warning."""


async def _all(steps: Sequence[Awaitable[object]]) -> None:
    """Await ``steps`` at once. When one fails, the others are still awaited to their end
    (none goes on writing behind the caller's clean-up) and the first failure is raised as
    it was, not wrapped."""
    failures = [
        outcome
        for outcome in await asyncio.gather(*steps, return_exceptions=True)
        if isinstance(outcome, BaseException)
    ]
    for other in failures[1:]:
        log.warning("a write after the audio commit also failed: %s", type(other).__name__)
    if failures:
        raise failures[0]


def _length_warnings(request: NarrationRequest, duration_seconds: float) -> tuple[str, ...]:
    """A warning when a conversation the model wrote came out far shorter than asked (a short
    source gives a short conversation: the writer may use only the source's facts); none
    otherwise."""
    if (
        request.mode != "conversation"
        or duration_seconds >= SHORT_CONVERSATION_SHARE * request.target_minutes * 60
    ):
        return ()
    return (
        f"the conversation runs {duration_seconds / 60:.1f} minutes of the {request.target_minutes:g} asked "
        "for: the source may have too little to say for that long",
    )


def _episode_warnings(request: NarrationRequest) -> tuple[str, ...]:
    """A warning when a show's episode is a WAV (asked for: a show's default is MP3)."""
    if request.show is None or request.format != "wav":
        return ()
    return (
        "this episode is a WAV: Apple Podcasts and other podcast apps do not take WAV enclosures, "
        "and it is about six times the size of an MP3; leave format out (or send mp3) for an MP3",
    )


def _excerpt(text: str, limit: int) -> str:
    """The start of ``text``, at most ``limit`` characters, cut at a word with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0]
    return f"{cut}…"


JSON_CHAPTERS_TYPE: Final = "application/json+chapters"
"""The media type of :data:`CHAPTERS_SUFFIX` files (as the feed's ``podcast:chapters`` names it)."""


def _json_chapters(request: NarrationRequest, chapter_list: Sequence[Chapter]) -> str:
    """``chapter_list`` as a :class:`~podcast.wire.JsonChapters` document."""
    document = JsonChapters(
        title=request.title,
        chapters=[
            JsonChapter(startTime=chapter.start_seconds, endTime=chapter.end_seconds, title=chapter.title)
            for chapter in chapter_list
        ],
    )
    return document.model_dump_json(exclude_none=True)


def _chapters(narration: NarratedText) -> list[Chapter]:
    """The narration's chapters at headings and paragraph groups, placed by its timed words
    (:func:`~podcast.audio.id3.chapters`): the MP3's ID3 chapters, and the feed item's (any format)."""
    spans = [
        SegmentSpan(text, boundary, report.start_seconds, report.end_seconds)
        for (text, boundary), report in zip(narration.sources, narration.segments, strict=True)
    ]
    return chapters(spans, narration.duration_seconds, narration.words)
