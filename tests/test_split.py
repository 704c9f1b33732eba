"""Splitting and truncating message text so that Telegram accepts every part."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest

from gateway.constants import MAX_MESSAGE_LENGTH
from gateway.errors import GatewayError
from gateway.split import MarkupError, split_text, truncate_text, visible_length, visible_text

EMOJI = "\U0001f600"  # outside the BMP: two UTF-16 code units


def assert_parts_cover(text: str, mode: str | None, parts: list[str], limit: int) -> None:
    """Every part fits, has content, and the parts' visible text is the original's, in order,
    except for whitespace dropped at the cuts."""
    original = visible_text(text, mode)
    cursor = 0
    for part in parts:
        assert visible_length(part, mode) <= limit, (part, limit)
        shown = visible_text(part, mode)
        assert shown.strip(), part
        found = original.find(shown, cursor)
        assert found >= 0, (shown, original[cursor:])
        assert original[cursor:found].strip() == "", original[cursor:found]
        cursor = found + len(shown)
    assert original[cursor:].strip() == ""


# --- Measuring ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        ("hello", None, 5),
        (EMOJI, None, 2),
        ("é€", None, 2),
        ("<b>a</b> &lt;&gt;&amp;&quot;", "HTML", 6),
        ("&#128512;&#x41;", "HTML", 3),
        ("a & b &nbsp;", "HTML", 12),
        ('<a href="https://e.com/?a=1&amp;b=2">x</a>', "HTML", 1),
        ("*bold* \\. _it_ `co\\`de`", "MarkdownV2", 15),
        ("```python\nprint(1)\n```", "MarkdownV2", 9),
        ("[text](https://e.com/\\))", "MarkdownV2", 4),
        (">quote\n>more", "MarkdownV2", 10),
        ("*bold* \\_ [link](https://e.com)", "Markdown", 11),
        ("text", "markdownv2", 4),
        ("a*b", "", 3),
    ],
)
def test_visible_length(text: str, mode: str | None, expected: int) -> None:
    assert visible_length(text, mode) == expected


# --- Splitting plain text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("short", None),
        ("  keeps its whitespace  ", None),
        ("<b>bold</b> &amp; <i>it</i>", "HTML"),
        ("*bold* \\.", "MarkdownV2"),
        ("", None),
        ("x" * MAX_MESSAGE_LENGTH, None),
        ("<b>" + "x" * MAX_MESSAGE_LENGTH + "</b>", "HTML"),
    ],
)
def test_text_within_limit_is_returned_unchanged(text: str, mode: str | None) -> None:
    assert split_text(text, mode) == [text]


def test_cut_prefers_paragraph_boundary() -> None:
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n" + "c c c " + "c" * 20
    assert split_text(text, None, 80) == ["a" * 30, "b" * 30 + "\n" + "c c c " + "c" * 20]


def test_cut_prefers_line_boundary_over_word_boundary() -> None:
    text = "one two three\nfour five six seven"
    assert split_text(text, None, 20) == ["one two three", "four five six seven"]


def test_cut_falls_back_to_word_boundary() -> None:
    text = "alpha beta gamma delta epsilon"
    assert split_text(text, None, 12) == ["alpha beta", "gamma delta", "epsilon"]


def test_cut_takes_the_last_boundary_of_the_best_kind() -> None:
    text = "p1\n\np2 line\nstill p2\n\np3 is here"
    assert split_text(text, None, 22) == ["p1\n\np2 line\nstill p2", "p3 is here"]


def test_single_long_word_is_cut_between_characters() -> None:
    word = "".join(random.Random(1).choice("abcdefghij") for _ in range(10_000))
    parts = split_text(word, None)
    assert [len(p) for p in parts] == [4096, 4096, 1808]
    assert "".join(parts) == word


def test_whitespace_at_the_cut_is_dropped_and_no_part_is_blank() -> None:
    text = "word   \n\n\n   \n" * 20
    parts = split_text(text, None, 12)
    assert all(p == p.strip() and p for p in parts)
    assert "".join(parts).replace("\n", "").replace(" ", "") == "word" * 20


def test_emoji_are_measured_in_utf16_and_never_halved() -> None:
    assert split_text(EMOJI * 3, None, 5) == [EMOJI * 2, EMOJI]
    parts = split_text(EMOJI * 3000, None)
    assert [len(p.encode("utf-16-le")) // 2 for p in parts] == [4096, 1904]
    assert "".join(parts) == EMOJI * 3000


def test_emoji_with_words_fit_in_utf16_units() -> None:
    text = " ".join(["hi" + EMOJI] * 50)
    parts = split_text(text, None, 19)
    assert_parts_cover(text, None, parts, 19)
    assert parts[0] == " ".join(["hi" + EMOJI] * 4)  # 4 * 4 + 3 spaces = 19 units


def test_long_whitespace_only_text_gives_no_parts() -> None:
    assert split_text(" \n" * 20, None, 10) == []


def test_visible_text_is_what_telegram_shows() -> None:
    assert visible_text('<b>a &amp; <a href="https://e.com">b</a></b>', "HTML") == "a & b"
    assert visible_text("*a* \\_ [b](https://e.com)", "MarkdownV2") == "a _ b"
    assert visible_text("___both_\r__", "MarkdownV2") == "both"


def test_limit_must_fit_a_surrogate_pair() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        split_text("abc", None, 1)


# --- HTML ---------------------------------------------------------------------------------------


def test_html_bold_spanning_the_cut_is_closed_and_reopened() -> None:
    text = "<b>" + "bold " * 10 + "</b>tail"
    parts = split_text(text, "HTML", 20)
    # The space before </b> is inside the text, not at a cut, so the last part keeps it.
    assert parts == [
        "<b>bold bold bold bold</b>",
        "<b>bold bold bold bold</b>",
        "<b>bold bold </b>tail",
    ]


def test_html_nested_tags_and_link_reopen_with_attributes() -> None:
    href = '<a href="https://example.com/?a=1&amp;b=2">'
    text = f"<i>intro {href}one two three four five</a> end</i>"
    parts = split_text(text, "HTML", 15)
    assert parts[0] == "<i>intro</i>"
    assert parts[1] == f"<i>{href}one two three</a></i>"
    assert parts[2] == f"<i>{href}four five</a> end</i>"


def test_html_tag_case_and_original_attributes_are_kept() -> None:
    text = "<B>" + "word " * 6 + "</B>"
    parts = split_text(text, "HTML", 10)
    assert parts == ["<B>word word</b>", "<B>word word</b>", "<B>word word</B>"]


def test_html_pre_code_block_is_reopened() -> None:
    opener = '<pre><code class="language-python">'
    lines = "\n".join(f"print({n})" for n in range(6))
    text = f"Code:\n\n{opener}{lines}</code></pre>"
    parts = split_text(text, "HTML", 20)
    assert parts[0] == "Code:"
    assert parts[1:] == [
        f"{opener}print(0)\nprint(1)</code></pre>",
        f"{opener}print(2)\nprint(3)</code></pre>",
        f"{opener}print(4)\nprint(5)</code></pre>",
    ]


def test_html_entities_are_never_cut() -> None:
    parts = split_text("&amp;" * 25, "HTML", 7)
    assert all(re.fullmatch("(&amp;)+", p) for p in parts)
    assert [visible_length(p, "HTML") for p in parts] == [7, 7, 7, 4]
    parts = split_text("&#128512;" * 5, "HTML", 3)
    assert parts == ["&#128512;"] * 5


def test_html_link_text_is_kept_whole_when_possible() -> None:
    text = 'see <a href="https://e.com">the docs page</a> now'
    # The limit falls inside the link: cut before it rather than inside it.
    assert split_text(text, "HTML", 16) == [
        "see",
        '<a href="https://e.com">the docs page</a>',
        "now",
    ]


def test_html_empty_elements_are_not_left_at_the_cut() -> None:
    text = "<b>first part</b> <i>second</i>"
    assert split_text(text, "HTML", 12) == ["<b>first part</b>", "<i>second</i>"]


def test_html_expandable_blockquote_and_spoiler_reopen() -> None:
    text = '<blockquote expandable><span class="tg-spoiler">aaa bbb ccc</span></blockquote>'
    assert split_text(text, "HTML", 8) == [
        '<blockquote expandable><span class="tg-spoiler">aaa bbb</span></blockquote>',
        '<blockquote expandable><span class="tg-spoiler">ccc</span></blockquote>',
    ]


class BalancedHTML(HTMLParser):
    """A small validating parser: only Telegram's tags, properly nested, all closed."""

    TAGS = frozenset(
        {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
        | {"code", "pre", "blockquote", "tg-emoji"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.TAGS, tag
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, tag


def assert_balanced_html(part: str) -> None:
    parser = BalancedHTML()
    parser.feed(part)
    parser.close()
    assert parser.open == [], part


# --- MarkdownV2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*one two three four*", ["*one two*", "*three four*"]),
        ("_one two three four_", ["_one two_", "_three four_"]),
        ("`one two three four`", ["`one two`", "`three four`"]),
        ("~one two~ ||three four||", ["~one two~", "||three four||"]),
        ("```python\nx = 1\ny = 2\n```", ["```python\nx = 1```", "```python\ny = 2```"]),
        ("*bold _italic words_ here*", ["*bold*", "*_italic_*", "*_words_ here*"]),
    ],
)
def test_markdown_v2_entities_spanning_the_cut(text: str, expected: list[str]) -> None:
    assert split_text(text, "MarkdownV2", 10) == expected


def test_markdown_v2_escapes_are_never_cut() -> None:
    parts = split_text("\\." * 25, "MarkdownV2", 7)
    assert all(re.fullmatch(r"(\\\.)+", p) for p in parts)
    assert [visible_length(p, "MarkdownV2") for p in parts] == [7, 7, 7, 4]


def test_markdown_v2_link_is_kept_whole_or_repeated() -> None:
    text = "intro words [link text here](https://e.com/a\\)b) more"
    assert split_text(text, "MarkdownV2", 20) == [
        "intro words",
        "[link text here](https://e.com/a\\)b) more",
    ]
    parts = split_text("[long link text](https://e.com)", "MarkdownV2", 10)
    assert parts == ["[long link](https://e.com)", "[text](https://e.com)"]


def test_markdown_v2_underline_and_italic_stay_unambiguous() -> None:
    text = "__under _ital_ more words__"
    parts = split_text(text, "MarkdownV2", 12)
    assert parts == ["__under _ital_\r__", "__more words__"]
    assert_parts_cover(text, "MarkdownV2", parts, 12)


def test_markdown_v2_blockquote_continues_on_the_next_part() -> None:
    text = ">first quoted line\n>second line\nafter"
    parts = split_text(text, "MarkdownV2", 12)
    assert parts == [">first quoted", ">line", ">second line", "after"]


def test_markdown_v2_expandable_blockquote_stays_expandable() -> None:
    text = "**>line one\n>line two||\nafter"
    assert split_text(text, "MarkdownV2", 10) == [">line one||", "**>line two||", "after"]


# --- Legacy Markdown ----------------------------------------------------------------------------


def test_legacy_markdown_entities_spanning_the_cut() -> None:
    text = "*bold words here* _it_ ```\ncode line\n``` [link text](https://e.com)"
    parts = split_text(text, "Markdown", 10)
    assert parts == [
        "*bold words*",
        "*here* _it_",
        "```\ncode line```",
        "[link text](https://e.com)",
    ]


def test_legacy_markdown_escapes_are_kept() -> None:
    text = "a\\_b " * 6
    parts = split_text(text, "Markdown", 8)
    assert all(re.fullmatch(r"a\\_b( a\\_b)*", p) for p in parts), parts


# --- Random texts -------------------------------------------------------------------------------


WORDS = [
    "a",
    "to",
    "word",
    "longerword",
    "é",
    "日本語",
    EMOJI,
    "x" + EMOJI + "y",
    "supercalifragilistic",
]
BREAKS = [" ", " ", " ", "\n", "\n\n", "  \n "]


def random_words(rng: random.Random, escape: Callable[[str], str], count: int) -> str:
    parts = []
    for _ in range(count):
        parts.append(escape(rng.choice([*WORDS, "a.b!", "x-y", "<&>", "[q]", "(p)", "_*`"])))
        parts.append(rng.choice(BREAKS))
    return "".join(parts).strip()


def html_escape(word: str) -> str:
    return word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def v2_escape(word: str) -> str:
    return "".join("\\" + c if c in "_*[]()~`>#+-=|{}.!\\" else c for c in word)


def legacy_escape(word: str) -> str:
    return "".join("\\" + c if c in "_*`[" else c for c in word)


def random_html(rng: random.Random, depth: int = 0) -> str:
    pieces = []
    for _ in range(rng.randint(1, 5)):
        roll = rng.random()
        if depth < 3 and roll < 0.4:
            tag, attrs = rng.choice(
                [
                    ("b", ""),
                    ("I", ""),
                    ("u", ""),
                    ("s", ""),
                    ("tg-spoiler", ""),
                    ("span", ' class="tg-spoiler"'),
                    ("a", ' href="https://e.com/?a=1&amp;b=&quot;2&quot;"'),
                ]
            )
            pieces.append(f"<{tag}{attrs}>{random_html(rng, depth + 1)}</{tag}>")
        elif depth == 0 and roll < 0.5:
            body = random_words(rng, html_escape, rng.randint(1, 20))
            pieces.append(f'<pre><code class="language-py">{body}</code></pre>')
        elif depth == 0 and roll < 0.55:
            pieces.append(f"<blockquote>{random_html(rng, 1)}</blockquote>")
        else:
            pieces.append(random_words(rng, html_escape, rng.randint(1, 15)))
        pieces.append(rng.choice(BREAKS))
    return "".join(pieces)


def random_v2(rng: random.Random, depth: int = 0) -> str:
    pieces = []
    for _ in range(rng.randint(1, 5)):
        roll = rng.random()
        words = random_words(rng, v2_escape, rng.randint(1, 12))
        verbatim = random_words(rng, lambda w: re.sub(r"[`\\]", "", w), rng.randint(1, 12))
        if depth < 3 and roll < 0.4:
            marker = rng.choice(["*", "_", "__", "~", "||"])
            # A word on each side keeps markers from running into each other ("___").
            pieces.append(f"{marker}w {random_v2(rng, depth + 1)} w{marker}")
        elif depth < 3 and roll < 0.45:
            pieces.append(f"[w {random_v2(rng, 3)} w](https://e.com/a\\)b)")
        elif depth == 0 and roll < 0.55:
            pieces.append(f"```python\n{verbatim}\n```")
        elif roll < 0.6:
            pieces.append(f"`{verbatim or 'v'}`")
        elif depth == 0 and roll < 0.65:
            lines = [random_words(rng, v2_escape, rng.randint(1, 6)) for _ in range(3)]
            quote = "\n".join(">" + line.replace("\n", " ") for line in lines)
            pieces.append(f"\n{quote}\n")
        else:
            pieces.append(words)
        pieces.append(rng.choice(BREAKS))
    return "".join(pieces)


def random_legacy(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(1, 8)):
        plain = random_words(rng, lambda w: re.sub(r"[_*`\[\]]", "", w), rng.randint(1, 8))
        plain = plain or "w"
        pieces.append(
            rng.choice(
                [
                    random_words(rng, legacy_escape, rng.randint(1, 10)),
                    f"*{plain}*",
                    f"_{plain}_",
                    f"`{plain}`",
                    f"```\n{plain}\n```",
                    f"[{plain}](https://e.com/x)",
                ]
            )
        )
        pieces.append(rng.choice(BREAKS))
    return "".join(pieces)


GENERATORS: dict[str | None, Callable[[random.Random], str]] = {
    None: lambda rng: random_words(rng, str, rng.randint(1, 200)),
    "HTML": random_html,
    "MarkdownV2": random_v2,
    "Markdown": random_legacy,
}


@pytest.mark.parametrize("mode", list(GENERATORS))
def test_random_texts_split_into_valid_parts(mode: str | None) -> None:
    rng = random.Random(f"split-{mode}")
    for _ in range(300):
        text = GENERATORS[mode](rng)
        limit = rng.choice([2, 3, 5, 8, 13, 40, 100, 300])
        parts = split_text(text, mode, limit)
        assert_parts_cover(text, mode, parts, limit)
        if mode == "HTML":
            for part in parts:
                assert_balanced_html(part)
        truncated = truncate_text(text, mode, max(limit, 4))
        assert visible_length(truncated, mode) <= max(limit, 4)


# --- Truncating ---------------------------------------------------------------------------------


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate_text("<b>short</b>", "HTML", 10) == "<b>short</b>"


def test_truncate_cuts_at_a_word_and_adds_the_ellipsis() -> None:
    assert truncate_text("alpha beta gamma", None, 12) == "alpha beta…"
    assert truncate_text("alphabetagamma", None, 6) == "alpha…"


def test_truncate_closes_markup() -> None:
    result = truncate_text("<b>bold <i>and italic</i> words</b>", "HTML", 16)
    assert result == "<b>bold <i>and italic</i></b>…"
    assert_balanced_html(result)
    result = truncate_text("*bold _and italic_ words*", "MarkdownV2", 10)
    assert result == "*bold _and_*…"


def test_truncate_escapes_the_ellipsis_for_the_parse_mode() -> None:
    assert truncate_text("one two three", "MarkdownV2", 10, "...") == "one two\\.\\.\\."
    assert truncate_text("one two three", "HTML", 9, "<>") == "one two&lt;&gt;"
    assert visible_length(truncate_text(EMOJI * 10, None, 7), None) <= 7


# --- Malformed markup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("0123456789<x>y</x>", "HTML", "unsupported HTML tag <x> at character 10"),
        ("abc<b>never closed", "HTML", "unclosed <b> opened at character 3"),
        ("line<br>break", "HTML", "unsupported HTML tag <br> at character 4"),
        (
            "<b>x</i>",
            "HTML",
            "end tag </i> at character 4 does not match <b> opened at character 0",
        ),
        ("x</b>", "HTML", "unexpected end tag </b> at character 1"),
        ("<span>x</span>", "HTML", 'needs class="tg-spoiler"'),
        ("<b x", "HTML", "has no closing '>'"),
        ('<a href="x>y</a>', "HTML", "unterminated attribute value"),
        ("<a href=https://e.com>y</a>", "HTML", "must be quoted"),
        ("&#xD800;", "HTML", "lone surrogate"),
        ("Hello.", "MarkdownV2", "character '.' at character 5 is reserved"),
        ("ab *bold", "MarkdownV2", r"unclosed bold \(\*\) opened at character 3"),
        ("[text](https://e.com", "MarkdownV2", "no closing '\\)'"),
        (">*quoted\nplain*", "MarkdownV2", "not closed before its blockquote ends"),
        ("x _open", "Markdown", r"unclosed italic \(_\) opened at character 2"),
        ("text", "BBCode", "unsupported parse_mode 'BBCode'"),
    ],
)
def test_malformed_markup_raises_a_clear_error(text: str, mode: str, message: str) -> None:
    with pytest.raises(MarkupError, match=message):
        split_text(text, mode, 100)
    with pytest.raises(MarkupError):
        visible_length(text, mode)


def test_markup_error_is_a_gateway_error() -> None:
    assert issubclass(MarkupError, GatewayError)
