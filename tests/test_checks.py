"""Config checks, in-process on the real composed config: each bad setting is refused with a
message naming it and what is valid, every shipped config passes, and checkpoints of another
model are refused before training."""

from __future__ import annotations

import copy
import functools
import itertools
import typing
from pathlib import Path
from typing import Literal

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from ae_lab.errors import UserError
from ae_lab.run.build import build, build_model
from ae_lab.run.checkpoints import check_checkpoint, read_checkpoint
from ae_lab.run.checks import RULES, check_config, resolved
from ae_lab.run.checks.ranges import check_ranges, select
from ae_lab.run.checks.types import conforms, describe
from ae_lab.run.train import run
from tests.conftest import CONF, TINY_RUN, compose_config

#: (overrides, what the message must say): the issue's list, then more a user may type
BAD = [
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["data.batch_size=-4"], "data.batch_size=-4: must be >= 1"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': must be an integer or null"),
    (["seed=abc"], "seed='abc': must be an integer or null"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5: must be > 0 and < 1"),
    (["data.val_fraction=0"], "data.val_fraction=0: must be > 0 and < 1"),
    (["model.optimizer.lr=-1"], "model.optimizer.lr=-1: must be > 0"),
    (["callbacks.reconstructions.num_examples=0"], "callbacks.reconstructions.num_examples=0"),
    (["model/scheduler=onecycle", "trainer.max_epochs=-1"], "trainer.max_epochs>=1"),
    (["model/scheduler=cosine", "trainer.max_epochs=-1"], "model.scheduler.T_max=N"),
    (["model.latent_dim=0"], "model.latent_dim=0: must be >= 1, or null (as wide as the input)"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be >= 1, or -1 (no limit)"),
    (["trainer.max_steps=0"], "trainer.max_steps=0"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0: must be > 0"),
    (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0"),
    (["trainer.limit_test_batches=0"], "trainer.limit_test_batches=0"),
    (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5: must be an integer or null"),
    (["trainer.precision=17"], "trainer.precision=17: must be one of 64, 32, 16,"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0"),
    (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["+trainer.max_epoch=3"], "takes no argument 'max_epoch'; did you mean max_epochs?"),
    (["+model.foo=3"], "model.foo: ae_lab.models.Autoencoder takes no argument 'foo'; valid: "),
    (["model.optimizer.lr=abc"], "model.optimizer.lr='abc': must be a number"),
    (["model.latent_dim=abc"], "model.latent_dim='abc': must be an integer or null"),
    (["model.net.hidden_dims=[0]"], "model.net.hidden_dims[0]=0: must be >= 1"),
    (["model.net.hidden_dims=abc"], "model.net.hidden_dims='abc': must be a list of integers"),
    (["+model.optimizer.betas=[0.9]"], "model.optimizer.betas=[0.9]: must be a list of 2 numbers"),
    (["trainer.devices=-2"], "trainer.devices=-2: must be >= 1, or -1 (all), or 'auto'"),
    # a part removed or nulled: one line naming it (a TypeError traceback before)
    (
        ["model.net=null"],
        "model.net=null: must be a config with a _target_; choose one: model/net=conv|mlp",
    ),  # fmt: skip
    (["model.optimizer=null"], "choose one: model/optimizer=adam|adamw|sgd|soap"),
    (["trainer.enable_checkpointing=false"], "callbacks.model_checkpoint.save_top_k=0"),
    # figures without bounds ran for minutes and ended in the OOM killer, before any checkpoint
    (["callbacks.latent_interpolation.steps=100000"], "steps=100000: must be >= 2 and <= 120"),
    (["callbacks.latent_space.manifold_size=1000"], "manifold_size=1000: must be >= 2 and <= 40"),
    (["callbacks.latent_space.num_points=10000000"], "num_points=10000000: must be >= 1 and <="),
    (["trainer.devices=abc"], "trainer.devices='abc': must be >= 1, or -1 (all), or 'auto' (all"),
    (["trainer.devices=[]"], "trainer.devices=[]: must be"),
    (["trainer.devices=[-1]"], "trainer.devices=[-1]: must be"),
    (["trainer.precision=bf16-true"], "trainer.precision='bf16-true': must be one of 32-true"),
    (["trainer.precision=64-true"], "trainer.precision='64-true': must be one of 32-true"),
    (["model=vae", "model.beta=-1"], "model.beta=-1: must be >= 0"),
    (["model=denoising_ae", "model.corruption.p=1.5"], "model.corruption.p=1.5"),
    (
        ["data.binarize=maybe"],
        "data.binarize='maybe': must be one of 'threshold', 'stochastic' or true or false",
    ),
    (["seed=-1"], "seed=-1: must be >= 0 and <= 4294967295"),
    (["matmul_precision=ultra"], "matmul_precision='ultra': must be one of 'highest'"),
    (["flush_denormal=maybe"], "flush_denormal='maybe': must be true or false"),
    (["callbacks.latent_interpolation.every_n_epochs=0"], "every_n_epochs=0: must be >= 1"),
    (["model.latent_dim=${nope}"], "model.latent_dim: Interpolation key 'nope' not found"),
    # "+" adds any key: a top-level one the lab never reads was silently ignored
    (["+seeed=3"], "seeed: not a setting of the lab (did you mean seed?); the top-level settings"),
    (["+epochs=3"], "epochs: not a setting of the lab; the top-level settings are ckpt_path,"),
    (["+optimizer.lr=3"], "optimizer: not a setting of the lab (did you mean model.optimizer?)"),
]


def test_a_new_top_level_key_that_a_setting_interpolates_is_kept() -> None:
    cfg = with_overrides(["+lr=0.01", "model.optimizer.lr=${lr}"])
    check_config(cfg)
    assert resolved(cfg)["model"]["optimizer"]["lr"] == 0.01


@functools.cache
def composed(groups: tuple[str, ...]) -> DictConfig:
    cfg = compose_config(list(groups), Path("/nonexistent/run"))
    GlobalHydra.instance().clear()
    return cfg


def with_overrides(overrides: list[str]) -> DictConfig:
    """The config ``train.py <overrides>`` composes: group choices through Hydra (cached), values
    parsed by Hydra's override grammar and set as Hydra sets them (fast: no composition)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    is_group = lambda o: (CONF / o.key_or_group).is_dir()  # noqa: E731
    cfg = copy.deepcopy(composed(tuple(o.input_line for o in parsed if is_group(o))))
    with open_dict(cfg):
        for override in (o for o in parsed if not is_group(o)):
            OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=True)
    return cfg


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_setting_is_refused_with_its_name_and_what_is_valid(overrides, message):
    with pytest.raises(UserError) as refused:
        check_config(with_overrides(overrides))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_overrides_are_applied_as_hydra_applies_them(compose):
    overrides = ["model=vae", "model.beta=0.5", "+trainer.foo=1", "data.root=x", "seed=abc"]
    assert with_overrides(overrides) == compose(overrides)


def shipped_compositions() -> list[list[str]]:
    """The defaults (also with seed=null), every option of every config group, and every option
    of each model part (with the denoising model, which takes every part)."""
    found = [[], ["seed=null"]]
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        # conf/bakeoff/: the models of experiment=bakeoff, a choice inside that preset
        inside = ["experiment=bakeoff"] if group.name == "bakeoff" else []
        found += [[*inside, f"{group.name}={p.stem}"] for p in sorted(group.glob("*.yaml"))]
    for part in sorted(p for p in (CONF / "model").iterdir() if p.is_dir()):
        found += [
            ["model=denoising_ae", f"model/{part.name}={p.stem}"]
            for p in sorted(part.glob("*.yaml"))
        ]
    return found


@pytest.fixture(scope="module")
def shipped_configs() -> dict[str, DictConfig]:
    configs = {
        " ".join(o): compose_config(o, Path("/nonexistent/run")) for o in shipped_compositions()
    }
    GlobalHydra.instance().clear()
    return configs


def test_every_shipped_config_passes_the_checks(shipped_configs):
    assert len(shipped_configs) > 20
    for name, cfg in shipped_configs.items():
        try:
            check_config(cfg)
        except UserError as error:
            pytest.fail(f"{name or 'defaults'}: {error}")


def test_every_range_rule_applies_to_some_shipped_config(shipped_configs):
    """A rule whose path matches nothing has rotted (a renamed setting escapes its check)."""
    trees = [resolved(cfg) for cfg in shipped_configs.values()]
    # a rule for each item of a list applies where the list is, even when it is empty
    unused = [r for r in RULES if not any(list(select(t, r.removesuffix(".*"))) for t in trees)]
    assert not unused


def test_the_type_checker_reads_annotations():
    assert conforms(3, int) and not conforms(True, int) and not conforms("3", int)
    assert conforms(3, float) and conforms(None, int | None) and not conforms(None, int)
    assert conforms("16-mixed", Literal["16-mixed", 32]) and not conforms("32", Literal[32])
    assert conforms([1, 2], list[int]) and not conforms([1, "a"], list[int])
    assert conforms([0.9, 0.99], tuple[float, float]) and not conforms([0.9], tuple[float, float])
    assert conforms("anything", Path) and not conforms("abc", float | torch.Tensor)
    assert conforms({"_target_": "x.Y"}, int)  # built first, then checked on its own
    assert describe(typing.Optional[int]) == "an integer or null"  # noqa: UP045 (as Lightning)
    assert describe(Literal["a", 1] | None) == "one of 'a', 1 or null"


# ---- what needs the built objects --------------------------------------------------------------
def test_an_empty_split_is_refused_before_training(compose, tmp_path, mnist_root):
    cfg = compose([f"data.root={mnist_root}", "data.val_fraction=1e-9", *TINY_RUN])
    with pytest.raises(
        UserError, match=r"the val split is empty .*data.val_fraction \(now 1e-09\)"
    ):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_errors_inside_constructors_come_out_unwrapped(compose, tmp_path):
    cfg = compose(["data=celeba", "data.size=big", f"data.root={tmp_path}"])
    with pytest.raises(UserError, match=r"^size must be null, an int or \[height, width\]"):
        build(cfg.data, "data")
    cfg = compose(["model=ae", "model.likelihood=bernoulli", "model.output_activation=identity"])
    with pytest.raises(UserError, match=r"^model: a bernoulli likelihood needs"):
        build_model(cfg.model, (1, 28, 28))
    cfg = compose(["trainer.strategy=nope"])
    with pytest.raises(UserError, match=r"^trainer: .*nope"):
        build(cfg.trainer, "trainer")


def test_a_bug_in_a_constructor_is_not_called_a_bad_setting(compose):
    cfg = compose(["+callbacks.bug._target_=tests.helpers.crash.Crash", "+callbacks.bug.when=init"])
    check_config(cfg)
    with pytest.raises(Exception, match="simulated bug in a constructor") as raised:
        build(cfg.callbacks.bug, "callbacks.bug")
    assert not isinstance(raised.value, UserError)


def resume_check(path: str, model: torch.nn.Module) -> None:
    check_checkpoint(read_checkpoint(path), model)


def _checkpoint(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture
def ae(compose):
    return build_model(compose(["model=ae", "model.latent_dim=8"]).model, (1, 28, 28))


def test_a_checkpoint_of_the_same_model_passes(ae, tmp_path):
    resume_check(str(_checkpoint(ae, tmp_path / "same.ckpt")), ae)


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


NOT_CHECKPOINTS = {
    "missing": (None, "does not exist"),
    "garbage": (_bytes(b"\x80garbage" * 100), "not a file written by torch.save"),
    "text": (_bytes(b"hello\n"), "not a file written by torch.save"),
    "truncated": (lambda path: None, "not a file written by torch.save"),  # written by the test
    "no state_dict": (lambda path: torch.save({"a": torch.zeros(2)}, path), "not a Lightning"),
    "pickled object": (lambda path: torch.save({"x": Path("/")}, path), "it holds Python objects"),
}


@pytest.mark.parametrize("kind", [*NOT_CHECKPOINTS, "directory"])
def test_a_ckpt_path_that_is_no_checkpoint_is_refused(ae, tmp_path, kind):
    if kind == "directory":
        path, message = tmp_path, "is a directory"
    else:
        path = tmp_path / "x.ckpt"
        write, message = NOT_CHECKPOINTS[kind]
        if kind == "truncated":
            data = _checkpoint(ae, tmp_path / "whole.ckpt").read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif write is not None:
            write(path)
    with pytest.raises(UserError, match=message) as refused:
        resume_check(str(path), ae)
    assert str(refused.value).startswith(f"ckpt_path={path} ")


def test_a_checkpoint_of_another_model_or_image_size_is_refused(compose, ae, tmp_path):
    wider = build_model(compose(["model=ae", "model.latent_dim=16"]).model, (1, 28, 28))
    with pytest.raises(UserError, match=r"is \[16, 256\] there, \[8, 256\] here") as refused:
        resume_check(str(_checkpoint(wider, tmp_path / "wide.ckpt")), ae)
    assert "latent_dim=16 (this run: 8)" in str(refused.value)
    bigger = build_model(compose(["model=ae", "model.latent_dim=8"]).model, (3, 32, 32))
    with pytest.raises(UserError, match=r"input_shape=\[3, 32, 32\] \(this run: \[1, 28, 28\]\)"):
        resume_check(str(_checkpoint(bigger, tmp_path / "big.ckpt")), ae)
    vae = build_model(compose(["model=vae", "model.latent_dim=8"]).model, (1, 28, 28))
    with pytest.raises(UserError, match="holds another model's weights"):
        resume_check(str(_checkpoint(vae, tmp_path / "vae.ckpt")), ae)


def test_select_walks_mappings_and_lists():
    tree = OmegaConf.to_container(OmegaConf.create({"a": {"x": {"n": 1}, "y": {"n": 2}}, "l": [3]}))
    assert list(select(tree, "a.*.n")) == [("a.x.n", 1), ("a.y.n", 2)]
    assert list(select(tree, "l.*")) == [("l[0]", 3)]
    assert list(itertools.chain(select(tree, "a.z.n"), select(tree, "b"))) == []


@pytest.mark.parametrize("devices", [1, 2, -1, "auto", "1", "0,1", [0], [0, 1]])
def test_every_way_lightning_reads_devices_passes(devices):
    assert check_ranges({"trainer": {"devices": devices}}) == []


@pytest.mark.parametrize("precision", ["32-true", 32, "32", "bf16-mixed", "bf16", "16-mixed", 16])
def test_every_precision_the_lab_trains_in_passes(precision):
    assert check_ranges({"trainer": {"precision": precision}}) == []


def test_a_validation_interval_longer_than_the_epoch_is_refused(compose, mnist_root):
    """Lightning found out only once the fit had begun, with a traceback."""
    cfg = compose([f"data.root={mnist_root}", *TINY_RUN, "trainer.val_check_interval=3"])
    with pytest.raises(UserError, match=r"val_check_interval=3: an epoch has 2 training batches"):
        run(cfg)
