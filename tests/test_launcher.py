"""The processes ``llmeval run`` starts, and the settings it gives each one."""

from __future__ import annotations

from llmeval.env import Env
from llmeval.launcher import REMOTE_WORKER_POOL_SIZE, build_components


def components_by_name(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    components = build_components("127.0.0.1", 8000, Env(environ))
    return {component.name: component.env for component in components}


def test_remote_worker_pools_connections():
    envs = components_by_name({})

    assert envs["worker-remote"] == {"DATABASE_POOL_SIZE": str(REMOTE_WORKER_POOL_SIZE)}
    assert envs["api"] == {}
    assert envs["worker-local"] == {}


def test_configured_pool_size_is_kept():
    envs = components_by_name({"DATABASE_POOL_SIZE": "0"})

    assert envs["worker-remote"] == {}
