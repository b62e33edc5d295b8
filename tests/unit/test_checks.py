"""Bad command lines stop in one line naming the fix; run folders stay clean (issue 7).

In-process (no subprocess): spikelight.app.checks, spikelight.app.rundir, the CSV
logger's resume mode and run_task's failure handling. The same paths through
the real CLI are walked by tests/integration/test_readme.py (README's error examples).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from spikelight.app import checks
from spikelight.app.checks import check_accelerator, check_types, preflight
from spikelight.app.cli import run_task
from spikelight.app.rundir import FAILED, continue_metrics_csv, finish_failed_run, logger_step
from spikelight.core.errors import ConfigError
from spikelight.train.loggers import CSVLogger


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["nueron.tau=2"], "unknown config key 'nueron' in 'nueron.tau=2'; did you mean 'neuron.tau=2'?"),
        (["+nueron.tau=2"], "unknown config key 'nueron' in '+nueron.tau=2'; did you mean 'neuron.tau=2'?"),
        (["+foo=1"], "unknown config key 'foo' in '+foo=1'; top-level keys are: T, "),
        (["neuron.tua=3"], "no key 'tua' in neuron (from 'neuron.tua=3'); did you mean 'neuron.tau=3'?"),
        (["-m", "neuron.tua=2,3"], "did you mean 'neuron.tau=2,3'?"),
        (["surrogate=atn"], "no config surrogate/atn.yaml (surrogate=atn); did you mean surrogate=atan?"),
        (["neuron=lif,if"], "add -m to sweep over them (python train.py -m neuron=lif,if)"),
        (["neuron.tau=abc"], "neuron.tau=abc: lif_neuron(tau) takes a number, got the string 'abc'"),
        (["T=abc"], "T=abc: PoissonEncoder(T) takes a number, got the string 'abc' (used as encoder.T)"),
        (["model=mlp", "model.hidden=500"],
         "model.hidden=500: MLP(hidden) takes a list, got the number 500; write a list, e.g. 'model.hidden=[500]'"),
        (["+neuron.tua=2"], "neuron.tua: lif_neuron has no argument 'tua'; did you mean 'neuron.tau'?"),
        (["optimizer.lr=abc"], "optimizer.lr=abc: Adam(lr) takes a number, got the string 'abc'"),
        (["data=digits", "data.batch_size=x"], "data.batch_size=x: DigitsDataModule(batch_size) takes a number"),
        # a real argument the shipped config does not list, a key of a group given at the top, another
        # framework's name (issue 23)
        (["trainer.accumulate_grad_batches=2"], "add it with a plus: '+trainer.accumulate_grad_batches=2'"),
        (["lr=0.01"], "unknown config key 'lr' in 'lr=0.01'; did you mean 'optimizer.lr=0.01'?"),
        (["max_epochs=3"], "did you mean 'trainer.max_epochs=3'?"),
        (["surrogate.slope=25"], "snnTorch's slope is surrogate.alpha here: 'surrogate.alpha=25'"),
    ],
)
def test_bad_train_arguments_are_one_line(argv, needle):
    with pytest.raises(ConfigError) as err:
        preflight(argv, "train")
    msg = str(err.value)
    assert needle in msg and "\n" not in msg, msg


def test_eval_arguments():
    with pytest.raises(ConfigError, match=r"'data.batch_size=16' sets a key inside data, .* e.g. data=\w+ ") as err:
        preflight(["ckpt_path=x.ckpt", "data.batch_size=16"], "eval")
    example = re.search(r"e\.g\. data=(\w+) data\.batch_size=16$", str(err.value)).group(1)
    assert (Path(__file__).parents[2] / "conf" / "data" / f"{example}.yaml").is_file(), example
    with pytest.raises(ConfigError, match="unknown config key 'neuron'"):
        preflight(["ckpt_path=x.ckpt", "neuron.tau=2"], "eval")
    assert preflight(["ckpt_path=x.ckpt", "data=fashion_mnist"], "eval") == ["ckpt_path=x.ckpt", "data=fashion_mnist"]
    with pytest.raises(ConfigError, match=r"^eval.py needs the checkpoint to test: ckpt_path=<.*python eval.py ckpt_path=last$"):
        preflight([], "eval")


def test_good_arguments_pass_unchanged():
    for argv in (["model=mlp", "model.hidden=[500,200]", "neuron=leaky", "neuron.beta=0.9"],
                 ["-m", "neuron.tau=2,5,10", "surrogate=atan,sigmoid"], ["experiment=snntorch_tutorial5"],
                 ["trainer.precision=bf16-mixed", "trainer.devices=2", "accelerator=ddp"], ["--help"],
                 ["hydra.run.dir=/tmp/x", "+callbacks.extra._target_=lightning.pytorch.callbacks.Timer"]):
        assert preflight(argv, "train") == argv


def test_missing_optional_extra_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(checks.EXTRAS, ("hparams_search", "tau_grid"),
                        ("hydra_plugins.no_such_sweeper", "sweep", "the Optuna sweeper plugin"))
    with pytest.raises(ConfigError) as err:
        preflight(["-m", "hparams_search=tau_grid"], "train")
    assert str(err.value).endswith('not installed: pip install -e ".[sweep]"')
    assert ("hparams_search", "optuna") in checks.EXTRAS and ("hydra/launcher", "slurm") in checks.EXTRAS


def test_gpu_without_one_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(checks, "_mps", lambda: False)
    with pytest.raises(ConfigError, match="no usable GPU .* use accelerator=cpu"):
        check_accelerator({"accelerator": "gpu"})
    check_accelerator({"accelerator": "cpu"})
    check_accelerator({"accelerator": "auto"})
    # DDP on CPU (accelerator=ddp): more processes than cores is said in one line, not refused
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert checks.device_note({"accelerator": "auto", "devices": 4, "strategy": "ddp"}) == (
        "trainer.devices=4: this machine has no GPU, so 4 CPU processes share its 2 cores (slower than 2); "
        "trainer.devices=2 at most")
    assert checks.device_note({"accelerator": "auto", "devices": 2}) is None
    # more GPUs than there are: refused, naming how many there are
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"^trainer.devices=4 but this machine has 1 GPU; use trainer.devices=1 "):
        check_accelerator({"accelerator": "auto", "devices": 4, "strategy": "ddp"})
    check_accelerator({"accelerator": "auto", "devices": 1})
    assert checks.device_note({"accelerator": "auto", "devices": 4}) is None


def test_check_types_accepts_every_shipped_option():
    """No false alarms: every option file of every group passes the type check
    (interpolations it cannot resolve alone are skipped; composed configs are
    checked by every CLI test through preflight and train())."""
    files = [p for p in checks.CONF.rglob("*.yaml") if p.parent != checks.CONF and "hydra" not in p.parts]
    assert len(files) > 30
    for path in files:
        node = OmegaConf.load(path)
        node.pop("defaults", None)
        check_types({path.parent.name: node})
    with pytest.raises(ConfigError, match="LIFNode has no argument 'tua'"):  # the same walk does catch
        check_types({"neuron": OmegaConf.create({"_target_": "spikelight.neurons.LIFNode", "tua": 2})})


def test_resume_writes_into_the_checkpoints_run(tmp_path):
    run = tmp_path / "logs" / "train" / "runs" / "2026-01-01_00-00-00-000000"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    # Hydra's files of the resume go to .hydra/resume-<n>/: the run's own stay as written
    assert preflight([ckpt], "train") == [ckpt, f"hydra.run.dir='{run}'", "hydra.output_subdir='.hydra/resume-1'"]
    (run / ".hydra" / "resume-1").mkdir()
    assert preflight([ckpt], "train")[-1] == "hydra.output_subdir='.hydra/resume-2'"
    assert preflight([ckpt, "hydra.run.dir=elsewhere"], "train") == [ckpt, "hydra.run.dir=elsewhere"]
    assert preflight([ckpt], "eval") == [ckpt]  # eval writes its own folder
    loose = tmp_path / "some.ckpt"
    loose.write_bytes(b"x")
    assert preflight([f"ckpt_path={loose}"], "train") == [f"ckpt_path={loose}"]


def _run_with_checkpoint(root: Path, overrides: list[str] | None, hydra_overrides: list[str] | None = None) -> Path:
    """A run folder as train.py leaves it: ``.hydra/overrides.yaml`` and a checkpoint that stores
    ``overrides`` (None: a checkpoint from before they were stored)."""
    run = root / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {x}\n" for x in hydra_overrides or []))
    ckpt = {"state_dict": {}, "global_step": 0}
    if overrides is not None:
        ckpt["overrides"] = overrides
    (run / "checkpoints").mkdir()
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    return run / "checkpoints" / "last.ckpt"


def test_resume_reuses_the_runs_overrides(tmp_path):
    """ckpt_path= alone resumes with the overrides the run was started with; one given on the
    command line replaces the run's for that key (+key and key are the same key)."""
    ckpt = _run_with_checkpoint(tmp_path, ["data=digits", "T=4", "trainer.max_epochs=2", "+trainer.max_steps=50",
                                           "logger=tensorboard"])
    argv = preflight([f"ckpt_path={ckpt}", "trainer.max_epochs=3", "trainer.max_steps=60"], "train")
    assert argv[:5] == ["data=digits", "T=4", "logger=tensorboard", f"ckpt_path={ckpt}", "trainer.max_epochs=3"], argv
    assert argv[5] == "trainer.max_steps=60" and argv[6].startswith("hydra.run.dir=") and len(argv) == 8
    assert preflight([f"ckpt_path={ckpt}", "-m", "seed=1,2"], "train") == [f"ckpt_path={ckpt}", "-m", "seed=1,2"]
    # a checkpoint from before overrides were stored: its run folder's .hydra/overrides.yaml
    old = _run_with_checkpoint(tmp_path / "old", None, ["data=digits", "T=5", f"ckpt_path={ckpt}"])
    assert preflight([f"ckpt_path={old}"], "train")[:3] == ["data=digits", "T=5", f"ckpt_path={old}"]
    # a reused override that no longer fits the config is one line too
    bad = _run_with_checkpoint(tmp_path / "bad", ["neuron.tua=3"])
    with pytest.raises(ConfigError, match="did you mean 'neuron.tau=3'"):
        preflight([f"ckpt_path={bad}"], "train")
    # a key inside a group the run chose (model=mlp has hidden; the default model has not)
    mlp = _run_with_checkpoint(tmp_path / "mlp", ["model=mlp", "model.hidden=[64]"])
    assert preflight([f"ckpt_path={mlp}", "model.hidden=[32]"], "train")[:3] == [
        "model=mlp", f"ckpt_path={mlp}", "model.hidden=[32]"]
    # a downloaded checkpoint's overrides name only trusted code
    evil = _run_with_checkpoint(tmp_path / "evil", ["+callbacks.x._target_=os.system"])
    with pytest.raises(ConfigError, match="os.system from the overrides stored in the checkpoint"):
        preflight([f"ckpt_path={evil}"], "train")


