"""Suites: a YAML file -> a validated ``Suite`` -> its matrix expanded into frozen ``Case`` objects.

A suite file has these top-level keys (all but ``matrix`` optional)::

    name: smoke                 # default: the file's stem
    description: free text
    defaults: {device: cpu, dtype: fp32, resolution: 224, batch: 1}
    matrix:                     # axes: the cartesian product of their values
      model: [resnet18, mobilenetv2_100]
      batch: [1, 8]
    include: [{model: tiny_cnn, batch: 2}]       # extra cases (fields default from `defaults`)
    exclude: [{model: resnet18, batch: [8]}]     # drop cases matching every key (a list = any of)
    metrics: {complexity: {}, latency: {max_time_s: 2}}   # or a list of names
    # a metric's `where: {axis: value or list}` limits it to the cases matching it, e.g.
    #   accuracy: {train_steps: 300, where: {mode: inference}}
    timeout_s: 900              # a case still running after this is killed and recorded as failed (timeout)
    timeouts:                   # per-case overrides: the first entry whose `match` the case matches
      - {match: {model: cornernet_hourglass104}, timeout_s: 3600}
    oom_min_batch: 1            # out of memory: retry at half the batch down to this floor (null: no retry)
    repeats: {seeds: [0, 1, 2]} # each case once per seed for the seeded metrics (accuracy, detection) only;
                                # its other metrics are taken at the first seed (or: `seed` as a matrix axis);
                                # `where: {axis: value or list}` repeats only the cases matching it
    baseline: {norm: bn}        # per group of cases differing only in these fields, the row others are judged
    alpha: 0.05                 #   against: mean ± std over seeds, Δ and a t-test's p-value at this level
    published:                  # reference values shown beside what is measured
      - match: {model: resnet18}
        source: He et al. 2016, Table 1
        convention: macs = multiply-accumulates
        values: {params: 11.7e6, macs: 1.8e9}
    claims:                     # "candidate / baseline within bounds", judged in the report (harness.claims)
      - claim: Res2Net-50 costs ResNet-50's MACs yet runs slower
        source: our notes
        candidate: {model: res2net50_26w_4s}
        baseline: {model: resnet50}           # the candidate with these fields replaced; must be a suite case
        ratios: {macs: {min: 0.95, max: 1.05}, latency_ms_median: {min: 1.0}, params: {}}

Every problem is reported as ``FILE:LINE: where: what was expected``; nothing runs when there is one. Problems of
the file's shape (YAML, keys, types, bounds) are found without importing torch; model names and metric options after.
What is valid but suspect (more threads than cores, a published entry matching no case) is a warning
(``Suite.warnings``).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, create_model, model_validator

from harness.case import (
    BOX_LOSSES,
    COMPILE_MODES,
    COMPRESS,
    DEVICES,
    DTYPES,
    MODES,
    NEGATIVES,
    NORMS,
    POSTPROCESS,
    PRECISION_MODES,
    QUANT,
    Case,
    matches,
)
from harness.errors import HarnessError
from harness.yaml_lines import LoadedYaml, YamlError, decode_yaml, load_yaml_with_lines, shown

#: A suite file larger than this is refused unread (the largest shipped suite is 35 KB).
MAX_FILE_BYTES = 1 << 20
#: The most processes a case's ``world_size`` may start (torchrun on one machine).
MAX_WORLD_SIZE = 256
#: The longest suite ``name`` in UTF-8 bytes: the store makes a folder of it, and a file name has at most 255.
MAX_NAME_BYTES = 255
#: The most problems of one file listed in a SuiteError's text; the others are counted.
MAX_PROBLEMS_SHOWN = 50

PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]

#: The validation type of every Case field, i.e. of every matrix axis.
AXIS_TYPES: dict[str, Any] = {
    "model": Annotated[str, Strict(), Field(min_length=1)],
    "resolution": PositiveInt,
    "batch": PositiveInt,
    "device": Literal[DEVICES],
    "dtype": Literal[DTYPES],
    "channels": PositiveInt,
    "threads": PositiveInt,
    "model_kwargs": dict[str, Any],
    "precision": Literal[PRECISION_MODES],
    "quant": Literal[QUANT],
    "channels_last": Annotated[bool, Strict()],
    "compile": Literal[COMPILE_MODES],
    "mode": Literal[MODES],
    "norm": Literal[NORMS],
    "norm_kwargs": dict[str, Any],
    "world_size": PositiveInt,
    "postprocess": Literal[POSTPROCESS],
    "seed": Seed,
    "box_loss": Literal[BOX_LOSSES],
    "negatives": Literal[NEGATIVES],
    "compress": Literal[COMPRESS],
    "compress_kwargs": dict[str, Any],
    "width": PositiveInt,
}
#: Where a case is given (defaults, matrix, include), ``compress`` may also be a one-key mapping
#: ``{method: {option: value}}``: the method and its ``compress_kwargs`` together, so one matrix axis can hold
#: several methods, each at its own levels.
COMPRESS_WITH_OPTIONS = Annotated[dict[Literal[COMPRESS[1:]], dict[str, Any]], Field(min_length=1, max_length=1)]
SPEC_TYPES: dict[str, Any] = AXIS_TYPES | {"compress": AXIS_TYPES["compress"] | COMPRESS_WITH_OPTIONS}

_FORBID = ConfigDict(extra="forbid")

CaseSpec = create_model(  # one (possibly partial) case: defaults, include entries
    "CaseSpec", __config__=_FORBID, **{k: (t | None, None) for k, t in SPEC_TYPES.items()}
)
Matrix = create_model(  # axis -> non-empty list of values
    "Matrix", __config__=_FORBID, **{k: (list[t] | None, Field(None, min_length=1)) for k, t in SPEC_TYPES.items()}
)
CaseFilter = create_model(  # exclude / published match: axis -> value or list of values (any of)
    "CaseFilter", __config__=_FORBID, **{k: (t | list[t] | None, None) for k, t in AXIS_TYPES.items()}
)
CaseValues = create_model(  # a claim's baseline: axis -> one value
    "CaseValues", __config__=_FORBID, **{k: (t | None, None) for k, t in AXIS_TYPES.items()}
)


class Published(BaseModel):
    """Published reference values for the cases that ``match``, with their source and convention."""

    model_config = _FORBID
    match: CaseFilter  # type: ignore[valid-type]
    source: str = Field(min_length=1)
    convention: str = ""
    #: False when the published numbers come from another setting (dataset, schedule) than ours: they are
    #: shown beside ours for reference, without a Δ.
    comparable: bool = True
    values: dict[str, float] = Field(min_length=1)


class RatioBounds(BaseModel):
    """The range a claim expects a ratio in (inclusive); neither bound: the ratio is reported, not judged."""

    model_config = _FORBID
    min: Annotated[float, Field(gt=0)] | None = None
    max: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RatioBounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


class Claim(BaseModel):
    """A claim judged on the suite's records (:mod:`harness.claims`): for each case matching ``candidate``, the
    ratio candidate / baseline of each metric in ``ratios`` lies within its bounds; the baseline case is the
    candidate with the ``baseline`` fields replaced."""

    model_config = _FORBID
    claim: str = Field(min_length=1)
    source: str = ""
    candidate: CaseFilter  # type: ignore[valid-type]
    baseline: CaseValues  # type: ignore[valid-type]
    ratios: dict[str, RatioBounds] = Field(min_length=1)


class TimeoutRule(BaseModel):
    """A timeout, in seconds, for the cases that ``match``, in place of the suite's ``timeout_s``."""

    model_config = _FORBID
    match: CaseFilter  # type: ignore[valid-type]
    timeout_s: Annotated[float, Field(gt=0)]


