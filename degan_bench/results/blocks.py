"""A page as a list of blocks, written to GitHub Markdown, HTML and LaTeX by one writer each.

Text is inline Markdown everywhere (``**bold**``, ``*em*``, `` `code` ``, ``[text](href)``): the Markdown
writer keeps it, the HTML writer renders it with markdown-it-py (CommonMark + GitHub tables, raw HTML
allowed, as GitHub does), the LaTeX writer walks markdown-it's tokens. A :class:`Table` is one
DataFrame of inline-Markdown strings with per-cell ``classes`` (``within`` / ``outside`` / ``nc`` ...)
and ``tips``; HTML and LaTeX come from the same pandas ``Styler`` (classes become CSS classes or
LaTeX colours, tips become ``title`` tooltips), Markdown from the same frame.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd
from markdown_it import MarkdownIt
from markdown_it.token import Token


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Text:
    """Block Markdown: paragraphs and lists (no tables: those are :class:`Table`)."""

    markdown: str


@dataclass
class Table:
    frame: pd.DataFrame  # inline Markdown per cell; the column labels are the header
    align: str  # "l" / "r" / "c" per column
    classes: pd.DataFrame | None = None  # CSS class per cell ("" for none)
    tips: pd.DataFrame | None = None  # plain-text tooltip per cell ("" for none)
    caption: str | None = None  # LaTeX caption (Markdown and HTML show headings instead)
    name: str = "t"  # unique within a page: the Styler's id


@dataclass
class Image:
    src: str  # relative path from the page
    alt: str
    width: int | None = None  # px, HTML only (GitHub scales Markdown images to the column width)


@dataclass
class Details:
    """A folded section (``<details>``); LaTeX shows it unfolded."""

    summary: str
    blocks: list[Block] = field(default_factory=list)


Block = Heading | Text | Table | Image | Details

#: CSS class -> LaTeX colour of a table cell
LATEX_COLOURS: dict[str, str] = {"within": "ForestGreen", "outside": "BrickRed", "nc": "gray"}


def markdown_parser() -> MarkdownIt:
    """CommonMark with GitHub's tables and strikethrough, raw HTML passed through (as on GitHub)."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


_MD = markdown_parser()


# -- Markdown ------------------------------------------------------------------------------------------
def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> list[str]:
    separators = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(_md_cell(c) for c in table.frame.columns) + " |"]
    lines.append("|" + "|".join(separators[a] for a in table.align) + "|")
    lines += [
        "| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.frame.itertuples(index=False)
    ]
    return lines


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append(("#" * block.level) + " " + block.text)
        elif isinstance(block, Text):
            lines.append(block.markdown.strip())
        elif isinstance(block, Table):
            lines += markdown_table(block)
        elif isinstance(block, Image):
            lines.append(f"![{block.alt}]({block.src})")
        elif isinstance(block, Details):
            # GitHub renders Markdown inside <details> when blank lines surround it
            lines += ["<details>", f"<summary>{inline_html(block.summary)}</summary>", ""]
            lines.append(to_markdown(block.blocks).rstrip("\n"))
            lines += ["", "</details>"]
        lines.append("")
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------------
def inline_html(text: str) -> str:
    return _MD.renderInline(text)


def html_table(table: Table) -> str:
    frame = table.frame.map(lambda v: inline_html(str(v)))
    frame.columns = [inline_html(str(c)) for c in table.frame.columns]
    styler = frame.style.hide(axis="index").set_uuid(table.name)
    align = pd.DataFrame(
        [[{"r": "r", "c": "c"}.get(a, "") for a in table.align]] * len(frame),
        index=frame.index,
        columns=frame.columns,
        dtype=object,
    )
    if table.classes is not None:
        extra = table.classes.fillna("")
        extra.columns = frame.columns
        align = (align + " " + extra).map(str.strip)
    classes = align
    styler = styler.set_td_classes(classes)
    if table.tips is not None:
        tips = table.tips.fillna("").map(lambda t: html.escape(str(t), quote=True))
        tips.columns = frame.columns
        styler = styler.set_tooltips(tips, as_title_attribute=True)
    rendered = styler.to_html(table_attributes='class="lb"')
    # pandas writes an empty <style> block even without cell styles; the page has one stylesheet
    return rendered.replace('<style type="text/css">\n</style>\n', "").strip()


