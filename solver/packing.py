"""numpy versions of the slab load/store kernels that pack real lines in pairs.

The stepper (``solver.workspace._SlabBuffers``) transforms real z lines two at a time as one
complex line: ``make_load_pack_kernel`` writes the packed spectra of component pairs from
the x-padded spectra P, ``make_store_unpack_kernel`` unpacks the forward transforms back
into P. The numba kernel set has compiled versions (``solver.kernels_numba``, where the
layout is documented); these compute the same IEEE operations (a - b, a + b, x 0.5), so
both sets give the same bits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from .grid import Block

__all__ = ["make_load_pack_kernel", "make_store_unpack_kernel"]


def make_load_pack_kernel(
    P: np.ndarray, Z: np.ndarray, yblocks: tuple[Block, ...], mz: int
) -> Callable[[int, int, int, int], None]:
    """numpy version of ``kernels_numba.make_load_pack_kernel``: ``load(ja, jb, npairs, x0)``
    sets Z[p] (k < mz) <- A + i B and Z[p] (n - k) <- conj A + i conj B for A = P[ja + 2p],
    B = P[jb + 2p] (jb < 0: B = 0) at rows x0:x0+b, y-padded; all pairs in each call."""
    b, n = Z.shape[1], Z.shape[-1]
    mirror = slice(n - 1, n - mz, -1)  # n - k for k = 1 .. mz-1
    gaps = [slice(a.f1, c.f0) for a, c in itertools.pairwise(yblocks)]
    blocks = [(slice(yb.f0, yb.f1), slice(yb.c0, yb.c1)) for yb in yblocks]

    def load(ja: int, jb: int, npairs: int, x0: int) -> None:
        xs = slice(x0, x0 + b)
        z = Z[:npairs]
        for g in gaps:  # (the kz band stays zero: only the kept blocks are transformed)
            z[:, :, g, :mz] = 0
            z[:, :, g, n - mz + 1 :] = 0
        A = P[ja : ja + 2 * npairs : 2, xs]
        B = P[jb : jb + 2 * npairs : 2, xs] if jb >= 0 else None
        for f, c in blocks:
            zr, zi = z.real[:, :, f], z.imag[:, :, f]
            a = A[:, :, c]
            if B is not None:
                bb = B[:, :, c]
                np.subtract(a.real, bb.imag, out=zr[..., :mz])
                np.add(a.imag, bb.real, out=zi[..., :mz])
                np.add(a.real[..., 1:], bb.imag[..., 1:], out=zr[..., mirror])
                np.subtract(bb.real[..., 1:], a.imag[..., 1:], out=zi[..., mirror])
            else:  # b = 0 (the divergence diagnostic)
                z[:, :, f, :mz] = a
                zr[..., mirror] = a.real[..., 1:]
                np.negative(a.imag[..., 1:], out=zi[..., mirror])

    return load


def make_store_unpack_kernel(
    Z: np.ndarray, P: np.ndarray, yblocks: tuple[Block, ...], mz: int
) -> Callable[[int], None]:
    """numpy version of ``kernels_numba.make_store_unpack_kernel``: ``store(x0)`` sets
    P[0:3, x0:x0+b] from Z[1], Z[2] (columns n - k hold the values at (-ky, -k) in row ky)."""
    b, n = Z.shape[1], Z.shape[-1]
    blocks = [(slice(yb.f0, yb.f1), slice(yb.c0, yb.c1)) for yb in yblocks]
    my = sum(yb.c1 - yb.c0 for yb in yblocks)
    yfull = np.concatenate([np.arange(yb.f0, yb.f1) for yb in yblocks])
    row0 = yfull[(my - np.arange(my)) % my]  # full row of -ky (column 0 is not mirrored)
    zk = np.empty((2, b, my, mz), Z.dtype)  # (Z[1], Z[2]) at (ky, k), compact rows
    zm = np.empty((2, b, my, mz), Z.dtype)  # (Z[1], Z[2]) at (-ky, -k), row ky
    t = np.empty((2, b, my, mz), Z.real.dtype)
    mirror = slice(n - 1, n - mz, -1)

    def store(x0: int) -> None:
        z = Z[1:3]
        for f, c in blocks:
            zk[:, :, c] = z[:, :, f, :mz]
            zm[:, :, c, 1:] = z[:, :, f, mirror]
        zm[:, :, :, 0] = z[:, :, row0, 0]
        xs = slice(x0, x0 + b)
        Bdst = P[0:3:2, xs]  # B of Z[1] -> P[0], B of Z[2] -> P[2]
        np.add(zk.imag, zm.imag, out=t)
        np.multiply(t, 0.5, out=Bdst.real)
        np.subtract(zm.real, zk.real, out=t)
        np.multiply(t, 0.5, out=Bdst.imag)
        Adst, t1 = P[1, xs], t[0]  # A of Z[2] -> P[1]
        np.add(zk[1].real, zm[1].real, out=t1)
        np.multiply(t1, 0.5, out=Adst.real)
        np.subtract(zk[1].imag, zm[1].imag, out=t1)
        np.multiply(t1, 0.5, out=Adst.imag)

    return store
