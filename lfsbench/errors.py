"""The one exception type for bad input: its message is a complete, one-paragraph explanation with the fix."""

from __future__ import annotations

from pathlib import Path


class LfsbenchError(Exception):
    """A user-facing error; the CLI prints its message without a traceback and exits non-zero."""


class RunFolderBusy(LfsbenchError):
    """A run folder that another process is writing (its lock is held): the run goes on there, not here."""


def validation_problems(err) -> str:
    """A pydantic ValidationError as one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())


def strict_yaml(text: str):
    """YAML as `yaml.safe_load` reads it, except that a key given twice in one mapping is an error (yaml.YAMLError
    naming the key and its line), never the last one winning: a second `checks:` or `min:` must not silently
    replace the first."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping at line {node.start_mark.line + 1}",
                    node.start_mark,
                    f"the key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: plain data only


def load_yaml_model(path: Path, model, what: str, fix: str):
    """Read a YAML file into a pydantic model; bad YAML (a key given twice included) or bad fields become one
    LfsbenchError naming the file."""
    import yaml
    from pydantic import ValidationError

    try:
        return model.model_validate(strict_yaml(Path(path).read_text()))
    except ValidationError as err:
        raise LfsbenchError(f"{what} {path} is not valid: {validation_problems(err)}. {fix}") from None
    except yaml.YAMLError as err:
        raise LfsbenchError(f"{what} {path} is not valid YAML ({err}). {fix}") from None


def path_part_problem(name: str) -> str | None:
    """Why `name` cannot be one part of a file path inside lfsbench's folders (None if it can).

    Concept names and class nouns become file names (shots/NAME.png, class_NOUN.png) and data folders
    (ROOT/NAME): a separator, `..`, a leading dot or `~`, or an absolute path would reach outside them.
    """
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if any(c in name for c in "/\\\0"):
        return "it holds a path separator"
    if name.startswith((".", "~")):
        return "it starts with '.' or '~'"
    if any(ord(c) < 32 for c in name):
        return "it holds a control character"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"it is {len(name.encode())} bytes long; a name may have {MAX_NAME_BYTES} (file names hold 255)"
    return None


MAX_NAME_BYTES = 100  # two concept names make one file name (multi_A+B.png), which a file system caps at 255 bytes
# a run's images/session_NN/ holds NAME.png for each concept beside these grids (lfsbench/results.py)
IMAGE_PREFIXES = ("class_", "control_", "copies_", "multi_")


def concept_name_problem(name: str) -> str | None:
    """Why `name` cannot name a concept (None if it can): it must be a path part (`path_part_problem`) whose image
    grid cannot be taken for a class's, a control's, a copy sheet's or a pair's (`IMAGE_PREFIXES`)."""
    problem = path_part_problem(name)
    taken = [prefix for prefix in IMAGE_PREFIXES if name.startswith(prefix)]
    if problem is None and taken:
        problem = f"it starts with {taken[0]!r}, which names other image grids of a run"
    return problem
