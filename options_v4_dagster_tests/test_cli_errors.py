"""Bad command lines and settings: exit status 2 and one clear line on stderr, never a traceback.

Most cases call ``main()`` in-process (argparse's exit becomes main's return value); a few run the
real ``options-v4`` console script in a subprocess to see exactly what a trader sees.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest

from options_v4_dagster import calendar
from options_v4_dagster.cli import last_partition, main


def _err(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("argv, names", [
    (["run", "--date", "2030-01-15"], ["--date", "2030-01-15", "last partition"]),
    (["iv", "collect", "--date", "2099-01-01"], ["--date", "2099-01-01"]),
    (["iv", "analyze", "--date", "2099-01-01"], ["--date", "2099-01-01"]),
    (["analyze", "--date", "2030-01-15"], ["--date", "2030-01-15", "last partition"]),
    (["allocate", "100000", "--date", "2030-01-15"], ["--date", "2030-01-15"]),
    (["run", "--date", "2025-07-19"], ["--date", "not an NSE trading session"]),
    (["run", "--date", "17-07-2025"], ["--date", "YYYY-MM-DD"]),
    (["sessions", "--start", "2025-13-01"], ["--start", "2025-13-01"]),
    (["sessions", "--end", "2025-02-30"], ["--end", "2025-02-30"]),
    (["sessions", "--start", "2025-07-20", "--end", "2025-07-10"], ["--start", "--end", "after"]),
    (["backfill", "--start", "2025-07-20", "--end", "2025-07-10"], ["--start", "--end", "after"]),
    (["backfill", "--start", "2025-13-01", "--end", "2025-07-10"], ["--start"]),
    (["backfill", "--start", "2025-07-01", "--end", "2030-01-01"], ["--end", "last partition"]),
    (["analyze", "--top", "0"], ["--top", "at least 1"]),
    (["analyze", "--top", "-1"], ["--top"]),
    (["analyze", "--top", "x"], ["--top"]),
    (["iv", "show", "NIFTY", "--days", "-5"], ["--days", "at least 1"]),
    (["iv", "show", "FOOBAR"], ["FOOBAR", "F&O universe"]),
    (["analyze", "--symbol", "NIFTY,FOOBAR"], ["--symbol", "FOOBAR"]),
    (["analyze", "--symbol", ","], ["--symbol"]),
    (["allocate", "0"], ["capital"]),
    (["allocate", "-5"], ["capital"]),
    (["allocate", "nan"], ["capital"]),
    (["allocate", "1e6", "--rules", "/no/such/rules.yaml"], ["--rules", "/no/such/rules.yaml"]),
    (["run", "--source", "nse_files", "--nse-dir", "/no/such/dir"], ["--nse-dir", "/no/such/dir"]),
    (["run", "--source", "bloomberg"], ["--source", "bloomberg"]),
    (["industries", "import", "/no/such/file.csv"], ["/no/such/file.csv"]),
    (["nonsense"], ["nonsense"]),
])
def test_bad_argument_is_one_line_and_status_2(capsys, argv, names):
    line = _err(capsys, argv)
    for name in names:
        assert name in line, line


def test_future_dates_are_refused_before_dagster_starts(capsys):
    # the check is pure (no Dagster import), so it costs nothing; it agrees with the partitions def
    from options_v4_dagster.defs.partitions import nse_sessions

    assert last_partition().isoformat() == nse_sessions.get_last_partition_key()
    nxt = calendar.next_session(last_partition())
    line = _err(capsys, ["run", "--date", nxt.isoformat()])
    assert str(last_partition()) in line


@pytest.mark.parametrize("var, url, names, argv", [
    ("DATABASE_URL", "::not a url::", ["DATABASE_URL", "not a database URL"], ["allocate", "1500000"]),
    ("DATABASE_URL", "oracle+nosuchdriver://u:hunter2@h/db", ["DATABASE_URL", "oracle"], ["allocate", "1500000"]),
    ("DATABASE_URL", "mysql://u:hunter2@h/db", ["DATABASE_URL", "mysql"], ["analyze", "--date", "2025-07-17"]),
    ("OPTIONS_V4_MARKET_DATA", "bloomberg", ["OPTIONS_V4_MARKET_DATA", "bloomberg"], ["analyze"]),
    ("OPTIONS_V4_PARTITION_START", "2024-02-30", ["OPTIONS_V4_PARTITION_START"], ["run"]),
])
def test_bad_environment_is_one_line(capsys, monkeypatch, var, url, names, argv):
    monkeypatch.setenv(var, url)
    line = _err(capsys, argv)
    for name in names:
        assert name in line, line
    assert "hunter2" not in line


def test_unreachable_database_names_host_and_port_not_the_password(capsys, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://trader:hunter2@127.0.0.1:{port}/options")
    for argv in (["allocate", "1500000"], ["iv", "show", "NIFTY"], ["run", "--date", "2025-07-17"]):
        line = _err(capsys, argv)
        assert "DATABASE_URL" in line and f"127.0.0.1:{port}" in line and "hunter2" not in line


def test_console_script_prints_one_line_and_no_traceback(tmp_path):
    port = _closed_port()
    exe = os.path.join(os.path.dirname(sys.executable), "options-v4")
    env = {**os.environ, "OPTIONS_V4_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dh"),
           "DATABASE_URL": f"postgresql://trader:hunter2@127.0.0.1:{port}/options"}
    for argv in (["run", "--date", "2030-01-15"], ["allocate", "1500000"], ["sessions", "--end", "2025-02-30"]):
        p = subprocess.run([exe, *argv], env=env, capture_output=True, text=True, timeout=120)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, (argv, p.stderr)
        assert lines[0].startswith("options-v4")


def test_good_sessions_still_work(capsys):
    assert main(["sessions", "--start", "2025-07-14", "--end", "2025-07-18"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [f"2025-07-{d}" for d in (14, 15, 16, 17, 18)]
    assert dt.date.fromisoformat(out[0]) == calendar.next_session(dt.date(2025, 7, 11))


# --- item 7: a run killed mid-way is marked failed by the next options-v4 start


def test_killed_run_is_marked_failed_at_the_next_start(tmp_path):
    import signal

    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home = tmp_path / "dagster_home"
    env = {**os.environ, "OPTIONS_V4_HOME": str(tmp_path / "data"), "DAGSTER_HOME": str(home),
           "OPTIONS_V4_MARKET_DATA": "simulated"}
    env.pop("DATABASE_URL", None)
    exe = os.path.join(os.path.dirname(sys.executable), "options-v4")
    proc = subprocess.Popen([exe, "run", "--date", "2025-07-17"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        instance = None
        deadline = 600  # polls, not a timing assertion: the run must reach STARTED at some point
        run = None
        for _ in range(deadline * 4):
            if proc.poll() is not None:
                pytest.fail(f"the run ended (status {proc.returncode}) before it could be killed")
            if instance is None and (home / "dagster.yaml").exists() and (home / "storage").exists():
                instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
            if instance is not None:
                runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
                if runs:
                    run = runs[0]
                    break
            subprocess.run(["sleep", "0.25"])
        assert run is not None
        assert run.tags["options_v4/pid"] == str(proc.pid) and run.tags["options_v4/host"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # what Dagster leaves behind
    assert "run_monitoring" in (home / "dagster.yaml").read_text()

    p = subprocess.run([exe, "runs"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"marked 1 abandoned run(s) of a killed options-v4 process failed: {run.run_id[:8]}" in " ".join(
        p.stdout.split())
    after = instance.get_run_by_id(run.run_id)
    assert after.status == dg.DagsterRunStatus.FAILURE
    failure = [e for e in instance.all_logs(run.run_id) if e.dagster_event
               and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE]
    assert failure and f"pid {proc.pid}" in failure[0].message

    # a second start finds nothing more to mark; the live process of this test is never marked
    p = subprocess.run([exe, "runs"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "abandoned" not in p.stdout


def test_process_liveness_uses_the_start_token():
    from options_v4_dagster.cli.instance import _process_alive, _process_start_token

    token = _process_start_token(os.getpid())
    assert token and _process_alive(os.getpid(), token)
    if token != "?":  # Linux: a reused pid with another start time is not the run's process
        assert not _process_alive(os.getpid(), str(int(token) + 1))
    assert not _process_alive(2 ** 22 + 12345, token)
