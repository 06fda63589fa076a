"""haven.stateful.rabbitmq_node.guarded: erl_call's expressions run only on the node they name (pure)."""

from __future__ import annotations

from haven.stateful.rabbitmq_node import STATUS_EXPR, WRONG_NODE, erl_atom, guarded


def test_the_expression_runs_only_if_the_answering_node_is_the_named_one() -> None:
    text = guarded(STATUS_EXPR, "rabbit-1@localhost")
    atom = erl_atom("rabbit-1@localhost")
    assert text.startswith(f"case node() =:= {atom} of true -> case rabbit:is_running()")
    assert text.endswith(f'false -> io:put_chars(["{WRONG_NODE}", atom_to_list(node())]) end.')
    assert text.count(" end.") == 1  # the body's own full stop removed: one expression
    # The node's name is not spelled out: a drill's cut resets distribution packets that carry it.
    assert "rabbit-1@localhost" not in text
