"""A stand-in for your own solver: u_t = nu u_xx on a periodic grid (explicit Euler, central
differences), u(x, 0) = sin x, nu = 1/Re. Reads the JSON input, writes output.csv."""

import json
import math
import sys

p = json.load(open(sys.argv[1]))
nu, dt, n = 1.0 / p["Re"], p["dt"], p["n"]
dx = 2 * math.pi / n
u = [math.sin(i * dx) for i in range(n)]
rows = ["time,energy,energy_exact"]
for step in range(round(p["T_final"] / dt) + 1):
    t = step * dt
    energy = 0.5 * sum(v * v for v in u) / n
    if not energy < 0.26:  # it starts at 1/4 and can only decay: more (or NaN) is a blow-up
        print(
            f"diverged at t={t:g}: energy {energy:.3g}; stable for dt <= {dx * dx / (2 * nu):.3g}",
            file=sys.stderr,
        )
        sys.exit(3)
    rows.append(f"{t!r},{energy!r},{0.25 * math.exp(-2 * nu * t)!r}")
    u = [u[i] + dt * nu * (u[i - 1] - 2 * u[i] + u[(i + 1) % n]) / dx**2 for i in range(n)]
with open("output.csv", "w") as f:
    f.write("\n".join(rows) + "\n")
