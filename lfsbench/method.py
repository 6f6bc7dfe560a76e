"""The method adapter interface and the method registry.

A built-in method is one file in `methods/` that subclasses `Method` and registers itself:

    @METHODS.register("naive")
    class Naive(Method):
        description = "..."
        Config = NaiveConfig          # its knobs (a pydantic model)
        def learn(self, session): ...

It sees a session only through `SessionView` (the new concepts' shots, tokens,
class nouns and training prompts) and is asked to `generate` images for prompts.

What only some methods do is an optional capability, a small mixin the runner asks for
with isinstance (a method inherits only what it uses):
- `ReportsSteps`: reports training progress step by step (`self.on_step(done, total)`);
- `UsesEvaluator`: refused. A method never receives the model that scores it (it could tune against the
  scorer): a method class that asks for it is an error before anything runs;
- `RendersToyWorld`: it draws the toy world itself (the `oracle` ceiling), so the runner tells it the
  protocol's world version;
- `GeneratesFromContexts`: it generates from stored context and declares, image by image, what it starts from;
  the runner, not the method, builds the control from that declaration (the base model, kept apart before the
  method touched it, from the same contexts, strength and seeds).

A method from outside the package is named by reference instead of by registered name (docs/custom-methods.md):
`path/to/file.py:ClassName`, `package.module:ClassName`, or the name of an entry point in the `lfsbench.methods`
group of an installed package. Every method's source (the SHA-256 of its files, `method_source`) is part of a run's
identity, so a run of an edited method is a different run.

A method's `Config` defaults are its settings for the toy backbone (chosen by a
sweep, recorded in the method file); `presets` holds other backbones' settings
(`stable-diffusion`: from the literature, with the source). Precedence: defaults <
preset < command-line overrides; the resolved settings are saved with the run.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from lfsbench.backbone import Backbone
from lfsbench.concepts import SessionView
from lfsbench.errors import LfsbenchError, validation_problems
from lfsbench.registry import Registry

ROLES = ("method", "anchor", "ceiling", "control")  # what a method is for: Method.role


class MethodConfig(BaseModel):
    """Base of every method's knobs; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class of method adapters: learn sessions, generate images, expose state for resume."""

    description: ClassVar[str] = ""
    # what it is for (docs/methods.md): "method" (a method of the field), "anchor" (a bound that trains: no
    # interference, or every shot at once), "ceiling" (no training: the shots or the world itself) or "control" (built
    # to move one figure); `lfsbench bench` times the methods and anchors
    role: ClassVar[str] = "method"  # one of ROLES
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    presets: ClassVar[dict[str, dict]] = {}  # backbone kind -> settings that replace the (toy) defaults

    def __init__(self, config: MethodConfig):
        self.config = config
        self.backbone: Backbone | None = None
        self.seed = 0

    def setup(self, backbone: Backbone, seed: int):
        """Receive the backbone (already on its device) before the first session."""
        self.backbone = backbone
        self.seed = seed

    def learn(self, session: SessionView) -> dict:
        """Learn the session's concepts; return figures worth recording (e.g. final loss)."""
        raise NotImplementedError

    def generate(self, prompts: list[str], seeds: list[int], steps: int, guidance: float) -> torch.Tensor:
        """One image per (prompt, seed), [0, 1] NCHW."""
        return self.backbone.generate(prompts, seeds, steps=steps, guidance=guidance)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue after the last finished session (tensors only)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        raise NotImplementedError

    def trainable_parameters(self) -> int:
        return 0

    def stored_bytes(self) -> int:
        """Bytes of data (images, latents) kept between sessions."""
        return 0

    def keeps(self) -> str:
        """What the method keeps between sessions besides its weights, in words ("nothing", "shots as images", "shots
        as VAE latents", "generated class images"): reported beside stored bytes, so no method is called data-free
        while it keeps its shots."""
        return "nothing"


# ---------------------------------------------------------------- optional capabilities


class ReportsSteps:
    """Capability: reports training progress; the runner sets `on_step(done, total)` before a session."""

    on_step = None

    def report_steps_to(self, callback):
        self.on_step = callback


class UsesEvaluator:
    """Asking for the benchmark's scoring evaluator, which no method gets: `method_class` refuses a method that
    subclasses this. A method that scored its own candidates with the scorer (to pick a context, a checkpoint, a
    seed) would be tuned against the figures it is judged by. A method may bring an encoder of its own."""


class RendersToyWorld:
    """Capability: the method draws the toy world itself (the `oracle` ceiling); the runner tells it which world
    version the protocol renders its concepts in (None: not the toy world) after setup."""

    toy_world: int | None = None

    def use_toy_world(self, version: int | None):
        self.toy_world = version


@dataclass(frozen=True)
class Contexts:
    """What a method that generates from stored context starts its images from: per image, the stored latent it is
    noised from and denoised (None: from noise, as text-to-image), and the strength it noises them to (diffusers'
    image-to-image semantics: 1 ignores the latents)."""

    latents: list[torch.Tensor | None]
    strength: float