class Repeats(BaseModel):
    """Seeds at which each case's seeded metrics are taken again (the first seed takes every metric)."""

    model_config = _FORBID
    seeds: list[Seed] = Field(min_length=1)
    where: CaseFilter | None = None  # type: ignore[valid-type]  # only the cases matching it are repeated


class SuiteFile(BaseModel):
    """The schema of a suite file, before model names and metric options are checked."""

    model_config = _FORBID
    name: str | None = None
    description: str = ""
    defaults: CaseSpec = Field(default_factory=CaseSpec)  # type: ignore[valid-type]
    matrix: Matrix  # type: ignore[valid-type]
    include: list[CaseSpec] = Field(default_factory=list)  # type: ignore[valid-type]
    exclude: list[CaseFilter] = Field(default_factory=list)  # type: ignore[valid-type]
    metrics: dict[str, dict[str, Any] | None] | list[str] = Field(default_factory=lambda: ["complexity"])
    timeout_s: Annotated[float, Field(gt=0)] = 900.0
    timeouts: list[TimeoutRule] = Field(default_factory=list)
    oom_min_batch: PositiveInt | None = 1
    published: list[Published] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    repeats: Repeats | None = None
    baseline: CaseSpec | None = None  # type: ignore[valid-type]
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


@dataclass(frozen=True)
class SuiteProblem:
    """One thing wrong with a suite file, at a 1-based line."""

    file: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


@dataclass(frozen=True)
class ModelMention:
    """A model name a suite file gives, where it gives it (``file``, 1-based ``line``, dotted ``where``)."""

    file: str
    line: int
    where: str
    name: str


class SuiteError(Exception):
    """A suite file failed validation; ``problems`` lists every problem found, each with its line.
    ``unchecked_models``: the model names the file gives, when its shape was wrong and they were not checked (shape
    errors are said before torch is imported; :func:`unknown_models` checks the names, importing it)."""

    def __init__(self, problems: list[SuiteProblem], unchecked_models: Sequence[ModelMention] = ()) -> None:
        super().__init__("\n".join(problem_lines(problems)))
        self.problems = problems
        self.unchecked_models = tuple(unchecked_models)


