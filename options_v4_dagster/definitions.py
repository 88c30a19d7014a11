"""The code location: every module under ``defs/``, loaded by Dagster's defs-folder loader."""

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


def build_defs() -> dg.Definitions:
    if config.PROJECT_ROOT is not None:
        return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # Installed without the checkout (no pyproject.toml beside the package): load the module tree.
    from dagster.components import load_defs

    import options_v4_dagster.defs as defs_module

    return load_defs(defs_root=defs_module, project_root=Path(__file__).parent)


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()
