"""Why the bake-off's ``test/probe_linear_550`` is higher than ae_bakeoff's: its probe, replayed on
the lab's trained models. For each job of a finished ``experiment=bakeoff`` sweep, the accuracy on
the test set of three probes on the frozen codes of the same 550 labelled training images:

* ``lab``: the job's own ``test/probe_linear_550`` (logistic regression, L-BFGS, standardised
  codes, the posterior mean for a VAE), read from its ``metrics.json``;
* ``theirs``: ae_bakeoff's ``Classifier`` (src/downstream/classification.py, src/reproduce.py): a
  ``Linear`` on the raw codes, Adam at 1e-3, batch 32, at most 20 epochs, early stopping with
  patience 3 on the validation accuracy (5,000 images), the best epoch tested; a VAE's code is a
  fresh posterior sample at every step, in training and test, as its bottleneck's forward draws;
* ``theirs, mean``: the same, with a VAE's posterior mean (the others' codes are deterministic).

    .venv/bin/python benchmarks/bakeoff_probe.py /tmp/bakeoff_fm60 [--seeds 3]

Prints one row per job: the three accuracies (``theirs``: mean and range over the seeds) and
ae_bakeoff's published number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ae_lab.run.build import prepare_data
from ae_lab.run.eval_config import load_model
from ae_lab.sweeps import published

LABELS, BATCH, EPOCHS, PATIENCE = 550, 32, 20, 3


def load(job: Path):
    """The job's config, its data and its best checkpoint's model, as ``eval.py`` loads it."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    data = prepare_data(cfg)
    best = sorted((job / "checkpoints").glob("best-*.ckpt"))[-1]
    return cfg, data, load_model(str(best), {}).eval()


@torch.no_grad()
def encoder_outputs(model, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encoder(batch) for batch in images.split(1000)])


def codes(model, h: torch.Tensor, sample: bool) -> torch.Tensor:
    """The code ae_bakeoff's classifier reads: a posterior sample (VAE, ``sample``) or the code."""
    if sample and model.supports.prior:
        return model.bottleneck.sample(h)
    return model.bottleneck.code(h)


def accuracy(linear: torch.nn.Linear, z: torch.Tensor, labels: torch.Tensor) -> float:
    return float((linear(z).argmax(1) == labels).float().mean())


def their_probe(model, train, val, test, sample: bool, seed: int) -> float:
    """ae_bakeoff's classifier on frozen codes; the test accuracy of its best validation epoch."""
    torch.manual_seed(seed)
    (h_train, y_train), (h_val, y_val), (h_test, y_test) = train, val, test
    linear = torch.nn.Linear(h_train.shape[1] // (2 if model.supports.prior else 1), 10)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-3)
    best, best_state, waited = -1.0, None, 0
    for _ in range(EPOCHS):
        for index in torch.randperm(len(h_train)).split(BATCH):
            with torch.no_grad():
                z = codes(model, h_train[index], sample)
            loss = torch.nn.functional.cross_entropy(linear(z), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            score = accuracy(linear, codes(model, h_val, sample), y_val)
        if score > best:
            best, best_state, waited = (
                score,
                {k: v.clone() for k, v in linear.state_dict().items()},
                0,
            )
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    linear.load_state_dict(best_state)
    with torch.no_grad():
        return accuracy(linear, codes(model, h_test, sample), y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'job':<17} {'lab':>6} {'theirs':>16} {'theirs, mean':>16} {'published':>10}")
    for job in sorted(args.sweep.glob("[0-9]*/"), key=lambda p: int(p.name)):
        cfg, data, model = load(job)
        choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
        name = choices["bakeoff"]
        splits = {}
        for split, count in (("train", LABELS), ("val", None), ("test", None)):
            images, labels = data.sample_batch(count, split=split, seed=cfg.seed)
            splits[split] = (encoder_outputs(model, images), labels.long())
        runs = {}
        for sample in (True, False):
            runs[sample] = [their_probe(model, *splits.values(), sample, seed)
                            for seed in range(args.seeds)]  # fmt: skip
        lab = json.loads((job / "metrics.json").read_text()).get("test/probe_linear_550")
        theirs = published.models(choices["data"]).get(name, {}).get("test/probe_linear_550")
        cells = [f"{sum(r) / len(r):.3f} ({min(r):.2f}-{max(r):.2f})" for r in runs.values()]
        print(
            f"{name:<17} {lab:>6.3f} {cells[0]:>16} {cells[1]:>16} {theirs or float('nan'):>10.3f}"
        )


if __name__ == "__main__":
    main()
