"""Text from suites, stores and failed cases made safe to show: control characters made visible, rich markup escaped.

Suite names, case labels, file paths and error texts are the user's (or a failed model's) text. Printed raw, rich
reads ``[...]`` in them as markup (``[/bold]`` raises ``MarkupError``) and the terminal obeys escape sequences (an
ANSI ``ESC [ 2 J`` clears the screen, a carriage return overwrites the line). So:

- :func:`visible_controls` writes each control character except newline and tab as the Python escape that names
  it: the C0 controls U+0000–U+001F (ESC as ``\\x1b``, carriage return as ``\\x0d``), DEL (``\\x7f``), the C1
  controls U+0080–U+009F (``\\x9b``, the one-byte CSI) and the bidirectional embeddings, overrides and isolates
  U+202A–U+202E, U+2066–U+2069 (``\\u202e``), which reorder what a terminal or browser shows. The text is shown, not
  obeyed. A failed case's error text is stored this way (:func:`harness.runner.run.build_record`).
- :func:`markup_text` does that and escapes rich markup: the form of any user text interpolated into a
  ``console.print`` string.
"""

from __future__ import annotations

from rich.markup import escape

#: The code points shown as escapes: C0 but newline and tab, DEL, C1, the bidirectional embeddings, overrides and
#: isolates.
CONTROL_CODES: tuple[int, ...] = (*(c for c in range(0x20) if chr(c) not in "\n\t"), 0x7F, *range(0x80, 0xA0),
                                  *range(0x202A, 0x202F), *range(0x2066, 0x206A))

#: ``str.translate`` table: each of ``CONTROL_CODES`` -> its visible escape.
_VISIBLE: dict[int, str] = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in CONTROL_CODES}


def visible_controls(text: str) -> str:
    """Return ``text`` with every control character but newline and tab written as its escape (ESC as ``\\x1b``)."""
    return text.translate(_VISIBLE)


def markup_text(value: object) -> str:
    """Return ``str(value)`` ready to interpolate into rich markup: controls made visible, ``[`` escaped."""
    return escape(visible_controls(str(value)))
