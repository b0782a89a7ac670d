"""Entry point of the pyperf worker processes (`python -m bench.measure.worker`)."""
import os
import sys

from tracers import BackendFailed
from tracers.driver import FAULT_ENV, WORKER_FAULT_ENV, die_with_parent

from bench.measure import plan
from bench.measure import runner


def main() -> None:
    # A killed `bench run` takes its worker, and so the driver and tracees, with it.
    if not die_with_parent(parent=os.getppid()):
        sys.exit(1)
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
