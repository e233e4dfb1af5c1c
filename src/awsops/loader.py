"""One botocore data loader for the whole process: each model file is parsed once, and
each service's client class is built once from it.

botocore gives every session its own loader, and each loader parses again every JSON
model it is asked for: the EC2 model alone costs about 25 MB and 0.2 s of CPU per
session, so a run over many (account, region) targets paid that per target. Every
session awsops builds comes from :func:`new_botocore_session`, which hands it
:func:`shared_loader` instead. Sessions stay separate (one per set of credentials);
only the parsed, read-only model data is shared.

botocore also builds a new client class for every client (one method and docstring
object per operation: 1.3 MB and 15 ms for EC2), and a new service model object, whose
shapes are resolved again, lazily, by the first calls of each client. The class depends
only on the service model and on the session's ``creating-client-class`` handlers, which
are the same for every session built here, and the model is read-only once built, so
clients made from sessions that use the shared loader reuse one class and one model per
(service, API version); clients of any other session are built as botocore always does.
(botocore has no hook for this: :func:`shared_loader` installs a subclass of
``botocore.client.ClientCreator`` that only differs for those sessions.) Those sessions
also use the event emitters of :mod:`awsops.botoevents`.

The shared loader is thread-safe: loads run under one lock, so a model is parsed once
even when many threads ask for it at the same moment. It counts the files it parsed
(:attr:`SharedLoader.files_loaded`) and the client classes it built
(:attr:`SharedLoader.classes_built`), which is how tests prove "once per process".
"""

from __future__ import annotations

import copy
import os
import threading
from collections import Counter
from typing import Any

import botocore.client
import botocore.handlers
import botocore.hooks
import botocore.session
from botocore.loaders import JSONFileLoader, Loader

from awsops.botoevents import Aliaser, Emitter

__all__ = ["SharedLoader", "new_botocore_session", "shared_loader"]


class _CountingFileLoader(JSONFileLoader):  # type: ignore[misc]
    """botocore's JSON file loader, counting each file it parses."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: Counter[str] = Counter()

    def load_file(self, file_path: str) -> Any:
        data = super().load_file(file_path)
        if data is not None:
            self.loaded[file_path] += 1
        return data


class _UniquePaths(list):  # type: ignore[type-arg]
    """Search paths that ignore an append of a path already there: each boto3.Session
    appends its own data directory to its loader's paths, and here they all share one."""

    def append(self, path: Any) -> None:
        if path not in self:
            super().append(path)