def test_override_changes_are_named():
    from spikelight.app.cli import override_changes

    run = ["data=digits", "T=4", "trainer.max_epochs=2", "logger=tensorboard"]
    assert override_changes(run, ["data=digits", "T=4", "trainer.max_epochs=2", "logger=tensorboard"]) == \
        "the run's overrides, unchanged"
    assert override_changes(run, ["T=4", "data=digits", "trainer.max_epochs=3", "seed=2"]) == (
        "changed: trainer.max_epochs=2 -> 3; added: seed=2; left out (the run had them): logger=tensorboard")
    assert "stores no overrides" in override_changes(None, ["T=4"])


def test_failed_run_folder_is_removed_or_marked(tmp_path):
    early = tmp_path / "early"
    (early / ".hydra").mkdir(parents=True)
    (early / ".hydra" / "config.yaml").write_text("a: 1")
    (early / "config_resolved.yaml").write_text("a: 1")
    (early / "train.log").write_text("started\n")
    (early / "checkpoints").mkdir()
    assert finish_failed_run(early, "error: bad") == "removed" and not early.exists()

    sweep = tmp_path / "multiruns" / "ts"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}")
    assert finish_failed_run(sweep / "0", "error: bad", sweep_dir=sweep) == "removed" and not sweep.exists()

    late = tmp_path / "late"
    (late / "checkpoints").mkdir(parents=True)
    (late / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert finish_failed_run(late, "error: training loss is nan") == "marked"
    note = (late / FAILED).read_text()
    assert note.startswith("error: training loss is nan") and f"ckpt_path={late / 'checkpoints' / 'last.ckpt'}" in note


def test_run_task_cleans_up_and_marks_interrupts(tmp_path, capsys):
    def bad(cfg):
        raise ConfigError("neuron.tau must be > 1")

    out = tmp_path / "run"
    (out / ".hydra").mkdir(parents=True)
    cfg = OmegaConf.create({"paths": {"output_dir": str(out)}})
    with pytest.raises(SystemExit) as exit_:
        run_task(bad, cfg)
    assert exit_.value.code == 2 and not out.exists()
    assert capsys.readouterr().err == "error: neuron.tau must be > 1\n"

    def interrupted(cfg):
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(b"x")
        raise SystemExit(1)  # what Lightning does after handling Ctrl-C

    with pytest.raises(SystemExit):
        run_task(interrupted, cfg)
    assert (out / FAILED).read_text().startswith("interrupted\nresume: python train.py")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resume_cuts_the_csv_at_the_loggers_step():
    """After resumes with trainer.max_steps the loggers' step runs ahead of the global step (bellec_s0, saved after
    20 epochs and 4 resumes: global step 4300, logger step 4304, its last epoch's rows at 4303)."""
    ckpt = {"global_step": 4300, "loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 4304}}}}
    assert logger_step(ckpt) == 4304
    assert logger_step({"global_step": 12}) == 12  # a checkpoint without loop state


def test_resumed_csv_keeps_earlier_epochs(tmp_path):
    first = CSVLogger(save_dir=tmp_path, name="csv", version="")
    first.log_metrics({"train/loss_step": 1.0}, step=4)
    first.log_metrics({"val/acc": 0.5, "epoch": 0}, step=9)
    first.log_metrics({"val/acc": 0.6, "epoch": 1}, step=19)  # after the checkpoint we resume from
    first.log_metrics({"test/acc": 0.55}, step=19)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"
    assert continue_metrics_csv(path, step=9) == 2
    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="", append=True)
    resumed.log_metrics({"val/acc": 0.7, "epoch": 1, "val/loss": 0.3}, step=19)  # a new column, too
    resumed.save()
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["4", "9", "19"] and rows[-1]["val/acc"] == "0.7"
    assert rows[0]["train/loss_step"] == "1.0" and not any(r.get("test/acc") for r in rows)
    # Lightning's own behaviour without append: the old file is gone
    with pytest.warns(UserWarning, match="exists and is not empty"):
        CSVLogger(save_dir=tmp_path, name="csv", version="").experiment  # noqa: B018
    assert not path.exists()


def test_epoch_summary_and_model_summary_are_one_line_each():
    """train.log gets one line per epoch; the model summary is one line with the input it is given
    (no 'Total FLOPs: 0'): issue 23."""
    from types import SimpleNamespace

    from spikelight.data import DigitsDataModule
    from spikelight.models import FCLIF
    from spikelight.neurons import LIFNode
    from spikelight.train.callbacks import EpochSummary, ModelSummaryLine

    metrics = {"train/loss_epoch": torch.tensor(0.08576), "train/acc": torch.tensor(0.3397), "val/loss": 0.0591,
               "val/acc": torch.tensor(0.7), "val/acc_best": 0.7, "train/fr/neuron": torch.tensor(0.0781)}
    trainer = SimpleNamespace(callback_metrics=metrics, current_epoch=0, max_epochs=3)
    assert EpochSummary.line(trainer, 1.94) == ("epoch 1/3: train loss 0.08576 acc 0.3397 | val loss 0.0591 acc 0.7000 "
                                                "(best 0.7000) | firing neuron 0.078 / step | 1.9 s")
    module = SimpleNamespace(model=FCLIF(neuron=LIFNode(tau=2.0)))
    module.parameters = module.model.parameters
    assert ModelSummaryLine.line(module, DigitsDataModule()) == (
        "model FCLIF: 7.8 K parameters (all trainable, 0.0299 MB); input per step [1, 28, 28] from "
        "DigitsDataModule (8x8 digits upsampled to 28x28)")


def test_ckpt_path_last_looks_in_its_own_tasks_runs(tmp_path):
    """A run started with task_name=x is resumed by ckpt_path=last from logs/x/runs, not from logs/train/runs
    (found by the LSNN queue: a resume picked another task's newer checkpoint)."""
    from spikelight.app.checks import preflight

    for task, stamp in (("mytask", "2026-01-01_00-00-00-000001"), ("train", "2026-01-02_00-00-00-000001")):
        ck = tmp_path / task / "runs" / stamp / "checkpoints"
        ck.mkdir(parents=True)
        (ck / "last.ckpt").write_bytes(b"x")  # the train task's is newer
    argv = ["ckpt_path=last", f"paths.log_dir={tmp_path}", "task_name=mytask"]
    try:
        out = preflight(argv, "train")
    except Exception as err:  # the fake file is not a checkpoint: the path it chose is in the message
        out = [str(err)]
    assert any("mytask" in a for a in out) and not any(f"{tmp_path}/train/" in a for a in out), out


def test_ckpt_path_last_looks_in_the_task_its_experiment_names(tmp_path):
    """experiment=demo_digits sets task_name=demo_digits: ckpt_path=last resumes the demo's newest run, not
    another task's newer one (it took logs/train/runs' finished run, merged the demo's overrides into it and
    overwrote its results: the command line's config never composed, a list inside the list of overrides)."""
    from spikelight.app.checks import preflight

    for task, stamp in (("demo_digits", "2026-01-01_00-00-00-000001"), ("train", "2026-01-02_00-00-00-000001")):
        ck = tmp_path / task / "runs" / stamp / "checkpoints"
        ck.mkdir(parents=True)
        (ck / "last.ckpt").write_bytes(b"x")  # the train task's is newer
    try:
        out = preflight(["experiment=demo_digits", "ckpt_path=last", f"paths.log_dir={tmp_path}"], "train")
    except Exception as err:  # the fake file is not a checkpoint: the path it chose is in the message
        out = [str(err)]
    assert any(f"{tmp_path}/demo_digits/runs/" in a for a in out) and not any(f"{tmp_path}/train/" in a for a in out), out


def test_a_slow_run_says_early_what_an_epoch_takes(monkeypatch, caplog):
    """Measured, not guessed: batches 2-3 of the first epoch give the seconds per batch (issue 23:
    e-prop on sfmnist showed 0.00 it/s and nothing else)."""
    import logging
    from types import SimpleNamespace

    from spikelight.train import callbacks

    clock = iter([0.0, 12.0, 24.0])  # the ends of batches 1 (after its warm-up), 2 and 3: 12 s per batch
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(is_global_zero=True, num_training_batches=215,
                              train_dataloader=SimpleNamespace(batch_size=256))
    cb = callbacks.EpochSummary()
    with caplog.at_level(logging.INFO, logger="spikelight"):
        for i in range(4):
            cb.on_train_batch_end(trainer, None, None, None, i)
    assert [r.getMessage() for r in caplog.records] == [
        "[spikelight] 12.0 s per training batch of 256 (measured on batches 2-3): an epoch of 215 batches takes "
        "about 43 min here"]
