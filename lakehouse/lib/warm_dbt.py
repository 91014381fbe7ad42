"""A dbt that has already started: a process that imports dbt, dbt-spark and pyspark's Spark Connect client
(3-4 s of a dbt invocation's fixed cost here, docs/benchmarks.md) and parses the project once while the
run's Bronze and Silver steps run, then forks a copy of itself for each dbt command.

dagster-dbt runs `dbt_executable` in a subprocess and reads its stdout. The executable here is a small
script (`WarmDbt.executable`) that hands its arguments, environment, working directory and standard streams
to the warm process, forwards the signals it gets to the forked dbt and exits with its exit code: to
dagster-dbt it is dbt. When the warm process is gone, the script execs the real dbt."""

import atexit
import importlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from lakehouse import settings

PREFIX = "lakehouse-warm-dbt-"
PRELOAD = ("dbt.cli.main", "dbt.adapters.spark.impl", "pyspark.sql.connect.session")

# Standard library only, run with -S: it starts in milliseconds.
CLIENT = """#!{python} -S
import json, os, signal, socket, struct, sys
STOP = {{signal.SIGINT, signal.SIGTERM}}
signal.pthread_sigmask(signal.SIG_BLOCK, STOP)  # held until they can be forwarded to the forked dbt
client = socket.socket(socket.AF_UNIX)
try:
    client.connect({socket_path!r})
except OSError:  # no warm dbt: the real one
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP)
    os.execv({dbt!r}, [{dbt!r}, *sys.argv[1:]])
request = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(client, [struct.pack("!I", len(request)) + request], [0, 1, 2])
replies = client.makefile()
pid = int(replies.readline() or 0)
if not pid:  # the warm process ended before it forked a dbt
    sys.exit(1)
for sig in STOP:
    signal.signal(sig, lambda sig, _: os.kill(pid, sig))
signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP)
sys.exit(int(replies.readline() or 1))
"""


def warm_up(project_dir: str, profiles_dir: str) -> None:
    """Parse the project once, into a throwaway target directory, so that each fork starts with dbt's parser,
    serialisers and templates built: a fork's partial parse then takes 0.2-0.3 s instead of 1 s. Nothing
    else carries over: dbt resets its adapters at each command, which connects with its own profile. A
    project that fails to parse here fails in the command, which reports it."""
    from dbt.cli.main import dbtRunner

    with tempfile.TemporaryDirectory(prefix=PREFIX) as target:
        saved = Path(project_dir) / "target" / "partial_parse.msgpack"  # as dagster-dbt seeds each invocation's
        if saved.exists():
            shutil.copy(saved, target)
        flags = ["--project-dir", project_dir, "--profiles-dir", profiles_dir, "--target-path", target]
        dbtRunner().invoke(["parse", *flags, "--log-path", target, "--quiet"])


def serve(listener: socket.socket, project_dir: str, profiles_dir: str) -> None:
    """Import dbt and parse the project, then run each command received on `listener` in a fork of this
    process, until the process that started this one is gone. A command sent before that waits in the
    listener's backlog; one already waiting when the imports end skips the parse, which would only delay it."""
    for module in PRELOAD:
        importlib.import_module(module)
    if not select.select([listener], [], [], 0)[0]:
        warm_up(project_dir, profiles_dir)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the forks
    owner = os.getppid()
    listener.settimeout(1)
    while os.getppid() == owner:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os._exit(run_command(connection))
        connection.close()


def run_command(connection: socket.socket) -> int:
    """In a fork: become the client's dbt process (its streams, directory and environment), run its command,
    and send the client this process's id, then the exit code."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    (length,) = struct.unpack("!I", message[:4])
    while len(message) < 4 + length:
        message += connection.recv(1 << 16)
    request = json.loads(message[4:])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    settings.replace_environment(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where its parent ignores it, as `cmd &` does
    sys.argv = ["dbt", *request["argv"]]
    connection.sendall(f"{os.getpid()}\n".encode())
    from dbt.cli.main import cli

    try:
        cli.main(args=request["argv"], prog_name="dbt")
        code = 0
    except SystemExit as exit:  # as the interpreter treats it: None is 0, a message is printed and 1
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        if not isinstance(exit.code, int | None):
            print(exit.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # dbt's and multiprocessing's clean-up, without the interpreter's slow teardown
    sys.stdout.flush()
    sys.stderr.flush()
    connection.sendall(f"{code}\n".encode())
    return code


def is_client(executable: str) -> bool:
    """Whether a dbt executable is a warm dbt's client script (in front of this environment's dbt)."""
    return Path(executable).parent.name.startswith(PREFIX)


class WarmDbt:
    """The warm dbt process for a project and its client script, in a private temporary directory; `close()`
    stops it."""

    def __init__(self, dbt: str, project_dir: str, profiles_dir: str):
        self._directory = tempfile.TemporaryDirectory(prefix=PREFIX)
        directory = Path(self._directory.name)
        socket_path = str(directory / "dbt.sock")
        listener = socket.socket(socket.AF_UNIX)  # bound here: a client started from now on finds it
        listener.bind(socket_path)
        listener.listen()
        self.executable = directory / "dbt"
        self.executable.write_text(CLIENT.format(python=sys.executable, socket_path=socket_path, dbt=dbt))
        self.executable.chmod(0o700)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(listener.fileno()), project_dir, profiles_dir],
            pass_fds=[listener.fileno()],
            env=settings.child_env({"PYTHONUNBUFFERED": "1"}),  # as dagster-dbt runs dbt: each event as it is logged
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        listener.close()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self._directory.cleanup()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), *sys.argv[2:])
