"""YAML loading that remembers where every value came from, refuses duplicate keys and bounds its work.

PyYAML silently keeps the last of two equal keys and forgets line numbers once it has built Python
objects. Suites need both: a duplicate key is an error, and every validation message names the line.

A hostile file cannot exhaust the machine: nesting deeper than :data:`MAX_DEPTH` levels, more than
:data:`MAX_NODES` values (each use of an alias counts its whole node: the "billion laughs" bomb) and an
alias inside the node it names are errors, not a RecursionError or gigabytes of memory. Merge keys
(``<<: *base``, or ``<<: [*a, *b]``) are supported as in PyYAML: the mapping's own keys win, then the
first mapping merged; a merged key keeps the line where it is written. Keys must be names (strings);
a tag that cannot be read (``!!int 'abc'``) is a problem at its line, the value kept as its text.
"""

from __future__ import annotations

import contextlib
import copy
import reprlib
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[Any, ...]

#: The deepest nesting of lists and mappings accepted (aliases included); suites nest about 6 deep.
MAX_DEPTH = 64
#: The most values (scalars, lists, mappings, keys; an alias counted at every use) a document may hold; the
#: largest shipped suite has about 4,000.
MAX_NODES = 50_000

_EXPECTED_SIZE = "expected a suite file (suites hold a few thousand values, 6 levels deep)"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
#: Byte-order marks of the encodings a YAML file may be in besides UTF-8 (UTF-32 first: FF FE 00 00 starts FF FE).
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"),
         (b"\xff\xfe", "UTF-16"))
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """Return ``repr(value)`` cut to a readable length: long strings and big or deep lists elided with '...'."""
    return _SHORT.repr(value)


@dataclass
class LoadedYaml:
    """Plain Python data from a YAML document, the 1-based line of every path in it, and problems found
    (each ``(line, path, message)``; a key problem's path is its mapping's)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[tuple[int, Path, str]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """Return the line of ``path``, or of its longest prefix that has one (1 for the document)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class YamlError(Exception):
    """The file cannot be loaded: ``line`` is 1-based, ``path`` where in the data (() for the document or the
    text), ``message`` what is wrong and what was expected."""

    def __init__(self, line: int, message: str, path: Path = ()) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message
        self.path = path


def decode_yaml(data: bytes) -> str:
    """Return the text of a YAML file's bytes, which must be UTF-8 (a UTF-8 byte-order mark is dropped); raise
    YamlError at the line of the first byte that is not UTF-8, or when the file is UTF-16 or UTF-32."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise YamlError(1, f"the file is {encoding} (it starts with a {encoding} byte-order mark); "
                            "expected UTF-8: save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise YamlError(line, f"byte 0x{data[exc.start]:02x} (byte {column} of the line) is not UTF-8; "
                        "expected a UTF-8 text file: save it as UTF-8") from None


def load_yaml_with_lines(text: str) -> LoadedYaml:
    """Parse one YAML document into plain data with line numbers; raise YamlError when the text is not YAML or
    is too deep or too big (:data:`MAX_DEPTH`, :data:`MAX_NODES`)."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader checks every character here
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        column = exc.position - before.rfind("\n")
        raise YamlError(before.count("\n") + 1, f"invalid YAML: unacceptable character #x{exc.character:04x} "
                        f"(character {column} of the line): {exc.reason}; expected a UTF-8 text file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlError(line, f"invalid YAML: {exc.context + ', ' if exc.context else ''}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    result = LoadedYaml(data=None)
    if node is not None:
        result.data = _Walker(result).value(node, (), 0)
    return result


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader composing at most MAX_NODES nodes (alias uses included), MAX_DEPTH deep, refusing an alias
    inside the node it names; each use of an alias is a shallow copy of the node marked with the alias's line
    (``alias``: its name)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0
        self._open: list[str | None] = []  # anchors of the nodes being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Return the next node of the document, or a copy of the node an alias names (see the class)."""
        event = self.peek_event()
        self._nodes += 1
        if self._depth >= MAX_DEPTH or self._nodes > MAX_NODES:
            what = (f"lists and mappings nested more than {MAX_DEPTH} levels deep" if self._depth >= MAX_DEPTH
                    else f"more than {MAX_NODES} values")
            raise YamlError(event.start_mark.line + 1, f"the document holds {what}; {_EXPECTED_SIZE}")
        if isinstance(event, yaml.AliasEvent):
            self.get_event()
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                  event.start_mark)
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{event.anchor} is inside the node &{event.anchor} names (a recursive "
                    "alias); expected an alias to a node given in full before it", event.start_mark)
            use = copy.copy(self.anchors[event.anchor])
            use.start_mark, use.end_mark, use.alias = event.start_mark, event.end_mark, event.anchor
            return use
        self._depth += 1
        self._open.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.pop()


