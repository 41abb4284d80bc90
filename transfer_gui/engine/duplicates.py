"""Duplicate and near-duplicate images: file digests, grey thumbnails verified pixel by pixel,
and a nearest-neighbour search on L2-normalised vectors.

* Exact duplicates: the same bytes (a BLAKE2b digest of the file).
* Near duplicates (the same picture resized, re-encoded, trimmed by a few pixels, in grey or
  with brightness / contrast changed): the candidates are each image's nearest neighbours by its
  features' cosine similarity (from :data:`COS_NEAR`) and by its thumbnail (pixel correlation at
  16 x 16, from :data:`THUMB_FLOOR`); :func:`verify` then aligns the two thumbnails (a trim of
  either of up to :data:`TRIM_MOST` a side, a shift of up to :data:`SHIFT_MOST`) on a grid no
  finer than the smaller image and correlates their pixels. A pair is one picture from
  :data:`VERIFY_MIN` (:data:`VERIFY_SAME` when both have the same size): a copy keeps its
  pixels up to resampling and coding noise, while a look-alike differs in shape, and the
  features alone cannot tell the two apart. A trimmed copy gets two more chances: each
  thumbnail is also queried trimmed (:data:`TRIM_QUERIES`), as the copy is the trimmed original,
  and a pair scored just below its threshold whose sizes nest is checked on the images' own
  pixels at integer offsets (:func:`fine_scores`, from :data:`FINE_MIN`): a trim keeps the pixel
  grid, which thumbnails of a textured image lose. Without thumbnails (arrays only) the features and
  the perceptual hash decide (:data:`COS_ALONE`, :data:`HAMMING_NEAR`, ...). The thresholds
  were chosen on Fashion-MNIST's training split and judged on other data:
  ``benchmarks/bench_dups.py`` and benchmarks/README.md.
* The search: the k most similar images of every image, by exact inner products in blocks of
  rows (matrix products; memory bounded by the block), or by faiss's exact flat index
  (``pip install transfer-gui[audit]``, faiss-cpu, MIT) from :data:`FAISS_FROM` images on
  when it is installed.

The perceptual hash is the DCT hash (pHash): the image in grey at 32 x 32, its 2-D DCT, the
8 x 8 lowest frequencies, one bit per coefficient: above their median (the constant term
left out) or not.
"""

from __future__ import annotations

import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from PIL import Image

from transfer_gui.engine.imageio import ImageError, open_image

# The rule without thumbnails (arrays only): a pair whose hashes are close and features alike;
# the closer the hashes, the less alike the features need be (chosen on benchmarks/bench_audit.py).
COS_NEAR = 0.70  # the lowest cosine similarity of a near-duplicate pair (its hashes then within HAMMING_CLOSE)
HAMMING_CLOSE = 0  # hashes this close (of 64 bits) make a pair from COS_NEAR up
COS_FAR = 0.93  # hashes up to HAMMING_NEAR apart need at least this similarity
HAMMING_NEAR = 12  # most differing bits of 64 between the pHashes of a near-duplicate pair below COS_HIGH
COS_HIGH = 0.95  # this similar, a pair is a near duplicate whatever its hashes (a 2 px shift of a small image)
COS_ALONE = 0.97  # without hashes, the cosine similarity alone that makes a pair (above distinct images' 0.93)
COS_SAME = 0.99  # with equal hashes, the similarity that makes a pair the same image ("duplicate")
NEIGHBOURS = 10  # neighbours searched per image
FAISS_FROM = 100_000  # images from which faiss is used when installed
BLOCK_ROWS = 2048
_DCT_SIZE, _LOW = 32, 8
# The rule with thumbnails (files): candidates verified by their aligned pixels (see the docstring).
THUMB = 32  # side of the grey thumbnail kept per image (1 KiB)
GRIDS = (8, 12, 16, 20, 24, 28, 32)  # comparison grids: the largest no finer than the smaller image
TRIM_MOST = 0.15  # the largest trim of a side searched, as a share of the frame
TRIM_STEP = 0.0125  # the step of the trims searched (under half a pixel at 32)
SHIFT_MOST = 0.025  # a shift of the picture in its frame (border filled) searched too
THUMB_FLOOR = 0.5  # lowest thumbnail correlation of a candidate: copies reach 0.9 and more
VERIFY_MIN = 0.985  # pixels this alike after alignment make one picture (images of two sizes)
VERIFY_SAME = 0.99  # the same for two images of one size: nothing resampled, so the copy is closer
SAME_PIXELS = 0.999  # this alike and of one size, a copy inside one set is a "duplicate", not "near"
# A trimmed copy: queried by trimmed thumbnails, then checked at integer offsets at the pixels' own scale.
TRIM_QUERIES = tuple((l, t, r, b) for l in (0, 2) for t in (0, 2) for r in (0, 2) for b in (0, 2)
                     if l + t + r + b)  # px of the 32 px thumbnail trimmed (left, top, right, bottom)
