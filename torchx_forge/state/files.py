"""Small files where forge keeps state: a local path (``file://`` allowed) or any fsspec URL.

Local writes are atomic (a temporary file in the same directory, fsync, rename), so a
reader never sees half a record and a crash never leaves one; on object stores one
PUT is atomic already. Standard library only unless the path is a URL: the task
launcher uses this on every compute node.

On a URL, every call goes through :func:`guarded`: an error of the store's backend that is not an
answer (botocore's ``EndpointConnectionError``, a timeout, a refused connection) becomes
:class:`~torchx_forge.core.storage.StoreUnreachableError`, one line naming the URL. Processes on the
compute nodes call :func:`be_patient` once: from then on such calls are tried again for up to
``$FORGE_STORE_WAIT`` seconds (default 120) before they fail, so a task that ends while the store
is down still leaves its state file and summary once it is back.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from torchx_forge.core import envvars
from torchx_forge.core.storage import StoreError, StoreUnreachableError, describe, store_wait

T = TypeVar("T")
#: errors a store raises when it answered: they say what is wrong, trying again changes nothing
_ANSWERS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
#: errors of our own code, never the store's silence
_OURS = (ValueError, TypeError, AttributeError, KeyError, NotImplementedError, ImportError)
#: seconds a call on a URL is tried again while the store does not answer (see :func:`be_patient`)
_patience = 0.0
#: seconds one call on an async file system (s3fs) may take, whatever its own timeouts and retries
TIMEOUT_ENV = envvars.STORE_TIMEOUT.name
DEFAULT_TIMEOUT = 20.0


def is_url(path: str) -> bool:
    """True for fsspec URLs such as ``s3://b/x``; local paths and ``file://`` are not."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    """``file://~/x`` or ``~/x`` -> the local path."""
    return os.path.expanduser(path.replace("file://", "", 1))


def absolute(path: str) -> str:
    """A local path made absolute (tasks run in another directory); URLs are kept."""
    return path if is_url(path) else os.path.abspath(local_path(path))


def private_makedirs(path: str) -> None:
    """``mkdir -p`` with 0700 on every directory it creates (os.makedirs skips intermediates)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        private_makedirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def dir_problem(path: str, min_free: int = 1 << 20) -> Optional[str]:
    """Why the local directory ``path`` cannot take new files (None when it can): it is created
    when missing, written to once, and must have ``min_free`` bytes free."""
    try:
        private_makedirs(path)
        fd, probe = _new_file(path, ".forge-probe-", 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write there ({e.strerror})"
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < min_free:
        return f"its file system is full ({free // 1024} KiB free)"
    return None


def _new_file(directory: str, prefix: str, mode: int) -> Tuple[int, str]:
    """A new file of a unique name in ``directory``, open to write (what ``tempfile.mkstemp`` does,
    without importing tempfile and random in every task)."""
    while True:
        path = os.path.join(directory, f"{prefix}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode), path
        except FileExistsError:
            continue


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace the local file ``path`` with ``data`` atomically, readable per ``mode``."""
    fd, tmp = _new_file(os.path.dirname(path) or ".", ".tmp-", 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def url_fs(url: str) -> Tuple[Any, str]:
    """(fsspec file system, path in it) of a URL. fsspec is imported here, for URLs only: the
    launcher starts on every node without it. Listings are never cached (other processes, on
    other nodes, write the same directories), and a scheme whose backend is missing is a
    :class:`StoreError` saying what to install."""
    import fsspec  # noqa: PLC0415

    options = {"use_listings_cache": False} if is_url(url) else {}
    if options:
        _quiet_backends()
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)  # type: ignore[no-untyped-call]
    except ImportError as e:
        scheme = url.split("://", 1)[0]
        hint = "pip install 'torchx-forge[s3]'" if scheme in ("s3", "s3a") else f"install the fsspec backend for {scheme}://"
        raise StoreError(url, f"no file system for {scheme}:// is installed ({e}): {hint}") from None
    except ValueError as e:
        raise StoreError(url, f"not a URL fsspec knows ({e})") from None
    return fs, str(path)


#: loggers that say at INFO where credentials came from: the torchx command line shows INFO, and
#: every command would begin with "Found credentials in environment variables."
_CHATTY = ("botocore.credentials", "aiobotocore.credentials", "botocore.configprovider")


def _quiet_backends() -> None:
    import logging  # noqa: PLC0415 (URL stores only: the launcher of every task imports this module)

    for name in _CHATTY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # the user's own logging setup wins
            logger.setLevel(logging.WARNING)


def full_url(fs: Any, path: str) -> str:
    """The URL of ``path`` in ``fs`` (``s3://bucket/x``); a local file system's paths stay plain paths."""
    from fsspec.implementations.local import LocalFileSystem  # noqa: PLC0415

    return path if isinstance(fs, LocalFileSystem) else str(fs.unstrip_protocol(path))


def timed(fs: Any) -> Dict[str, float]:
    """Keyword arguments that bound one call of ``fs`` (an async fsspec file system such as s3fs)
    to ``$FORGE_STORE_TIMEOUT`` seconds (default 20): an endpoint that accepts connections and never
    answers would otherwise hold a command for many minutes of the backend's own timeouts and
    retries. Empty for other file systems, whose calls take no such argument."""
    if not getattr(fs, "async_impl", False):
        return {}
    seconds = call_timeout()
    return {"timeout": seconds} if seconds > 0 else {}


