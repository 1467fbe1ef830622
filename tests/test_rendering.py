"""Record text is inert in markdown with raw HTML; the suggested order is valid FHIR."""

from cds_service.rendering import escape_text


def test_escape_makes_html_links_and_autolinks_inert() -> None:
    for hostile in ("<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
                    "www.evil.example", "https://evil.example", "**bold** _x_ `code`", "&lt;b&gt;"):
        out = escape_text(hostile)
        for ch in "<>[]()`*_:.&":
            if ch in hostile:
                assert ch not in out.replace("&#", "").replace(";", "") or ch == "&"
        assert "<" not in out and "](" not in out and "www." not in out and "://" not in out


def test_escape_keeps_plain_words_and_truncates() -> None:
    assert escape_text("Muscle aches for months") == "Muscle aches for months"
    assert escape_text("a" * 500) == "a" * 119 + "&#8230;"
    assert escape_text("line\nbreak") == "line break"