class GeneratesFromContexts:
    """Capability: the method generates from stored context (in-context generation), so copying the context could
    raise IA without any learning. It declares what each image starts from (`declared_contexts`); the runner builds the
    control from that declaration itself: the base model (copied before the method's setup, so nothing the method
    does reaches it) from the same latents, strength and seeds, prompted without the modifier token. The method never
    generates its own control, so it cannot make it weaker than it is."""

    def declared_contexts(self, prompts: list[str], seeds: list[int]) -> Contexts | None:
        """The contexts `generate` starts the images of `prompts` and `seeds` from: one latent or None per prompt
        (a control of all None is the base model's text-to-image), and a strength in (0, 1]; None where the method
        uses no context now (lfs with icgen=false: then there is no control)."""
        raise NotImplementedError

    def uses_contexts(self) -> bool:
        """Whether this configuration ever generates from stored context; where not (lfs with icgen=false), the
        runner keeps no base-model copy for a control. Asked before the method's setup."""
        return True


class GeneratesControl:
    """Removed on 2026-12-07: a method no longer generates its own control (GeneratesFromContexts replaces it)."""

    def __init_subclass__(cls, **kwargs):
        raise LfsbenchError(
            f"{cls.__qualname__} subclasses lfsbench.method.GeneratesControl, which was removed: a method no longer "
            "generates its own in-context control. Subclass lfsbench.method.GeneratesFromContexts instead and "
            "declare what each image starts from (declared_contexts(prompts, seeds) -> Contexts(latents, strength)); "
            "the runner builds the control from that (docs/custom-methods.md)."
        )


METHODS: Registry[type[Method]] = Registry("method")
ENTRY_POINT_GROUP = "lfsbench.methods"  # installed packages add methods here: NAME = "package.module:ClassName"


def _import_methods():
    import lfsbench.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"lfsbench.methods.{info.name}")


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def is_reference(name: str) -> bool:
    """`file.py:Class` or `package.module:Class` (a method from outside the package), not a registered name."""
    return ":" in name


def _split_reference(name: str) -> tuple[str, str]:
    where, _, attr = name.rpartition(":")
    if not where or not attr.isidentifier():
        raise LfsbenchError(
            f"--method {name!r}: a method from outside lfsbench is named FILE.py:ClassName or package.module:ClassName "
            "(docs/custom-methods.md); a built-in or installed one by its name (`lfsbench ls methods`)."
        )
    return where, attr


def canonical_method(name: str, base: Path | None = None) -> str:
    """The name a run keeps: a file reference with its path made absolute (relative to `base`, else the current
    folder), so that a resumed run, a Ray worker or a Slurm job finds the same file; other names unchanged."""
    if not is_reference(name):
        return name
    where, attr = _split_reference(name)
    if not where.endswith(".py"):
        return name
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{path.resolve()}:{attr}"


def _load_file(path: Path) -> ModuleType:
    """Import a method file once per content (a second import would register its methods twice)."""
    if not path.is_file():
        raise LfsbenchError(
            f"The method file {path} does not exist. Name a Python file that defines the method class, "
            "e.g. --method my_method.py:MyMethod (docs/custom-methods.md)."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"lfsbench_user_method_{stem}_{digest[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic and dataclasses look their module up while the file runs
    sys.path.insert(0, str(path.parent))  # as for a script: the file may import modules beside it
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise LfsbenchError(_import_failure(f"the method file {path}", err, path)) from err
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import_failure(what: str, err: Exception, path: Path | None) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if path is not None:
        frames = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return (
        f"Importing {what} failed{where}: {type(err).__name__}: {err}. Fix it and run again; "
        "`python -c 'import ...'` on it shows the full traceback."
    )


def _load_reference(name: str) -> type:
    where, attr = _split_reference(name)
    if where.endswith(".py"):
        module = _load_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise LfsbenchError(
                f"--method {name!r}: no module {err.name!r} is importable here. Install the package that holds it "
                "(pip install -e PATH), or name its file instead: --method path/to/file.py:ClassName."
            ) from None
        except Exception as err:
            raise LfsbenchError(_import_failure(f"the module {where}", err, None)) from err
    if not hasattr(module, attr):
        classes = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, Method))
        raise LfsbenchError(
            f"--method {name!r}: {where} defines no {attr!r}. "
            + (f"Its method classes: {', '.join(classes)}." if classes else "It defines no subclass of Method.")
        )
    return getattr(module, attr)


