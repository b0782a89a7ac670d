"""Entry point of the pyperf worker processes (`python -m bench.measure.worker`)."""
import ctypes
import os
import signal
import sys

from tracers import BackendFailed
from tracers.driver import FAULT_ENV, WORKER_FAULT_ENV

from bench.measure import plan
from bench.measure import runner


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A killed `bench run` takes its worker, and so the driver and tracees, with it."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(1)


def main() -> None:
    die_with_parent()
    if os.environ.get(WORKER_FAULT_ENV):
        os.environ[FAULT_ENV] = os.environ[WORKER_FAULT_ENV]
    pyperf_runner = runner.make_runner()
    args = pyperf_runner.parse_args()
    try:
        runner.register(pyperf_runner, plan.loads(args.plan))
    except BackendFailed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
