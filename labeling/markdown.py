"""Markdown for untrusted text (prompts, answers, guidelines): raw HTML is not rendered, and the
output passes an allow-list sanitizer as a second line of defence.

Two things the page must not do when it shows someone else's text:
- load anything from elsewhere: an image (`![](https://…)`) becomes a link labelled with its alt
  text, so a tracking pixel in a prompt cannot fire in every annotator's browser;
- need inline styles, which the Content-Security-Policy refuses: table alignment is a class.
"""

import html
import re

import nh3
from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"]
)


def _image_as_link(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env).strip() or "image"
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    return f'<a href="{src}" class="image-link">[image: {html.escape(alt)}]</a>'


_renderer.add_render_rule("image", _image_as_link)
_ALIGNMENT = re.compile(r' style="text-align:(left|center|right)"')

_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "em",
    "strong",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
# Classes are allowed per tag in markdown_to_html (nh3 takes them apart from other attributes).
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
}

_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}


def markdown_to_html(text: str) -> str:
    rendered = _ALIGNMENT.sub(r' class="align-\1"', _renderer.render(text or ""))
    return nh3.clean(
        rendered,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        allowed_classes={"a": {"image-link"}, "th": _ALIGN_CLASSES, "td": _ALIGN_CLASSES},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
