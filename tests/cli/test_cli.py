"""The CLI contract: every verb has --help; user mistakes exit 2 with one line."""

import pytest

from vlrface.cli import app

VERBS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_all_design_verbs_exist():
    expected = {"demo", "train", "eval", "embed", "quality", "identify", "export", "serve", "align", "enrol", "bench"}
    assert expected <= set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, cli):
    code, out, _ = cli([verb, "--help"])
    assert code == 0 and "Usage" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "no/such/config.yaml"], "config file not found"),
        (["train", "demo", "train.stepz=3"], "unknown config key 'train.stepz'"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(argv, message, cli):
    code, _, err = cli(argv)
    assert code == 2
    assert message in err and err.count("\n") == 1
