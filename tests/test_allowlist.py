"""The fhirServer allow-list against an attacker: only the configured origin, only under its path.

A URL passes when its scheme, host and port equal a configured base's and its path lies under the
base's path on a segment boundary. Anything ambiguous (userinfo, fragments, dot segments, plain or
encoded, backslashes) is refused, and `is_loopback_url` recognises only the exact loopback names.
"""

from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.allowlist import FhirAllowList, is_loopback_url, parse_base

BASE = "https://ehr.example.org/fhir"
ALLOW = FhirAllowList([BASE])


@pytest.mark.parametrize("url", [
    BASE,
    BASE + "/",
    BASE + "/Patient/pt-1",
    BASE + "/Observation?patient=pt-1&code=http://loinc.org|2132-9",
    "https://ehr.example.org:443/fhir/Patient/pt-1",  # the default port written out
    "https://ehr.example.org:/fhir/Patient/pt-1",  # an empty port is the default port
    "HTTPS://EHR.Example.ORG/fhir/Patient/pt-1",  # scheme and host are case-insensitive
    BASE + "//Patient",  # an empty segment stays under the base
])
def test_urls_under_the_base_are_allowed(url: str) -> None:
    assert ALLOW.allows(url)


@pytest.mark.parametrize("url", [
    # path-prefix confusion: a text prefix is not a segment prefix
    "https://ehr.example.org/fhir-evil",
    "https://ehr.example.org/fhir-evil/Patient/1",
    "https://ehr.example.org/fhirx",
    "https://ehr.example.org/FHIR/Patient/1",
    "https://ehr.example.org/",
    "https://ehr.example.org",
    "https://ehr.example.org/admin?next=/fhir",
    # host confusion
    "https://ehr.example.org.evil.com/fhir",
    "https://evil.com/ehr.example.org/fhir",
    "https://evil.com/fhir",
    "https://ehr.example.org./fhir",  # trailing dot: another name for the host, refused rather than guessed
    "https://ehr.example.org%2eevil.com/fhir",
    "https://ehr.example.org%2Fevil.com/fhir",
    # userinfo, whichever side the real host ends up on
    "https://user@evil.com/fhir",
    "https://ehr.example.org@evil.com/fhir",
    "https://ehr.example.org:443@evil.com/fhir",
    "https://evil.com@ehr.example.org/fhir",
    "https://user:pw@ehr.example.org/fhir",
    "https://ehr.example.org\\@evil.com/fhir",
    "https://evil.com\\@ehr.example.org/fhir",
    # delimiters hidden before the host
    "https://evil.com#@ehr.example.org/fhir",
    "https://evil.com?@ehr.example.org/fhir",
    "https://evil.com/?x=https://ehr.example.org/fhir",
    # port and scheme
    "https://ehr.example.org:444/fhir",
    "https://ehr.example.org:80/fhir",
    "https://ehr.example.org:8443/fhir",
    "https://ehr.example.org:65536/fhir",
    "https://ehr.example.org:-1/fhir",
    "https://ehr.example.org:+443/fhir",
    "https://ehr.example.org:443:80/fhir",
    "http://ehr.example.org/fhir",
    "http://ehr.example.org:443/fhir",
    "ftp://ehr.example.org/fhir",
    "file:///fhir",
    "//ehr.example.org/fhir",
    "https:ehr.example.org/fhir",
    "https:/ehr.example.org/fhir",
    "ehr.example.org/fhir",
    "",
    # dot segments, plain and percent-encoded, and backslashes
    BASE + "/../admin",
    BASE + "/./Patient",
    BASE + "/..",
    BASE + "/Patient/../../admin",
    BASE + "/%2e%2e/admin",
    BASE + "/%2E%2E/admin",
    BASE + "/.%2e/admin",
    BASE + "/%2e/Patient",
    "https://ehr.example.org/fhir%2F..%2Fadmin",
    "https://ehr.example.org/fhir%2f..%2fadmin",
    BASE + "/Patient%2F..%2F..%2Fadmin",
    "https://ehr.example.org/fhir%2Fevil",  # an encoded slash is not a segment boundary
    BASE + "\\..\\admin",
    BASE + "/..\\admin",
    BASE + "/Patient\\1",
    BASE + "/..%5Cadmin",  # a backslash percent-encoded: a server that decodes it may take it for "/"
    BASE + "/..%5cadmin",
    BASE + "/%2e%2e%5Cadmin",
    BASE + "/Patient/..%5C..%5C..%5Cadmin",
    BASE + "/Patient%5C1",
    # fragments
    BASE + "#frag",
    BASE + "/Patient/1#/../../admin",
    # malformed URLs never raise
    "https://[::1",
    "https://ehr.example.org]/fhir",
    "https://[ehr.example.org]/fhir",
    "https://[::1]x/fhir",
])
def test_urls_outside_the_base_are_refused(url: str) -> None:
    assert not ALLOW.allows(url)


