"""Serve a simulated cluster by hand: ``python -m pvesim --guests 50 --port 8006``."""

from __future__ import annotations

import argparse
import threading

from pvesim import PveSimulator
from pvesim.population import populate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--guests", type=int, default=20, help="how many guests to create (default 20)")
    parser.add_argument("--port", type=int, default=8006, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--token", default="pvebot@pve!bot")
    parser.add_argument("--secret", default="sim-secret")
    parser.add_argument("--task-seconds", type=float, default=3.0)
    args = parser.parse_args()

    sim = PveSimulator(task_seconds=args.task_seconds)
    sim.add_token(args.token, args.secret)
    populate(sim, guests=args.guests, nodes=args.nodes)
    server = sim.start(port=args.port)
    print(f"url:         {server.url}")
    print(f"fingerprint: {server.fingerprint}")
    print(f"ca file:     {server.ca_file}")
    print(f"token:       {args.token}={args.secret}")
    print("Ctrl-C stops.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
