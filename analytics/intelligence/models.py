"""The success model's registry: versions, the live pointer, train/evaluate/promote/rollback.

Layout under the state home (``<JUNCTION_HOME>/models/success/``)::

    registry.json    versions (metrics, training window, features, sklearn version,
                     sha256 of the file), the live version and the promotion history
    v<N>.pickle      one fitted model per version

With ``JUNCTION_STATE_URL`` set, the records (``registry.json``'s content) live in that
PostgreSQL database instead (:class:`DbRegistry`: tables ``model_registry`` and
``model_versions``, one read-modify-write at a time under the state database's writer
lock); the model files stay under the home.

Loading a pickle file executes code from it. So models are only ever read from
the state home (private to Junction's user), and the registry records each file's sha256
when it is written: a file whose hash differs from the record is refused, as is a file
pickled by another scikit-learn version. Every refusal is recorded as a warning in the
registry (``junction models list`` shows it), logged and raised as the alert
``junction:success_model`` (:mod:`analytics.intelligence.model_alerts`); the prediction
falls back to the naive estimate (:mod:`analytics.intelligence.success`), it never fails a workflow.

Lifecycle (:func:`train_and_maybe_promote`, the weekly ``retrain-success-model``
deployment): train a candidate on every recorded run but the most recent held-out window
(the last 30 % of runs), score it and the live model on that window, and promote the
candidate only if its Brier score is lower than the live model's and the naive estimate's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analytics.intelligence.features import FEATURES
from analytics.intelligence.model_alerts import alert_broken_model, resolve_model_alert
from analytics.intelligence.training import (
    MIN_CLASS_RUNS,
    Dataset,
    Scores,
    fit,
    known_plans,
    load_dataset,
    score,
    too_little,
)
from junction.alerting import state as alert_state
from junction.statedb import Connection, StateUrl
from junction.store import create_private, make_private_dir

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.store import MetricsStore

__all__ = [
    "DbRegistry",
    "LoadedModel",
    "Registry",
    "TrainResult",
    "live_summary",
    "load_live",
    "registry_for",
    "train_and_maybe_promote",
]

log = logging.getLogger("junction.models")

MODEL_NAME = "success"
_LOGGED: set[tuple[Path, str | None, str]] = set()
MAX_WARNINGS = 20
# What a registry that cannot be written raises: a read-only home, an unreachable database.
_UNWRITABLE = (OSError, alert_state.AlertDatabaseError)


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LoadedModel:
    """A verified, loaded model version."""

    version: str
    estimator: Any
    features: tuple[str, ...]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(completed) for each row of ``frame`` (columns :data:`FEATURES`)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # see training.fit
            proba = self.estimator.predict_proba(frame[list(self.features)].to_numpy(dtype=float))
        classes = list(self.estimator.classes_)
        return np.asarray(proba[:, classes.index(1)], dtype=float)


class Registry:
    """The versions of one model under ``root`` (``registry.json`` + ``v<N>.pickle``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "registry.json"

    # ------------------------------------------------------------------ the JSON document
    def read(self) -> dict[str, Any]:
        """The registry document (empty when missing; unreadable: empty plus a warning)."""
        if not self.file.exists():
            return _empty()
        try:
            doc = json.loads(self.file.read_text())
            if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
                raise ValueError("not a registry document")
        except (OSError, ValueError) as exc:
            log.warning("model registry %s unreadable (%s): naive estimate", self.file, exc)
            return _empty(f"registry unreadable: {exc}")
        doc.setdefault("live", None)
        doc.setdefault("history", [])
        doc.setdefault("warnings", [])
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        """Replace the registry atomically (private file)."""
        make_private_dir(self.root)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1, sort_keys=True, default=str)
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The document, for one read-modify-write at a time across processes (the weekly
        flow, a CLI promote, a prediction recording a warning); written back on exit."""
        from filelock import FileLock

        make_private_dir(self.root)
        with FileLock(self.root / ".registry.lock", timeout=60):
            doc = self.read()
            yield doc
            self.write(doc)

    def warn(self, version: str | None, message: str) -> None:
        """Record (once per version and message) and log a warning about a model."""
        if (self.root, version, message) not in _LOGGED:  # once per process, not per call
            _LOGGED.add((self.root, version, message))
            log.warning("success model: %s", message)
        entry = {"at": _now(), "version": version, "message": message}
        # A read-only home must not turn a warning into a failed prediction.
        with contextlib.suppress(*_UNWRITABLE), self.locked() as doc:
            if not any(
                w.get("version") == version and w.get("message") == message for w in doc["warnings"]
            ):
                doc["warnings"] = [*doc["warnings"], entry][-MAX_WARNINGS:]

    def note_training(self, message: str) -> None:
        """Record what the last training round did (shown when no model is live)."""
        with contextlib.suppress(*_UNWRITABLE), self.locked() as doc:
            doc["last_training"] = {"at": _now(), "message": message}

    # ------------------------------------------------------------------ versions
    def versions(self) -> list[dict[str, Any]]:
        """Every version's record, oldest first."""
        doc = self.read()
        return sorted(doc["versions"].values(), key=lambda v: int(str(v["version"])[1:]))

    def live(self) -> str | None:
        """The live version (``None``: naive estimate)."""
        live = self.read()["live"]
        return str(live) if live else None

    def add(self, estimator: Any, record: dict[str, Any]) -> str:
        """Store a fitted model as a new version (not live); returns its name."""
        with self.locked() as doc:
            # Files count too: a registry lost to corruption must not reuse their names.
            numbers = [int(str(v)[1:]) for v in doc["versions"]] + [
                int(f.stem[1:]) for f in self.root.glob("v*.pickle") if f.stem[1:].isdigit()
            ]
            version = f"v{max(numbers, default=0) + 1}"
            path = self.root / f"{version}.pickle"
            tmp = self.root / f".{version}.pickle.tmp"
            tmp.unlink(missing_ok=True)  # left by a killed writer (we hold the lock)
            with create_private(tmp) as fh:  # 0600 from the start
                pickle.dump({"estimator": estimator, "features": list(FEATURES)}, fh, protocol=5)
            os.replace(tmp, path)
            doc["versions"][version] = {
                **record,
                "version": version,
                "file": path.name,
                "sha256": _sha256(path),
                "sklearn_version": _sklearn_version(),
                "features": list(FEATURES),
                "created_at": _now(),
            }
        return version

    def promote(self, version: str) -> None:
        """Make ``version`` live (it must exist and its file verify).

        Raises:
            ValueError: Unknown version, or its file is missing or does not verify.
        """
        with self.locked() as doc:
            if version not in doc["versions"]:
                known = ", ".join(sorted(doc["versions"])) or "none"
                raise ValueError(f"unknown model version {version!r} (known: {known})")
            problem = self._verify(doc["versions"][version])
            if problem:
                raise ValueError(f"cannot promote {version}: {problem}")
            if doc["live"] != version:
                if doc["live"]:
                    doc["history"] = [*doc["history"], doc["live"]]
                doc["live"] = version
                doc["versions"][version]["promoted_at"] = _now()

    def rollback(self) -> str | None:
        """Make the previously live version live again; returns it (``None``: naive).

        Raises:
            ValueError: Nothing is live.
        """
        with self.locked() as doc:
            if not doc["live"]:
                raise ValueError("no live model to roll back from")
            history = list(doc["history"])
            previous = history.pop() if history else None
            doc["history"] = history
            doc["live"] = previous
        return previous

    def _verify(self, record: dict[str, Any]) -> str | None:
        path = self.root / str(record.get("file", ""))
        if not path.is_file():
            return f"model file {path.name} is missing"
        if _sha256(path) != record.get("sha256"):
            return f"model file {path.name} does not match its recorded sha256 (refused)"
        if record.get("sklearn_version") != _sklearn_version():
            return (
                f"model file {path.name} was written by scikit-learn "
                f"{record.get('sklearn_version')}, this is {_sklearn_version()} (refused)"
            )
        if list(record.get("features", [])) != list(FEATURES):
            return f"model {record.get('version')} was trained on other features"
        return None

    def load(self, version: str) -> LoadedModel | str:
        """Load a verified version, or say why not (a sentence)."""
        record = self.read()["versions"].get(version)
        if record is None:
            return f"live model {version} is not in the registry"
        problem = self._verify(record)
        if problem:
            return problem
        try:
            # Verified above: the file is the one this registry wrote (same sha256).
            with (self.root / record["file"]).open("rb") as fh:
                data = pickle.load(fh)
            return LoadedModel(version, data["estimator"], tuple(data["features"]))
        except Exception as exc:  # a damaged pickle can raise anything
            return f"model file {record['file']} could not be loaded ({type(exc).__name__})"


