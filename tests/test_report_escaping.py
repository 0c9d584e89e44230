"""User text in the report stays text: HTML tags, Markdown links and code from run names never become markup.

Reports are shared, and a run's names come from its user (folder names, data files, columns, labels,
search and target names), so a label written as ``<script>...`` must show as those characters and
never run in the reader's browser, and ``[x](javascript:...)`` must not become a link in report.md.
"""

from __future__ import annotations

import json
import re
import string
import time
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from matplotlib.cbook import is_math_text
from matplotlib.text import Text
from report_fixture import make_report_run

from helpers import headless_chromium, severe_console_messages
from prunebench.report import figures, render, write_report
from prunebench.report.figures import AXES
from prunebench.report.load import load_runs

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
LINK = "[x](javascript:alert(1))"
WEB_LINK = "[docs](https://example.invalid/a)"
IMAGE = "![i](x.png)"
CODE = "`rm -rf`"
EMPHASIS = "**bold** _em_ ~~gone~~"
ATTRIBUTE = '" onmouseover="alert(1)'  # would close an attribute value and open an event handler
MATH = r"$\foo$ costs $5 to $6"  # mathtext to matplotlib (an unknown command fails the figure), math on GitHub
HOSTILE = [SCRIPT, IMG, LINK, WEB_LINK, IMAGE, CODE, EMPHASIS, ATTRIBUTE, MATH]
FIGURES = 9  # the fixture run's figures: the answer per target; training, search front, hypervolume; two per target