def _checked(cls, name: str) -> type[Method]:
    """A class from outside the package must be a complete Method (or the run fails after its first session)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise LfsbenchError(
            f"Method {name!r} is {cls!r}, not a subclass of lfsbench.method.Method; see docs/custom-methods.md."
        )
    missing = [f for f in ("learn", "state_dict", "load_state_dict") if getattr(cls, f) is getattr(Method, f)]
    if missing:
        raise LfsbenchError(
            f"Method {name!r} ({cls.__qualname__}) does not define {', '.join(missing)}: a method learns sessions and "
            "saves and restores its state for resume (docs/custom-methods.md shows all three)."
        )
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, MethodConfig)):
        raise LfsbenchError(f"Method {name!r}: its Config must subclass lfsbench.method.MethodConfig.")
    return cls


def method_class(name: str) -> type[Method]:
    """A built-in method by name, an installed one by entry-point name, or a `file.py:Class` / `module:Class`; a
    method that asks for the scoring evaluator (`UsesEvaluator`) is refused."""
    cls = _find_class(name)
    if cls.role not in ROLES:
        raise LfsbenchError(
            f"Method {name!r} ({cls.__qualname__}) has role {cls.role!r}; a method's role is one of {', '.join(ROLES)} "
            "(docs/custom-methods.md says what each means). Leave it out for a method of the field."
        )
    if issubclass(cls, UsesEvaluator):
        raise LfsbenchError(
            f"Method {name!r} ({cls.__qualname__}) asks for the benchmark's evaluator (it subclasses UsesEvaluator), "
            "which scores every image: a method that saw it could tune against its own score. No method gets it. "
            "Remove UsesEvaluator and load an encoder of your own (another CLIP checkpoint than the protocol's "
            "evaluator) if the method needs one."
        )
    return cls


def _find_class(name: str) -> type[Method]:
    _import_methods()
    if name in METHODS:
        return METHODS.get(name)
    if is_reference(name):
        return _checked(_load_reference(name), name)
    installed = _entry_points()
    if name in installed:
        try:
            loaded = installed[name].load()
        except Exception as err:
            what = f"the installed method {name!r} ({installed[name].value})"
            raise LfsbenchError(_import_failure(what, err, None)) from err
        return _checked(loaded, name)
    known = sorted({*METHODS.names(), *installed})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise LfsbenchError(
        f"Unknown method {name!r}.{hint} Known methods: {', '.join(known)} (`lfsbench ls methods` describes them); "
        "a method of your own is named path/to/file.py:ClassName (docs/custom-methods.md)."
    )


def method_source(name: str) -> dict:
    """What identifies a method's code in a run's identity (lfsbench/identity.py): the SHA-256 of the source files of
    its class and of every class it builds on (`methods/naive.py` and `lfsbench/kv_method.py` for naive; the method
    interface, lfsbench/method.py, is not counted), the files by name, and for a method of an installed package (an
    entry point) its distribution and version. A run of an edited method is a different run."""
    cls = method_class(name)
    files: list[Path] = []
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == __name__:
            continue
        try:
            file = Path(inspect.getfile(klass)).resolve()
        except (TypeError, OSError):  # a class defined in C, or without a source file
            continue
        if file not in files:
            files.append(file)
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    source = {"sha256": digest.hexdigest(), "files": [_shown(file) for file in files]}
    ep = None if is_reference(name) or name in METHODS else _entry_points().get(name)
    if ep is not None:
        dist = ep.dist
        source |= {"entry_point": ep.value, "distribution": dist and dist.name, "version": dist and dist.version}
    return source


def _shown(file: Path) -> str:
    """A source file as a run records it: relative to lfsbench's folder for its own files, else the full path."""
    package = Path(__file__).resolve().parent
    for root in (package.parent, package):
        if file.is_relative_to(root):
            return str(file.relative_to(root))
    return str(file)


def all_methods() -> list[tuple[str, type[Method], str]]:
    """(name, class, where from) of the built-in methods and those installed packages add (entry points); a broken
    installed method, or one a built-in name shadows, is listed with None and why instead of stopping the listing."""
    _import_methods()
    listed = [(name, cls, "built in") for name, cls in METHODS.items()]
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist
        origin = f"{dist.name} {dist.version}" if dist else ep.value
        if name in METHODS:  # listed, so that its author sees why `--method NAME` runs the built-in one
            listed.append((name, None, f"{origin}: not used, the built-in method {name!r} has this name; rename it"))
            continue
        try:
            listed.append((name, method_class(name), origin))
        except LfsbenchError as err:
            listed.append((name, None, f"{origin}: {err}"))
    return listed


def preset_for(backbone: str) -> str:
    """The preset a backbone gets: `toy` (the Config defaults, for every shipped toy backbone) or `stable-diffusion`
    (everything else)."""
    from lfsbench.toy import NAMED_WEIGHTS

    return "toy" if backbone in NAMED_WEIGHTS else "stable-diffusion"


def validated_config(cls: type[Method], name: str, preset: str = "toy", overrides: dict | None = None) -> MethodConfig:
    """A method's knobs resolved: defaults < preset < overrides; unknown or ill-typed knobs are errors."""
    try:
        return cls.Config.model_validate({**cls.presets.get(preset, {}), **(overrides or {})})
    except ValidationError as err:
        known = ", ".join(cls.Config.model_fields)
        raise LfsbenchError(
            f"Bad setting for method {name!r}: {validation_problems(err)}. Its settings are: {known}."
        ) from None


def create_method(name: str, overrides: dict | None = None, preset: str = "toy") -> Method:
    """Instantiate a method: defaults < preset < overrides; unknown or ill-typed knobs are errors."""
    cls = method_class(name)
    return cls(validated_config(cls, name, preset, overrides))