def problem_lines(problems: Sequence[SuiteProblem], limit: int = MAX_PROBLEMS_SHOWN) -> list[str]:
    """Return the first ``limit`` of ``problems`` as lines, then a line counting the others (none when all fit)."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more in {problems[0].file}")
    return lines


@dataclass(frozen=True)
class Suite:
    """A validated suite: its cases, the metrics to take with their options, and published values."""

    name: str
    path: str
    description: str
    cases: tuple[Case, ...]
    metrics: dict[str, BaseModel]
    timeout_s: float
    published: tuple[Published, ...]
    #: per-case timeouts: (filter, seconds), the first match wins over ``timeout_s``.
    timeouts: tuple[tuple[dict[str, Any], float], ...] = ()
    #: out of memory: retry at half the batch while it stays at or above this; None: no retry.
    oom_min_batch: int | None = 1
    #: metric name -> the filter (axis -> value or list) its cases must match; metrics absent here take all.
    metric_where: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: ``repeats.seeds``: the first seed takes every metric, the others only the metrics in ``seeded_metrics``.
    repeat_seeds: tuple[int, ...] = ()
    #: metrics whose values depend on the seed (they train, or score seeded random weights).
    seeded_metrics: frozenset[str] = frozenset()
    #: the baseline row's fields (field -> value) within each group of cases differing only in them; {}: none.
    baseline: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: significance level of the t-tests against the baseline row.
    alpha: float = 0.05
    #: candidate case_id -> its claims, each paired with its baseline case (:func:`harness.claims.pair_claims`).
    claim_pairs: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    #: what is valid but suspect (more threads than cores, a published entry matching no case), to print.
    warnings: tuple[SuiteProblem, ...] = ()

    def metrics_for(self, case: Case) -> dict[str, BaseModel]:
        """Return the metrics (name -> options) taken for ``case``: those whose ``where`` it matches (only the
        seeded ones at a repeated seed after the first)."""
        point = case.to_dict()
        repeated = case.seed in self.repeat_seeds[1:]
        return {n: o for n, o in self.metrics.items()
                if matches(point, self.metric_where.get(n, {})) and (not repeated or n in self.seeded_metrics)}

    def timeout_for(self, case: Case) -> float:
        """Return the seconds ``case`` may run before it is killed: its first matching ``timeouts`` rule's, else
        the suite's ``timeout_s``."""
        point = case.to_dict()
        return next((seconds for rule, seconds in self.timeouts if matches(point, rule)), self.timeout_s)

    def with_metrics(self, names: Iterable[str]) -> Suite:
        """Return this suite taking only the metric families ``names`` (each must be in the suite)."""
        names = list(names)
        missing = [n for n in names if n not in self.metrics]
        if missing:
            raise HarnessError(f"{self.path}: takes no metric {', '.join(map(repr, missing))}; "
                               f"it takes: {', '.join(self.metrics)}")
        where = {n: w for n, w in self.metric_where.items() if n in names}
        return dataclasses.replace(self, metrics={n: self.metrics[n] for n in names}, metric_where=where)

    def published_for(self, case: Case) -> list[dict[str, Any]]:
        """Return the published entries matching ``case`` as ``{metric, value, source, convention, comparable}``."""
        out = []
        for entry in self.published:
            if matches(case.to_dict(), entry.match.model_dump(exclude_none=True)):
                for metric, value in entry.values.items():
                    out.append({"metric": metric, "value": value, "source": entry.source,
                                "convention": entry.convention, "comparable": entry.comparable})
        return out

    def claims_for(self, case: Case) -> list[dict[str, Any]]:
        """Return the claims ``case`` is the candidate of, each with its baseline case's id and label."""
        return self.claim_pairs.get(case.case_id, [])


