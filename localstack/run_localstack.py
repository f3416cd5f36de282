"""Run `python -m localstack.runtime.main` with fixes for starting and stopping many instances.

Started by `convex_offload.devservers.localstack` with LocalStack's own venv Python.

1. LocalStack's S3 spools objects over 512 KiB under the hard-coded `/tmp/localstack-s3-storage/<bucket>`,
   shared by every instance on the machine. When one instance deletes a bucket it removes that folder,
   and every other instance with a bucket of the same name then fails large PUTs with a 500
   (`No such file or directory: '/tmp/localstack-s3-storage/<bucket>/tmp...'`); the folders also outlive
   the server. Pointing the provider's default at `$CONVEX_OFFLOAD_S3_SPOOL_DIR` gives each instance its own.
2. If the process that started LocalStack dies without stopping it (killed test run, CI timeout), the server
   would keep its port and ~170 MB forever. With `$CONVEX_OFFLOAD_PARENT_PID` set, a watcher thread sends
   SIGTERM to this process once its parent is gone, and the instance's temp dir
   (`$CONVEX_OFFLOAD_INSTANCE_DIR`), which the parent can no longer remove, goes at exit.
3. With GATEWAY_SERVER=hypercorn, SIGTERM sometimes never ends the server: LocalStack's shutdown calls
   `loop.stop()` from another thread, which does not wake the event loop; when the loop has already
   handled the other shutdown callbacks and has no timer due, it sleeps in select() for good (seen in
   about one stop in five right after start). A no-op `call_soon_threadsafe` after it wakes the loop.
"""

import atexit
import os
import runpy
import shutil
import signal
import sys
import threading
import time

from localstack.runtime.server.hypercorn import HypercornRuntimeServer
from localstack.services.s3 import provider

SPOOL_ENV = "CONVEX_OFFLOAD_S3_SPOOL_DIR"
PARENT_ENV = "CONVEX_OFFLOAD_PARENT_PID"
INSTANCE_DIR_ENV = "CONVEX_OFFLOAD_INSTANCE_DIR"


def use_own_spool_dir(spool_dir: str) -> None:
    if not hasattr(provider, "DEFAULT_S3_TMP_DIR"):
        # A LocalStack upgrade moved it: fail loudly rather than share /tmp again.
        raise SystemExit("run_localstack.py: localstack.services.s3.provider.DEFAULT_S3_TMP_DIR is gone")
    os.makedirs(spool_dir, exist_ok=True)
    provider.DEFAULT_S3_TMP_DIR = spool_dir


def exit_with_parent(parent_pid: int, instance_dir: str | None) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        if instance_dir:
            atexit.register(shutil.rmtree, instance_dir, ignore_errors=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="convex-offload-parent-watch", daemon=True).start()


def wake_loop_after_shutdown() -> None:
    shutdown = HypercornRuntimeServer.shutdown

    def shutdown_and_wake(self: HypercornRuntimeServer) -> None:
        shutdown(self)
        self.loop.call_soon_threadsafe(lambda: None)

    HypercornRuntimeServer.shutdown = shutdown_and_wake  # type: ignore[method-assign]


def main() -> None:
    wake_loop_after_shutdown()
    if spool_dir := os.environ.get(SPOOL_ENV):
        use_own_spool_dir(spool_dir)
    if parent := os.environ.get(PARENT_ENV):
        exit_with_parent(int(parent), os.environ.get(INSTANCE_DIR_ENV))
    sys.argv = ["localstack.runtime.main"]
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
