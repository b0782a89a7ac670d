"""The one document model every table and report is written in, and its three renderers.

A document is a list of blocks, plain tuples:
  ("h", level, text)  ("p", text)  ("list", [text])  ("table", headers, rows[, align])  ("img", stem, caption)
Text may use **bold** and `code`, the only inline markup the renderers support.  align is one
letter a column, "l" or "r" (plain text only: Markdown and HTML align by content).  Figures are
computed once, before a document is built; a renderer only lays them out.
"""
from __future__ import annotations

import base64
import html
import re


def table(headers, rows, align: str | None = None) -> tuple:
    """A table block; align defaults to the first column left, the others right."""
    rows = [list(map(str, r)) for r in rows]
    return ("table", list(map(str, headers)), rows, align or "l" + "r" * (len(headers) - 1))


def to_text(doc: list) -> str:
    """For a terminal: tables with padded columns under a rule, paragraphs as they are."""
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append(block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            align = block[3] if len(block) > 3 else "l" * len(headers)
            every = [list(map(str, headers)), *[list(map(str, r)) for r in rows]]
            widths = [max(len(r[i]) for r in every) for i in range(len(headers))]
            lines = ["  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))
                     for r in every]
            lines.insert(1, "-" * len(lines[0]))
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"[{block[2]}: {block[1]}.png]")
    return "\n\n".join(out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list) -> str:
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]}.png)\n\n*{block[2]}* ([SVG]({block[1]}.svg))")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    text = html.escape(str(text), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[(.+?)\]\((.+?)\)", r'<a href="\2">\1</a>', text)


#: A table cell that holds figures only (right-aligned, never wrapped): "3,261", "1.00x (0.98–1.02)", "4.1%".
NUMBER = re.compile(r"[-–\d.,x%()\s]+")

CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}"
       "th{background:#f3f3f3}td{text-align:left}td.num{text-align:right;white-space:nowrap}img{max-width:100%}"
       "code{background:#f5f5f5;padding:0 3px}td code{white-space:nowrap}")


def _html_cell(text) -> str:
    align = ' class="num"' if NUMBER.fullmatch(str(text)) else ""
    return f"<td{align}>{_inline_html(text)}</td>"


def to_html(doc: list, images: dict[str, bytes]) -> str:
    """One self-contained page: the PNGs are embedded as base64 data URIs."""
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            # a paragraph may end in a list, one "- " line per item (the answer's machines), as Markdown reads it
            text, *items = block[1].split("\n- ")
            body.append(f"<p>{_inline_html(text)}</p>"
                        + ("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in items) + "</ul>" if items else ""))
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(images[block[1]]).decode()
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(block[2])}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vmexec-bench report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
