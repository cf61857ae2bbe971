"""One flag style on every command: options are spelt with underscores, the dashed spelling is an alias, help
shows one spelling, and an unknown option names the nearest known one.

The parsers are collected from the code (every ``physfm`` subcommand, their subcommands, and every script with a
``build_parser``), so a new command or option is checked without editing this file.
"""

from __future__ import annotations

import argparse
import importlib
import re
import runpy
import sys
from pathlib import Path

import pytest

from physfm._cli_parsing import Parser
from physfm.cli import COMMANDS

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _roots() -> dict[str, argparse.ArgumentParser]:
    roots = {f"physfm {name}": importlib.import_module(module).build_parser() for name, (module, _) in COMMANDS.items()}
    sys.path.insert(0, str(SCRIPTS))  # benchmark scripts import plain_autoencoder from beside them
    try:
        for script in sorted(SCRIPTS.glob("*.py")):
            if "def build_parser(" in script.read_text():
                roots[f"scripts/{script.name}"] = runpy.run_path(str(script))["build_parser"]()
    finally:
        sys.path.remove(str(SCRIPTS))
    return roots


def _walk(parser, prefix=()):
    """``(words that select the parser, parser)`` for a parser and all its subcommands."""
    yield list(prefix), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*prefix, name))


def _value(action) -> list[str]:
    """Words one occurrence of ``action`` takes that its type and choices accept."""
    if action.nargs == 0:
        return []
    if action.choices is not None:
        word = str(next(iter(action.choices)))
    else:
        convert = action.type if callable(action.type) else str
        word = next(w for w in ("1", "0.8,0.1,0.1", "x") if _accepts(convert, w))
    return [word] * (action.nargs if isinstance(action.nargs, int) else 1)


def _accepts(convert, word: str) -> bool:
    try:
        convert(word)
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return False
    return True


def _required(parser) -> list[str]:
    """The least a command line to ``parser`` must hold: its positionals and required options."""
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name, sub = next(iter(action.choices.items()))
            words += [name, *_required(sub)]
        elif not action.option_strings:
            words += _value(action)
        elif action.required:
            words += [action.option_strings[0], *_value(action)]
    return words


def _long_options(parser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings if o.startswith("--")]


ROOTS = _roots()
PARSERS = [(" ".join([name, *prefix]), root, prefix, parser)
           for name, root in ROOTS.items() for prefix, parser in _walk(root)]
OPTIONS = [pytest.param(root, prefix, parser, action, option, id=f"{where} {option}")
           for where, root, prefix, parser in PARSERS for action in parser._actions
           for option in action.option_strings if "_" in option and not isinstance(action, argparse._HelpAction)]


def test_the_parsers_were_found():
    assert set(ROOTS) >= {"physfm train", "physfm simulate", "physfm select-tokeniser", "physfm experiment",
                          "scripts/pretrain_tokenisers.py", "scripts/benchmark_training.py"}
    assert {"physfm simulate shear_flow", "physfm hub push"} <= {where for where, *_ in PARSERS}
    assert len(OPTIONS) > 100
    assert all(isinstance(parser, Parser) for *_, parser in PARSERS)


@pytest.mark.parametrize(("root", "prefix", "parser", "action", "option"), OPTIONS)
def test_every_option_takes_both_spellings(root, prefix, parser, action, option):
    dashed = "--" + option[2:].replace("_", "-")
    base = [*prefix, *_required(parser)]
    value = _value(action)
    canonical, unknown = root.parse_known_args([*base, option, *value])
    assert unknown == []
    aliased, unknown = root.parse_known_args([*base, dashed, *value])
    assert unknown == [], f"{dashed} is not accepted as {option}"
    assert vars(aliased) == vars(canonical)
    if value:  # the --name=value form too
        assert vars(root.parse_known_args([*base, f"{dashed}={value[0]}", *value[1:]])[0]) == vars(canonical)


@pytest.mark.parametrize(("where", "parser"), [pytest.param(w, p, id=w) for w, _, _, p in PARSERS])
def test_help_shows_one_spelling(where, parser):
    long_options = _long_options(parser)
    assert [o for o in long_options if "-" in o[2:]] == []
    assert len(long_options) == len(set(long_options))
    assert re.findall(r"--[a-z0-9]+(?:-[a-z0-9]+)+", parser.format_help()) == []


@pytest.mark.parametrize(("where", "root", "prefix", "parser"),
                         [pytest.param(*p, id=p[0]) for p in PARSERS if _long_options(p[3]) != ["--help"]])
def test_an_unknown_option_names_the_nearest(where, root, prefix, parser):
    option = max(_long_options(parser), key=len)  # the longest: its truncation is nearer to it than to any other
    for typo in (option[:-1], "--" + option[2:-1].replace("_", "-")):
        with pytest.raises(ValueError, match=rf"unrecognised arguments \['{typo}' \(did you mean '{option}'\?\)"):
            root.parse_args([*prefix, *_required(parser), typo])
