"""Run many ``python train.py ...`` / ``python -m ...`` commands in one warmed-up Python.

Each command runs in a fork of this process (torch, Lightning and Hydra already
imported), so it pays no interpreter start-up and leaves no state behind: exactly
like a fresh ``python`` process, minus five seconds. Used by tests/integration/test_readme.py.

Protocol, one JSON object per line. Request on stdin:
``{"argv": ["/abs/train.py" | "-m", "module", ...args], "cwd": str, "env": {name: value | null}, "timeout": s,
"preload": optional path of a Python file run in the fork first}``;
reply on stdout: ``{"rc": int, "out": str, "err": str, "seconds": float}`` (rc -9: timed out).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback

# imports every command needs; no tensor op before fork (OpenMP pools do not survive fork)
import hydra  # noqa: F401
import lightning  # noqa: F401
import matplotlib  # noqa: F401
import torch  # noqa: F401

import spikelight.app.cli  # noqa: F401


def _child(req: dict, out_fd: int, err_fd: int) -> None:
    code = 1
    try:
        os.setpgid(0, 0)  # own process group: a timeout kills DDP workers too
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.chdir(req["cwd"])
        for name, value in req.get("env", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        argv = req["argv"]
        try:
            if req.get("preload"):  # test set-up that must run inside the command's process
                runpy.run_path(req["preload"], run_name="__preload__")
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path[0] = os.path.dirname(argv[0])
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:  # sys.exit("message")
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - report like the interpreter would
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(req: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        start = time.time()
        pid = os.fork()
        if pid == 0:
            _child(req, out.fileno(), err.fileno())
        deadline = start + float(req.get("timeout", 300))
        status = None
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.time() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -1
            else:
                time.sleep(0.05)
        rc = -9 if status == -1 else os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"rc": rc, "out": out.read().decode(errors="replace"), "err": err.read().decode(errors="replace"),
                "seconds": round(time.time() - start, 2)}


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