def test_a_base_with_a_trailing_slash_still_matches_on_a_segment_boundary() -> None:
    allow = FhirAllowList(["https://ehr.example.org/fhir/"])
    assert allow.allows("https://ehr.example.org/fhir")
    assert allow.allows("https://ehr.example.org/fhir/Patient/1")
    assert not allow.allows("https://ehr.example.org/fhir-evil")
    assert not allow.allows("https://ehr.example.org/fhirx/Patient/1")


def test_a_root_base_covers_the_whole_origin_and_nothing_else() -> None:
    allow = FhirAllowList(["https://ehr.example.org"])
    assert allow.allows("https://ehr.example.org/anything/Patient/1")
    assert allow.allows("https://ehr.example.org/")
    assert not allow.allows("https://ehr.example.org:444/")
    assert not allow.allows("http://ehr.example.org/")
    assert not allow.allows("https://ehr.example.org.evil.com/")


def test_an_explicit_default_port_in_the_base_equals_the_implicit_one() -> None:
    assert FhirAllowList(["https://ehr.example.org:443/fhir"]).allows(BASE + "/Patient/1")
    assert FhirAllowList(["http://ehr.example.org/fhir"]).allows("http://ehr.example.org:80/fhir/Patient/1")
    assert not FhirAllowList(["http://ehr.example.org:8080/fhir"]).allows("https://ehr.example.org:8080/fhir")


def test_loopback_bases_match_only_the_form_configured() -> None:
    allow = FhirAllowList(["http://127.0.0.1:8080/fhir", "http://[::1]:9090/fhir"])
    assert allow.allows("http://127.0.0.1:8080/fhir/Patient/1")
    assert allow.allows("http://[::1]:9090/fhir/Patient/1")
    for alias in [
        "http://localhost:8080/fhir",
        "http://127.1:8080/fhir",
        "http://127.0.0.2:8080/fhir",
        "http://2130706433:8080/fhir",
        "http://0x7f000001:8080/fhir",
        "http://0177.0.0.1:8080/fhir",
        "http://[::ffff:127.0.0.1]:8080/fhir",
        "http://[0:0:0:0:0:0:0:1]:9090/fhir",
        "http://[::1]:8080/fhir",
        "http://127.0.0.1:9090/fhir",
    ]:
        assert not allow.allows(alias), alias


def test_a_fhir_server_must_not_carry_a_query_but_a_next_link_may() -> None:
    page2 = BASE + "?_getpages=abc&_getpagesoffset=20&_count=20"
    assert ALLOW.allows(page2)
    assert not ALLOW.allows_base(page2)
    assert ALLOW.allows_base(BASE)
    assert ALLOW.allows_base(BASE + "/")
    assert not ALLOW.allows_base("https://evil.com/fhir")
    assert not ALLOW.allows_base(BASE + "#frag")


@pytest.mark.parametrize("url", ["https://[ehr.example.org]/fhir", "https://[::1", "https://ehr.example.org]/fhir"])
def test_allows_base_refuses_a_malformed_url_without_raising(url: str) -> None:
    assert not ALLOW.allows_base(url)


@pytest.mark.parametrize("url", [BASE + "?", BASE + "#", BASE + "/?", BASE + "/#"])
def test_allows_base_refuses_an_empty_query_or_fragment(url: str) -> None:
    assert not ALLOW.allows_base(url)


@pytest.mark.parametrize("url", [BASE + "/..;/admin", BASE + "/%2e%2e;/admin", BASE + "/..;x=1/admin"])
def test_dot_segments_with_path_parameters_are_refused(url: str) -> None:
    assert not ALLOW.allows(url)


