"""Training dashboards through accelerate's trackers: TensorBoard event files in the run folder, or Weights & Biases.

Where a run reports to is not part of its configuration: the same run resumed with another dashboard
trains the same model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .errors import InputError

REPORT_TO = ("none", "tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"  # <run>/tensorboard/<kind>/events.out.tfevents.*
WANDB_DIR = "wandb"  # wandb's own files for the run, offline or synced
TRACKING_OUTPUTS = [TENSORBOARD_DIR, WANDB_DIR]
INSTALL = {"tensorboard": "pip install 'annotaudit[tensorboard]'", "wandb": "pip install wandb"}


def check_report_to(report_to: str) -> str:
    """The dashboard's name, once its package is known to be installed."""
    if report_to not in REPORT_TO:
        raise InputError(f"--report-to {report_to!r}: use {', '.join(REPORT_TO)}")
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise InputError(f"--report-to {report_to} needs the {report_to} package: {INSTALL[report_to]}")
    return report_to


def accelerator_kwargs(report_to: str, out: str | Path) -> dict[str, Any]:
    """What Accelerator(...) takes to log there; nothing for `none`."""
    if check_report_to(report_to) == "none":
        return {}
    return {"log_with": report_to, "project_dir": str(Path(out) / TENSORBOARD_DIR)}


def start_tracking(accelerator: Any, report_to: str, kind: str, out: str | Path, config: dict[str, Any]) -> None:
    """Open the dashboard's run, named after the run folder; wandb also gets the configuration (run.json holds it too)."""
    if report_to == "none":
        return
    if report_to == "wandb":  # wandb keeps its files in <dir>/wandb
        accelerator.init_trackers(kind, config=_scalars(config), init_kwargs={"wandb": {"name": Path(out).name, "dir": str(out)}})
    else:
        accelerator.init_trackers(kind)


def stop_tracking(accelerator: Any) -> None:
    """Close the dashboard's files. Unlike `Accelerator.end_training`, the process group stays up for the
    barriers that follow and for the next training in the same launch (classify compare's arms)."""
    for tracker in accelerator.trackers:
        tracker.finish()


def _scalars(config: dict[str, Any]) -> dict[str, Any]:
    """Trackers take numbers, text, booleans and None; anything else goes in as its text."""
    return {k: v if v is None or isinstance(v, bool | int | float | str) else str(v) for k, v in config.items()}