def load_suite(path: str | Path) -> Suite:
    """Read, validate and expand the suite file at ``path``; raise SuiteError listing every problem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SuiteError([SuiteProblem(str(path), 0, "", f"cannot read the file: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise SuiteError([SuiteProblem(str(path), 1, "", f"the file is larger than {MAX_FILE_BYTES >> 20} MiB; "
                                       "expected a suite file (a few KB of YAML)")])
    try:
        text = decode_yaml(data)
    except YamlError as exc:
        raise SuiteError([SuiteProblem(str(path), exc.line, "", exc.message)]) from None
    return parse_suite(text, str(path), default_name=path.stem)


def parse_suite(text: str, file: str = "<suite>", default_name: str = "suite") -> Suite:
    """Validate suite YAML ``text`` (``file`` names it in messages) and return the expanded Suite."""
    try:
        loaded = load_yaml_with_lines(text)
    except YamlError as exc:
        raise SuiteError([SuiteProblem(file, exc.line, _dotted(exc.path), exc.message)]) from None
    problems = [SuiteProblem(file, line, _dotted(p), msg) for line, p, msg in loaded.problems]
    if not isinstance(loaded.data, dict):
        got = "an empty file" if loaded.data is None else f"a {type(loaded.data).__name__}"
        problems.append(SuiteProblem(file, 1, "", f"expected a mapping with at least a 'matrix' key, got {got}"))
        raise SuiteError(sorted(problems, key=lambda p: p.line))
    try:
        spec = SuiteFile.model_validate(loaded.data)
    except ValidationError as exc:
        said = {p.where for p in problems}  # a value the loader could not read is not reported twice
        found = (_problem_from_pydantic(file, loaded, err) for err in exc.errors())
        problems += [p for p in found if p.where not in said]
        problems += _unknown_metric_names(loaded.data.get("metrics"), file, loaded)  # said in the same pass
        raise SuiteError(sorted(problems, key=lambda p: p.line), _raw_model_mentions(loaded, file)) from None
    problems += _check_bounds(spec, file, loaded)
    if problems:  # the file's shape is wrong: said before the checks below import torch
        raise SuiteError(sorted(problems, key=lambda p: p.line), _raw_model_mentions(loaded, file))
    metrics, metric_where = _validate_metrics(spec, file, loaded, problems)
    problems += _check_models(spec, file, loaded)
    problems += _check_compress(spec, file, loaded)
    problems += _check_published(spec, file, loaded)
    seeded = _seeded_metrics(metrics)
    problems += _check_seeds(spec, seeded, file, loaded)
    cases = expand(spec, loaded.data.get("matrix") or ()) if not problems else ()
    if not problems and not cases:
        problems.append(SuiteProblem(file, loaded.line_of(("matrix",)), "matrix", "expands to no cases"))
    if not problems and not any(c.model for c in cases):
        problems.append(SuiteProblem(file, 1, "matrix.model", "no model given"))
    baseline = spec.baseline.model_dump(exclude_none=True) if spec.baseline is not None else {}
    if not problems and baseline and not any(matches(c.to_dict(), baseline) for c in cases):
        problems.append(SuiteProblem(file, loaded.line_of(("baseline",)), "baseline",
                                     f"no case has {_fields_text(baseline)}: the baseline row must be one of the "
                                     "suite's cases"))
    if problems:
        raise SuiteError(sorted(problems, key=lambda p: p.line))
    repeat_seeds = tuple(spec.repeats.seeds) if spec.repeats else ()
    if spec.repeats is not None:
        only = spec.repeats.where.model_dump(exclude_none=True) if spec.repeats.where is not None else {}
        cases = repeat_over_seeds(cases, repeat_seeds, lambda c: matches(c.to_dict(), only) and any(
            matches(c.to_dict(), metric_where.get(n, {})) for n in seeded))
    problems += _check_meta(spec, cases, metrics, metric_where, file, loaded)
    claim_pairs = _pair_claims(spec, cases, file, loaded, problems)  # after the repeats: a pair per seed
    if problems:
        raise SuiteError(sorted(problems, key=lambda p: p.line))
    return Suite(
        name=spec.name or default_name,
        path=file,
        description=spec.description,
        cases=tuple(cases),
        metrics=metrics,
        metric_where=metric_where,
        timeout_s=spec.timeout_s,
        timeouts=tuple((rule.match.model_dump(exclude_none=True), rule.timeout_s) for rule in spec.timeouts),
        oom_min_batch=spec.oom_min_batch,
        published=tuple(spec.published),
        repeat_seeds=repeat_seeds,
        seeded_metrics=seeded,
        baseline=baseline,
        alpha=spec.alpha,
        claim_pairs=claim_pairs,
        warnings=tuple(sorted(_warnings(spec, cases, file, loaded), key=lambda p: p.line)),
    )


def repeat_over_seeds(cases: Iterable[Case], seeds: tuple[int, ...],
                      seeded: Callable[[Case], bool]) -> tuple[Case, ...]:
    """Return ``cases`` at the first of ``seeds``, each followed by its twins at the other seeds when
    ``seeded(case)`` (a seeded metric applies to it)."""
    out: list[Case] = []
    for case in cases:
        first = dataclasses.replace(case, seed=seeds[0])
        out.append(first)
        if seeded(first):
            out += [dataclasses.replace(case, seed=seed) for seed in seeds[1:]]
    return tuple(out)


def _seeded_metrics(metrics: dict[str, BaseModel]) -> frozenset[str]:
    """Return the names of ``metrics`` whose modules say their values depend on the seed (``SEEDED``)."""
    from harness.metrics import get_metric

    return frozenset(name for name in metrics if getattr(get_metric(name), "SEEDED", False))


def _check_seeds(spec: SuiteFile, seeded: frozenset[str], file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the problems of the suite's seeds: duplicates, ``repeats`` beside a ``seed`` axis or default,
    ``repeats`` without a seeded metric to repeat."""
    problems = []
    lists = [(("matrix", "seed"), spec.matrix.seed)]
    if spec.repeats is not None:
        lists.append((("repeats", "seeds"), spec.repeats.seeds))
    for path, seeds in lists:
        seen: dict[int, int] = {}
        for i, seed in enumerate(seeds or []):
            if seed in seen:
                problems.append(SuiteProblem(file, loaded.line_of((*path, i)), _dotted((*path, i)),
                                             f"duplicate seed {seed} (also item {seen[seed]})"))
            seen.setdefault(seed, i)
    if spec.baseline is not None and spec.baseline.seed is not None:
        problems.append(SuiteProblem(file, loaded.line_of(("baseline", "seed")), "baseline.seed",
                                     "a baseline names the fields that tell its row apart; seeds are averaged "
                                     "within every row, so `seed` cannot be one"))
    if spec.repeats is None:
        return problems
    line = loaded.line_of(("repeats",))
    if spec.matrix.seed is not None or spec.defaults.seed is not None or any(i.seed is not None for i in spec.include):
        problems.append(SuiteProblem(file, line, "repeats", "give the seeds either as `repeats: {seeds: [...]}` "
                                     "(seeded metrics only) or as the `seed` axis (every metric), not both"))
    if not seeded:
        from harness.metrics import get_metric, metric_names

        names = [n for n in metric_names() if getattr(get_metric(n), "SEEDED", False)]
        problems.append(SuiteProblem(file, line, "repeats", "repeats seeds for the seeded metrics "
                                     f"({', '.join(names)}), and the suite takes none of them"))
    return problems


