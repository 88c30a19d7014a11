"""The code location: every module under ``defs/``, loaded by Dagster's defs-folder loader, and the
executor of its jobs.

Executor: every run executes its steps one after the other in the run's own process
(``in_process_executor``), as ``options-v4 run`` does: a run launched from the UI, a schedule, a
sensor or a backfill costs one interpreter start and one load of the code location instead of one
per step (the multiprocess executor's process per step made a UI run of ``daily_pipeline`` ~2.5x
slower than the CLI's on 2 cores, where its step parallelism gains little). A backfill gets its
parallelism from running several ranges of sessions at once (the assets' backfill policies,
``defs/partitions.py``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from options_v4_dagster import config

# Dagster 1.13 re-creates every sensor that targets a job when it attaches resources, passing its (empty)
# owners on, which warns "Parameter `owners` ... is currently in beta" at every load (every `dg dev` start,
# every run): no sensor here sets owners.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`",
                        category=dg.BetaWarning)

#: the default executor of every job of the code location (asset jobs, backfills, UI materializations)
EXECUTOR = dg.in_process_executor

# A job over assets of two backfill policies (ranges of sessions; iv_percentiles in order, defs/partitions.py)
# takes the smaller ranges for a *job* backfill and warns at every load of the code location; asset
# backfills (the asset catalog, `options-v4 backfill --submit`) use each asset's own policy. Expected: not
# printed. (Set here: the defs-folder loader restores the warning filters after loading its modules.)
warnings.filterwarnings("ignore", message=r"Asset job \w+ materializes assets with varying BackfillPolicies",
                        category=UserWarning)


def build_defs() -> dg.Definitions:
    if config.PROJECT_ROOT is not None:
        loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    else:
        # Installed without the checkout (no pyproject.toml beside the package): load the module tree.
        from dagster.components import load_defs

        import options_v4_dagster.defs as defs_module

        loaded = load_defs(defs_root=defs_module, project_root=Path(__file__).parent)
    return dg.Definitions.merge(loaded, dg.Definitions(executor=EXECUTOR))


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()
