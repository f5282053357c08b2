"""A simulated fleet: several real edge agents in one process (``python -m gateway.chaos.fleet``).

Each agent has its own config, outbox, MQTT client and thread, exactly as
``sensorgate edge run`` would run it; one process holds them so that a fleet costs one
interpreter. SIGTERM or SIGINT stops every agent cleanly (partial batches are stored).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one agent per config file until SIGTERM."""
    from edge.agent import Agent
    from edge.config import load_config

    parser = argparse.ArgumentParser(prog="python -m gateway.chaos.fleet")
    parser.add_argument("configs", nargs="+", help="edge agent config files (TOML)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    agents = [Agent(load_config(path), config_path=path) for path in args.configs]
    threads = [threading.Thread(target=a.run, name=f"agent-{i}") for i, a in enumerate(agents)]
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for thread in threads:
        thread.start()
    stop.wait()
    for agent in agents:
        agent.stop()
    for thread in threads:
        thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
