"""Where a client may send its requests: under its base URL, nowhere else.

Every request of a client carries its credentials (the auth flow adds them to whatever
URL it is given), so the URL is the security boundary. :class:`BaseURL` resolves each
request's path and refuses, before anything is sent:

- another origin (scheme, host, port) than the configured base URL's, whether the URL
  came from a vendor's ``Link: rel="next"`` header, an absolute path given to
  ``url()``, or any helper that takes a URL from a response;
- a path that leaves the base URL's path (``/../../tenant-b/x``, ``%2e%2e`` too): a
  shared host serves other tenants or other services under sibling paths.

Path parameters go through :func:`expand` (each value one percent-encoded segment, the
dot segments ``.`` and ``..`` refused), so a vendor module never formats an id into a
path by hand. :func:`next_link` reads RFC 8288 ``Link`` headers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([a-zA-Z]+)"?')
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DOT_SEGMENTS = frozenset({".", ".."})
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
"""Host names that always mean this machine."""


class UnsafeURLError(ValueError):
    """A URL or path the client refuses to send to (the message says why, in one line)."""


class CrossOriginURLError(UnsafeURLError):
    """The URL's origin (scheme, host, port) is not the base URL's."""


def segment(value: str | int) -> str:
    """One path segment from a parameter value, percent-encoded whole (``/`` included).

    Args:
        value: An id, a login, a ``group/project`` path: anything that names one thing.

    Returns:
        The encoded segment (``group%2Fproject``).

    Raises:
        UnsafeURLError: Empty, or ``.``/``..`` once split at ``/`` (a server that decodes
            ``%2F`` before routing would move to another route).
    """
    text = str(value)
    if not text or has_dot_segment(text):
        raise UnsafeURLError(
            f"{text!r} is not a valid path parameter (empty, or a '.' or '..' segment)"
        )
    return quote(text, safe="")


def expand(template: str, params: Mapping[str, str | int]) -> str:
    """A path from a template and its parameters: ``/rooms/{room_id}`` -> ``/rooms/Y2l...``.

    Args:
        template: The path, with ``{name}`` placeholders.
        params: A value for every placeholder; each becomes one segment (:func:`segment`).

    Raises:
        UnsafeURLError: A value is empty, ``.`` or ``..``.
        KeyError: A placeholder has no value (a programming error).
    """
    return _PLACEHOLDER.sub(lambda m: segment(params[m.group(1)]), template)


def has_dot_segment(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment, literal or percent-encoded."""
    if "." not in path and "%" not in path:
        return False  # the common case, decided without decoding
    return any(part in _DOT_SEGMENTS for part in unquote(path).split("/"))


def relative_path(path: str) -> str:
    """Check a multi-segment path a caller gives (a webhook's ``/hooks/x``).

    Args:
        path: A path starting with ``/`` (a query string may follow).

    Returns:
        The path unchanged.

    Raises:
        UnsafeURLError: It is absolute (``//host``, ``scheme:``), has a backslash, or a
            ``.``/``..`` segment (it could climb out of the base URL's path).
    """
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not path.startswith("/") or path.startswith("//"):
        raise UnsafeURLError(f"path {path!r} must be a path starting with a single '/'")
    if "\\" in parts.path or has_dot_segment(parts.path):
        raise UnsafeURLError(
            f"path {path!r} has a '.' or '..' segment: paths stay under the base URL"
        )
    return path


def origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def show_origin(origin: tuple[str, str, int | None]) -> str:
    """``https://host:port`` for messages."""
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port is not None else "")


@dataclass(frozen=True)
class BaseURL:
    """A client's base URL and the rule that keeps its requests under it.

    Attributes:
        text: The base URL, without a trailing ``/``.
        origin: Its ``(scheme, host, port)``.
        prefix: Its path, without a trailing ``/`` (``""`` at the root).
    """

    text: str
    origin: tuple[str, str, int | None]
    prefix: str

    @classmethod
    def parse(cls, text: str) -> BaseURL:
        """Build from an absolute http(s) URL (validated by the caller)."""
        url = httpx.URL(text.rstrip("/"))
        return cls(text.rstrip("/"), origin_of(url), url.path.rstrip("/"))

    def resolve(self, path: str) -> httpx.URL:
        """The URL a request for ``path`` goes to (cached: a probe asks for the same path
        every time, and parsing it was most of this check's cost).

        Args:
            path: A path under the base URL (``/users/me``, with a query string or not),
                or an absolute URL on the same origin under the base path.

        Raises:
            CrossOriginURLError: The URL is on another origin.
            UnsafeURLError: It leaves the base path, or has a dot segment.
        """
        return _resolve(self, path)

    def _resolve(self, path: str) -> httpx.URL:
        parts = urlsplit(path)
        if parts.scheme or parts.netloc or path.startswith("//"):
            absolute = path
        else:
            absolute = f"{self.text}/{path.lstrip('/')}"
            parts = urlsplit(absolute)
        if has_dot_segment(parts.path):
            raise UnsafeURLError(f"refused {_short(path)}: a '.' or '..' path segment")
        try:
            url = httpx.URL(absolute)
        except httpx.InvalidURL as exc:
            raise UnsafeURLError(f"refused {_short(path)}: {exc}") from None
        origin = origin_of(url)
        if origin != self.origin:
            raise CrossOriginURLError(
                f"refused a request to {show_origin(origin)}: requests (and credentials) "
                f"stay on the configured base URL's origin, {show_origin(self.origin)}"
            )
        if self.prefix and not (url.path == self.prefix or url.path.startswith(self.prefix + "/")):
            raise UnsafeURLError(f"refused {url.path}: outside the base URL's path {self.prefix}/")
        return url


@lru_cache(maxsize=4096)
def _resolve(base: BaseURL, path: str) -> httpx.URL:
    # httpx.URL is immutable, so one instance may serve every request for the path.
    return base._resolve(path)


def next_link(headers: httpx.Headers | None, *, base: str | httpx.URL | None = None) -> str | None:
    """The ``rel="next"`` URL of a response's ``Link`` headers (RFC 8288), if any.

    Okta sends one ``Link`` header per relation, Webex and GitHub several relations in
    one header; both forms are read.

    Args:
        headers: The response headers (``None`` reads as no link).
        base: The URL the response answered; a relative link is resolved against it.

    Returns:
        The next page's URL (absolute when ``base`` is given), or ``None`` on the last
        page. Whether it may be followed is the client's decision (:class:`BaseURL`).
    """
    if headers is None:
        return None
    for value in headers.get_list("link"):
        for url, rel in _LINK.findall(value):
            if rel == "next":
                return urljoin(str(base), url) if base is not None else str(url)
    return None


def _short(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")


def host_name(host: str) -> str:
    """The name part of a host or ``Host`` header (``[::1]:8765`` -> ``::1``), lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a ``Host`` value) stays on this machine."""
    name = host_name(host)
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
