"""The two Lava packaging fixes: each does its job, and nothing where its problem is absent."""
import importlib
import subprocess
import sys
import textwrap

import pytest

from spikereg import compat

BROKEN = textwrap.dedent("""
    from dataclasses import dataclass, InitVar

    @dataclass
    class ByteEncoder:
        base: int = 0

    @dataclass
    class CoreEncoder:
        x: ByteEncoder = ByteEncoder()
        y: ByteEncoder = ByteEncoder()
""")


def test_dataclass_fix_makes_the_lava_pattern_importable():
    if sys.version_info < (3, 11):
        pytest.skip("the mutable-default check only exists on Python >= 3.11")
    with pytest.raises(ValueError, match="mutable default"):
        exec(compile(BROKEN, "var_model", "exec"), {"__name__": "broken"})
    namespace = {"__name__": "fixed"}
    exec(compile(compat.fix_dataclass_defaults(BROKEN), "var_model", "exec"), namespace)
    first, second = namespace["CoreEncoder"](), namespace["CoreEncoder"]()
    assert first.x == namespace["ByteEncoder"]() and first.x is not second.x  # fresh default each time


def test_dataclass_fix_leaves_fixed_source_alone():
    fixed = BROKEN.replace("ByteEncoder()", "field(default_factory=ByteEncoder)")
    assert not compat.needs_dataclass_fix(fixed)
    assert compat.fix_dataclass_defaults(fixed) == fixed


def test_lava_compiler_imports_and_var_model_is_patched_in_memory_only():
    var_model = compat.import_lava("lava.magma.compiler.var_model")
    encoder = var_model.ChipEncoder()
    assert encoder.x is not var_model.ChipEncoder().x
    with open(var_model.__file__, encoding="utf-8") as handle:
        assert compat.needs_dataclass_fix(handle.read()) == (sys.version_info >= (3, 11)), \
            "site-packages must stay untouched"


def test_slayer_imports_without_torchvision_and_object_detection_fails_clearly():
    slayer = compat.slayer()
    assert hasattr(slayer.block.cuba, "Conv")
    if compat.torchvision_works():
        pytest.skip("torchvision works here: the stub is (correctly) not installed")
    with pytest.raises(ImportError, match="torchvision"):
        slayer.obd.YOLOBase  # noqa: B018


def test_without_compat_lava_fails_on_this_python():
    """The fixes are needed: plain imports break (if this starts passing, drop the fix)."""
    if sys.version_info < (3, 11):
        pytest.skip("Lava imports cleanly before Python 3.11")
    code = "import lava.magma.compiler.compiler"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "mutable default" in result.stderr
    if not compat.torchvision_works():
        result = subprocess.run([sys.executable, "-c", "import lava.lib.dl.slayer"], capture_output=True, text=True)
        assert result.returncode != 0


def test_finder_ignores_other_modules():
    assert compat._FINDER.find_spec("json") is None
    assert importlib.import_module("json")