TRIM_NEIGHBOURS = 1  # neighbours kept per trimmed query (more only add look-alikes: the copy comes first)
FINE_FROM = 0.90  # thumbnail scores from here to the verdict's threshold get the finer check
FINE_SIDE = 128  # the finer check's larger image at most this many px a side (both scaled alike)
FINE_MIN = 0.99  # the finer check's correlation that makes a trimmed copy


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_DCT_SIZE)


def phash_image(im: Image.Image) -> int:
    """The 64-bit DCT perceptual hash of an image."""
    grey = np.asarray(im.convert("L").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:_LOW, :_LOW].flatten()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


Thumb = tuple[np.ndarray, tuple[int, int]]


def file_hashes(path: str) -> tuple[str | None, int | None, Thumb | None]:
    """(digest of the bytes, pHash, :func:`thumbnail`) of a file; None for what cannot be read
    or decoded."""
    try:
        with open(path, "rb") as fh:
            digest = hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
    except OSError:
        return None, None, None
    try:
        im = open_image(path, reduce_for=_DCT_SIZE)
    except (ImageError, OSError, ValueError):
        return digest, None, None
    return digest, phash_image(im), thumbnail(im)


_HASH_MEMORY: dict[tuple[str, int, int], tuple[str | None, int | None, Thumb | None]] = {}


def hashes(paths: list[str], workers: int = 4, check: Callable[[], None] | None = None,
           progress: Callable[[int, int], None] | None = None
           ) -> tuple[list[str | None], list[int | None], list[Thumb | None]]:
    """(digests, pHashes, thumbnails) of ``paths``, in threads; kept for the process by path,
    size and modification time."""
    import os

    def one(p: str):
        try:
            st = os.stat(p)
            key = (p, st.st_size, st.st_mtime_ns)
        except OSError:
            return None, None, None
        if key not in _HASH_MEMORY:
            _HASH_MEMORY[key] = file_hashes(p)
        return _HASH_MEMORY[key]

    out: list[tuple[str | None, int | None, Thumb | None]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, r in enumerate(pool.map(one, paths, chunksize=64)):
            out.append(r)
            if i % 256 == 255 or i == len(paths) - 1:
                if check:
                    check()
                if progress:
                    progress(i + 1, len(paths))
    return [d for d, _, _ in out], [h for _, h, _ in out], [t for _, _, t in out]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between 64-bit hashes (arrays of uint64)."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))).astype(np.int64)


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_blocked(x: np.ndarray, k: int, check: Callable[[], None] | None = None,
                progress: Callable[[int, int], None] | None = None,
                block: int = BLOCK_ROWS, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices), each (N, k): the k rows of ``x`` (L2-normalised) with the
    highest inner product with each row (or with row i of ``queries``, a variant of row i), itself
    left out; exact, one block of rows at a time."""
    n = len(x)
    k = max(0, min(k, n - 1))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    qt = xt if queries is None else torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    sims, idx = np.zeros((n, k), np.float32), np.zeros((n, k), np.int64)
    for start in range(0, n, block):
        if check:
            check()
        s = qt[start:start + block] @ xt.T
        rows = torch.arange(s.shape[0])
        s[rows, rows + start] = -np.inf
        v, i = torch.topk(s, k, dim=1) if k else (s[:, :0], s[:, :0].long())
        sims[start:start + len(rows)], idx[start:start + len(rows)] = v.numpy(), i.numpy()
        if progress:
            progress(min(n, start + block), n)
    return sims, idx


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn_faiss(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`knn_blocked`, with faiss's exact inner-product index."""
    import faiss

    n = len(x)
    k = max(0, min(k, n - 1))
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    sims, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), k + 1)
    not_self = idx != np.arange(n)[:, None]
    first = np.argsort(~not_self, axis=1, kind="stable")[:, :k]  # keep order, drop each row's own entry
    return np.take_along_axis(sims, first, 1), np.take_along_axis(idx, first, 1).astype(np.int64)


def candidate_pairs(sims: np.ndarray, idx: np.ndarray, floor: float) -> np.ndarray:
    """(P, 2) distinct pairs i < j among the neighbours at similarity >= ``floor``."""
    rows, cols = np.nonzero(sims >= floor)
    a, b = rows, idx[rows, cols]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], 1) if len(a) else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0)


