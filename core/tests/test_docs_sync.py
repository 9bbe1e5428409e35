"""CONTRIBUTING.md documents every hook of hookspecs.py, with the right arguments, and no other."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from inference_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "CONTRIBUTING.md"
ECHO = ROOT / "tests" / "third_party" / "inference-echo"
HEADING = re.compile(r"^### (\w+)\(([^)]*)\)\s*$")


def hook_reference() -> str:
    text = DOC.read_text()
    start = text.index("\n## Hook reference")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def sections() -> dict[str, tuple[list[str], str]]:
    """hook name -> (documented argument names, the section's text)."""
    found: dict[str, tuple[list[str], str]] = {}
    current = None
    for line in hook_reference().splitlines():
        match = HEADING.match(line)
        if match:
            name = match.group(1)
            assert name not in found, f"hook {name!r} is documented twice"
            args = [a.strip() for a in match.group(2).split(",") if a.strip()]
            found[name] = (args, "")
            current = name
        elif line.startswith("### "):
            current = None
        elif current is not None:
            args, body = found[current]
            found[current] = (args, body + line + "\n")
    return found


def spec_args(name: str) -> list[str]:
    return list(inspect.signature(getattr(hookspecs, name)).parameters)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_hookspec_is_documented_with_its_exact_arguments():
    documented = sections()
    for name in hookspecs.HOOK_NAMES:
        assert name in documented, f"CONTRIBUTING.md has no '### {name}(...)' section"
        assert documented[name][0] == spec_args(name), (
            f"### {name}({', '.join(documented[name][0])}) does not match the hookspec "
            f"{name}({', '.join(spec_args(name))})"
        )


def test_no_section_documents_a_hook_that_does_not_exist():
    extra = set(sections()) - set(hookspecs.HOOK_NAMES)
    assert not extra, f"documented but not in hookspecs.py: {sorted(extra)}"


def test_hook_names_match_the_module_hookspecs():
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    specs = {n for n, v in vars(hookspecs).items() if callable(v) and hasattr(v, marker)}
    assert specs == set(hookspecs.HOOK_NAMES)


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_each_section_states_the_contract_and_has_a_valid_example(name):
    _, body = sections()[name]
    for part in ("**Arguments**", "**Returns**", "**Errors**", "**Example**"):
        assert part in body, f"### {name}: no {part} paragraph"
    blocks = python_blocks(body)
    assert blocks, f"### {name}: no python example"
    tree = ast.parse(blocks[0])  # the example at least parses
    impls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef) and node.name == name
    ]
    assert impls, f"### {name}: the example has no `async def {name}(...)`"
    params = [a.arg for a in impls[0].args.args if a.arg != "self"]
    assert set(params) <= set(spec_args(name)), f"### {name}: example takes {params}"
    assert not impls[0].args.defaults, f"### {name}: example parameters must have no default"


def test_the_tutorial_plugin_is_the_tested_one():
    """The 30-line plugin in the guide is byte for byte the one the wheel test installs."""
    text = DOC.read_text()
    source = (ECHO / "src" / "inference_echo" / "__init__.py").read_text()
    assert source.strip() in [block.strip() for block in python_blocks(text)]
    assert len(source.splitlines()) <= 40
    pyproject = (ECHO / "pyproject.toml").read_text()
    assert 'echo = "inference_echo:plugin"' in pyproject
    assert (
        '[project.entry-points."inference_core.backends"]\necho = "inference_echo:plugin"' in text
    )


def test_the_continue_final_message_capability_is_documented():
    """CONTRIBUTING documents the stream-resume capability as the router reads it, and each
    first-party plugin's declaration as it is."""
    import importlib

    from inference_core.routing import resume

    text = hook_reference()
    assert "### Continuing a cut stream (optional capability)" in text
    for name in ("continue_final_message = True", '"echo"', "add_generation_prompt: false"):
        assert name in text, f"CONTRIBUTING's stream-resume section does not mention {name}"
    assert resume.PREFILL_FLAGS == {"continue_final_message": True, "add_generation_prompt": False}
    for module, word in (
        ("inference_llamacpp", "llama.cpp `True`"),
        ("inference_vllm", "vLLM `True`"),
        ("inference_ollama", "Ollama `False`"),
        ("inference_openai", "OpenAI `False`"),
        ("inference_textgen", "textgen `False`"),
    ):
        declared = importlib.import_module(module).plugin.continue_final_message
        assert word in text, f"CONTRIBUTING does not say {word}"
        assert word.endswith(f"`{declared}`"), f"{module} declares {declared}, the doc says {word}"


def test_the_native_protocol_capability_is_documented():
    """CONTRIBUTING documents the optional native-protocol capability with its real names."""
    from inference_core.protocols import native
    from inference_core.testing import BackendConformance

    text = hook_reference()
    assert "### Native protocols (optional capability)" in text
    for name in ("native_protocols", "native_request()", "NativeAnswer", "NativeEvent",
                 "mock_native(self, upstream, protocol, stream)", *native.PROTOCOLS):  # fmt: skip
        assert name in text, f"CONTRIBUTING's native-protocol section does not mention {name}"
    for name in ("native_request", "speaks", "NativeAnswer", "NativeEvent", "PROTOCOLS"):
        assert hasattr(native, name), f"documented but missing: native.{name}"
    assert hasattr(BackendConformance, "mock_native")
    assert hasattr(BackendConformance, "native_protocols")
