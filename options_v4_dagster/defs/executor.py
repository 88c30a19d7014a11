"""The executor of the pipeline jobs, chosen by the deployment (``OPTIONS_V4_EXECUTOR``), read where the
definitions load (the code server, the daemon, ``dagster job execute``, the Celery workers):

- unset / ``default``: the job's own executor (what ``defs/jobs.py`` gives it);
- ``celery``: every step is a Celery task on the broker ``OPTIONS_V4_CELERY_BROKER`` (default the local
  RabbitMQ, ``pyamqp://guest:guest@127.0.0.1:5672//``), queue ``OPTIONS_V4_CELERY_QUEUE`` (default
  ``dagster``), executed by ``dagster-celery worker start`` processes on any machine that reaches the
  broker, the instance's PostgreSQL and the warehouse (``deploy/celery/``; README "Scaling out").
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from options_v4_dagster.errors import ConfigError

EXECUTOR_ENV, BROKER_ENV, QUEUE_ENV = "OPTIONS_V4_EXECUTOR", "OPTIONS_V4_CELERY_BROKER", "OPTIONS_V4_CELERY_QUEUE"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_QUEUE = "dagster"
EXECUTORS = ("default", "celery")


def executor_name(env: Mapping[str, str] | None = None) -> str:
    raw = (os.environ if env is None else env).get(EXECUTOR_ENV, "").strip().lower() or "default"
    if raw not in EXECUTORS:
        raise ConfigError(f"{EXECUTOR_ENV}={raw!r} is not an executor (one of {', '.join(EXECUTORS)})")
    return raw


def celery_config(env: Mapping[str, str] | None = None) -> dict:
    """The Celery executor's config: broker, result backend and the queue the workers listen on."""
    e = os.environ if env is None else env
    return {"broker": e.get(BROKER_ENV, "").strip() or DEFAULT_BROKER,
            "backend": "rpc://",
            "config_source": {"task_default_queue": e.get(QUEUE_ENV, "").strip() or DEFAULT_QUEUE}}


def job_executor(default: dg.ExecutorDefinition | None = None,
                 env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor for a pipeline job: ``default`` unless the deployment asks for Celery."""
    if executor_name(env) == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(env), name="celery")
    return default
