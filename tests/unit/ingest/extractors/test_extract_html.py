"""HTML: main content as heading and paragraph segments, title, headings and links."""

from __future__ import annotations

from pathlib import Path

from hartonomous.ingest.extractors import extract

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <title>  Atoms   and chunks </title>
  <meta name="description" content="How files become atoms.">
  <style>body { color: red }</style>
  <script>var tracking = "should not appear";</script>
</head>
<body>
  <nav><a href="/home">Home</a></nav>
  <article>
    <h1>Atoms <em>everywhere</em></h1>
    <p>A file is cut into <a href="https://example.org/cdc">chunks</a>,
       and each chunk is an atom.<br>Identical chunks are stored once.</p>
    <h2>Paragraphs</h2>
    Loose text in the article.
    <ul><li>first item</li><li>second item</li></ul>
    <pre>  indented
    code</pre>
    <!-- a comment -->
  </article>
  <footer>Footer text</footer>
</body>
</html>
"""


def test_html_main_content_headings_and_links(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(_PAGE, encoding="utf-8")

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("document", "html")
    assert [(segment.kind, segment.text) for segment in extraction.segments] == [
        ("heading", "Atoms everywhere"),
        (
            "paragraph",
            "A file is cut into chunks, and each chunk is an atom.\n"
            "Identical chunks are stored once.",
        ),
        ("heading", "Paragraphs"),
        ("paragraph", "Loose text in the article."),
        ("paragraph", "first item"),
        ("paragraph", "second item"),
        ("paragraph", "  indented\n    code"),
    ]
    assert [segment.metadata.get("level") for segment in extraction.segments[:3]] == [1, None, 2]
    assert all(segment.span is None for segment in extraction.segments)
    metadata = extraction.metadata
    assert metadata["title"] == "Atoms and chunks"
    assert metadata["description"] == "How files become atoms."
    assert metadata["language"] == "en"
    assert metadata["main_element"] == "article"
    assert metadata["headings"] == [
        {"level": 1, "text": "Atoms everywhere"},
        {"level": 2, "text": "Paragraphs"},
    ]
    assert metadata["links"] == [
        {"href": "/home", "text": "Home"},
        {"href": "https://example.org/cdc", "text": "chunks"},
    ]


def test_html_is_sniffed_by_its_markup_whatever_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "saved-page.txt"
    path.write_bytes(b"<html><body><p>Hello</p><div>caf\xe9</div></body></html>")  # Windows-1252

    extraction = extract(path)

    assert extraction.subtype == "html"
    assert extraction.metadata["encoding"] == "cp1252"
    assert [segment.text for segment in extraction.segments] == ["Hello", "café"]


def test_broken_markup_is_repaired_like_a_browser_does(tmp_path: Path) -> None:
    path = tmp_path / "broken.htm"
    path.write_text("<p>unclosed <b>bold<p>next paragraph</div></span>", encoding="utf-8")

    extraction = extract(path)

    assert [segment.text for segment in extraction.segments] == [
        "unclosed bold",
        "next paragraph",
    ]
    assert extraction.metadata["main_element"] == "body"