class _Walker:
    """Builds plain data from composed nodes into a LoadedYaml, counting every node it visits."""

    def __init__(self, out: LoadedYaml) -> None:
        self.out = out
        self.constructor = yaml.SafeLoader("")
        self.nodes = 0
        self.alias_at: tuple[Path, int] | None = None  # the outermost alias use being walked: (path, line)

    def value(self, node: yaml.Node, path: Path, depth: int) -> Any:
        """Return the plain data of ``node`` found at ``path``, recording lines and problems."""
        line = node.start_mark.line + 1
        self.out.lines[path] = line
        with self._entering(node, path):
            self._count(path, depth)
            if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
                self.out.problems.append((line, path, f"the tag {_tag(node.tag)} is not supported here; "
                                          "expected a plain list or mapping (drop the tag)"))
            if isinstance(node, yaml.MappingNode):
                mapping: dict[str, Any] = {}
                for key, key_line, value_node in self._pairs(node, path, depth):
                    mapping[key] = self.value(value_node, (*path, key), depth + 1)
                    self.out.lines[(*path, key)] = key_line
                return mapping
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            return self._scalar(node, path)

    @contextlib.contextmanager
    def _entering(self, node: yaml.Node, path: Path) -> Iterator[None]:
        """Within the block, ``alias_at`` is the outermost alias use being walked, ``node`` at ``path`` if none
        encloses it."""
        outermost = self.alias_at is None and getattr(node, "alias", None) is not None
        if outermost:
            self.alias_at = (path, node.start_mark.line + 1)
        try:
            yield
        finally:
            if outermost:
                self.alias_at = None

    def _count(self, path: Path, depth: int) -> None:
        """Count one node at ``depth``; raise YamlError past MAX_NODES nodes or MAX_DEPTH levels, at the outermost
        alias use being walked (else at ``path``'s line)."""
        self.nodes += 1
        if self.nodes <= MAX_NODES and depth <= MAX_DEPTH:
            return
        what = (f"more than {MAX_NODES} values" if self.nodes > MAX_NODES
                else f"lists and mappings nested more than {MAX_DEPTH} levels deep")
        if self.alias_at is None:
            raise YamlError(self.out.line_of(path), f"the document holds {what}; {_EXPECTED_SIZE}", path)
        alias_path, alias_line = self.alias_at
        raise YamlError(alias_line, f"the aliases here expand to {what} (an alias counts its whole node at every "
                        f"use: an alias bomb?); {_EXPECTED_SIZE}", alias_path)

    def _pairs(self, node: yaml.MappingNode, path: Path, depth: int) -> list[tuple[str, int, yaml.Node]]:
        """Return the mapping's entries as ``(key, key line, value node)`` in the file's order, merge keys
        (``<<``) replaced by the merged mappings' entries its own keys do not give (the first merged wins)."""
        own: list[tuple[str, int, yaml.Node] | None] = []  # None: the place of a merge key
        merges: list[list[tuple[str, int, yaml.Node]]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            self._count(path, depth + 1)
            if key_node.tag == _MERGE_TAG:
                merges.append(self._merged(value_node, path, depth))
                own.append(None)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in first_line:
                self.out.problems.append(
                    (key_line, (*path, key), f"duplicate key {shown(key)} (first given at line {first_line[key]})"))
            first_line[key] = key_line
            own.append((key, key_line, value_node))
        entries, taken, merged = [], set(first_line), iter(merges)
        for entry in own:
            for added in [entry] if entry is not None else next(merged):
                if entry is not None or added[0] not in taken:
                    entries.append(added)
                    taken.add(added[0])
        return entries

    def _merged(self, value: yaml.Node, path: Path, depth: int) -> list[tuple[str, int, yaml.Node]]:
        """Return the entries a merge key's value brings: a mapping's, or those of a list of mappings (the first
        giving a key wins)."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        entries: list[tuple[str, int, yaml.Node]] = []
        taken: set[str] = set()
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.out.problems.append((source.start_mark.line + 1, path, "a merge key `<<` takes a mapping or a "
                                          "list of mappings (`<<: *name`), not a single value"))
                continue
            with self._entering(source, path):
                self._count(path, depth + 1)
                for entry in self._pairs(source, path, depth + 1):
                    if entry[0] not in taken:
                        entries.append(entry)
                        taken.add(entry[0])
        return entries

    def _key(self, node: yaml.Node, path: Path) -> str | None:
        """Return a mapping key's text; None (a problem recorded) when it is not a name."""
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode):
            kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
            self.out.problems.append((line, path, f"expected a name as the key, got a {kind}"))
            return None
        key = self._scalar(node, path)
        if not isinstance(key, str):
            kind = {type(None): "null", bool: "true or false", int: "a number", float: "a number"}.get(
                type(key), f"a {type(key).__name__}")
            self.out.problems.append((line, path, f"the key {node.value or '~'} reads as {kind}, not as a name; "
                                      f"expected a name (quote it, '{node.value}', to keep the text)"))
            return None
        return key

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        """Return the value of a scalar node; its text (a problem recorded) when its tag cannot read it."""
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            self.constructor.recursive_objects.clear()  # left behind by the failed construction
            detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
            self.out.problems.append((node.start_mark.line + 1, path,
                                      f"cannot read {shown(node.value)} as {_tag(node.tag)} "
                                      f"({textwrap.shorten(detail, 120)}); expected a value of that type, or no tag"))
            return node.value


def _tag(tag: str) -> str:
    """Return a tag as written in YAML: ``!!int`` for ``tag:yaml.org,2002:int``."""
    return tag.replace("tag:yaml.org,2002:", "!!")