class SharedLoader(Loader):  # type: ignore[misc]
    """A botocore ``Loader`` safe to share between threads and sessions."""

    def __init__(self, extra_search_paths: list[str] | None = None) -> None:
        self._counting = _CountingFileLoader()
        super().__init__(extra_search_paths=extra_search_paths, file_loader=self._counting)
        paths: list[str] = list(self.search_paths)
        self._search_paths = _UniquePaths(paths)
        self._lock = threading.RLock()
        self._classes: dict[tuple[str, str], type] = {}
        self._models: dict[tuple[str, str], Any] = {}
        self._classes_lock = threading.Lock()
        self.classes_built: Counter[str] = Counter()

    def load_data_with_path(self, name: str) -> Any:
        # Every model, ruleset and data file goes through this cached method.
        with self._lock:
            return super().load_data_with_path(name)

    def load_service_model(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().load_service_model(*args, **kwargs)

    def service_model(self, service_name: str, api_version: str | None, build: Any) -> Any:
        """The service model for (service, API version): ``build()`` the first time.
        One model object serves every client, so the shapes it resolves lazily (what
        serializing, validating and parsing walk) are resolved once per process."""
        key = (service_name, api_version or "")
        with self._classes_lock:
            model = self._models.get(key)
        if model is None:
            built = build()
            with self._classes_lock:
                model = self._models.setdefault(key, built)
        return model

    def client_class(self, service_name: str, api_version: str, build: Any) -> type:
        """The client class for (service, API version): ``build()`` the first time."""
        key = (service_name, api_version)
        with self._classes_lock:
            cls = self._classes.get(key)
            if cls is None:
                cls = self._classes[key] = build()
                self.classes_built[service_name] += 1
            return cls

    @property
    def files_loaded(self) -> Counter[str]:
        """How many times each file was parsed (each should be 1)."""
        with self._lock:
            return Counter(self._counting.loaded)


_BaseCreator: Any = botocore.client.ClientCreator


class _ClientCreator(_BaseCreator):  # type: ignore[misc,valid-type]
    """botocore's ClientCreator, reusing client classes and service models for
    shared-loader sessions."""

    def _load_service_model(self, service_name: str, api_version: str | None = None) -> Any:
        loader = getattr(self, "_loader", None)
        if not isinstance(loader, SharedLoader):
            return super()._load_service_model(service_name, api_version)
        return loader.service_model(
            service_name,
            api_version,
            lambda: super(_ClientCreator, self)._load_service_model(service_name, api_version),
        )

    def _create_client_class(self, service_name: str, service_model: Any) -> Any:
        build = super()._create_client_class
        loader = getattr(self, "_loader", None)
        if not isinstance(loader, SharedLoader):
            return build(service_name, service_model)
        return loader.client_class(
            service_name, service_model.api_version, lambda: build(service_name, service_model)
        )


def _install_class_reuse() -> None:
    if isinstance(getattr(_BaseCreator, "_create_client_class", None), type(_install_class_reuse)):
        botocore.client.ClientCreator = _ClientCreator  # type: ignore[misc]


_LOCK = threading.Lock()
_SHARED: SharedLoader | None = None


def shared_loader() -> SharedLoader:
    """The process's loader (created on first use; honours ``AWS_DATA_PATH`` as botocore
    does, read once)."""
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            data_path = os.environ.get("AWS_DATA_PATH")
            extra = (
                [os.path.expanduser(p) for p in data_path.split(os.pathsep)] if data_path else None
            )
            _SHARED = SharedLoader(extra)
            _install_class_reuse()
        return _SHARED


_BUILTINS_LOCK = threading.Lock()
_BUILTINS: Emitter | None = None


def _builtin_events() -> Emitter:
    """An emitter holding botocore's built-in handlers, registered once per process.

    A botocore session registers its few hundred built-in handlers (module-level
    functions, the same for every session) one by one, working out each event's alias:
    about 7 ms per session. Each session here starts from a copy of this one instead,
    which holds the same handlers under the same names in the same order."""
    global _BUILTINS
    with _BUILTINS_LOCK:
        if _BUILTINS is None:
            emitter = Emitter()
            events = botocore.hooks.EventAliaser(emitter)
            # As botocore.session.Session registers them (not through a Session: its
            # initializers would then run twice for each session made from the copy).
            for spec in botocore.handlers.BUILTIN_HANDLERS:
                if len(spec) == 2:
                    events.register(*spec)
                elif spec[2] is botocore.handlers.REGISTER_FIRST:
                    events.register_first(spec[0], spec[1])
                elif spec[2] is botocore.handlers.REGISTER_LAST:
                    events.register_last(spec[0], spec[1])
            _BUILTINS = emitter
        return _BUILTINS


def new_botocore_session(profile: str | None = None) -> botocore.session.Session:
    """A new botocore session (its own credentials, config and events) that loads its
    models through :func:`shared_loader`, with the event emitters of
    :mod:`awsops.botoevents` (copied on write into each client) starting from botocore's
    built-in handlers."""
    emitter = copy.copy(_builtin_events())
    session = botocore.session.Session(
        profile=profile, event_hooks=emitter, include_builtin_handlers=False
    )
    # botocore wraps the emitter in its own EventAliaser; ours shares the alias cache.
    events = Aliaser(emitter)
    session._events = events  # type: ignore[attr-defined]
    session.register_component("event_emitter", events)
    session.register_component("data_loader", shared_loader())
    return session
