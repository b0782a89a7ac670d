"""Entry point of the pyperf worker processes (`python -m bench.worker`)."""
import sys

from tracers import BackendFailed

from . import plan, runner


def main() -> None:
    pyperf_runner = runner.make_runner()
    args = pyperf_runner.parse_args()
    try:
        runner.register(pyperf_runner, plan.loads(args.plan))
    except BackendFailed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