# Every element report.html.j2 writes; user text may add none.
HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "nav", "ul", "li", "a"}
HTML_TAGS |= {"section", "div", "table", "caption", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption"}
# Every element the Markdown report makes once rendered: headings, paragraphs, lists, notes as quotes,
# bold captions, pipe tables, figures.
MD_TAGS = {"h1", "h2", "h3", "p", "ul", "li", "blockquote", "strong", "img"}
MD_TAGS |= {"table", "thead", "tbody", "tr", "th", "td"}


def _hostile_run(base: Path) -> Path:
    """The fixture run, with hostile text in every place a user names something."""
    run = make_report_run(base / f"runs {SCRIPT[:-8]}" / f"script> {IMG} {LINK} {CODE}")
    assert SCRIPT in str(run)  # the run directory's path holds a whole script element
    record = json.loads((run / "run.json").read_text())
    record["task"] |= {"name": f"task {SCRIPT} {MATH}", "label_names": [SCRIPT, LINK, CODE]}
    record["task"]["metric"] = f"accuracy {EMPHASIS} {MATH}"
    record["train"] |= {"task": f"task {SCRIPT} {MATH}", "model": f"model {IMG} {WEB_LINK}", "strategy": f"full {CODE}"}
    record["train"] |= {"train_file": f"data/{IMG}.csv", "test_file": f"data/{IMAGE}.csv"}
    record["train"] |= {"text_columns": [SCRIPT, LINK], "label_column": f"{IMG} | {ATTRIBUTE}"}
    (run / "run.json").write_text(json.dumps(record))
    environment = json.loads((run / "environment.json").read_text())
    environment["cpu"] = f"{IMG} {EMPHASIS}"
    (run / "environment.json").write_text(json.dumps(environment))

    (run / "search" / "random_search-seed0").rename(run / "search" / f"random {IMG} {CODE} {MATH}")
    search = run / "search" / "nsga2-seed0" / "search.json"
    search.write_text(json.dumps(json.loads(search.read_text()) | {"normalisation": f"{LINK} {SCRIPT}"}))
    target = f"a10 {IMG}"  # the hardware target is the folder's name for profiles, compare.json's for comparisons
    (run / "profile" / "a10").rename(run / "profile" / target)
    (run / "compare" / "a10").rename(run / "compare" / target)
    compare = run / "compare" / target / "compare.json"
    meta = json.loads(compare.read_text())
    meta |= {"target": f"a10 {SCRIPT} {ATTRIBUTE} {MATH}", "notes": [*meta["notes"], f"{LINK} {CODE} {EMPHASIS}"]}
    compare.write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    run = _hostile_run(base)
    return run, write_report([run], base / "out")


class _Elements(HTMLParser):
    """Every element with its attributes, and the text outside style, as a browser reads them."""

    def __init__(self):
        super().__init__()  # convert_charrefs: text and attribute values come back unescaped
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._style = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._style = False

    def handle_data(self, data):
        if not self._style:
            self.text.append(data)


def _elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def _check_structure(page: _Elements, allowed: set[str], image_prefix: str) -> None:
    """Only the template's elements; images are our figures; no link leaves the page; no event handler."""
    tags = {tag for tag, _ in page.elements}
    assert tags <= allowed, tags - allowed
    images = [attrs for tag, attrs in page.elements if tag == "img"]
    assert len(images) == FIGURES
    assert all(attrs["src"].startswith(image_prefix) for attrs in images)
    for tag, attrs in page.elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        if tag == "a":
            assert attrs["href"].startswith("#"), attrs


def test_html_shows_user_text_as_text(hostile_report):
    run, result = hostile_report
    html = result.html.read_text()
    assert "<script" not in html.lower()  # the report writes no script; user text adds none
    assert "<img src=x" not in html and 'onmouseover="' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    page = _elements(html)
    _check_structure(page, HTML_TAGS, "data:image/png;base64,")
    text = "".join(page.text)
    for hostile in HOSTILE:  # shown to the reader exactly as written, not dropped
        assert hostile in text, hostile
    assert str(run) in text  # the run directory, in the configuration table
    # figure titles name the target in alt text: an attribute value, escaped there too
    alts = [attrs["alt"] for tag, attrs in page.elements if tag == "img"]
    assert f"a10 {SCRIPT} {ATTRIBUTE} {MATH}: error vs latency (estimated)" in alts


def _render_markdown(text: str) -> str:
    """report.md as a CommonMark + GitHub tables renderer makes it, raw HTML passed through, any link allowed."""
    markdown = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    markdown.validateLink = lambda url: True  # show javascript: links rather than drop them
    return markdown.render(text)


def test_markdown_makes_no_link_code_or_markup_from_user_text(hostile_report):
    run, result = hostile_report
    text = result.markdown.read_text()
    assert "<script" not in text.lower() and "<img" not in text.lower()
    # the only links are our figures
    figure_links = [f"]({image.relative_to(result.out).as_posix()})" for image in result.figures]
    assert len(re.findall(r"(?<!\\)\]\(", text)) == len(figure_links) == FIGURES
    assert all(link in text for link in figure_links)
    page = _elements(_render_markdown(text))
    _check_structure(page, MD_TAGS, "figures/")
    assert [tag for tag, _ in page.elements].count("strong") == [tag for tag, _ in page.elements].count("table")
    shown = "".join(page.text)
    for hostile in HOSTILE:
        assert hostile in shown, hostile
    assert str(run) in shown
    # a '|' in user text stays in its cell: the rows keep their header's width, the cell its whole text
    assert f"{IMG} | {ATTRIBUTE}" in shown
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        assert len({len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}) == 1, block


def test_markdown_keeps_our_numbers_and_words_readable(hostile_report):
    """Escaping is for user text: numbers, '-' cells, intra-word underscores and figure links stay as written."""
    _, result = hostile_report
    text = result.markdown.read_text()
    assert "| 0." in text and "| - |" in text and "layer_drop-seed0" in text
    assert "\\." not in text  # no escaped decimal points
    assert "![Validation error per epoch](figures/training.png)" in text


def test_figures_draw_user_text_as_written(hostile_report):
    """No figure text is mathtext: user "$...$" is drawn as those characters (the report was written, so
    "$\\foo$" did not fail the drawing)."""
    run, _ = hostile_report
    runs = load_runs([run])
    drawn = [figures.training_curves(runs), figures.search_front(runs), figures.hypervolume_curves(runs)]
    drawn += [figures.compare_tradeoff(runs, compare.target, axis) for compare in runs[0].compares for axis in AXES]
    texts = [text.get_text() for figure in drawn for text in figure.findobj(Text)]
    assert [text for text in texts if is_math_text(text)] == []
    label = runs[0].label.replace("$", r"\$")  # matplotlib draws "\$" as "$"
    assert label in texts and sum(MATH.replace("$", r"\$") in text for text in texts) > 6
    for figure in drawn:
        figures.to_png(figure)


def _open_alert(driver) -> str | None:
    """The text of the alert open in the page, or None (switch_to.alert raises when there is none)."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert.text
    except NoAlertPresentException:
        return None


def test_no_alert_and_a_clean_console_in_headless_chromium(hostile_report, tmp_path):
    """The hostile report in Chromium: no alert opens, no script or handler is in the page, the console is clean."""
    _, result = hostile_report
    # "ignore": an alert stays open for switch_to.alert to find, instead of being dismissed quietly
    with headless_chromium(tmp_path / "profile", unhandledPromptBehavior="ignore") as driver:
        driver.get(result.html.resolve().as_uri())
        deadline = time.monotonic() + 10
        while True:  # until every image has loaded or failed (an onerror handler runs then)
            assert _open_alert(driver) is None, "the report opened an alert"
            if driver.execute_script("return Array.from(document.images).every(i => i.complete)"):
                break
            assert time.monotonic() < deadline, "figures did not load"
            time.sleep(0.1)
        time.sleep(0.3)
        assert _open_alert(driver) is None, "the report opened an alert"
        counts = driver.execute_script(
            "const all = Array.from(document.querySelectorAll('*'));"
            "return [document.scripts.length, document.images.length,"
            " all.filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length];"
        )
        assert counts == [0, FIGURES, 0]
        shown = driver.execute_script("return document.body.innerText")
        assert SCRIPT in shown and IMG in shown
        assert severe_console_messages(driver) == []


# --- Markdown escaping on its own: any text, in every place the template puts text ---------------------------------

_TEMPLATE_PLACES = {  # where report.md.j2 puts text -> (Markdown around it, the HTML it should make)
    "paragraph": ("{}\n", "<p>{}</p>\n"),
    "note": ("> {}\n", "<blockquote>\n<p>{}</p>\n</blockquote>\n"),
    "bullet": ("- {}\n- next\n", "<ul>\n<li>{}</li>\n<li>next</li>\n</ul>\n"),
    "heading": ("## {}\n", "<h2>{}</h2>\n"),
    "caption": ("**{}**\n", "<p><strong>{}</strong></p>\n"),
    "figure title": ("![{}](figures/x.png)\n", '<p><img src="figures/x.png" alt="{}" /></p>\n'),
    "cell": ("| a | b |\n| --- | --- |\n| {} | next |\n", "<td>{}</td>\n<td>next</td>"),
}
_CHARACTERS = [*"abAB019 \t\n_é", *string.punctuation]


@pytest.mark.parametrize("place", _TEMPLATE_PLACES)
@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(text=st.text(st.sampled_from(_CHARACTERS), max_size=24))
def test_markdown_escape_shows_any_text_as_written(place, text):
    """Rendered, escaped text is the text itself (on one line): no markup, block or link, wherever it stands."""
    shown = " ".join(text.splitlines()).strip()
    assume(shown)
    markdown, expected = _TEMPLATE_PLACES[place]
    escaped = render._markdown_escape(text, cell=place == "cell")
    html = _render_markdown(markdown.format(escaped))
    assert expected.format(escape(shown).replace("&#x27;", "'")) in html, escaped
