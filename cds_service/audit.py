"""The audit trail of every card returned, written off the request path.

A hook call only puts records on a bounded in-memory queue; one background thread writes
them. While the database is down the queue buffers up to its bound and the writer retries;
past the bound a record is dropped, counted and logged, so the hook call never waits for
the database. Patient ids are stored only as HMAC-SHA256 under a key kept out of the data.
"""

import contextlib
import hashlib
import hmac
import logging
import os
import queue
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError

from cds_service.errors import ConfigurationError
from cds_service.evaluation import Evaluation
from cds_service.settings import Settings
from cds_service.storage import Storage, describe_db_error, storable
from cds_service.tables import naive_utc

log = logging.getLogger("cds_service.audit")
KEY_FILE = "patient-hash.key"
BATCH = 500
# how long the writer gathers records after the first before writing them: at hundreds of cards a
# second, one transaction each would cost the serving thread a sixth of its time (GIL, commit)
BATCH_LINGER_SECONDS = 0.05
RETRY_MIN, RETRY_MAX = 0.2, 5.0


class HashKeyError(ConfigurationError):
    """The patient-hash key file is there but holds no key (it is never replaced: that would
    change every hash already stored)."""


def _text(value: object) -> str:
    """A string from the request as sent; anything else (the envelope checked these) is no text."""
    return value if isinstance(value, str) else ""


def hash_key(settings: Settings) -> bytes:
    """CDS_PATIENT_HASH_KEY, else a random key kept in data_dir (created once, mode 0600)."""
    if settings.patient_hash_key is not None:
        return settings.patient_hash_key.get_secret_value().encode()
    key = key_file(settings.data_dir)
    log.warning(
        "CDS_PATIENT_HASH_KEY is not set: patient hashes use the key file in the data directory; "
        "set the variable so that hashes agree across hosts"
    )
    return key


def key_file(data_dir: Path) -> bytes:
    """The key kept in `data_dir`, made on first use."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_key_file(path)
    key = path.read_text().strip()
    if not key:
        raise HashKeyError(f"CDS_DATA_DIR: {path} is empty: remove it to have a new key made (earlier hashes will not match), "
                           "or set CDS_PATIENT_HASH_KEY")
    return key.encode()


def _create_key_file(path: Path) -> None:
    """Write the key whole under a private name, then link it into place. Workers that start
    together find either no file or the whole key, never a file created but not yet written
    (which, read as an empty key, hashed patient ids under no secret at all)."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked its key first: that one is the key
            os.link(draft, path)
    finally:
        draft.unlink()


def patient_hash(key: bytes, patient_id: str) -> str:
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()


class AuditLog:
    """Bounded queue plus one writer thread; `stats()` feeds /healthz."""

    def __init__(self, storage: Storage, key: bytes, knowledge_version: str, size: int) -> None:
        self.storage = storage
        self.key = key
        self.knowledge_version = knowledge_version
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=size)
        self.dropped = 0
        self.written = 0
        self.database_up = True
        self._held = 0  # taken off the queue and not yet written: still queued
        self._writing_since: float | None = None  # a write in progress, since (monotonic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    def record(self, service_id: str, data: dict[str, Any], result: Evaluation) -> None:
        """Queue one record per card returned; never blocks, never raises for the database."""
        cards = result.response.cards
        if not cards:
            return
        assessment = result.assessment
        context = data.get("context") or {}
        base = {
            "service_id": service_id,
            "hook_instance": storable(_text(data.get("hookInstance"))[:128]),
            "shown_at": naive_utc(datetime.now(UTC)),
            "variant": assessment.variant if assessment else None,
            "criteria": assessment.criteria if assessment else [],
            "knowledge_version": self.knowledge_version,
            "patient_hash": patient_hash(self.key, _text(context.get("patientId"))),
        }
        for card in cards:
            try:
                self.queue.put_nowait({**base, "card_uuid": card.uuid or ""})
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.error("audit queue full: %d audit records lost so far", self.dropped)

    def stats(self) -> dict[str, Any]:
        # a write that has waited past the database timeout is a database not answering (a frozen
        # host, a cut network: no error may come for minutes), so down, not up
        since = self._writing_since
        stalled = since is not None and time.monotonic() - since > self.storage.timeout
        return {
            "queued": self.queue.qsize() + self._held,
            "written": self.written,
            "dropped": self.dropped,
            "database": "missing" if self.storage.file_missing() else "up" if self.database_up and not stalled else "down",
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what the database will take within `timeout`; count the rest as lost."""
        self._stop.set()
        self._thread.join(timeout)
        left = self.queue.qsize() + self._held
        if left:
            self.dropped += left
            log.error("audit writer stopped with %d records unwritten; they are lost", left)

    def _next_batch(self) -> list[dict[str, Any]]:
        try:
            batch = [self.queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        until = time.monotonic() + BATCH_LINGER_SECONDS
        while len(batch) < BATCH:
            left = 0.0 if self._stop.is_set() else until - time.monotonic()  # stopping: take what is there
            try:
                batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        delay = RETRY_MIN
        batch: list[dict[str, Any]] = []
        while True:
            batch = batch or self._next_batch()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            self._held = len(batch)  # counted from the moment it leaves the queue, so a write that hangs loses none uncounted
            self._writing_since = time.monotonic()
            try:
                try:
                    self.storage.add_audit(batch)
                    self.written += len(batch)
                except DataError:  # a row the database refuses as data, not an outage
                    self._write_each(batch)
                batch = []
            except Exception as exc:  # noqa: BLE001 - whatever fails, the writer lives on and retries
                self._writing_since = None
                if self.database_up:
                    log.error("audit database unavailable (%s); buffering", describe_db_error(exc))
                self.database_up = False
                if self._stop.is_set():
                    return
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if not self.database_up:
                log.warning("audit database available again")
            self.database_up, delay = True, RETRY_MIN
            self._held, self._writing_since = 0, None

    def _write_each(self, batch: list[dict[str, Any]]) -> None:
        """Write a refused batch row by row, dropping (and counting) only the rows refused as data;
        a batch is emptied as it goes, so an outage midway retries only what is left."""
        while batch:
            try:
                self.storage.add_audit(batch[:1])
                self.written += 1
            except DataError:
                self.dropped += 1
                log.error("an audit record was refused by the database as invalid data and dropped")
            batch.pop(0)
            self._held = len(batch)
