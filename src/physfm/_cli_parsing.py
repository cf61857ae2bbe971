"""The argument parser of every physfm command and script.

Options are spelt with underscores, ``--batch_size``: the spelling of the keyword argument, the
config-file key and the dataclass field each option fills (``train(max_steps=...)``, ``max_steps:``
in a YAML config, ``TrainingArguments.max_steps``), and of transformers' own example scripts. The
dashed spelling, ``--batch-size``, is accepted everywhere as an alias, as ``HfArgumentParser``
accepts it, so nothing typed before breaks; ``--help`` lists the canonical spelling only.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

from transformers import HfArgumentParser


def canonical(arg: str) -> str:
    """``--batch-size`` and ``--batch-size=4`` as ``--batch_size`` and ``--batch_size=4``; other words unchanged."""
    if not arg.startswith("--") or arg == "--":
        return arg
    flag, equals, value = arg.partition("=")
    return "--" + flag[2:].replace("-", "_") + equals + value


class Parser(HfArgumentParser):
    """``argparse.ArgumentParser`` (and transformers' dataclass arguments) as every physfm command uses it.

    - Options are registered in their canonical spelling and matched in either (see the module docstring).
    - User errors raise ``ValueError`` rather than ``SystemExit(2)``: the ``physfm`` dispatcher and the
      in-process API report every user error the same way.
    - An unknown option names the nearest known one: ``'--max_step' (did you mean '--max_steps'?)``.
    - No prefix matching: a misspelt ``--max_step`` is an error, not silently ``--max_steps``.
    """

    def __init__(self, dataclass_types=(), **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.HelpFormatter)
        super().__init__(dataclass_types, **kwargs)

    def add_argument(self, *names, **kwargs):
        # HfArgumentParser registers both spellings of a field; the canonical one is enough.
        return super().add_argument(*dict.fromkeys(map(canonical, names)), **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        typed = list(sys.argv[1:] if args is None else args)
        end = typed.index("--") if "--" in typed else len(typed)  # after a bare "--" every word is a value
        words = [*map(canonical, typed[:end]), *typed[end:]]
        namespace, unknown = super().parse_known_args(words, namespace)
        as_typed = dict(zip(words, typed, strict=True))  # an error quotes what the user typed
        return namespace, [as_typed.get(word, word) for word in unknown]

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.reject(unknown)
        return namespace

    def reject(self, unknown: list[str]):
        """The error for words no option or positional took, each option with the nearest known name."""
        known = [name for parser in self._subtree() for action in parser._actions for name in action.option_strings
                 if name.startswith("--")]
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(canonical(word).partition("=")[0], known, n=1) if word[:2] == "--" else []
            hints.append(f"{word!r} (did you mean {close[0]!r}?)" if close else repr(word))
        self.error(f"unrecognised arguments [{', '.join(hints)}]")

    def _subtree(self) -> list[Parser]:
        parsers = [self]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [p for sub in dict.fromkeys(action.choices.values()) for p in sub._subtree()]
        return parsers

    def error(self, message: str):
        raise ValueError(f"{self.prog}: {message}; see `{self.prog} --help`")
