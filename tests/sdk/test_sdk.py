"""OpenSandbox's released Python SDK against execd-host (issue #13).

Run by scripts/sdk-compat.sh, which installs the SDK from PyPI and starts
the host; EXECD_ADDR is where it listens, EXECD_TOKEN its token, FRAMING
the framing it was started with (the SDK parses both). Plain asserts: any
failure exits non-zero.
"""
import os
import sys
from datetime import timedelta

from opensandbox.config import ConnectionConfigSync
from opensandbox.models.execd import RunCommandOpts
from opensandbox.models.sandboxes import SandboxEndpoint
from opensandbox.sync.adapters.command_adapter import CommandsAdapterSync
from opensandbox.sync.adapters.metrics_adapter import MetricsAdapterSync

ADDR = os.environ["EXECD_ADDR"]
TOKEN = os.environ["EXECD_TOKEN"]
FRAMING = os.environ.get("FRAMING", "?")

# The SDK talks to execd directly, by endpoint; it does not need the
# sandbox API for that. The token travels as a header of the endpoint.
config = ConnectionConfigSync(protocol="http", request_timeout=timedelta(seconds=30))
endpoint = SandboxEndpoint(endpoint=ADDR, headers={"X-EXECD-ACCESS-TOKEN": TOKEN})
commands = CommandsAdapterSync(config, endpoint)
metrics = MetricsAdapterSync(config, endpoint)


def out(execution):
    return [m.text for m in execution.logs.stdout]


def err(execution):
    return [m.text for m in execution.logs.stderr]


def test_run_with_argv():
    ex = commands.run(["python3", "-c", "import sys; print(1); print(sys.argv[1:])", "a b", "$HOME"])
    assert ex.exit_code == 0, ex
    assert out(ex) == ["1", "['a b', '$HOME']"], out(ex)
    assert ex.id, "the execution id is the command id"
    status = commands.get_command_status(ex.id)
    assert status.exit_code == 0, status


def test_run_shell_text_and_exit_code():
    ex = commands.run("echo hi; echo oops >&2; exit 3")
    assert out(ex) == ["hi"] and err(ex) == ["oops"], ex.logs
    assert ex.exit_code == 3, ex.exit_code
    ex = commands.run("pwd", opts=RunCommandOpts(working_directory="$SDK_DIR", envs={"SDK_DIR": "/usr"}))
    assert out(ex) == ["/usr"], out(ex)


def test_set_env_then_a_command_sees_it():
    commands.set_env("SDK_VAR", "it's set")
    commands.set_env("SDK_PLAIN", "plain $HOME")
    ex = commands.run('echo "$SDK_VAR|$SDK_PLAIN"')
    assert ex.exit_code == 0, ex
    assert out(ex) == ["it's set|plain $HOME"], out(ex)
    ex = commands.run(["printenv", "SDK_VAR"])
    assert out(ex) == ["it's set"], out(ex)


def test_sessions():
    sid = commands.create_session()
    ex = commands.run_in_session(sid, "cd /usr; export A=1")
    assert ex.exit_code == 0, ex
    ex = commands.run_in_session(sid, 'echo "$A $(pwd)"')
    assert out(ex) == ["1 /usr"], out(ex)
    ex = commands.run_in_session(sid, "echo e >&2; exit 7")
    assert ex.exit_code == 7 and err(ex) == ["e"], (ex.exit_code, ex.logs)
    ex = commands.run_in_session(sid, "pwd", working_directory="/tmp", timeout=timedelta(seconds=10))
    assert out(ex) == ["/tmp"] and ex.exit_code == 0, ex
    commands.delete_session(sid)
    try:
        commands.run_in_session(sid, "echo gone")
    except Exception as e:  # the SDK's SandboxException
        assert "404" in str(e) or "SESSION_NOT_FOUND" in str(e), e
    else:
        raise AssertionError("a deleted session still runs")
    other = commands.create_session(working_directory="/tmp")
    ex = commands.run_in_session(other, 'echo "${A-unset} $PWD"')
    assert out(ex) == ["unset /tmp"], out(ex)
    commands.delete_session(other)


def test_get_metrics():
    m = metrics.get_metrics("local")
    assert m.cpu_count > 0, m
    assert 0 <= m.cpu_used_percentage <= 100, m
    assert 0 < m.memory_used_in_mib <= m.memory_total_in_mib, m
    assert m.timestamp > 1_600_000_000_000, m


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"ok   {FRAMING:8} {test.__name__}")
        except Exception as e:  # report every failure, then fail
            failed += 1
            print(f"FAIL {FRAMING:8} {test.__name__}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