def digest_pairs(digests: list[str | None]) -> np.ndarray:
    """(P, 2): every file paired with the first file of the same bytes (a star, not all pairs)."""
    first: dict[str, int] = {}
    out = []
    for i, d in enumerate(digests):
        if d is None:
            continue
        if d in first:
            out.append((first[d], i))
        else:
            first[d] = i
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


# ----------------------------------------------------------------------------- pixel verifier


def thumbnail(im: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """(the image in grey at THUMB x THUMB px, the whole frame, uint8; its (width, height))."""
    grey = im.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8), (int(im.width), int(im.height))


def _standardise(a: torch.Tensor) -> torch.Tensor:
    """Each image (the last two dimensions) less its mean, over its norm: dot products are correlations."""
    a = a - a.mean((-2, -1), keepdim=True)
    return a / a.flatten(-2).norm(dim=-1).clamp_min(1e-6)[..., None, None]


def _trim_boxes() -> tuple[np.ndarray, np.ndarray]:
    """(every (start, width) of an axis with up to TRIM_MOST of it trimmed, in steps of TRIM_STEP;
    the index of each one's width)."""
    out, group = [], []
    for g, w in enumerate(np.arange(1.0, 1.0 - TRIM_MOST - 1e-9, -TRIM_STEP)):
        starts = np.arange(-SHIFT_MOST, 1.0 - w + SHIFT_MOST + 1e-9, TRIM_STEP)
        out += [(s, w) for s in starts]
        group += [g] * len(starts)
    return np.asarray(out, np.float64), np.asarray(group, np.int64)


_BOXES, _WIDTH_OF = _trim_boxes()
_WIDTHS = np.unique(_BOXES[:, 1])[::-1].copy()  # 1.0 first, as _WIDTH_OF counts
_BY_WIDTH = torch.full((len(_WIDTHS), int(np.bincount(_WIDTH_OF).max())), len(_BOXES), dtype=torch.long)
for _g in range(len(_WIDTHS)):  # row g: the boxes of width g, padded with len(_BOXES) (scored -inf)
    _BY_WIDTH[_g, :int((_WIDTH_OF == _g).sum())] = torch.from_numpy(np.flatnonzero(_WIDTH_OF == _g))


@functools.lru_cache(maxsize=16)
def _box_matrices(n: int) -> torch.Tensor:
    """(K, n, n): matrix k resamples n pixels of one axis onto the part of it (start, width)
    given as fractions of the frame by _BOXES[k], by linear interpolation."""
    u = _BOXES[:, :1] + (np.arange(n) + 0.5) / n * _BOXES[:, 1:2]
    p = np.clip(u * n - 0.5, 0, n - 1)
    lo = np.floor(p).astype(np.int64)
    hi, f = np.minimum(lo + 1, n - 1), p - lo
    m = np.zeros((len(_BOXES), n, n), np.float32)
    k, i = np.meshgrid(np.arange(len(_BOXES)), np.arange(n), indexing="ij")
    np.add.at(m, (k, i, lo), 1 - f)
    np.add.at(m, (k, i, hi), f)
    return torch.from_numpy(m)


