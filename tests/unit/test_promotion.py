"""The promotion graph's pure rules (`baton.promotion`) and its configuration (`promotion:`)."""

from __future__ import annotations

from baton.config import parse_config
from baton.promotion import PromotionGraph, describe, problems, stages_of
from tests.unit.test_config import APP
from tests.unit.test_config import problems as config_problems

GRAPH = PromotionGraph(stages_of(["dev", ["staging-a", "staging-b"], "prod"]))
ENVIRONMENTS = (
    "environments: [{name: dev, namespace: d}, {name: staging-a, namespace: a}, "
    "{name: staging-b, namespace: b}, {name: prod, namespace: p}]\n"
)


def test_a_stage_waits_for_every_environment_of_the_stage_before() -> None:
    assert GRAPH.after("dev") == []
    assert GRAPH.after("staging-b") == ["dev"]
    assert GRAPH.after("prod") == ["staging-a", "staging-b"]


def test_both_parallel_environments_are_ready_once_their_predecessor_deployed() -> None:
    assert GRAPH.ready({}) == ["dev"]
    assert GRAPH.ready({"dev": "running"}) == []
    assert GRAPH.ready({"dev": "deployed"}) == ["staging-a", "staging-b"]
    half = {"dev": "deployed", "staging-a": "deployed", "staging-b": "running"}
    assert GRAPH.ready(half) == []
    both = {**half, "staging-b": "deployed"}
    assert GRAPH.ready(both) == ["prod"]


def test_a_failure_blocks_what_depends_on_it_and_nothing_else() -> None:
    positions = {"dev": "deployed", "staging-a": "running", "staging-b": "failed"}
    assert GRAPH.blocked(positions) == ["prod"]
    assert GRAPH.ready(positions) == []
    early = PromotionGraph(stages_of(["dev", "staging", "prod"]))
    assert early.blocked({"dev": "rejected"}) == ["staging", "prod"]


def test_the_graph_reads_as_one_line_with_each_environment_s_position() -> None:
    steps = GRAPH.steps(
        {"dev": "deployed", "staging-a": "deployed", "staging-b": "failed", "prod": "blocked"}
    )
    assert describe(steps) == "dev ✓ → [staging-a ✓ | staging-b ✗] → prod ⊘"


def test_promotion_problems_name_the_field_path() -> None:
    known = ["dev", "staging-a", "prod"]
    assert problems(["dev", ["staging-a", "staging-c"], "prod"], known) == [
        (
            "promotion[1][1]: unknown environment 'staging-c': define it under environments "
            "(dev, staging-a, prod)"
        )
    ]
    assert problems(["dev", ["staging-a", "dev"], []], known) == [
        "promotion[1][1]: environment 'dev' is promoted to twice (also promotion[0]): list it once",
        "promotion[2]: an empty stage: name its environments or drop it",
    ]


def test_config_accepts_parallel_stages_and_keeps_their_order() -> None:
    config = parse_config(APP + ENVIRONMENTS + "promotion: [dev, [staging-a, staging-b], prod]\n")
    assert config.promotion_stages() == [["dev"], ["staging-a", "staging-b"], ["prod"]]
    assert [e.name for e in config.promotion_order()] == ["dev", "staging-a", "staging-b", "prod"]


def test_config_check_refuses_an_unknown_or_repeated_environment_in_a_stage() -> None:
    assert config_problems(APP + ENVIRONMENTS + "promotion: [dev, [staging-a, stagign-b]]\n") == [
        (
            "promotion[1][1]: unknown environment 'stagign-b': define it under environments "
            "(dev, staging-a, staging-b, prod)"
        )
    ]
    assert config_problems(APP + ENVIRONMENTS + "promotion: [dev, [prod, staging-a], prod]\n") == [
        "promotion[2]: environment 'prod' is promoted to twice (also promotion[1][0]): list it once"
    ]