@pytest.mark.parametrize("base", [
    "https://ehr.example.org/fhir?x=1",
    "https://user@ehr.example.org/fhir",
    "https://ehr.example.org/fhir#top",
    "https://ehr.example.org/../fhir",
    "ftp://ehr.example.org/fhir",
    "https:///fhir",
    "ehr.example.org/fhir",
    "https://ehr.example.org:99999/fhir",
    "https://[::1",
])
def test_an_unusable_base_stops_configuration_and_names_itself(base: str) -> None:
    with pytest.raises(ValueError, match="not a usable FHIR base URL") as info:
        FhirAllowList(["https://ok.example.org/fhir", base])
    assert repr(base) in str(info.value)


def test_an_empty_list_allows_nothing_and_joined_lists_allow_either() -> None:
    empty = FhirAllowList([])
    assert not empty
    assert not empty.allows(BASE)
    other = FhirAllowList(["https://other.example.org/r4"])
    joined = ALLOW + other
    assert joined
    assert joined.allows(BASE + "/Patient/1")
    assert joined.allows("https://other.example.org/r4/Patient/1")
    assert not joined.allows("https://other.example.org/fhir/Patient/1")  # no mixing of hosts and paths
    assert not ALLOW.allows("https://other.example.org/r4/Patient/1")  # the operands are left alone
    assert len(ALLOW.bases) == 1


def test_parse_base_normalises_only_what_is_equivalent() -> None:
    base = parse_base("HTTPS://EHR.Example.org:443/fhir/")
    assert base is not None
    assert (base.scheme, base.host, base.port, base.path) == ("https", "ehr.example.org", 443, "/fhir")
    http = parse_base("http://ehr.example.org/Fhir")
    assert http is not None
    assert (http.port, http.path) == (80, "/Fhir")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/jwks.json",
    "http://localhost/jwks",
    "http://LOCALHOST:9000/",
    "http://[::1]:8443/keys",
    "https://127.0.0.1/keys",
])
def test_exact_loopback_names_are_loopback(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize("url", [
    # names and URLs that merely contain a loopback name
    "http://localhost.evil.com/jwks",
    "http://127.0.0.1.nip.io/jwks",
    "http://evil.com/127.0.0.1",
    "http://evil.com/?h=localhost",
    "http://evil.com#localhost",
    "http://localhost@evil.com/jwks",
    "http://127.0.0.1:80@evil.com/jwks",
    "http://evil.com@localhost/jwks",  # userinfo is refused even when the host is loopback
    "http://evil.com\\@127.0.0.1/jwks",
    "http://127.0.0.1\\@evil.com/jwks",
    # other spellings of loopback are not recognised: plain http stays refused for them
    "http://127.0.0.2/jwks",
    "http://127.1/jwks",
    "http://2130706433/jwks",
    "http://0x7f000001/jwks",
    "http://0.0.0.0/jwks",
    "http://localhost./jwks",
    "http://[::ffff:127.0.0.1]/jwks",
    "http://[0:0:0:0:0:0:0:1]/jwks",
    # not a usable URL at all
    "ftp://localhost/jwks",
    "file:///etc/passwd",
    "localhost",
    "",
    "http://[::1",
    "http://localhost/../jwks",
])
def test_anything_else_is_not_loopback(url: str) -> None:
    assert not is_loopback_url(url)


def _served_path(url: str) -> str:
    """The path a servlet container would serve: httpx's request path, percent-decoded once, ";params"
    dropped from each segment, dot segments resolved."""
    resolved: list[str] = []
    for raw in unquote(httpx.URL(url).raw_path.decode().split("?", 1)[0]).split("/"):
        segment = raw.split(";", 1)[0]
        if segment == "..":
            if len(resolved) > 1:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    return "/".join(resolved)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=["a", "/", ".", "%", "2", "e", "E", "f", "F", "5", "\\", "?", "#", "@", ":", ";", "3", "b", "B"], max_size=14))
def test_whatever_is_allowed_is_fetched_from_under_the_base(suffix: str) -> None:
    """Compared with what the HTTP client really requests and a servlet container would serve."""
    url = BASE + "/" + suffix
    if not ALLOW.allows(url):
        return
    request = httpx.URL(url)
    assert (request.scheme, request.host, request.port) == ("https", "ehr.example.org", None)
    path = _served_path(url)
    assert path == "/fhir" or path.startswith("/fhir/"), (url, path)
