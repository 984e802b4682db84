"""Command-line helpers shared by train.py and genjax's other commands."""

from __future__ import annotations

import re
import sys

from absl import flags

from genjax import config as config_lib
from genjax import tasks

FLAGS = flags.FLAGS


def parse_flags(argv):
    """absl's parser, with config-override mistakes reported as one clean paragraph."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}{_expected_type(str(e))}\nPass --helpfull to list the flags.",
              file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        # ml_collections raises these for an override of a field the config lacks
        # ("Did you mean ...") or a value of the wrong type.
        message = " ".join(str(e).replace("\\'", "").replace("\\n", " ").strip("'").split())
        print(f"error: bad --config override: {message}. Every field is listed in the config "
              "file and in its task module (genjax/tasks/<task>.py); fix the name or the value.",
              file=sys.stderr)
    sys.exit(2)


def _expected_type(message: str) -> str:
    """'. Config field X must be a T (like V)' for a --config.X value that did not parse."""
    match = re.search(r"--config\.([\w.]+)=", message)
    if not match:
        return ""
    schemas = [config_lib.flatten(tasks.defaults(name)) for name in tasks.available()]
    expected = next((s[match.group(1)] for s in schemas if match.group(1) in s), None)
    if expected is None:
        return ""
    kind = type(expected).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    return f". Config field {match.group(1)!r} must be {article} {kind} (like {expected!r})"
