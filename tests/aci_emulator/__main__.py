"""Run the emulator on its own: ``python -m aci_emulator [--http] [--docker]`` (from tests/).

Prints the environment a client needs as ``export`` lines, then serves until Ctrl-C; every group
is deleted (its processes killed) on the way out. Faults can be injected over HTTP:
``POST {SERVERLESS_SCORE_ARM_ENDPOINT}/_emulator/throttle`` with JSON keyword arguments and a
bearer token from the identity endpoint (README.md, "Remote control")."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading

from .emulator import AciEmulator


def _window(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("/")
    try:
        return int(count), float(seconds)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected COUNT/SECONDS such as 100/300; got {text!r}") from err


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m aci_emulator", description=__doc__)
    parser.add_argument("--http", action="store_true", help="plain http instead of https")
    parser.add_argument("--docker", action="store_true",
                        help="run containers on the Docker engine of DOCKER_HOST")
    parser.add_argument("--create-rate", action="append", type=_window, metavar="COUNT/SECONDS",
                        help="a create window (repeatable; default ACI's 100/300 and 300/3600)")
    parser.add_argument("--delete-rate", action="append", type=_window, metavar="COUNT/SECONDS",
                        help="a delete window (repeatable; default as creates)")
    parser.add_argument("--quota-groups", type=int, help="regional ContainerGroups quota (100)")
    parser.add_argument("--quota-cores", type=float, help="regional StandardCores quota (100)")
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with AciEmulator(https=not args.http, docker=args.docker or None,
                     create_windows=args.create_rate, delete_windows=args.delete_rate) as emu:
        emu.set_quota(container_groups=args.quota_groups, standard_cores=args.quota_cores)
        for name, value in emu.env().items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        print("# serving; Ctrl-C deletes every group and stops", flush=True)
        while not stop.wait(0.5):  # a timed wait, so the signal handler gets to run
            pass


if __name__ == "__main__":
    main()
