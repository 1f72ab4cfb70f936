"""Version of the numerical kernel, recorded with every result.

Bump it whenever a change can alter the bits of a result (scheme, operation order, layout).
"""

SOLVER_VERSION = "1.2.0"  # 1.2: slab pipeline, real z lines transformed in pairs as complex lines
# (round-off changes in both precisions); 1.1: 1-D FFT passes and fused kernels
