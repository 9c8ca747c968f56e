"""--shard I/N: a deterministic, cost-balanced split with every case in exactly one shard."""

from __future__ import annotations

import random

import pytest

from harness.errors import HarnessError
from harness.runner.shard import Shard, assign_shards, estimate_cost_s, parse_shard, select_shard
from harness.suite import parse_suite

SUITE = """\
matrix:
  model: [resnet18, resnet50, mobilenetv2_100, tiny_cnn]
  batch: [1, 8, 64]
  resolution: [64, 224]
metrics:
  complexity: {}
  latency: {min_time_s: 0.5, max_time_s: 5}
"""


def _cost(suite):
    return lambda case: estimate_cost_s(case, {n: o.model_dump() for n, o in suite.metrics_for(case).items()})


@pytest.mark.parametrize(("text", "expected"), [("1/4", Shard(1, 4)), (" 3 / 3 ", Shard(3, 3))])
def test_shard_text_is_parsed(text, expected):
    assert parse_shard(text) == expected and str(expected) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["0/4", "5/4", "1-4", "a/b", "1/0"])
def test_a_bad_shard_says_what_was_expected(text):
    with pytest.raises(HarnessError, match=r"--shard .*(I/N|between 1 and N)"):
        parse_shard(text)


def test_every_case_is_in_exactly_one_shard_and_the_split_is_balanced():
    suite = parse_suite(SUITE)
    cost = _cost(suite)
    shards = [select_shard(suite.cases, cost, Shard(i, 4)) for i in range(1, 5)]
    ids = [c.case_id for shard in shards for c in shard]
    assert sorted(ids) == sorted(c.case_id for c in suite.cases) and len(set(ids)) == len(ids)
    loads = [sum(cost(c) for c in shard) for shard in shards]
    biggest = max(cost(c) for c in suite.cases)
    assert max(loads) - min(loads) <= biggest  # the longest-processing-time rule's bound
    assert max(loads) <= 4 / 3 * sum(loads) / 4 + biggest
    assert all(list(shard) == [c for c in suite.cases if c in shard] for shard in shards)  # the suite's order


def test_the_split_does_not_depend_on_the_order_the_cases_come_in():
    suite = parse_suite(SUITE)
    cases = list(suite.cases)
    random.Random(3).shuffle(cases)
    assert assign_shards(cases, _cost(suite), 3) == assign_shards(suite.cases, _cost(suite), 3)


def test_costlier_cases_are_estimated_costlier():
    suite = parse_suite(SUITE)
    by_key = {(c.model, c.batch, c.resolution): _cost(suite)(c) for c in suite.cases}
    assert by_key[("resnet50", 64, 224)] > by_key[("resnet50", 8, 224)] > by_key[("resnet50", 1, 64)]
