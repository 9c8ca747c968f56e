"""YAML loading that remembers where every value came from and refuses duplicate keys.

PyYAML silently keeps the last of two equal keys and forgets line numbers once it has built Python
objects. Suites need both: a duplicate key is an error, and every validation message names the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[Any, ...]


@dataclass
class LoadedYaml:
    """Plain Python data from a YAML document, the 1-based line of every path in it, and problems found."""

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


class YamlSyntaxError(Exception):
    """The text is not valid YAML; ``line`` is 1-based, ``message`` says what the parser expected."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def load_yaml_with_lines(text: str) -> LoadedYaml:
    """Parse one YAML document into plain data with line numbers; raise YamlSyntaxError when invalid."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(line, f"{exc.context + ', ' if exc.context else ''}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, str(exc)) from None
    finally:
        loader.dispose()
    result = LoadedYaml(data=None)
    if node is not None:
        constructor = yaml.SafeLoader("")
        result.data = _walk(node, (), result, constructor)
    return result


def _walk(node: yaml.Node, path: Path, out: LoadedYaml, constructor: yaml.SafeLoader) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        mapping: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            key_line = key_node.start_mark.line + 1
            if key in first_line:
                out.problems.append(
                    (key_line, (*path, key), f"duplicate key {key!r} (first given at line {first_line[key]})")
                )
            first_line[key] = key_line
            mapping[key] = _walk(value_node, (*path, key), out, constructor)
            out.lines[(*path, key)] = key_line
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), out, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
