import pytest

from vlrface.errors import UserError
from vlrface.registry import Registry


def test_register_build_and_list():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def make_b(x=1):
        return ("b", x)

    reg.register("a")(lambda: "a")
    assert reg.names() == ["a", "b"] and "b" in reg and len(reg) == 2
    assert reg.build("b", x=3) == ("b", 3)


def test_unknown_name_lists_choices_and_duplicates_fail():
    reg: Registry = Registry("widget")
    reg.register("only")(lambda: 0)
    with pytest.raises(UserError, match="unknown widget 'nope'; choose one of: only"):
        reg.get("nope")
    with pytest.raises(ValueError):
        reg.register("only")(lambda: 1)
