"""Checks that turn a bad command line into one line naming the fix, before anything runs.

- :func:`preflight`: the raw ``train.py`` / ``eval.py`` arguments. Unknown top-level
  keys (``nueron.tau=2``, ``+nueron.tau=2``) get a did-you-mean; options that need
  an optional extra (``hparams_search=optuna``) name the ``pip install`` that adds it;
  ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes inside ``<run>``.
- :func:`check_types`: every ``_target_`` node of a composed config against the
  type hints of the class it builds (``neuron.tau=abc``, ``model.hidden=500``).
- :func:`check_ranges`: numbers outside their range (``optimizer.lr=-1``,
  ``data.batch_size=2.5``, ``trainer.max_epochs=0``, ``model.dropout=1.5``), named
  wherever they sit in a config, before a run starts (torch and Lightning would
  raise them mid-run, as tracebacks).
- :func:`check_accelerator`: ``accelerator=gpu`` on a machine without one.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from spikelight.core.errors import ConfigError

__all__ = [
    "EXTRAS", "RANGES", "preflight", "check_types", "check_ranges", "check_accelerator", "device_note", "resume_run_dir",
]


def _conf_dir() -> Path:
    """The Hydra config tree: the package ``spikelight.conf`` (the repository's ``conf/``, in an editable
    install as in a wheel: pyproject.toml maps it)."""
    return Path(str(files("spikelight.conf")))


CONF = _conf_dir()

# config option -> (module it imports, the pyproject extra that installs it, what it is)
EXTRAS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("hparams_search", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "sweep", "the Optuna sweeper plugin"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "sweep", "the Optuna sweeper plugin"),
    ("hydra/launcher", "slurm"): ("hydra_plugins.hydra_submitit_launcher", "cluster", "the submitit launcher plugin"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "cluster", "the submitit launcher plugin"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "cluster", "the submitit launcher plugin"),
}


# --- command line ----------------------------------------------------------------
def known_keys(config_name: str, conf_dir: Path = CONF) -> set[str]:
    """Top-level keys a command line may set: the primary config's own keys, its
    config groups and ``hydra``."""
    path = conf_dir / f"{config_name}.yaml"
    if not path.exists():
        return set()
    data = yaml.safe_load(path.read_text()) or {}
    keys = {"hydra", *(k for k in data if k != "defaults")}
    for entry in data.get("defaults", []):
        name = next(iter(entry)) if isinstance(entry, dict) else str(entry)
        name = name.replace("override ", "").replace("optional ", "").strip().split("@")[0]
        if name != "_self_":
            keys.add(name.lstrip("/").split("/")[0])
    return keys


def _quote(value: str) -> str:
    """A Hydra override value that stays one literal string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_run_dir(ckpt_path: str) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` with
    ``<run>/.hydra``), or None if it is not inside one."""
    from spikelight.app.ckpt import run_dir_of

    return run_dir_of(ckpt_path)


def preflight(argv: list[str], config_name: str, conf_dir: Path = CONF) -> list[str]:
    """Check the arguments of ``train.py`` / ``eval.py`` (``argv`` without the
    script) before Hydra makes a run folder, and return them, with
    ``hydra.run.dir`` added when train.py resumes a run (:func:`resume_run_dir`).

    Raises :class:`ConfigError` (one line naming the fix) for: several values
    without ``-m``; an unknown top-level key; a config option that does not
    exist; one whose optional dependency is not installed; then, on the
    composed config, a nested key that does not exist, an argument the target
    class does not take or a value of the wrong type (:func:`check_types`), and
    ``accelerator=gpu`` without a GPU. Arguments Hydra cannot parse are passed
    through for Hydra to report.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if "--version" in argv:
        return argv
    try:
        args, _ = get_args_parser().parse_known_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except (Exception, SystemExit):  # noqa: BLE001 - Hydra reports its own parse errors (and --version exits)
        return argv
    if args.help or args.hydra_help or args.shell_completion or "--version" in argv:
        return argv
    known = known_keys(args.config_name or config_name, conf_dir)
    sweeps = [o for o in overrides if o.is_sweep_override()]
    in_config = any(o.key_or_group in ("hparams_search", "hydra.mode") for o in overrides)
    if sweeps and not args.multirun and not in_config:
        line, key = sweeps[0].input_line, sweeps[0].key_or_group
        as_list = "" if (conf_dir / key).is_dir() else f", or pass a list as {key}=[...]"
        script = f"{args.config_name or config_name}.py"
        raise ConfigError(f"'{line}' lists several values: add -m to sweep over them (python {script} -m {line}){as_list}")
    for o in overrides:
        key = o.key_or_group
        top = key.lstrip("~+").split("/")[0].split(".")[0]
        if known and top not in known:
            raise ConfigError(_unknown_key_message(o.input_line or key, top, known, config_name, conf_dir))
        try:
            if o.is_sweep_override():
                values = list(o.sweep_string_iterator())
            elif isinstance(o.value(), list):  # several options of one group: logger=[csv,wandb]
                values = [str(v) for v in o.value()]
            else:
                values = [o.get_value_element_as_str()]
        except Exception:  # noqa: BLE001 - interval / glob sweeps name no options
            values = []
        for value in values:
            _check_group_option(key, value, conf_dir)
            need = EXTRAS.get((key, value))
            if need and not _importable(need[0]):
                raise ConfigError(
                    f"{key}={value} needs {need[2]} ({need[0]}), which is not installed: "
                    f'pip install -e ".[{need[1]}]"'
                )
    _check_command_line_targets(overrides)
    name = args.config_name or config_name
    composable = not (args.config_path or args.config_dir or args.experimental_rerun)
    resuming = name == "train" and not args.multirun and any(
        o.key_or_group == "ckpt_path" and not o.is_sweep_override() for o in overrides)
    if resuming:
        # the run's own overrides first (they may choose the groups the command line's keys are in),
        # then the whole is checked
        argv, overrides = _resolve_last(argv, overrides, lambda: _runs_dir(overrides, name, conf_dir))
        argv, reused = _reuse_run_overrides(argv, overrides)
        # a downloaded checkpoint's overrides may name code: trusted targets only, as typed ones
        _check_command_line_targets(OverridesParser.create().parse_overrides(reused), "the overrides stored in the checkpoint")
        overrides = OverridesParser.create().parse_overrides(
            [o.input_line for o in overrides if o.input_line in argv] + reused)
    cfg = _compose_and_check(overrides, name, conf_dir) if composable else None
    if resuming and cfg is not None:
        _check_not_finished(cfg)
    if cfg is not None and "ckpt_path" in cfg.keys() and _missing(cfg, "ckpt_path"):
        raise ConfigError(f"{name}.py needs the checkpoint to test: ckpt_path=<file.ckpt | run folder | last>, "
                          f"e.g. python {name}.py ckpt_path=last")
    if not resuming:
        argv, overrides = _resolve_last(argv, overrides, lambda: _runs_dir(overrides, name, conf_dir, cfg))
    if name != "train":
        return argv
    return _with_resume_dir(argv, args.multirun, overrides)


def _check_not_finished(cfg: Any) -> None:
    """Refuse, in one line, to resume a run that trained all of ``trainer.max_epochs`` (or ``max_steps``): it
    would train nothing, then test again and write over that run's results (``ckpt_path=last`` takes the newest
    run of the task, finished or not). An unreadable checkpoint is left to the run to report."""
    import copy

    from spikelight.app.ckpt import load_checkpoint
    from spikelight.train.resume import mend_loop_state

    path = cfg.get("ckpt_path")
    trainer = cfg.get("trainer") or {}
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if not isinstance(path, str) or not path:
        return
    try:
        ckpt = load_checkpoint(path)
    except Exception:  # noqa: BLE001 - CheckpointError: train.py says it in one line
        return
    state = {"loops": copy.deepcopy(ckpt.get("loops") or {})}
    mend_loop_state(state)  # as the resume will read it: an epoch-end checkpoint counts its epoch finished
    finished = state["loops"].get("fit_loop", {}).get("epoch_progress", {}).get("current", {}).get("completed")
    step = ckpt.get("global_step", 0)
    if isinstance(max_epochs, int) and max_epochs > 0 and isinstance(finished, int) and finished >= max_epochs:
        done = f"{finished} of trainer.max_epochs={max_epochs} epochs trained"
        more = "raise trainer.max_epochs"
    elif isinstance(max_steps, int) and max_steps > 0 and isinstance(step, int) and step >= max_steps:
        done = f"{step} of trainer.max_steps={max_steps} steps trained"
        more = "raise trainer.max_steps"
    else:
        return
    raise ConfigError(f"ckpt_path={path} is of a run that has finished ({done}): resuming would train nothing and "
                      f"test over its results; {more} to train it on, or test it: python eval.py ckpt_path={_quote(path)}")


def _missing(cfg: Any, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.is_missing(cfg, key)


def _runs_dir(overrides: list, config_name: str, conf_dir: Path, cfg: Any = None) -> str:
    """``<paths.log_dir>/<task_name>/runs`` of the command line's config: where ``ckpt_path=last`` looks (a run
    started with ``task_name=x``, or an experiment that names its task, is found under its own folder).
    eval.py's own task_name names where its outputs go: it looks in ``<log_dir>/train/runs``."""
    def given(key: str) -> Any:
        return next((o.value() for o in overrides if o.key_or_group == key and not o.is_sweep_override()), None)

    log_dir, task = given("paths.log_dir"), given("task_name") if config_name == "train" else "train"
    # the config given, else the command line's, else (it does not compose yet) the defaults'
    for lines in ([None] if cfg is not None else [_compose_lines(overrides), []]):
        if isinstance(log_dir, str) and log_dir and isinstance(task, str) and task:
            break
        try:
            composed = cfg if lines is None else _compose(config_name, lines, conf_dir)
            log_dir = log_dir if isinstance(log_dir, str) and log_dir else str(composed.paths.log_dir)
            task = task if isinstance(task, str) and task else str(composed.task_name)
        except Exception:  # noqa: BLE001 - the next candidate, else logs/train
            continue
    log_dir = log_dir if isinstance(log_dir, str) and log_dir else "logs"
    task = task if isinstance(task, str) and task else "train"
    return str(Path(log_dir) / task / "runs")


def _override_id(o: Any) -> tuple[str, str | None]:
    """What an override sets: its key or config group (and package): ``+a.b=1`` and ``a.b=2`` set the same."""
    return o.key_or_group, o.package


def _reuse_run_overrides(argv: list[str], overrides: list) -> tuple[list[str], list[str]]:
    """Resuming (``ckpt_path=<file>``): the overrides the run was started with
    (:func:`spikelight.app.ckpt.run_overrides`) come first, then the command line's; an override of
    the command line replaces the run's for the same key (:func:`spikelight.app.cli.train` logs each
    change in one line). Returns the new argv and the run's override lines it added."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spikelight.app.ckpt import NOT_REUSED, run_overrides

    ckpt = next((o for o in overrides if o.key_or_group == "ckpt_path" and not o.is_sweep_override()), None)
    value = ckpt.value() if ckpt is not None and not ckpt.is_delete() else None
    if not isinstance(value, str) or not value:
        return argv, []
    stored = run_overrides(value)
    if not stored:
        return argv, []
    given = {_override_id(o) for o in overrides}
    deleted = [o.key_or_group for o in overrides if o.is_delete()]
    parser = OverridesParser.create()
    reused, dropped = [], set()
    for line in stored:
        try:
            o = parser.parse_override(line)
        except Exception:  # noqa: BLE001 - a line this Hydra cannot read: left out (train() names it)
            continue
        # ``~key`` on the command line leaves out the run's overrides of key and below it
        under = next((d for d in deleted if o.key_or_group.startswith(d + ".")), None)
        if under is not None or (o.key_or_group in deleted and o.is_add()):
            if o.is_add():
                dropped.add(under or o.key_or_group)
            continue
        if o.key_or_group not in NOT_REUSED and _override_id(o) not in given:
            reused.append(line)
    # a ``~key`` that only removed what the run had added (``+key...``) has nothing left to delete
    removed = {o.input_line for o in overrides if o.is_delete() and o.key_or_group in dropped}
    argv = [a for a in argv if a not in removed]
    first = next((o.input_line for o in overrides if o.input_line in argv), None)
    at = argv.index(first) if first is not None else len(argv)
    return [*argv[:at], *reused, *argv[at:]], reused


def _check_command_line_targets(overrides: list, source: str = "the command line") -> None:
    """``_target_``s typed on the command line (or reused from a checkpoint) must be trusted
    (:mod:`spikelight.app.trust`)."""
    from spikelight.app.trust import check_trusted

    for o in overrides:
        key = o.key_or_group.lstrip("~+")
        if o.is_delete():
            continue
        try:
            value = o.value()
        except Exception:  # noqa: BLE001 - interval / glob sweeps hold no targets
            continue
        if key == "_target_" or key.endswith("._target_"):
            value = {"_target_": value} if isinstance(value, str) else value
            key = key[: -len("_target_")].rstrip(".")
        check_trusted(value, source, key)


def _resolve_last(argv: list[str], overrides: list, runs_dir: Callable[[], str]) -> tuple[list[str], list]:
    """``ckpt_path=last`` / ``ckpt_path=<run folder>`` → the checkpoint file it means
    (:func:`spikelight.app.ckpt.resolve_ckpt_path`), rewritten in ``argv`` so the resume
    folder logic and the run's saved overrides see the real file."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spikelight.app.ckpt import resolve_ckpt_path

    for o in overrides:
        if o.key_or_group != "ckpt_path" or o.is_sweep_override():
            continue
        value = o.value()
        if not isinstance(value, str) or not value or (value != "last" and not Path(value).is_dir()):
            continue
        try:
            path = resolve_ckpt_path(value, Path(runs_dir()))
        except Exception as err:  # CheckpointError: one line, as every preflight error
            raise ConfigError(str(err)) from None
        line = f"ckpt_path={_quote(path)}"
        argv = [line if a == o.input_line else a for a in argv]
        overrides = [OverridesParser.create().parse_override(line) if x is o else x for x in overrides]
        break
    return argv, overrides


def _compose_lines(overrides: list) -> list[str]:
    """Override strings for one composition: the first value of each choice sweep."""
    lines = []
    for o in overrides:
        if not o.is_sweep_override():
            lines.append(o.input_line)
            continue
        try:
            first = next(iter(o.sweep_string_iterator()))
        except Exception:  # noqa: BLE001 - interval / glob sweeps: leave them to the sweeper
            continue
        lines.append(f"{o.get_key_element()}={first}")
    return lines


def _typed_line(key: str, overrides: list) -> str:
    """The command-line override that sets ``key`` (as typed), else the key."""
    return next((o.input_line for o in overrides if o.key_or_group == key), key)


def _compose(config_name: str, lines: list[str], conf_dir: Path) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name, overrides=lines)


def _compose_and_check(overrides: list, config_name: str, conf_dir: Path) -> Any:
    """Compose the config as Hydra will and check it before any run folder exists:
    a nested key that does not exist (``neuron.tua=3``: Hydra would only hint at
    ``+neuron.tua=3``), then :func:`check_types` and :func:`check_accelerator`."""
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    lines = _compose_lines(overrides)
    try:
        cfg = _compose(config_name, lines, conf_dir)
    except ConfigCompositionException as err:
        cause = err.__cause__ or err.__context__
        key = getattr(cause, "full_key", None)
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key and "struct" in str(cause):
            below = next((o for o in overrides if o.key_or_group.startswith(key + ".")), None)
            if below is not None and not any(o.key_or_group == key for o in overrides):
                options = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
                example = f"{key}={options[0]} " if options else f"{key}=... "
                raise ConfigError(f"'{below.input_line}' sets a key inside {key}, which is empty in {config_name}.yaml; "
                                  f"choose it first, e.g. {example}{below.input_line}") from None
            line = next((ln for ln in lines if ln.lstrip("~+").split("=")[0] == key), key)
            typed = _typed_line(key, overrides)
            raise ConfigError(_missing_nested_message(key, line, typed, lines, config_name, conf_dir)) from None
        return  # Hydra reports it (with the options of a config group)
    except Exception:  # noqa: BLE001 - anything else: Hydra reports it in its own words
        return
    check_types(cfg)
    check_ranges(cfg)
    if "trainer" in cfg:
        check_accelerator(cfg.trainer)
    return cfg


#: keys other frameworks use for a setting spikelight names otherwise: ``<group>.<their key>`` →
#: (``<group>.<our key>``, whose name it is)
OTHER_NAMES: dict[str, tuple[str, str]] = {
    "surrogate.slope": ("surrogate.alpha", "snnTorch's slope"),
    "neuron.threshold": ("neuron.v_threshold", "snnTorch's threshold"),
    "neuron.v_th": ("neuron.v_threshold", "v_th"),
}


def _missing_nested_message(
    key: str, line: str, typed: str, lines: list[str], config_name: str, conf_dir: Path
) -> str:
    parent, _, leaf = key.rpartition(".")
    siblings: list[str] = []
    takes: set[str] | None = None
    owner = ""
    try:
        node = _compose(config_name, [ln for ln in lines if ln != line], conf_dir)
        from omegaconf import OmegaConf

        sub = OmegaConf.select(node, parent) if parent else node
        siblings = [str(k) for k in sub.keys() if not str(k).startswith("_")] if sub is not None else []
        target = sub.get("_target_") if sub is not None and hasattr(sub, "get") else None
        obj = _locate(target) if isinstance(target, str) else None
        if obj is not None:
            owner = getattr(obj, "__name__", str(target))
            takes = _signature(obj)[1]
    except Exception:  # noqa: BLE001 - no suggestion then
        pass
    value = typed.split("=", 1)[1] if "=" in typed else "..."
    msg = f"no key '{leaf}' in {parent or 'the config'} (from '{typed}')"
    if takes is not None and leaf in takes:  # a real argument the shipped config does not list
        return (f"{key} is an argument of {owner} that conf/{parent.split('.')[0]}/ does not set; "
                f"add it with a plus: '+{key}={value}'")
    if key in OTHER_NAMES:
        ours, theirs = OTHER_NAMES[key]
        return msg + f"; {theirs} is {ours} here: '{ours}={value}'"
    guess = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if guess:
        return msg + f"; did you mean '{typed.lstrip('+').replace(key, f'{parent}.{guess[0]}' if parent else guess[0], 1)}'?"
    if siblings:
        return msg + f"; {parent} has: {', '.join(siblings)}"
    return msg


def _check_group_option(group: str, option: str, conf_dir: Path) -> None:
    """``surrogate=nope`` → one line with the options of conf/surrogate/."""
    folder = conf_dir / group
    if group.startswith("hydra") or "." in group or not folder.is_dir() or option == "null":
        return
    if (folder / f"{option}.yaml").is_file():
        return
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    guess = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    hint = f"did you mean {group}={guess[0]}? " if guess else ""
    raise ConfigError(f"no config {group}/{option}.yaml ({group}={option}); {hint}options: {', '.join(options)}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _unknown_key_message(line: str, top: str, known: set[str], config_name: str, conf_dir: Path = CONF) -> str:
    value = line.split("=", 1)[1] if "=" in line else "..."
    nested = _nested_keys_named(top, config_name, conf_dir)
    if nested:  # lr=0.01 -> optimizer.lr=0.01
        also = f" (or {', '.join(nested[1:3])})" if len(nested) > 1 else ""
        return f"unknown config key '{top}' in '{line}'; did you mean '{nested[0]}={value}'{also}?"
    guess = difflib.get_close_matches(top, sorted(known), n=1, cutoff=0.6)
    if guess:
        fixed = line.lstrip("+").replace(top, guess[0], 1)
        return f"unknown config key '{top}' in '{line}'; did you mean '{fixed}'?"
    names = ", ".join(sorted(k for k in known if k != "hydra"))
    return (f"unknown config key '{top}' in '{line}'; top-level keys are: {names} "
            f"(a new key belongs in conf/{config_name}.yaml)")


def _nested_keys_named(name: str, config_name: str, conf_dir: Path) -> list[str]:
    """Keys of the default config whose last part is ``name`` (``lr`` → ``optimizer.lr``), shallowest first."""
    from omegaconf import DictConfig

    try:
        cfg = _compose(config_name, [], conf_dir)
    except Exception:  # noqa: BLE001 - no suggestion then
        return []
    found: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, DictConfig):
            return
        for k in node.keys():
            k = str(k)
            if k.startswith("_") or (not prefix and k == "hydra"):
                continue
            path = f"{prefix}{k}"
            if k == name and prefix:
                found.append(path)
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                walk(child, path + ".")

    walk(cfg, "")
    return sorted(found, key=lambda p: (p.count("."), p))


def _with_resume_dir(argv: list[str], multirun: bool, overrides: list) -> list[str]:
    """Resuming ``ckpt_path=<run>/checkpoints/last.ckpt`` writes into ``<run>``
    unless ``hydra.run.dir`` is given (Hydra would otherwise open a new folder); Hydra's
    config files of the resume go to ``<run>/.hydra/resume-<n>/`` (:func:`spikelight.app.rundir.resume_subdir`),
    so the run's own ``.hydra/`` is never overwritten."""
    from spikelight.app.rundir import resume_subdir

    if multirun or any(o.key_or_group == "hydra.run.dir" for o in overrides):
        return argv
    for o in overrides:
        if o.key_or_group == "ckpt_path" and not o.is_sweep_override():
            value = o.value()
            run = resume_run_dir(value) if isinstance(value, str) and value else None
            if run is not None:
                extra = [f"hydra.run.dir={_quote(str(run))}"]
                if not any(x.key_or_group == "hydra.output_subdir" for x in overrides):
                    extra.append(f"hydra.output_subdir={_quote(resume_subdir(run))}")
                return [*argv, *extra]
    return argv


# --- composed config -------------------------------------------------------------
def _locate(target: str) -> Any | None:
    from hydra._internal.utils import _locate

    try:
        return _locate(target)
    except Exception:  # noqa: BLE001 - an unknown _target_ is reported by instantiate itself
        return None


def _signature(obj: Any) -> tuple[dict[str, Any], set[str] | None]:
    """Argument type hints of a class constructor / function, following
    ``**kwargs`` up the MRO, and the accepted argument names (None = any)."""
    funcs = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    hints: dict[str, Any] = {}
    names: set[str] | None = set()
    for f in funcs:
        try:
            found = typing.get_type_hints(f)
        except Exception:  # noqa: BLE001 - unresolvable annotations: no type check
            found = {}
        for k, v in found.items():
            hints.setdefault(k, v)
        try:
            params = inspect.signature(f).parameters.values()
        except (TypeError, ValueError):
            return hints, None
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
        if f is funcs[-1] or f is object.__init__:
            names = None  # **kwargs all the way up: anything goes
    hints.pop("return", None)
    return hints, names


def _kinds(hint: Any) -> set[str]:
    """Which plain config values a hint can take: num, bool, str, seq, map, none, any."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return {"any"}
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_kinds(a) for a in typing.get_args(hint)))
    if origin is typing.Literal:
        return {_kind(v) for v in typing.get_args(hint)}
    if hint is type(None):
        return {"none"}
    cls = origin or hint
    if not isinstance(cls, type):
        return {"any"}
    if cls is bool:
        return {"bool"}
    if cls in (int, float, complex):
        return {"num"}
    if cls is str or issubclass(cls, Path):
        return {"str"}
    if cls.__name__ == "Tensor" and cls.__module__.startswith("torch"):
        return {"num"}  # e.g. torch.optim's lr: float | Tensor
    if issubclass(cls, Mapping):
        return {"map"}
    if cls in (list, tuple, set, frozenset) or (issubclass(cls, Iterable) and cls.__module__ == "collections.abc"):
        return {"seq"}
    return {"any"}  # a class (nn.Module, Surrogate, ...): built from a node, not a plain value


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, Sequence):
        return "seq"
    return "any"


WORDS = {"num": "a number", "bool": "true or false", "str": "a string", "seq": "a list", "map": "a mapping"}


def _fits(value: Any, kinds: set[str]) -> bool:
    kind = _kind(value)
    if "any" in kinds or kind in ("none", "any") or kind in kinds:
        return True
    if kind == "map" and "_target_" in value:  # built into an object by instantiate
        return True
    return (kind == "bool" and "num" in kinds) or (kind == "num" and "bool" in kinds)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def _mismatch(key: str, value: Any, kinds: set[str], owner: str, arg: str) -> str:
    want = " or ".join(WORDS[k] for k in ("num", "bool", "str", "seq", "map") if k in kinds)
    got = {"str": f"the string '{value}'", "num": f"the number {value}", "bool": _show(value),
           "seq": f"the list {_show(value)}", "map": "a mapping"}[_kind(value)]
    msg = f"{key}={_show(value)}: {owner}({arg}) takes {want}, got {got}"
    if "seq" in kinds and "num" not in kinds and _kind(value) in ("num", "str"):
        msg += f"; write a list, e.g. '{key}=[{_show(value)}]'"
    return msg


_UNRESOLVED = object()


def _get(node: Any, key: Any) -> Any:
    """``node[key]`` resolved, or _UNRESOLVED when it cannot be resolved here
    (``${hydra:...}`` before a run exists, a missing ``???``)."""
    try:
        return node[key]
    except Exception:  # noqa: BLE001
        return _UNRESOLVED


def _interpolated_from(node: Any, arg: str) -> str | None:
    """The key ``node.arg`` copies with a plain ``${key}`` interpolation, if it does."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig) or not OmegaConf.is_interpolation(node, arg):
        return None
    raw = node._get_node(arg)._value()
    match = re.fullmatch(r"\$\{([\w.]+)\}", str(raw))
    return match.group(1) if match else None


def _walk(node: Any, key: str) -> None:
    if isinstance(node, Mapping):
        target = _get(node, "_target_")
        obj = _locate(target) if isinstance(target, str) else None
        if obj is not None:
            owner = getattr(obj, "__name__", target)
            hints, names = _signature(obj)
            for arg in node.keys():
                arg = str(arg)
                if arg.startswith("_"):
                    continue
                if names is not None and arg not in names:
                    guess = difflib.get_close_matches(arg, sorted(names), n=1, cutoff=0.6)
                    fix = f"did you mean '{key}.{guess[0]}'?" if guess else f"it takes {', '.join(sorted(names))}"
                    raise ConfigError(f"{key}.{arg}: {owner} has no argument '{arg}'; {fix}")
                value = _get(node, arg)
                if value is _UNRESOLVED or arg not in hints:
                    continue
                kinds = _kinds(hints[arg])
                if not _fits(value, kinds):
                    source = _interpolated_from(node, arg)  # e.g. encoder.T: ${T} -> name T, as typed
                    where = f"{source}" if source else f"{key}.{arg}"
                    msg = _mismatch(where, value, kinds, owner, arg)
                    raise ConfigError(msg + (f" (used as {key}.{arg})" if source else ""))
        for arg in node.keys():
            value = _get(node, arg)
            if not str(arg).startswith("_") and value is not _UNRESOLVED:
                _walk(value, f"{key}.{arg}")
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i in range(len(node)):
            value = _get(node, i)
            if value is not _UNRESOLVED:
                _walk(value, f"{key}[{i}]")


def check_types(cfg: Any, skip: Iterable[str] = ("hydra",)) -> None:
    """Check every ``_target_`` node of ``cfg`` against the class it builds.

    Raises :class:`ConfigError` for an argument the class does not take
    (``neuron.tua: LIFNode has no argument 'tua'; did you mean 'neuron.tau'?``)
    or a value that cannot fit its type hint
    (``neuron.tau=abc: LIFNode(tau) takes a number, got the string 'abc'``).
    Only plain mismatches are flagged (a string for a number, a scalar for a
    list, ...); anything a hint leaves open passes.
    """
    for top in list(cfg.keys()):
        if top in skip:
            continue
        node = _get(cfg, top)
        if node is not _UNRESOLVED:
            _walk(node, str(top))


def _int(v: Any) -> bool:
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _positive_int(v: Any) -> bool:
    return _int(v) and v >= 1


def _fraction_or_count(v: Any) -> bool:
    return (0 < v < 1) or (_int(v) and v >= 0)


#: argument name -> (accepts the number?, what it must be). Applied to that
#: argument in every node of a config (``model.dropout``, ``model.blocks[2].dropout``).
#: Finer checks (LIF tau > 1, v_reset below v_threshold) stay in the classes.
RANGES: dict[str, tuple[Any, str]] = {
    "T": (_positive_int, "a positive integer (time steps)"),
    "lr": (lambda v: v > 0, "> 0 (e.g. 1e-3)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "batch_size": (_positive_int, "a positive whole number"),
    "eval_batch_size": (_positive_int, "a positive whole number"),
    "num_workers": (lambda v: _int(v) and v >= 0, "a whole number >= 0"),
    "val_size": (_fraction_or_count, "a count >= 0 (0 = validate on the test set) or a fraction in (0, 1)"),
    "dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "max_epochs": (lambda v: _int(v) and (v >= 1 or v == -1), "a whole number >= 1 (or -1: no limit)"),
    "min_epochs": (lambda v: _int(v) and v >= 0, "a whole number >= 0"),
    "max_steps": (lambda v: _int(v) and (v >= 1 or v == -1), "a whole number >= 1 (or -1: no limit)"),
    "gradient_clip_val": (lambda v: v > 0, "> 0 (or null: no clipping)"),
    "minutes": (lambda v: v > 0, "> 0 (or leave the callback out: ~callbacks.interval_checkpoint)"),
    "tau": (lambda v: v > 0, "> 0 (time steps)"),
    "tau_adapt": (lambda v: v > 0, "> 0 (time steps)"),
    "readout_tau": (lambda v: v > 0, "> 0 (time steps)"),
    "v_threshold": (lambda v: v > 0, "> 0"),
    "num_classes": (_positive_int, "a positive whole number"),
}


def _ranges(node: Any, key: str) -> None:
    if isinstance(node, Mapping):
        for arg in node.keys():
            if str(arg).startswith("_"):
                continue
            value = _get(node, arg)
            if value is _UNRESOLVED:
                continue
            rule = RANGES.get(str(arg))
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if rule is not None and number and not (value == value and rule[0](value)):  # value == value: not NaN
                source = _interpolated_from(node, str(arg))
                where = source or (f"{key}.{arg}" if key else str(arg))
                used = f" (used as {key}.{arg})" if source else ""
                raise ConfigError(f"{where}={_show(value)} is out of range: {arg} must be {rule[1]}{used}")
            _ranges(value, f"{key}.{arg}" if key else str(arg))
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i in range(len(node)):
            value = _get(node, i)
            if value is not _UNRESOLVED:
                _ranges(value, f"{key}[{i}]")


def check_ranges(cfg: Any, skip: Iterable[str] = ("hydra", "hparams_search")) -> None:
    """Raise :class:`ConfigError` for the first number outside its :data:`RANGES` entry,
    e.g. ``optimizer.lr=-1 is out of range: lr must be > 0 (e.g. 1e-3)``."""
    for top in list(cfg.keys()):
        if top in skip:
            continue
        node = _get(cfg, top)
        if node is _UNRESOLVED:
            continue
        rule = RANGES.get(str(top))
        if rule is not None and isinstance(node, (int, float)) and not isinstance(node, bool) and not rule[0](node):
            raise ConfigError(f"{top}={_show(node)} is out of range: {top} must be {rule[1]}")
        _ranges(node, str(top))


def check_accelerator(trainer_cfg: Mapping) -> None:
    """``accelerator=gpu`` (or cuda) with no CUDA device, or more GPUs in ``trainer.devices`` than the
    machine has: one line instead of Lightning's traceback."""
    import torch

    acc = str(trainer_cfg.get("accelerator", "auto")).lower()
    if acc in ("gpu", "cuda") and not (torch.cuda.is_available() or _mps()):
        raise ConfigError(
            f"trainer.accelerator={acc} but this machine has no usable GPU (torch.cuda.is_available() is False); "
            "use accelerator=cpu, or accelerator=auto to take a GPU when there is one"
        )
    devices = trainer_cfg.get("devices", "auto")
    on_gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    if on_gpu and torch.cuda.is_available() and _int(devices) and not isinstance(devices, bool):
        have = torch.cuda.device_count()
        if int(devices) > have:
            raise ConfigError(f"trainer.devices={int(devices)} but this machine has {have} GPU{'s' * (have != 1)}; "
                              f"use trainer.devices={have} (or trainer.devices=auto: every GPU)")


def device_note(trainer_cfg: Mapping) -> str | None:
    """One line when ``trainer.devices`` asks for more CPU processes than the machine has cores
    (no GPU: DDP runs on CPU processes, which then share the cores); None otherwise."""
    import os

    import torch

    acc = str(trainer_cfg.get("accelerator", "auto")).lower()
    devices = trainer_cfg.get("devices", "auto")
    on_cpu = acc == "cpu" or (acc == "auto" and not torch.cuda.is_available() and not _mps())
    cores = os.cpu_count() or 1
    if on_cpu and _int(devices) and not isinstance(devices, bool) and int(devices) > cores:
        return (f"trainer.devices={int(devices)}: this machine has no GPU, so {int(devices)} CPU processes share its "
                f"{cores} cores (slower than {cores}); trainer.devices={cores} at most")
    return None


def _mps() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