def to_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            parts.append(f"<h{block.level}{anchor}>{inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(_MD.render(block.markdown).strip())
        elif isinstance(block, Table):
            parts.append(f'<div class="scroll">\n{html_table(block)}\n</div>')
        elif isinstance(block, Image):
            width = f' width="{block.width}"' if block.width else ""
            parts.append(f'<p><img src="{html.escape(block.src)}" alt="{html.escape(block.alt)}"{width}></p>')
        elif isinstance(block, Details):
            parts += [
                f"<details>\n<summary>{inline_html(block.summary)}</summary>",
                to_html(block.blocks),
                "</details>",
            ]
    return "\n".join(parts)


# -- LaTeX ---------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "³": r"$^3$",
    "−": r"$-$",
    "—": "---",
    "–": "--",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "≈": r"$\approx$",
    "·": r"$\cdot$",
    "→": r"$\rightarrow$",
    "…": r"\dots{}",
    "\u00a0": "~",
}
#: pictographs carry the verdict in Markdown; LaTeX shows the colour instead
_DROPPED = ("✅", "❌", "⚪", "⚠️", "⚠", "⏳", "💥", "\ufe0f")


def latex_escape(text: str) -> str:
    for symbol in _DROPPED:
        text = text.replace(symbol, "")
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_inline(tokens: list[Token]) -> str:
    out = []
    for token in tokens:
        if token.type == "text":
            out.append(latex_escape(token.content))
        elif token.type == "code_inline":
            out.append(r"\texttt{" + latex_escape(token.content) + "}")
        elif token.type == "strong_open":
            out.append(r"\textbf{")
        elif token.type == "em_open":
            out.append(r"\emph{")
        elif token.type in ("strong_close", "em_close"):
            out.append("}")
        elif token.type in ("softbreak", "hardbreak"):
            out.append(" ")
        # links keep their text (link_open/close add nothing); images and raw HTML are left out
    return "".join(out).strip()


def inline_latex(text: str) -> str:
    tokens = _MD.parseInline(str(text))
    return _latex_inline(tokens[0].children or []).strip() if tokens else ""


def _latex_text(markdown: str) -> str:
    out: list[str] = []
    for token in _MD.parse(markdown):
        if token.type == "bullet_list_open":
            out.append(r"\begin{itemize}")
        elif token.type == "bullet_list_close":
            out.append(r"\end{itemize}")
        elif token.type == "ordered_list_open":
            out.append(r"\begin{enumerate}")
        elif token.type == "ordered_list_close":
            out.append(r"\end{enumerate}")
        elif token.type == "list_item_open":
            out.append(r"\item")
        elif token.type == "inline":
            out.append(_latex_inline(token.children or []))
        elif token.type == "paragraph_close" and not token.hidden:
            out.append("")
    return "\n".join(out).strip()


def latex_table(table: Table) -> str:
    frame = table.frame.map(inline_latex)
    frame.columns = [inline_latex(str(c)) for c in table.frame.columns]
    styler = frame.style.hide(axis="index")
    if table.classes is not None:
        colours = table.classes.fillna("").map(
            lambda c: f"color: {LATEX_COLOURS[c]};" if c in LATEX_COLOURS else ""
        )
        colours.columns = frame.columns
        styler = styler.apply(lambda _: colours, axis=None)
    return styler.to_latex(
        column_format=table.align.replace("c", "l"),
        hrules=True,
        caption=inline_latex(table.caption) if table.caption else None,
        position="htbp",
        position_float="centering",
        convert_css=True,
    ).strip()


def to_latex(blocks: list[Block]) -> str:
    parts: list[str] = []
    commands = {1: "section*", 2: "subsection*", 3: "subsubsection*"}
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"\\{commands.get(block.level, 'paragraph*')}{{{inline_latex(block.text)}}}")
        elif isinstance(block, Text):
            parts.append(_latex_text(block.markdown))
        elif isinstance(block, Table):
            parts.append(latex_table(block))
        elif isinstance(block, Image):
            parts.append(f"% figure: {block.src} ({block.alt})")
        elif isinstance(block, Details):
            parts += [f"\\paragraph*{{{inline_latex(block.summary)}}}", to_latex(block.blocks)]
        parts.append("")
    return "\n".join(parts)
