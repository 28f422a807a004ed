"""Shared test helpers."""
import json
import os
import signal
import time
import traceback

import pytest


class Isolated:
    """Run a function in a forked child so that a crash (segfault, abort) or a hang fails
    one test instead of killing the run. Returns (exception type name, message) or None."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout

    def __call__(self, fn):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            try:
                try:
                    fn()
                    result = None
                except BaseException as error:  # noqa: BLE001 - report everything
                    result = (type(error).__name__, str(error), traceback.format_exc())
                with os.fdopen(write_fd, "wb") as out:
                    out.write(json.dumps(result).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        deadline = time.monotonic() + self.timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(read_fd)
                pytest.fail(f"hung: no answer within {self.timeout} s")
            time.sleep(0.005)
        with os.fdopen(read_fd, "rb") as inp:
            data = inp.read()
        if os.WIFSIGNALED(status):
            pytest.fail(f"crashed the interpreter with signal {os.WTERMSIG(status)}")
        if not data:
            pytest.fail(f"child exited without a result (status {status})")
        result = json.loads(data.decode())
        return None if result is None else tuple(result)


@pytest.fixture
def isolated():
    return Isolated()