def call_timeout() -> float:
    """``$FORGE_STORE_TIMEOUT`` (default 20; 0: no bound but the backend's own)."""
    try:
        return max(0.0, float(os.environ.get(TIMEOUT_ENV, "") or DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def be_patient(seconds: Optional[float] = None) -> None:
    """From now on, in this process, try a call on a URL again for up to ``seconds`` (default
    ``$FORGE_STORE_WAIT``, 120) while the store does not answer. For the compute-node side (the
    launcher, decide, companion, wave and guard jobs): a task must not lose its end state to a
    short outage. The login-node side stays impatient: a command says at once what is wrong."""
    global _patience  # noqa: PLW0603 (one setting per process, made by its entry point)
    _patience = store_wait() if seconds is None else max(0.0, seconds)


def patience() -> float:
    return _patience


@contextmanager
def guarded(url: str) -> Iterator[None]:
    """Around fsspec calls on ``url``: a backend error that is not an answer from the store (not
    FileNotFoundError, PermissionError ...) becomes :class:`StoreUnreachableError` naming ``url``."""
    try:
        yield
    except (StoreError, *_ANSWERS, *_OURS):
        raise
    except (ConnectionError, TimeoutError) as e:  # OSErrors, but the network's, not the store's answer
        cause = describe(e) if str(e) else f"{type(e).__name__}: no answer within {call_timeout():g} s (${TIMEOUT_ENV})"
        raise StoreUnreachableError(url, cause) from None
    except OSError as e:
        if type(e) is OSError:  # an answer the backend put in plain words (s3fs: an S3 error code it has no type for)
            raise
        raise StoreUnreachableError(url, describe(e)) from None  # requests', urllib3's, aiohttp's OSErrors: the network
    except Exception as e:  # botocore's, aiohttp's, gcsfs's ... own exception types: the store did not answer
        raise StoreUnreachableError(url, describe(e)) from None


def call(url: str, action: Callable[[], T], wait: Optional[float] = None) -> T:
    """``action()`` (fsspec calls on ``url``) under :func:`guarded`, tried again while the store does
    not answer for up to ``wait`` seconds (default: this process's :func:`be_patient` setting)."""
    wait = _patience if wait is None else wait
    start = time.monotonic()
    deadline = start + wait
    pause, told = 1.0, False
    while True:
        try:
            with guarded(url):
                found = action()
            if told:
                _say(f"torchx-forge: {url}: the store answers again (after {time.monotonic() - start:.0f} s)")
            return found
        except StoreUnreachableError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if not told:
                _say(f"torchx-forge: {e}; trying again for up to {left:.0f} s ({envvars.STORE_WAIT.name})")
                told = True
            time.sleep(min(pause, left))
            pause = min(pause * 2, 15.0)


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:  # a full log dir must not stop the task
        pass


def write_file(path: str, data: bytes, mode: int = 0o600, dir_mode: int = 0o777) -> None:
    """Write ``data`` to a local path (creating its directory) or a URL, atomically."""
    if is_url(path):
        fs, root = url_fs(path)
        call(path, lambda: fs.pipe_file(root, data, **timed(fs)))
        return
    local = local_path(path)
    os.makedirs(os.path.dirname(local), mode=dir_mode, exist_ok=True)
    atomic_write(local, data, mode)


def read_file(path: str) -> bytes:
    """The bytes of a local path or URL (FileNotFoundError/OSError when missing)."""
    if is_url(path):
        fs, root = url_fs(path)
        data: bytes = call(path, lambda: fs.cat_file(root, **timed(fs)))
        return data
    with open(local_path(path), "rb") as f:
        return f.read()


def list_names(directory: str) -> Optional[List[str]]:
    """Entry names directly in ``directory`` (a local path or URL); None when it does not exist."""
    if is_url(directory):
        fs, root = url_fs(directory)

        def names() -> Optional[List[str]]:
            try:
                entries = fs.ls(root, detail=False, **timed(fs))
            except FileNotFoundError:
                return None
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in entries]

        return call(directory, names)
    path = local_path(directory)
    if not os.path.isdir(path):
        return None
    return os.listdir(path)


def exists(path: str) -> bool:
    """Does the local path or URL exist (a file, or a directory / prefix with something in it)?"""
    if is_url(path):
        fs, root = url_fs(path)
        return bool(call(path, lambda: fs.exists(root, **timed(fs))))
    return os.path.exists(local_path(path))


def modified(path: str) -> Optional[float]:
    """The modification time of a local path or URL; None when unknown (missing, a prefix, no such notion)."""
    try:
        if is_url(path):
            fs, root = url_fs(path)
            return float(call(path, lambda: fs.modified(root)).timestamp())
        return os.stat(local_path(path)).st_mtime
    except (OSError, NotImplementedError, AttributeError, ValueError):
        return None


def put_file(src: str, path: str) -> None:
    """Copy the local file ``src`` to a URL (its parent created where the store has directories)."""
    fs, root = url_fs(path)

    def put() -> None:
        fs.makedirs(root.rsplit("/", 1)[0], exist_ok=True, **timed(fs))
        fs.put_file(src, root)  # no time bound: an artifact may be big

    call(path, put)