def _best_starts(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """(P, widths): for each width of _WIDTHS, the box of ``a`` along ``axis`` whose profile (the
    mean over the other axis) correlates best with ``b``'s: where ``b`` was cut from, guessed cheaply."""
    sampled = torch.einsum("kij,pj->pki", m, a.mean(axis))
    sampled = sampled - sampled.mean(-1, keepdim=True)
    sampled = sampled / sampled.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    pb = b.mean(axis) - b.mean(axis).mean(-1, keepdim=True)
    score = torch.einsum("pki,pi->pk", sampled, pb / pb.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    padded = torch.cat([score, torch.full((len(score), 1), -torch.inf)], 1)[:, _BY_WIDTH]  # (P, W, most starts)
    return _BY_WIDTH[torch.arange(len(_WIDTHS)), padded.argmax(2)]


def _aligned_score(a: torch.Tensor, b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(P,) the highest correlation of ``b`` with a part of ``a`` (trimmed by up to TRIM_MOST a
    side or shifted by up to SHIFT_MOST, scaled alike on both axes: ``q`` is a's aspect ratio over
    b's) resampled to b's grid; for each width, the trim is guessed from the profiles."""
    m = _box_matrices(a.shape[-1])
    cols, rows = _best_starts(a, b, m, 1), _best_starts(a, b, m, 2)  # (P, W) boxes of the column, row axis
    wi = torch.from_numpy(_WIDTHS.astype(np.float32))
    wy = wi[None] * q[:, None]  # the rows' width that each column width implies
    near = (wy[..., None] - wi).abs().argmin(-1)  # (P, W)
    valid = (wy >= wi[-1] - TRIM_STEP / 2) & (wy <= 1 + TRIM_STEP / 2)
    s = m[rows.gather(1, near)] @ a[:, None] @ m[cols].transpose(-1, -2)  # (P, W, n, n)
    return torch.einsum("pwil,pil->pw", _standardise(s), _standardise(b)).masked_fill(~valid, -1.0).amax(1)


def _grid_of(side: np.ndarray) -> np.ndarray:
    """The grid two images are compared on: the shorter side of the smaller, from GRIDS (no
    finer than the coarser image holds)."""
    g = np.asarray(GRIDS)
    return g[np.clip(np.searchsorted(g, side, side="right") - 1, 0, len(g) - 1)]


def verify(thumbs: np.ndarray, sizes: np.ndarray, pairs: np.ndarray, batch: int = 512,
           check: Callable[[], None] | None = None) -> np.ndarray:
    """(P,) how alike the pixels of each pair (i, j) of ``pairs`` are: the correlation of their
    grey thumbnails (``thumbs`` (N, THUMB, THUMB) and ``sizes`` (N, 2) from :func:`thumbnail`)
    on a common grid no finer than the smaller image, after aligning a trim of either image by up
    to TRIM_MOST a side; in [-1, 1], 1 for the same picture."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    out = np.zeros(len(pairs), np.float32)
    if not len(pairs):
        return out
    grid = _grid_of(np.minimum(sizes[pairs[:, 0]].min(1), sizes[pairs[:, 1]].min(1)))
    aspect = sizes[:, 0] / np.maximum(sizes[:, 1], 1)
    t = torch.from_numpy(np.ascontiguousarray(thumbs, dtype=np.float32))[:, None]
    with torch.no_grad():
        for g in np.unique(grid):
            rows = np.flatnonzero(grid == g)
            for s in range(0, len(rows), batch):
                if check:
                    check()
                r = rows[s:s + batch]
                a, b = (torch.nn.functional.interpolate(t[pairs[r, k]], size=(int(g), int(g)), mode="bilinear",
                                                        antialias=True, align_corners=False)[:, 0] for k in (0, 1))
                q = torch.from_numpy((aspect[pairs[r, 0]] / aspect[pairs[r, 1]]).astype(np.float32))
                out[r] = torch.maximum(_aligned_score(a, b, q), _aligned_score(b, a, 1 / q)).numpy()
    return out


def verified(scores: np.ndarray, sizes: np.ndarray, pairs: np.ndarray, fine: np.ndarray | None = None) -> np.ndarray:
    """(P,) bool: the pairs whose :func:`verify` score makes them one picture: from VERIFY_SAME
    when both images have the same size (nothing was resampled, so only re-encoding or a change
    of tone separates them), from VERIFY_MIN otherwise; or whose :func:`fine_scores` ``fine``
    reach FINE_MIN (a trim found at its own pixel grid)."""
    sizes = np.asarray(sizes).reshape(-1, 2)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    same = (sizes[pairs[:, 0]] == sizes[pairs[:, 1]]).all(1)
    ok = np.asarray(scores) >= np.where(same, VERIFY_SAME, VERIFY_MIN)
    return ok if fine is None else ok | (np.nan_to_num(np.asarray(fine), nan=-1.0) >= FINE_MIN)


def thumb_vectors(thumbs: np.ndarray, trim: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """(N, 256): each thumbnail (less ``trim`` px left, top, right, bottom) at 16 x 16 less its
    mean, L2-normalised (its inner products with another are the correlations of their pixels)."""
    t = torch.from_numpy(np.ascontiguousarray(thumbs, dtype=np.float32))[:, None]
    l, top, r, b = trim
    if any(trim):
        t = torch.nn.functional.interpolate(t[..., top:THUMB - b, l:THUMB - r], size=(16, 16), mode="bilinear",
                                            antialias=True, align_corners=False)
    else:
        t = torch.nn.functional.avg_pool2d(t, THUMB // 16)
    return _standardise(t[:, 0]).flatten(1).numpy()


def thumb_candidates(thumbs: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
    """(P, 2) pairs i < j: each image with its NEIGHBOURS nearest by thumbnail (pixel
    correlation at 16 x 16) from THUMB_FLOOR up, found as :func:`knn_blocked` or faiss finds
    the features' neighbours; and, queried by each image trimmed as TRIM_QUERIES says, its
    TRIM_NEIGHBOURS nearest whole thumbnails: a trimmed copy is the trimmed original, not the whole."""
    v = thumb_vectors(thumbs)
    if len(v) >= FAISS_FROM and faiss_available():
        sims, idx = knn_faiss(v, NEIGHBOURS)
    else:
        sims, idx = knn_blocked(v, NEIGHBOURS, check)
    out = [candidate_pairs(sims, idx, THUMB_FLOOR)]
    for trim in TRIM_QUERIES:
        sims, idx = knn_blocked(v, TRIM_NEIGHBOURS, check, queries=thumb_vectors(thumbs, trim))
        out.append(candidate_pairs(sims, idx, THUMB_FLOOR))
    return np.unique(np.concatenate(out), axis=0)


def fine_score(a: np.ndarray, b: np.ndarray) -> float:
    """The highest correlation of the smaller of two grey images (2-D arrays, the same pixel
    scale) with a window of the larger at an integer offset, both scaled alike so the larger
    has at most FINE_SIDE px a side; -1 when the smaller is no trim of up to TRIM_MOST a side of
    the larger. A trim keeps the pixel grid: at its own offset the copy matches ~exactly, where
    thumbnails resample both onto grids a fraction of a pixel apart and textures lose."""
    big, small = (a, b) if a.size >= b.size else (b, a)
    (bh, bw), (sh, sw) = big.shape, small.shape
    if sh > bh or sw > bw or bh - sh > 2 * TRIM_MOST * bh + 1 or bw - sw > 2 * TRIM_MOST * bw + 1 or min(sh, sw) < 4:
        return -1.0
    f = min(1.0, FINE_SIDE / max(bh, bw))
    x, k = (torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None, None] for v in (big, small))
    if f < 1.0:
        x, k = (torch.nn.functional.interpolate(v, scale_factor=f, mode="bilinear", antialias=True,
                                                align_corners=False) for v in (x, k))
    k = k - k.mean()
    npx = k.numel()
    with torch.no_grad():
        dot = torch.nn.functional.conv2d(x, k)
        ones = torch.ones_like(k)
        s1, s2 = torch.nn.functional.conv2d(x, ones), torch.nn.functional.conv2d(x * x, ones)
        var = (s2 - s1 * s1 / npx).clamp_min(1e-6)
        return float((dot / (var.sqrt() * k.norm().clamp_min(1e-6))).max())


def grey_file(path: str) -> np.ndarray | None:
    """The image at ``path`` in grey at its full size (uint8), None when it cannot be read: what
    :func:`fine_scores` loads in the audit."""
    try:
        return np.asarray(open_image(path).convert("L"), dtype=np.uint8)
    except (ImageError, OSError, ValueError):
        return None


def fine_scores(scores: np.ndarray, sizes: np.ndarray, pairs: np.ndarray,
                load: Callable[[int], np.ndarray | None]) -> np.ndarray:
    """(P,) :func:`fine_score` of the pairs whose thumbnail ``scores`` lie from FINE_FROM up to
    their verdict's threshold and whose sizes differ as a trim's would (NaN elsewhere);
    ``load(i)`` gives image i in grey (None when unreadable)."""
    sizes = np.asarray(sizes).reshape(-1, 2)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.full(len(pairs), np.nan, np.float32)
    sa, sb = sizes[pairs[:, 0]], sizes[pairs[:, 1]]
    nested = ((sa >= sb).all(1) | (sa <= sb).all(1)) & (sa != sb).any(1)
    grey = (np.asarray(scores) >= FINE_FROM) & ~verified(scores, sizes, pairs) & nested
    cached = functools.lru_cache(maxsize=64)(load)  # the pairs come sorted by their first image
    for r in np.flatnonzero(grey):
        a, b = cached(int(pairs[r, 0])), cached(int(pairs[r, 1]))
        if a is not None and b is not None:
            out[r] = fine_score(a, b)
    return out


__all__ = ["COS_ALONE", "COS_FAR", "COS_HIGH", "COS_NEAR", "COS_SAME", "HAMMING_CLOSE", "FAISS_FROM", "FINE_FROM", "FINE_MIN", "FINE_SIDE",
           "HAMMING_NEAR", "TRIM_NEIGHBOURS", "TRIM_QUERIES", "fine_score", "fine_scores", "grey_file", "NEIGHBOURS", "candidate_pairs",
           "digest_pairs", "faiss_available", "file_hashes", "hamming", "hashes", "knn_blocked", "knn_faiss",
           "normalise", "phash_image", "SAME_PIXELS", "THUMB", "THUMB_FLOOR", "VERIFY_MIN", "VERIFY_SAME",
           "thumb_candidates", "thumb_vectors", "thumbnail", "verified", "verify"]
