"""parse_mode: HTML, MarkdownV2 and legacy Markdown, with Telegram's entities and errors."""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_helpers import USER, running_sandbox

from gateway.sandbox.formatting import format_text
from gateway.sandbox.replies import ApiError


def parse(text: str, mode: str, *, group: bool = False) -> tuple[str, list[tuple[Any, ...]]]:
    parsed = format_text(text, mode, None, bot_commands=group)
    shapes = [
        (e["type"], e["offset"], e["length"], e.get("url") or e.get("language"))
        for e in parsed.entities
    ]
    return parsed.text, shapes


def error(text: str, mode: str) -> str:
    with pytest.raises(ApiError) as caught:
        format_text(text, mode, None, bot_commands=False)
    assert caught.value.error_code == 400
    return caught.value.description


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>b</b><strong>s</strong>", "bs", [("bold", 0, 1, None), ("bold", 1, 1, None)]),
        ("<i>i</i> <em>e</em>", "i e", [("italic", 0, 1, None), ("italic", 2, 1, None)]),
        ("<u>u</u><ins>n</ins>", "un", [("underline", 0, 1, None), ("underline", 1, 1, None)]),
        (
            "<s>a</s><strike>b</strike><del>c</del>",
            "abc",
            [("strikethrough", i, 1, None) for i in range(3)],
        ),
        (
            '<span class="tg-spoiler">x</span><tg-spoiler>y</tg-spoiler>',
            "xy",
            [("spoiler", 0, 1, None), ("spoiler", 1, 1, None)],
        ),
        (
            '<a href="https://example.com">site</a>',
            "site",
            [("text_link", 0, 4, "https://example.com/")],
        ),
        (
            "<code>x &lt; y &amp;&amp; z &gt; &quot;q&quot;</code>",
            'x < y && z > "q"',
            [("code", 0, 16, None)],
        ),
        ("&#60;&#x3E;&nbsp;", "<>&nbsp;", []),
        (
            '<pre><code class="language-python">print(1)</code></pre>',
            "print(1)",
            [("pre", 0, 8, "python")],
        ),
        ("<pre>raw</pre>", "raw", [("pre", 0, 3, None)]),
        (
            "<blockquote>q</blockquote><blockquote expandable>e</blockquote>",
            "qe",
            [("blockquote", 0, 1, None), ("expandable_blockquote", 1, 1, None)],
        ),
        (
            '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
            "👍",
            [("custom_emoji", 0, 2, None)],
        ),
        ("😀 <b>x</b>", "😀 x", [("bold", 3, 1, None)]),
        ("<b>bold <i>both</i></b>", "bold both", [("bold", 0, 9, None), ("italic", 5, 4, None)]),
        ("  <b>trimmed</b>  ", "trimmed", [("bold", 0, 7, None)]),
        ("<B>case</B>", "case", [("bold", 0, 4, None)]),
    ],
)
def test_html(html: str, text: str, entities: list[tuple[Any, ...]]) -> None:
    assert parse(html, "HTML") == (text, entities)


@pytest.mark.parametrize(
    ("html", "description"),
    [
        ("<x>hi</x>", 'Unsupported start tag "x" at byte offset 0'),
        ("é <marquee>", 'Unsupported start tag "marquee" at byte offset 3'),
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("a <b", "Unclosed start tag at byte offset 2"),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        (
            "<b x>y</b>",
            'Expected equal sign in declaration of an attribute of the tag "b" at byte offset 0',
        ),
    ],
)
def test_html_errors(html: str, description: str) -> None:
    assert error(html, "HTML") == f"Bad Request: can't parse entities: {description}"


@pytest.mark.parametrize(
    ("markdown", "text", "entities"),
    [
        (
            "*b* _i_ __u__ ~s~ ||sp||",
            "b i u s sp",
            [
                ("bold", 0, 1, None),
                ("italic", 2, 1, None),
                ("underline", 4, 1, None),
                ("strikethrough", 6, 1, None),
                ("spoiler", 8, 2, None),
            ],
        ),
        (
            "[site](https://example.com/a\\)b)",
            "site",
            [("text_link", 0, 4, "https://example.com/a)b")],
        ),
        ("`x \\` y`", "x ` y", [("code", 0, 5, None)]),
        ("```python\nprint(1)\n```", "print(1)", [("pre", 0, 8, "python")]),
        ("1\\.5 \\- ok\\!", "1.5 - ok!", []),
        (">quoted\n>lines\nplain", "quoted\nlines\nplain", [("blockquote", 0, 12, None)]),
        ("😀 *b*", "😀 b", [("bold", 3, 1, None)]),
        ("*bold _both_*", "bold both", [("bold", 0, 9, None), ("italic", 5, 4, None)]),
    ],
)
def test_markdown_v2(markdown: str, text: str, entities: list[tuple[Any, ...]]) -> None:
    assert parse(markdown, "MarkdownV2") == (text, entities)


@pytest.mark.parametrize(
    ("markdown", "description"),
    [
        ("v1.2", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("a-b", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("*open", "Can't find end of Bold entity at byte offset 0"),
        ("é _open", "Can't find end of Italic entity at byte offset 3"),
        ("[x](http://a", "Can't find end of a URL at byte offset 4"),
    ],
)
def test_markdown_v2_errors(markdown: str, description: str) -> None:
    assert error(markdown, "MarkdownV2") == f"Bad Request: can't parse entities: {description}"


def test_legacy_markdown() -> None:
    assert parse("*b* _i_ `c` [l](http://a.b) 1.5-2", "Markdown") == (
        "b i c l 1.5-2",
        [
            ("bold", 0, 1, None),
            ("italic", 2, 1, None),
            ("code", 4, 1, None),
            ("text_link", 6, 1, "http://a.b/"),
        ],
    )
    assert error("abc *open", "Markdown") == (
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 4"
    )


def test_telegram_detects_links_mentions_and_commands() -> None:
    text = "/deploy@ops_bot to https://example.com/x, ask @alice #release $USD a@b.io"
    _, private = parse(text, "")
    _, group = parse(text, "", group=True)
    assert [e[0] for e in private] == ["url", "mention", "hashtag", "cashtag", "email"]
    assert group[0] == ("bot_command", 0, 15, None)
    _, inside_code = parse("<code>https://example.com</code>", "HTML")
    assert inside_code == [("code", 0, 19, None)]


def test_explicit_entities_are_used_without_parse_mode() -> None:
    parsed = format_text(
        "hi there", "", [{"type": "bold", "offset": 3, "length": 5}], bot_commands=False
    )
    assert parsed.entities == [{"type": "bold", "offset": 3, "length": 5}]
    with pytest.raises(ApiError, match="can't parse entities"):
        format_text("hi", "", [{"type": "blink", "offset": 0, "length": 1}], bot_commands=False)


async def test_parse_errors_through_the_api() -> None:
    async with running_sandbox() as box:
        await box.say("/start")
        status, body = await box.api("sendMessage", chat_id=USER, text="<x>", parse_mode="HTML")
        assert (status, body["description"]) == (
            400,
            'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0',
        )
        message = await box.result(
            "sendMessage", chat_id=USER, text="*ok*", parse_mode="markdownv2"
        )
        assert message["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
