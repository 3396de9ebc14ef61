"""The HParams plugin's records, written with TensorBoard's own protocol buffers: a run's row (its
session: settings, trial ID, end) and the table's columns (the experiment), for a single run or
for a whole sweep, whose jobs' settings and metrics differ (:func:`write_sweep_hparams`).

What goes in them (which settings, the trial ID, the final metrics) is
:mod:`ae_lab.run.tensorboard`'s.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

#: The final metrics HParams shows first (it opens with five metric columns), in this order.
FIRST_METRICS = ("test/loss", "final/val/loss", "test/nll", "test/psnr", "test/ssim")
#: The HParams type of each kind of value a session holds.
TYPES = {
    "bool_value": api_pb2.DATA_TYPE_BOOL,
    "number_value": api_pb2.DATA_TYPE_FLOAT64,
    "string_value": api_pb2.DATA_TYPE_STRING,
}
#: Ends the name of a run's event file that holds its HParams row, which its sweep reads back.
HPARAMS_SUFFIX = ".hparams"


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    summary = Summary()
    content = metadata.create_summary_metadata(data)
    summary.value.add(tag=tag, metadata=content, tensor=metadata.NULL_TENSOR)
    return summary


def kind_of(value: Any) -> str:
    """The field of a protobuf ``Value`` that holds ``value``."""
    if isinstance(value, bool):
        return "bool_value"
    return "number_value" if isinstance(value, int | float) else "string_value"


def hparam_info(name: str, kind: str, differs: bool) -> api_pb2.HParamInfo:
    """A column of the table: a setting whose values are of ``kind`` (:func:`kind_of`)."""
    info = api_pb2.HParamInfo(name=name, type=TYPES[kind], differs=differs)
    if kind == "bool_value":
        info.domain_discrete.extend([False, True])
    return info


def experiment_summary(infos: list[api_pb2.HParamInfo], metrics: list[str]) -> Summary:
    """The HParams experiment: the table's columns, its settings and then its metrics (TensorBoard
    shows the first five of each: the differing settings first, the metrics in this order)."""
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    return _summary(
        metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def session_summaries(params: Mapping[str, Any], trial: str = "") -> list[Summary]:
    """The HParams row of one run: its session's start, with its settings, under the trial ID
    ``trial`` (``""``: the run's path), and its successful end."""
    start = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=time.time())
    for name, value in params.items():
        setattr(start.hparams[name], kind_of(value), value)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [
        _summary(
            metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        ),
        _summary(
            metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)
        ),
    ]


def metric_order(tags: Collection[str]) -> list[str]:
    """``tags`` with :data:`FIRST_METRICS` first, in that order, then the others by name."""
    first = {tag: i for i, tag in enumerate(FIRST_METRICS)}
    return sorted(tags, key=lambda tag: (first.get(tag, len(first)), tag))


def write_sweep_hparams(sweep_dir: str | Path) -> Path | None:
    """The HParams experiment of a whole sweep, from the rows its jobs wrote: every setting
    (marked as differing where the jobs' values differ, so the table shows those first) and every
    final metric any job has (a VAE's ``test/nll`` beside an AE's ``test/loss``). TensorBoard takes
    the table's columns from one experiment it finds; one job's would lack the metrics only the
    others have, so the jobs write none and the sweep writes this one, beside its first job's row
    (a folder of its own would be one more run in TensorBoard's list, with nothing to plot).
    Returns that folder; None when no job wrote a row."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep_dir = Path(sweep_dir)
    values: dict[str, list[Any]] = {}
    metrics: set[str] = set()
    rows, first = 0, None
    for path in sorted(sweep_dir.rglob(f"events.out.tfevents.*{HPARAMS_SUFFIX}")):
        events = EventAccumulator(str(path))
        events.Reload()
        try:
            content = events.PluginTagToContent(metadata.PLUGIN_NAME)
            start = metadata.parse_session_start_info_plugin_data(
                content[metadata.SESSION_START_INFO_TAG]
            )
        except KeyError:  # an event file of that name that holds no row
            continue
        rows, first = rows + 1, first or path.parent
        for name, value in start.hparams.items():
            values.setdefault(name, []).append(value)
        metrics |= set(events.Tags()["scalars"])
    if first is None:
        return None
    infos = []
    for name, held in values.items():
        kinds = {value.WhichOneof("kind") for value in held}
        kind = kinds.pop() if len(kinds) == 1 and kinds <= set(TYPES) else "string_value"
        differs = len(held) < rows or len({v.SerializeToString() for v in held}) > 1
        infos.append(hparam_info(name, kind, differs))
    with SummaryWriter(str(first), filename_suffix=".sweep") as writer:
        writer.file_writer.add_summary(experiment_summary(infos, metric_order(metrics)), 0)
    return first