def _fields_text(fields: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in fields.items())


def expand(spec: SuiteFile, axis_order: Iterable[str] = ()) -> tuple[Case, ...]:
    """Return the suite's cases: defaults × matrix product, minus excludes, plus includes, deduplicated.

    The first axis in ``axis_order`` (the file's order) varies slowest; ``case_id`` duplicates are kept
    once (first wins).
    """
    base = spec.defaults.model_dump(exclude_none=True)
    axes = spec.matrix.model_dump(exclude_none=True)
    axes = {k: axes[k] for k in axis_order if k in axes} | axes
    rules = [r.model_dump(exclude_none=True) for r in spec.exclude]
    points: list[dict[str, Any]] = []
    for combo in itertools.product(*axes.values()):
        point = _split_compress(base | dict(zip(axes, combo, strict=True)))
        if not any(matches(point, rule) for rule in rules):
            points.append(point)
    points += [_split_compress(base | inc.model_dump(exclude_none=True)) for inc in spec.include]
    unique: dict[str, Case] = {}
    for point in points:
        if "model" in point:
            case = Case.from_dict(point)
            unique.setdefault(case.case_id, case)
    return tuple(unique.values())


def _split_compress(point: dict[str, Any]) -> dict[str, Any]:
    """Return ``point`` with a ``compress: {method: options}`` mapping split into ``compress`` and
    ``compress_kwargs``."""
    value = point.get("compress")
    if isinstance(value, dict):
        ((method, options),) = value.items()
        point = point | {"compress": method, "compress_kwargs": options}
    return point


def _compress_mentions(spec: SuiteFile) -> Iterable[tuple[tuple[Any, ...], Any, tuple[Any, ...], Any]]:
    """Yield every place a case's compression is given: (path of ``compress``, its value, path of the
    ``compress_kwargs`` beside it, their value); a path is () where the key is absent."""
    def at(parent: tuple[Any, ...], case: Any) -> tuple[tuple[Any, ...], Any, tuple[Any, ...], Any]:
        return ((*parent, "compress") if case.compress is not None else (), case.compress,
                (*parent, "compress_kwargs") if case.compress_kwargs is not None else (), case.compress_kwargs)

    yield at(("defaults",), spec.defaults)
    for i, inc in enumerate(spec.include):
        yield at(("include", i), inc)
    methods = spec.matrix.compress or [spec.defaults.compress or "none"]
    options = spec.matrix.compress_kwargs or [spec.defaults.compress_kwargs]
    for i, method in enumerate(methods):
        for j, kwargs in enumerate(options):
            kwargs_path = ("matrix", "compress_kwargs", j) if spec.matrix.compress_kwargs else ()
            yield ("matrix", "compress", i) if spec.matrix.compress else (), method, kwargs_path, kwargs


