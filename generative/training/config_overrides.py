"""One-line errors for unknown `--config.FIELD=VALUE` overrides, checked before absl parses flags.

ml_collections' config_flags answers an override of a field the config does not have
(`--config.optim.lrr=1e-3`, `--config.trainng.num_steps=3`) with a long AttributeError traceback
from inside flag parsing, a missing config file (`--config=configs/x.py`) with an IOError on first
use of the config, and a syntax error in it with a traceback through config_flags' loader.
`exit_on_bad_config_overrides()`, called in a launcher's `if __name__ == "__main__":` block just
before `app.run(main)`, turns each into one line on stderr and exit status 2, e.g.

    unknown config field 'optim.lrr' (from --config.optim.lrr=1e-3); did you mean 'optim.lr'?

How it works (no patching of config_flags; it only reads argv and the config, then steps aside):

1. argv is expanded for `--flagfile` as config_flags does, and scanned with config_flags' own
   rules: the config file is the value of the last `--config=PATH` / `--config PATH` (`-config`
   too; `PATH:ARG` passes ARG to get_config), the overrides are the arguments matching
   `-{1,2}(no)?config.` and the field path of one is what lies between the first `.` and the first
   `=` (so `--config.a.b=1`, `--config.a.b 1` and `--noconfig.a.b` all name 'a.b').
2. A config file that does not exist is reported (with the closest .py names of its directory),
   and one that does not compile by its file and line.
3. With overrides present, the config is loaded by config_flags' own ConfigFileFlagParser (its
   module file's get_config(), exactly what the flag itself will run next; get_config is pure in
   this project's configs, so running it twice is harmless), and each override path, split by
   config_flags' config_path.split, is walked from the root. Only a name that is certainly not
   there is reported: a key missing from a ConfigDict or a dict (fields of dict-valued fields,
   e.g. `sample.schedule_options.rho`, are accepted like those of nested ConfigDicts), or a path
   that continues below a scalar leaf (`optim.lr.x`). Anything else (dataclass configs, sequence
   indices, a config file that fails to load) is left to config_flags unchanged, and so are valid
   overrides, which config_flags then parses exactly as before (types, tuples, booleans).
4. Suggestions are difflib ratios of the whole dotted path against every dotted path of the
   loaded config (sections and leaves): those with ratio >= 0.6, best first, at most 3 and only
   those within 0.1 of the best, so a section typo (`trainng.num_steps`) gets the right section's
   field and a leaf typo does not list every sibling. With none close enough, the message lists
   the fields of the deepest section that exists instead.

Not for configs defined with accept_new_attributes=True (there, new fields are allowed).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping, Sequence

import ml_collections
from absl import flags
from ml_collections.config_flags import config_flags as _config_flags
from ml_collections.config_flags import config_path

_CUTOFF = 0.6  # difflib.get_close_matches' default
_MARGIN = 0.1  # suggestions within this ratio of the best one
_MAX_SUGGESTIONS = 3
_LEAF_TYPES = (bool, int, float, complex, str, bytes, type(None))


class ConfigOverrideError(ValueError):
    """An unknown `--config.` override field or a missing config file; str() is one line."""


def _is_section(node) -> bool:
    return isinstance(node, (ml_collections.ConfigDict, Mapping))


def config_paths(config, sections_only: bool = False) -> list[str]:
    """Every dotted path of `config` (only those of sections if `sections_only`): its sections and
    their fields, depth first, e.g. ['optim', 'optim.lr', ...]; recurses into nested ConfigDicts
    and dict-valued fields (string keys)."""
    paths = []

    def walk(node, prefix):
        for key in node.keys():
            if not isinstance(key, str):
                continue
            path = f"{prefix}{key}"
            value = node[key]
            if not sections_only or _is_section(value):
                paths.append(path)
            if _is_section(value):
                walk(value, path + ".")

    walk(config, "")
    return paths


def suggestions(path: str, known: Sequence[str], sections: Sequence[str] = ()) -> list[str]:
    """The closest of the `known` dotted paths to `path` (rule 4 of the module docstring), leaving
    out the `sections` that are ancestors of `path` (they exist; the typo lies below them)."""
    scored = []
    for candidate in known:
        if candidate in sections and path.startswith(candidate + "."):
            continue
        matcher = difflib.SequenceMatcher(None, path, candidate)
        if matcher.real_quick_ratio() >= _CUTOFF and matcher.quick_ratio() >= _CUTOFF:
            ratio = matcher.ratio()
            if ratio >= _CUTOFF:
                scored.append((ratio, candidate))
    scored.sort(key=lambda rc: -rc[0])  # stable: equal ratios keep the config's order
    if not scored:
        return []
    best = scored[0][0]
    return [c for r, c in scored[:_MAX_SUGGESTIONS] if r >= best - _MARGIN]


def _quoted_list(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _config_file_arg(argv: Sequence[str], name: str) -> tuple[str, str] | None:
    """(value, as written) of the last `--NAME=VALUE` / `--NAME VALUE` in argv, or None."""
    found = None
    pattern = re.compile(rf"^-{{1,2}}{re.escape(name)}(=|$)")
    for i, arg in enumerate(argv):
        match = pattern.match(arg)
        if not match:
            continue
        if match.group(1) == "=":
            found = (arg.split("=", 1)[1], arg)
        elif i + 1 < len(argv):
            found = (argv[i + 1], f"{arg} {argv[i + 1]}")
    return found


def _override_args(argv: Sequence[str], name: str) -> list[tuple[str, str]]:
    """(field path, argument) of each `--NAME.PATH[=VALUE]` in argv (config_flags' rule)."""
    pattern = re.compile(rf"-{{1,2}}(no)?{re.escape(name)}\.")
    return [(arg.split("=", 1)[0].split(".", 1)[1], arg) for arg in argv if pattern.match(arg)]


def _check_file(value: str, written: str) -> None:
    path = value.split(":", 1)[0]
    if os.path.isfile(path):
        with open(path) as f:
            source = f.read()
        try:
            compile(source, path, "exec")
        except SyntaxError as e:
            raise ConfigOverrideError(
                f"config file {path!r} line {e.lineno}: {e.msg} (from {written})"
            ) from None
        return
    problem = "is a directory, not a config file" if os.path.isdir(path) else "does not exist"
    message = f"config file {path!r} {problem} (from {written})"
    folder = os.path.dirname(path) or "."
    if os.path.isdir(folder) and not os.path.isdir(path):
        siblings = [
            os.path.join(os.path.dirname(path), f)
            for f in sorted(os.listdir(folder))
            if f.endswith(".py") and not f.startswith("_")
        ]
        close = suggestions(path, siblings)
        if close:
            message += f"; did you mean {_quoted_list(close)}?"
    raise ConfigOverrideError(message)


def _check_path(
    config, path: str, written: str, known: Sequence[str], sections: Sequence[str]
) -> None:
    """Raises ConfigOverrideError if `path` certainly names no field of `config`."""

    def unknown(detail_if_no_suggestion: str) -> ConfigOverrideError:
        close = suggestions(path, known, sections)
        detail = f"did you mean {_quoted_list(close)}?" if close else detail_if_no_suggestion
        return ConfigOverrideError(f"unknown config field {path!r} (from {written}); {detail}")

    try:
        parts = config_path.split(path)
    except ValueError:
        raise unknown(f"the config's fields are: {', '.join(config.keys())}") from None
    node, walked = config, []
    for part in parts:
        if _is_section(node):
            if part not in node:
                where = f"{'.'.join(walked)!r}'s" if walked else "the config's"
                raise unknown(f"{where} fields are: {', '.join(map(str, node.keys()))}")
            node = node[part]
        elif isinstance(node, _LEAF_TYPES):
            raise unknown(f"{'.'.join(walked)!r} is a {type(node).__name__}, not a section")
        else:
            return  # dataclass, sequence, ...: config_flags' business
        walked.append(str(part))


def check_config_overrides(argv: Sequence[str] | None = None, flag_name: str = "config") -> None:
    """Raises ConfigOverrideError (one line) for the first `--FLAG_NAME.PATH` override in `argv`
    (default sys.argv) that names no field of the config file given by `--FLAG_NAME`, or for a
    config file that does not exist; returns None when there is nothing to report or nothing this
    check can decide (then config_flags and absl handle argv as usual). See the module docstring."""
    argv = list(sys.argv if argv is None else argv)
    try:
        argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
    except flags.Error:
        return  # absl reports the unreadable --flagfile itself
    config_arg = _config_file_arg(argv, flag_name)
    if config_arg is None:
        return  # no config file given: absl's required-flag check reports that
    value, written = config_arg
    _check_file(value, written)
    overrides = _override_args(argv, flag_name)
    if not overrides:
        return
    config = _config_flags.ConfigFileFlagParser(name=flag_name).parse(value)
    if not _is_section(config):
        return  # a load error (config_flags' _ErrorConfig) or a non-ConfigDict config
    known = config_paths(config)
    sections = set(config_paths(config, sections_only=True))
    for path, arg in overrides:
        _check_path(config, path, arg, known, sections)


def exit_on_bad_config_overrides(
    argv: Sequence[str] | None = None, flag_name: str = "config"
) -> None:
    """check_config_overrides(argv, flag_name), printing its error as one line on stderr and
    exiting with status 2 (usage error); for a launcher's main guard, before app.run(main)."""
    try:
        check_config_overrides(argv, flag_name)
    except ConfigOverrideError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
