"""Version of the numerical kernel, recorded with every result.

Bump it whenever a change can alter the bits of a result (scheme, operation order, layout).
"""

SOLVER_VERSION = "1.1.0"  # 1.1: 1-D FFT passes and fused kernels (round-off changes)