def _check_compress(spec: SuiteFile, file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the problems of the suite's compression options: each method's ``compress_kwargs`` validated by its
    options model (:mod:`harness.zoo.compress`), options given twice or given to ``compress: none``."""
    from harness.zoo.compress import get_method, method_options

    problems: list[SuiteProblem] = []
    seen: set[tuple[Any, ...]] = set()
    for method_path, method, kwargs_path, kwargs in _compress_mentions(spec):
        if isinstance(method, dict):
            if kwargs_path:
                problems.append(SuiteProblem(file, loaded.line_of(kwargs_path), _dotted(kwargs_path),
                                             "the options are already given in `compress: {method: options}`"))
            ((method, kwargs),) = method.items()
            kwargs_path = (*method_path, method)
        if not kwargs_path or (method_path, kwargs_path) in seen:
            continue
        seen.add((method_path, kwargs_path))
        if method in (None, "none"):
            if kwargs:
                problems.append(SuiteProblem(file, loaded.line_of(kwargs_path), _dotted(kwargs_path),
                                             "compress_kwargs given without a compression method: add `compress`"))
            continue
        try:
            method_options(method, kwargs or {})
        except ValidationError as exc:
            known = [k for k in get_method(method).options.model_fields]
            for err in exc.errors():
                problem = _problem_from_pydantic(file, loaded, dict(err, loc=(*kwargs_path, *err["loc"])))
                message = problem.message
                if err["type"] == "extra_forbidden":
                    name = str(err["loc"][-1])
                    message = f"unknown option {shown(name)}{_suggest(name, known)}; it takes: {', '.join(known)}"
                problems.append(dataclasses.replace(problem, message=f"compress {method}: {message}"))
    return problems


def _validate_metrics(
    spec: SuiteFile, file: str, loaded: LoadedYaml, problems: list[SuiteProblem]
) -> tuple[dict[str, BaseModel], dict[str, dict[str, Any]]]:
    """Return the metrics' validated options and their ``where`` filters (the reserved option key)."""
    from harness.metrics import get_metric, metric_names

    raw = spec.metrics
    items = {name: {} for name in raw} if isinstance(raw, list) else {k: dict(v or {}) for k, v in raw.items()}
    metrics: dict[str, BaseModel] = {}
    where: dict[str, dict[str, Any]] = {}
    for index, (name, options) in enumerate(items.items()):
        key: Any = index if isinstance(raw, list) else name
        if name not in metric_names():
            problems.append(_unknown_metric_problem(name, key, file, loaded))
            continue
        checks = [((), get_metric(name).Options, options)]
        if "where" in options:
            checks.insert(0, (("where",), CaseFilter, options.pop("where")))
        for prefix, schema, value in checks:
            try:
                validated = schema.model_validate(value)
            except ValidationError as exc:
                for err in exc.errors():
                    err = dict(err, loc=("metrics", key, *prefix, *err["loc"]))
                    problems.append(_problem_from_pydantic(file, loaded, err))
                continue
            if prefix:
                where[name] = validated.model_dump(exclude_none=True)
            else:
                metrics[name] = validated
    if not items:
        problems.append(SuiteProblem(file, loaded.line_of(("metrics",)), "metrics", "no metric to take"))
    return metrics, where


def _unknown_metric_problem(name: str, key: Any, file: str, loaded: LoadedYaml) -> SuiteProblem:
    from harness.metrics import metric_names

    return SuiteProblem(file, loaded.line_of(("metrics", key)), _dotted(("metrics", key)),
                        f"unknown metric {shown(name)}{_suggest(name, metric_names())}; "
                        f"expected one of: {', '.join(metric_names())}")


def _unknown_metric_names(raw: Any, file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the unknown metric names of a suite's raw ``metrics`` (a list of names or a mapping), for a file whose
    schema is wrong elsewhere: the names are checked in the same pass (torch-free: the metric table is static)."""
    from harness.metrics import metric_names

    keys = list(enumerate(raw)) if isinstance(raw, list) else [(k, k) for k in raw] if isinstance(raw, dict) else []
    return [_unknown_metric_problem(name, key, file, loaded) for key, name in keys
            if isinstance(name, str) and name not in metric_names()]


def _case_mentions(spec: SuiteFile, name: str) -> Iterable[tuple[tuple[Any, ...], Any]]:
    """Yield ``(path, value)`` for every place the case field ``name`` is given: ``defaults``, each value of its
    matrix axis, each ``include`` entry."""
    if getattr(spec.defaults, name) is not None:
        yield ("defaults", name), getattr(spec.defaults, name)
    for i, value in enumerate(getattr(spec.matrix, name) or []):
        yield ("matrix", name, i), value
    for i, inc in enumerate(spec.include):
        if getattr(inc, name) is not None:
            yield ("include", i, name), getattr(inc, name)


def _check_bounds(spec: SuiteFile, file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the problems of values well typed yet unable to run: a ``name`` too long for a folder, a
    ``world_size`` beyond MAX_WORLD_SIZE, a ``checkpoint`` in ``model_kwargs`` that is not a file's path."""
    problems = []
    if spec.name is not None and len(spec.name.encode()) > MAX_NAME_BYTES:
        problems.append(SuiteProblem(file, loaded.line_of(("name",)), "name",
                                     f"the name is {len(spec.name.encode())} bytes long; expected at most "
                                     f"{MAX_NAME_BYTES} (the store makes a folder of it)"))
    for path, size in _case_mentions(spec, "world_size"):
        if size > MAX_WORLD_SIZE:
            problems.append(SuiteProblem(file, loaded.line_of(path), _dotted(path),
                                         f"world_size {size} starts {size} processes on one machine; expected at "
                                         f"most {MAX_WORLD_SIZE}"))
    for path, kwargs in _case_mentions(spec, "model_kwargs"):
        checkpoint = kwargs.get("checkpoint")
        if checkpoint is not None and not (isinstance(checkpoint, str) and checkpoint):
            where = (*path, "checkpoint")
            problems.append(SuiteProblem(file, loaded.line_of(where), _dotted(where),
                                         f"expected the path of a weights file, got {shown(checkpoint)}"))
    return problems


def _warnings(spec: SuiteFile, cases: tuple[Case, ...], file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return what is valid but suspect: more ``threads`` than this machine's cores (the case runs, slowly), CUDA
    cases needing more GPUs than NVML sees here (they are recorded as skipped), ``published`` entries matching no
    case (their values are never shown)."""
    found = []
    cores = os.cpu_count()
    for path, threads in _case_mentions(spec, "threads"):
        if cores is not None and threads > cores:
            found.append(SuiteProblem(file, loaded.line_of(path), _dotted(path),
                                      f"{threads} threads, and this machine has {cores} cores: the case runs "
                                      "oversubscribed, its timings are not comparable (a warning, not an error)"))
    wanted = {c.world_size for c in cases if c.device == "cuda" and c.world_size > 1}
    gpus = _gpu_count() if wanted else None
    for path, size in _case_mentions(spec, "world_size"):
        if gpus is not None and size in wanted and size > gpus:
            found.append(SuiteProblem(file, loaded.line_of(path), _dotted(path),
                                      f"world_size {size} on cuda needs {size} GPUs, one per process, and this "
                                      f"machine has {gpus}: those cases will be recorded as skipped here (a "
                                      "warning, not an error)"))
    for i, entry in enumerate(spec.published):
        rule = entry.match.model_dump(exclude_none=True)
        if not any(matches(c.to_dict(), rule) for c in cases):
            found.append(SuiteProblem(file, loaded.line_of(("published", i, "match")), f"published[{i}].match",
                                      f"matches no case of the suite ({_fields_text(rule)}): its values are never "
                                      "shown (a warning, not an error)"))
    return found


#: What a case on the meta device (a model without weights: counted, never run) may take: its metrics, and the
#: case fields that need real weights or a real run, each at the value it must keep.
META_METRICS = frozenset({"complexity"})
META_FIELDS: dict[str, Any] = {"quant": "none", "compile": "none", "compress": "none", "precision": "convert",
                               "world_size": 1}


def _check_meta(spec: SuiteFile, cases: Sequence[Case], metrics: dict[str, BaseModel],
                metric_where: dict[str, dict[str, Any]], file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the problems of cases on the meta device: a metric other than those of :data:`META_METRICS` taken
    for one, or a field of :data:`META_FIELDS` away from its value (said once each, at the ``device: meta``)."""
    meta = [c for c in cases if c.device == "meta"]
    if not meta:
        return []
    said: list[str] = []
    for case in meta:
        point = case.to_dict()
        said += [f"metric {name!r}" for name in metrics if name not in META_METRICS
                 and matches(point, metric_where.get(name, {})) and f"metric {name!r}" not in said]
        said += [f"{key} {point[key]!r}" for key, value in META_FIELDS.items()
                 if point[key] != value and f"{key} {point[key]!r}" not in said]
    if not said:
        return []
    path = next((p for p, v in _case_mentions(spec, "device") if v == "meta"), ("defaults", "device"))
    return [SuiteProblem(file, loaded.line_of(path), _dotted(path),
                         f"device 'meta' builds the model without weights, to count it: its cases take only the "
                         f"{', '.join(sorted(META_METRICS))} metric at {_fields_text(META_FIELDS)}; got "
                         f"{', '.join(said)} (`where: {{device: [cpu, cuda]}}` keeps a metric off the meta cases)")]


def _gpu_count() -> int | None:
    """Return how many GPUs CUDA may use here: NVML's count, or the length of ``CUDA_VISIBLE_DEVICES`` when that
    is set and smaller; None where NVML cannot tell (no driver, no bindings)."""
    from harness.nvml import nvml_available, nvml_session

    if not nvml_available()[0]:
        return None
    with nvml_session() as nv:
        count = int(nv.nvmlDeviceGetCount())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return count if visible is None else min(count, len([d for d in visible.split(",") if d.strip()]))


def _check_models(spec: SuiteFile, file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    mentions = [ModelMention(file, loaded.line_of(path), _dotted(path), name)
                for path, name in _case_mentions(spec, "model")]
    return unknown_models(mentions)


def _raw_model_mentions(loaded: LoadedYaml, file: str) -> list[ModelMention]:
    """Return the model names (strings) a suite's raw data gives under ``defaults``, ``matrix`` and ``include``,
    whatever is wrong elsewhere in the file."""
    data = loaded.data if isinstance(loaded.data, dict) else {}
    places: list[tuple[tuple[Any, ...], Any]] = []
    for section in ("defaults", "matrix"):
        value = data.get(section).get("model") if isinstance(data.get(section), dict) else None
        if isinstance(value, list):
            places += [((section, "model", i), v) for i, v in enumerate(value)]
        else:
            places.append(((section, "model"), value))
    includes = data.get("include") if isinstance(data.get("include"), list) else []
    places += [(("include", i, "model"), inc.get("model")) for i, inc in enumerate(includes) if isinstance(inc, dict)]
    return [ModelMention(file, loaded.line_of(path), _dotted(path), name) for path, name in places
            if isinstance(name, str)]


def unknown_models(mentions: Iterable[ModelMention]) -> list[SuiteProblem]:
    """Return a problem for each mention of a model neither the zoo nor timm can build (imports torch)."""
    from harness.zoo import is_known_model, list_models

    problems = []
    known: list[str] = []  # every model name, listed once, for the suggestions
    for m in mentions:
        if not is_known_model(m.name):
            known = known or [n for n, _ in list_models()]
            problems.append(SuiteProblem(m.file, m.line, m.where, f"unknown model {shown(m.name)}"
                                         f"{_suggest(m.name, known)}; expected a name from `harness list models`"))
    return problems


def _check_published(spec: SuiteFile, file: str, loaded: LoadedYaml) -> list[SuiteProblem]:
    """Return the unknown metric columns named by ``published`` values and claims' ``ratios``."""
    from harness.metrics import metric_columns

    columns = metric_columns()
    named = [(("published", i, "values", m), m) for i, entry in enumerate(spec.published) for m in entry.values]
    named += [(("claims", i, "ratios", m), m) for i, claim in enumerate(spec.claims) for m in claim.ratios]
    return [SuiteProblem(file, loaded.line_of(path), _dotted(path),
                         f"unknown metric column {shown(metric)}{_suggest(metric, list(columns))}")
            for path, metric in named if metric not in columns]


def _pair_claims(spec: SuiteFile, cases: tuple[Case, ...], file: str, loaded: LoadedYaml,
                 problems: list[SuiteProblem]) -> dict[str, list[dict[str, Any]]]:
    """Return the claims' pairs of cases (:func:`harness.claims.pair_claims`), adding its problems to ``problems``."""
    from harness.claims import pair_claims

    claims = [{**c.model_dump(exclude_none=True), "candidate": c.candidate.model_dump(exclude_none=True),
               "baseline": c.baseline.model_dump(exclude_none=True),
               "ratios": {m: b.model_dump(exclude_none=True) for m, b in c.ratios.items()}} for c in spec.claims]
    pairs, found = pair_claims(claims, cases)
    problems += [SuiteProblem(file, loaded.line_of(("claims", p.index, p.key)), _dotted(("claims", p.index, p.key)),
                              p.message) for p in found]
    return pairs


_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _problem_from_pydantic(file: str, loaded: LoadedYaml, err: Any) -> SuiteProblem:
    loc = tuple(p for p in err["loc"] if not _is_union_branch(p))
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        parent = _allowed_keys(loc[:-1])
        hint = f"; expected one of: {', '.join(parent)}" if parent else ""
        message = f"unknown key {shown(loc[-1])}{_suggest(str(loc[-1]), parent)}{hint}"
        if loc[0] == "metrics" and loc[-1] == "seed":
            message = ("`seed` is a field of the case, not a metric option: give it as the matrix axis `seed`, or "
                       "as `repeats: {seeds: [...]}` to repeat the seeded metrics only")
    elif kind == "missing":
        message = "required key is missing"
    elif kind in _EXPECTED:
        message = f"{_EXPECTED[kind]}, got {shown(got)}"
    elif kind == "too_short":
        message = "expected a non-empty list" if isinstance(got, list) else err["msg"]
    else:
        message = f"{err['msg']}, got {shown(got)}" if "input" in err and not isinstance(got, dict) else err["msg"]
    return SuiteProblem(file, loaded.line_of(loc), _dotted(loc), message)


def _is_union_branch(part: Any) -> bool:
    """pydantic adds union branch names ('list[int]', 'function-after[...]', …) to error locations."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    if not parent:
        return list(SuiteFile.model_fields)
    if parent[0] in {"defaults", "matrix", "include", "exclude"} or parent[-1:] in {
            ("match",), ("where",), ("candidate",), ("baseline",)}:
        return list(AXIS_TYPES)
    if parent[0] == "claims":
        return list(RatioBounds.model_fields) if "ratios" in parent else list(Claim.model_fields)
    if parent[0] == "published":
        return list(Published.model_fields)
    if parent[0] == "baseline":
        return list(AXIS_TYPES)
    if parent[0] == "repeats":
        return list(Repeats.model_fields)
    return []


def _suggest(name: str, known: Iterable[str]) -> str:
    """Return " (did you mean 'X'?)" for the known name closest to ``name``, or "" (always for a name too long to
    be a typo)."""
    close = difflib.get_close_matches(name, list(known), n=1) if len(name) <= 100 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _dotted(path: tuple[Any, ...]) -> str:
    """Return ``path`` as written in messages, ``matrix.batch[1]``; a key longer than 60 characters cut to 60."""
    out = ""
    for part in path:
        text = str(part) if len(str(part)) <= 60 else f"{str(part)[:57]}..."
        out += f"[{part}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out
