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


def test_registry_is_a_read_only_mapping():
    reg: Registry = Registry("widget")
    make_a = reg.register("a")(lambda: "a")
    reg.register("b")(lambda: "b")
    assert reg["a"] is make_a and dict(reg.items())["a"] is make_a
    assert list(reg.keys()) == ["a", "b"] and len(reg.values()) == 2
    assert reg.get("zz", None) is None and "zz" not in reg
    with pytest.raises(KeyError, match="unknown widget 'zz'; choose one of: a, b"):
        reg["zz"]
    with pytest.raises(UserError):
        reg["zz"]
    with pytest.raises(TypeError):
        reg["c"] = make_a  # type: ignore[index]


def test_the_shipped_registries_behave_like_dicts():
    from vlrface.models import BACKBONES, HEADS

    assert "iresnet50" in BACKBONES and callable(BACKBONES["iresnet50"])
    assert {"arcface", "adaface"} <= set(HEADS) and len(HEADS) == len(dict(HEADS.items()))