def _empty(warning: str | None = None) -> dict[str, Any]:
    warnings = [{"at": _now(), "version": None, "message": warning}] if warning else []
    return {"live": None, "history": [], "versions": {}, "warnings": warnings}


REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_registry (
    model TEXT PRIMARY KEY,
    live TEXT,
    history_json TEXT NOT NULL DEFAULT '[]',
    warnings_json TEXT NOT NULL DEFAULT '[]',
    last_training_json TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    record_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, version)
)
"""

_DB_READY: set[StateUrl] = set()


class DbRegistry(Registry):
    """A registry whose records live in the state database; its model files under ``root``.

    Args:
        root: The model files' folder (``<home>/models/<name>``); its name is the model's.
        url: The state database (``JUNCTION_STATE_URL``).
    """

    def __init__(self, root: Path, url: StateUrl) -> None:
        super().__init__(root)
        self.url = url
        self.model = root.name

    def _connect(self) -> Connection:
        conn = alert_state.connect(self.url)
        if self.url not in _DB_READY:
            try:
                with alert_state.transaction(conn):
                    for statement in REGISTRY_SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            _DB_READY.add(self.url)
        return conn

    def _load(self, conn: Connection) -> dict[str, Any]:
        head = conn.execute(
            "SELECT * FROM model_registry WHERE model = ?", (self.model,)
        ).fetchone()
        doc = _empty()
        if head is not None:
            doc["live"] = head["live"]
            doc["history"] = json.loads(head["history_json"])
            doc["warnings"] = json.loads(head["warnings_json"])
            if head["last_training_json"]:
                doc["last_training"] = json.loads(head["last_training_json"])
        for row in conn.execute(
            "SELECT version, record_json FROM model_versions WHERE model = ?", (self.model,)
        ):
            doc["versions"][row["version"]] = json.loads(row["record_json"])
        return doc

    def _store(self, conn: Connection, doc: dict[str, Any]) -> None:
        last = doc.get("last_training")
        conn.execute(
            "INSERT INTO model_registry (model, live, history_json, warnings_json, "
            "last_training_json, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (model) DO UPDATE SET live = excluded.live, "
            "history_json = excluded.history_json, warnings_json = excluded.warnings_json, "
            "last_training_json = excluded.last_training_json, updated_at = excluded.updated_at",
            (
                self.model,
                doc["live"],
                json.dumps(doc["history"]),
                json.dumps(doc["warnings"], default=str),
                json.dumps(last, default=str) if last else None,
                _now(),
            ),
        )
        for version, record in doc["versions"].items():
            conn.execute(
                "INSERT INTO model_versions (model, version, record_json, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET "
                "record_json = excluded.record_json",
                (
                    self.model,
                    version,
                    json.dumps(record, sort_keys=True, default=str),
                    str(record.get("created_at") or _now()),
                ),
            )

    def read(self) -> dict[str, Any]:
        """The registry's records (unreachable database: empty plus a warning)."""
        try:
            conn = self._connect()
            try:
                return self._load(conn)
            finally:
                conn.close()
        except alert_state.AlertDatabaseError as exc:
            log.warning("model registry unreadable (%s): naive estimate", exc)
            return _empty(f"registry unreadable: {exc}")

    def write(self, doc: dict[str, Any]) -> None:
        """Replace the registry's records (one transaction)."""
        conn = self._connect()
        try:
            with alert_state.transaction(conn):
                self._store(conn, doc)
        finally:
            conn.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The records, for one read-modify-write at a time across processes and hosts
        (the state database's writer lock); written back on exit, unchanged on error."""
        make_private_dir(self.root)  # the model files still live here
        conn = self._connect()
        try:
            with alert_state.transaction(conn):
                doc = self._load(conn)
                yield doc
                self._store(conn, doc)
        finally:
            conn.close()


def registry_for(settings: Settings) -> Registry:
    """The success model's registry: records in the state database when
    ``JUNCTION_STATE_URL`` is set, else ``registry.json``; files under the settings' home."""
    root = settings.home / "models" / MODEL_NAME
    target = alert_state.db_path(settings)
    return DbRegistry(root, target) if isinstance(target, StateUrl) else Registry(root)


_CACHE: dict[tuple[str, str, float], LoadedModel] = {}


def load_live(settings: Settings) -> LoadedModel | str:
    """The live model, verified and loaded (cached per file), or why there is none.

    Any problem with a live version (missing or corrupt file, hash mismatch, another
    scikit-learn) is recorded as a warning and returned as a sentence.
    """
    registry = registry_for(settings)
    version = registry.live()
    if version is None:
        last = registry.read().get("last_training") or {}
        why = f" (last training: {last['message']})" if last.get("message") else ""
        return f"no success model is live{why}: naive estimate"
    path = registry.root / f"{version}.pickle"
    with contextlib.suppress(OSError):
        key = (str(registry.root), version, path.stat().st_mtime)
        if key in _CACHE:
            return _CACHE[key]
    loaded = registry.load(version)
    if isinstance(loaded, str):
        _broken(settings, registry, version, loaded)
        return f"{loaded}: naive estimate"
    with contextlib.suppress(OSError):
        _CACHE[(str(registry.root), version, path.stat().st_mtime)] = loaded
    resolve_model_alert(settings, version)  # once per process and file: it is cached now
    return loaded


_ALERTED: set[tuple[Path, str | None, str]] = set()


def _broken(settings: Settings, registry: Registry, version: str | None, problem: str) -> None:
    """A refused live model: a registry warning and (once per process) the alert."""
    registry.warn(version, problem)
    key = (registry.root, version, problem)
    if key not in _ALERTED and alert_broken_model(settings, version, problem):
        _ALERTED.add(key)


@dataclass
class TrainResult:
    """What a training round did."""

    trained: bool
    promoted: bool
    message: str
    version: str | None = None
    candidate: Scores | None = None
    naive: Scores | None = None
    live: Scores | None = None
    live_version: str | None = None
    runs: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``--json``, the flow's artifact)."""
        return {
            "trained": self.trained,
            "promoted": self.promoted,
            "message": self.message,
            "version": self.version,
            "runs": self.runs,
            "live_version": self.live_version,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "naive": self.naive.to_dict() if self.naive else None,
            "live": self.live.to_dict() if self.live else None,
        }


def train_and_maybe_promote(
    settings: Settings,
    *,
    store: MetricsStore | None = None,
    data: Dataset | None = None,
    test_share: float = 0.3,
    promote: bool = True,
) -> TrainResult:
    """Train a candidate, score it against the live model and the naive estimate on the
    most recent held-out runs, store it, and promote it only if it is better.

    Args:
        settings: Settings (the home of the registry, ``model_min_runs``, the store).
        store: Metrics store to read (default: the settings' store).
        data: A ready data set instead of the store's runs.
        test_share: Share of the most recent runs held out.
        promote: Promote the candidate when it is better (``False``: store it only).
    """
    if data is None:
        if store is None:
            from junction.store import open_store

            store = open_store(settings)
        data = load_dataset(store, known_plans(settings))
    registry = registry_for(settings)
    train, test = data.split(test_share)
    problem = too_little(data, settings.model_min_runs)
    if problem is None and (
        min(train.failures, len(train) - train.failures) < MIN_CLASS_RUNS or test.failures == 0
    ):
        problem = (
            f"too little history: the earlier {len(train)} runs need {MIN_CLASS_RUNS} failed "
            f"and {MIN_CLASS_RUNS} completed, the later {len(test)} at least one failed"
        )
    if problem:
        message = f"{problem}: predictions use the naive estimate"
        registry.note_training(message)
        return TrainResult(False, False, message, runs=len(data))
    estimator = fit(train)
    cand_p = LoadedModel("candidate", estimator, FEATURES).predict(test.features)
    cand = score(test.y, cand_p)
    naive = score(test.y, test.features["naive"].to_numpy(dtype=float))
    live_version = registry.live()
    live_scores = None
    if live_version is not None:
        loaded = registry.load(live_version)
        if isinstance(loaded, str):
            _broken(settings, registry, live_version, loaded)
        else:
            live_scores = score(test.y, loaded.predict(test.features))
    t0, t1 = train.window
    e0, e1 = test.window
    version = registry.add(
        estimator,
        {
            "training_window": [t0, t1],
            "evaluation_window": [e0, e1],
            "n_train": len(train),
            "n_test": len(test),
            "metrics": {
                "model": cand.to_dict(),
                "naive": naive.to_dict(),
                "live": live_scores.to_dict() if live_scores else None,
                "live_version": live_version,
            },
        },
    )
    beats_naive = cand.brier < naive.brier
    beats_live = live_scores is None or cand.brier < live_scores.brier
    better = beats_naive and beats_live
    if better and promote:
        registry.promote(version)
    against = f"live {live_version} {live_scores.brier:.4f}, " if live_scores else ""
    if live_version and live_scores is None:
        against = f"live {live_version} unusable, "
    verdict = (
        "promoted"
        if better and promote
        else "better, not promoted (--no-promote)"
        if better
        else "kept (not better)"
    )
    message = (
        f"{version}: Brier {cand.brier:.4f} on {len(test)} held-out runs ({against}"
        f"naive {naive.brier:.4f}): {verdict}"
    )
    registry.note_training(message)
    return TrainResult(
        True,
        better and promote,
        message,
        version,
        cand,
        naive,
        live_scores,
        live_version,
        runs=len(data),
    )


def live_summary(settings: Settings) -> str:
    """One line saying which success model version is live and how it scored (report,
    dashboard)."""
    registry = registry_for(settings)
    doc = registry.read()
    live = doc["live"]
    if not live or live not in doc["versions"]:
        return "workflow success model: none live, predictions use the naive estimate"
    metrics = doc["versions"][live].get("metrics", {})
    model, naive = metrics.get("model") or {}, metrics.get("naive") or {}
    line = f"workflow success model: {live} live"
    if "brier" in model and "brier" in naive:
        line += (
            f" (held-out Brier {model['brier']:.4f} against {naive['brier']:.4f} for the naive "
            f"estimate, {model.get('n', 0):,} runs)"
        )
    warned = [w for w in doc["warnings"] if w.get("version") == live]
    if warned:
        line += f"; warning: {warned[-1]['message']}"
    return line
