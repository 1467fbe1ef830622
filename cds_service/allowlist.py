"""Which FHIR servers the service may call: an allow-list of base URLs, matched exactly, not by text.

`fhirServer` comes from the request, so following it blindly lets any caller aim the service at
internal hosts (SSRF). A URL is allowed only when its scheme, host and port equal those of a
configured base and its path lies inside the base's path on a segment boundary.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Base:
    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash

    def covers(self, other: "Base") -> bool:
        same_origin = (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)
        return same_origin and (other.path == self.path or other.path.startswith(self.path + "/"))


def parse_base(url: str) -> Base | None:
    """The URL's origin and path, or None for anything odd (userinfo, dot segments, no host...)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password or "#" in url:
        return None
    # Servlet containers (Tomcat under HAPI FHIR) drop ";params" before resolving dot segments.
    # A backslash is refused written or percent-encoded (%5C): servers that decode it take it for a
    # "/" (IIS), so "..%5Cadmin" would be a dot segment there.
    path = unquote(parts.path)
    segments = [seg.split(";", 1)[0] for seg in path.split("/")]
    if any(seg in (".", "..") for seg in segments) or "\\" in path:
        return None
    return Base(scheme, host, port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/"))


def is_usable_base(url: str) -> bool:
    """An http(s) base URL with no query: what an allow-list entry must be."""
    return parse_base(url) is not None and not urlsplit(url).query


def is_loopback_url(url: str) -> bool:
    base = parse_base(url)
    return base is not None and base.host in LOOPBACK_HOSTS


class FhirAllowList:
    """Parsed allow-list; `allows(url)` answers for a fhirServer or any URL derived from it."""

    def __init__(self, bases: list[str]) -> None:
        bad = [b for b in bases if not is_usable_base(b)]
        if bad:
            raise ValueError(f"not a usable FHIR base URL: {bad[0]!r}")
        self.bases = [p for p in map(parse_base, bases) if p is not None]

    def __bool__(self) -> bool:
        return bool(self.bases)

    def allows(self, url: str) -> bool:
        """Any URL under an allowed base: a fhirServer, a query built on it, a `next` link."""
        target = parse_base(url)
        return target is not None and any(base.covers(target) for base in self.bases)

    def allows_base(self, url: str) -> bool:
        """A fhirServer must also carry no query string, not even an empty `?`, since queries are
        appended to it."""
        return "?" not in url and self.allows(url)

    def __add__(self, other: "FhirAllowList") -> "FhirAllowList":
        joined = FhirAllowList([])
        joined.bases = self.bases + other.bases
        return joined
