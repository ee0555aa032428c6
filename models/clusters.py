"""Latent clusters: a bounded-memory bank of clean-patch latents per subspace.

Building (numpy, streaming over latent batches; memory bounded by the batch,
the K centres and K * cap kept members, never by the bank):
1. mini-batch k-means (Sculley 2010, per-centre learning rate 1/count, one
   vectorised update per batch), initialised by k-means++ on the first batch,
   over `passes` passes of the stream;
2. one more pass assigning every latent to its final centre and keeping, per
   cluster, a uniform random sample of at most `cap` members (bottom-k of i.i.d.
   random keys: the vectorised equivalent of reservoir sampling).

Queries (TensorFlow ops, batched, no loop over patches): `assign` gives each
latent's nearest non-empty cluster; `knn` finds its k nearest kept clean latents
within that cluster (loop over the K clusters only).

Shapes: latents (N, S, L) with S subspaces; centres (S, K, L); members (S, K, cap, L).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from data.errors import ConfigError, DataError
from utils import atomic_path

LatentStream = Callable[[], Iterable[np.ndarray]]


@dataclass
class ClusterConfig:
    """`--num_clusters` and the bounded-memory settings."""

    num_clusters: int = 16
    cap: int = 4096  # kept clean latents per cluster for neighbour search
    passes: int = 2  # k-means passes over the stream
    seed: int = 0


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(S, N, L), (S, K, L) -> (S, N, K) squared Euclidean distances."""
    return (
        np.sum(x * x, axis=-1)[:, :, None]
        - 2.0 * np.einsum("snl,skl->snk", x, c)
        + np.sum(c * c, axis=-1)[:, None, :]
    )


def top_k_blocked(scores: tf.Tensor, k: int, block: int = 64) -> tuple[tf.Tensor, tf.Tensor]:
    """`tf.math.top_k(scores, k)` of (n, m) scores, exactly, in two cheap passes.

    Why: a full top_k over each row of 4096 bank scores cost more than the matmul that made
    them (the neighbour search was the agent's largest cost at inference). The row is cut into
    blocks of `block`; the k blocks with the largest maxima hold the k largest scores (a block
    holding one of them has its maximum at or above the k-th largest score, and at most k
    blocks can), so top_k runs over the block maxima and then over those k blocks' scores.
    Equal scores may come back in another order than tf.math.top_k's.
    """
    m = scores.shape[-1]
    if m is None or m <= 2 * k * block:
        return tf.math.top_k(scores, k=k)
    blocks = -(-m // block)
    if blocks * block != m:  # pad with -inf: never chosen while a row has k finite scores
        scores = tf.pad(scores, [[0, 0], [0, blocks * block - m]], constant_values=-np.inf)
    n = tf.shape(scores)[0]
    by_block = tf.reshape(scores, (n, blocks, block))
    _, best_blocks = tf.math.top_k(tf.reduce_max(by_block, axis=-1), k=k)  # (n, k)
    candidates = tf.reshape(tf.gather(by_block, best_blocks, batch_dims=1), (n, k * block))
    values, j = tf.math.top_k(candidates, k=k)
    return values, tf.gather(best_blocks, j // block, batch_dims=1) * block + j % block


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on one batch x (N, L) -> (k, L) (loop over k only)."""
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres.append(x[idx])
        d2 = np.minimum(d2, np.sum((x - x[idx]) ** 2, axis=1))
    return np.stack(centres)


def _as_batch(batch, s_expected: int | None) -> np.ndarray:
    b = np.asarray(batch, dtype=np.float64)
    if b.ndim == 2:
        b = b[:, None, :]
    if b.ndim != 3 or (s_expected is not None and b.shape[1] != s_expected):
        raise DataError(f"latent batches must be (N, S, L); got shape {np.shape(batch)}")
    return np.transpose(b, (1, 0, 2))  # (S, N, L)


def minibatch_kmeans(stream: LatentStream, num_clusters: int, passes: int = 2, seed: int = 0) -> np.ndarray:
    """Centres (S, K, L) by mini-batch k-means over `stream()` (a re-iterable of (N, S, L) batches)."""
    rng = np.random.default_rng(seed)
    centres = counts = None
    for _ in range(passes):
        for batch in stream():
            x = _as_batch(batch, None if centres is None else centres.shape[0])
            s, n, _ = x.shape
            if centres is None:
                if n < num_clusters:
                    raise DataError(f"the first latent batch has {n} rows, fewer than --num_clusters {num_clusters}")
                centres = np.stack([_kmeans_pp(x[i], num_clusters, rng) for i in range(s)])
                counts = np.zeros((s, num_clusters))
            ids = np.argmin(_sq_dists(x, centres), axis=-1)  # (S, N)
            onehot = np.eye(num_clusters)[ids]  # (S, N, K)
            batch_counts = onehot.sum(axis=1)  # (S, K)
            batch_sums = np.einsum("snk,snl->skl", onehot, x)
            counts = counts + batch_counts
            # Per-centre rate 1/count applied to the batch mean == running mean of assigned points.
            safe = np.maximum(counts, 1.0)[..., None]
            centres = centres + (batch_sums - batch_counts[..., None] * centres) / safe
    if centres is None:
        raise DataError("the latent bank is empty: no batches to cluster")
    return centres.astype(np.float32)


class ClusterIndex:
    """Cluster centres and kept clean members per subspace, with batched TF queries."""

    def __init__(self, centres: np.ndarray, members: np.ndarray, counts: np.ndarray, seen: np.ndarray | None = None):
        self.centres = np.asarray(centres, np.float32)  # (S, K, L)
        self.members = np.asarray(members, np.float32)  # (S, K, cap, L)
        self.counts = np.asarray(counts, np.int64)  # (S, K) kept members
        self.seen = np.asarray(seen if seen is not None else counts, np.int64)  # (S, K) bank size
        s, k, cap, l = self.members.shape
        if self.centres.shape != (s, k, l) or self.counts.shape != (s, k):
            raise DataError(f"inconsistent cluster arrays {self.centres.shape}, {self.members.shape}, {self.counts.shape}")
        self._centres_tf = tf.constant(self.centres)
        slot = np.arange(cap)[None, None, :]
        self._nonempty_tf = tf.constant(self.counts > 0)
        # Members with -|m|^2 / 2 appended (-1e30 in empty slots): the k-NN ranking's one matmul operand.
        half_norm = np.where(slot < self.counts[..., None], -0.5 * np.sum(self.members ** 2, -1), -1e30)
        self._members_aug_tf = tf.constant(np.concatenate([self.members, half_norm[..., None]], -1).astype(np.float32))
        self._queries: dict[int, Callable] = {}

    @property
    def num_subspaces(self) -> int:
        return self.centres.shape[0]

    @property
    def num_clusters(self) -> int:
        return self.centres.shape[1]

    @property
    def cap(self) -> int:
        return self.members.shape[2]

    def latent_std(self) -> np.ndarray:
        """(S, L) per-dimension std of the clean latent bank, estimated from the kept members.

        Each kept member of cluster c stands for seen[c] / counts[c] latents of the bank (the
        members are a uniform sample of their cluster), so the weighted moments are unbiased
        for the whole bank. The `residual` action of the filtering environment is scaled by it.
        """
        slot = np.arange(self.cap)[None, None, :]
        w = np.where(slot < self.counts[..., None], (self.seen / np.maximum(self.counts, 1))[..., None], 0.0)
        w = w / np.maximum(w.sum(axis=(1, 2), keepdims=True), 1e-12)  # (S, K, cap), sums to 1 per subspace
        mean = np.einsum("skc,skcl->sl", w, self.members)
        var = np.einsum("skc,skcl->sl", w, (self.members - mean[:, None, None]) ** 2)
        return np.sqrt(var).astype(np.float32)

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, stream: LatentStream, cfg: ClusterConfig) -> "ClusterIndex":
        """k-means over the stream, then a sampling pass keeping <= cfg.cap members per cluster."""
        centres = minibatch_kmeans(stream, cfg.num_clusters, cfg.passes, cfg.seed).astype(np.float64)
        rng = np.random.default_rng(cfg.seed + 1)
        s, k, l = centres.shape
        cap = cfg.cap
        members = np.zeros((s, k, cap, l))
        keys = np.full((s, k, cap), np.inf)
        seen = np.zeros((s, k), np.int64)
        for batch in stream():
            x = _as_batch(batch, s)
            n = x.shape[1]
            ids = np.argmin(_sq_dists(x, centres), axis=-1)  # (S, N)
            seen += np.stack([np.bincount(ids[i], minlength=k) for i in range(s)])
            new_keys = rng.random((s, n))
            # Candidates per subspace: current members (slot order) then the batch.
            cand_cluster = np.concatenate([np.broadcast_to(np.repeat(np.arange(k), cap), (s, k * cap)), ids], axis=1)
            cand_key = np.concatenate([keys.reshape(s, k * cap), new_keys], axis=1)
            cand_vec = np.concatenate([members.reshape(s, k * cap, l), x], axis=1)
            for i in range(s):  # loop over subspaces only
                order = np.lexsort((cand_key[i], cand_cluster[i]))
                cl = cand_cluster[i][order]
                start = np.searchsorted(cl, np.arange(k))
                rank = np.arange(order.size) - start[cl]
                keep = (rank < cap) & np.isfinite(cand_key[i][order])
                src = order[keep]
                keys[i] = np.inf
                keys[i, cl[keep], rank[keep]] = cand_key[i][src]
                members[i, cl[keep], rank[keep]] = cand_vec[i][src]
        counts = np.isfinite(keys).sum(axis=-1)
        return cls(centres, members, counts, seen)

    # -- queries (TF) ------------------------------------------------------------------------------
    def centre_distances(self, t) -> tf.Tensor:
        """(P, S, L) latents -> (P, S, K) Euclidean distances to the centres (inf for empty clusters)."""
        t = tf.convert_to_tensor(t, tf.float32)
        d2 = (
            tf.reduce_sum(t * t, -1)[..., None]
            - 2.0 * tf.einsum("psl,skl->psk", t, self._centres_tf)
            + tf.reduce_sum(self._centres_tf * self._centres_tf, -1)[None]
        )
        d = tf.sqrt(tf.maximum(d2, 0.0))
        return tf.where(self._nonempty_tf[None], d, tf.constant(np.inf, tf.float32))

    def assign(self, t) -> tf.Tensor:
        """(P, S, L) latents -> (P, S) int32 id of the nearest non-empty cluster."""
        return tf.argmin(self.centre_distances(t), axis=-1, output_type=tf.int32)

    def knn(self, t, k: int):
        """Mean of the k nearest kept clean latents in each latent's cluster, and their distances.

        Returns (neighbour_mean (P, S, L), distances (P, S, k) ascending, cluster_ids (P, S)).
        A cluster with fewer than k members uses all of them (missing distances are inf).
        """
        return self.query(t, k)[:3]

    def query(self, t, k: int):
        """`knn`'s three results plus each latent's distance to its cluster centre (P, S), in one call."""
        k = int(k)
        if not 1 <= k <= self.cap:
            raise ConfigError(f"--knn k must be in 1..{self.cap} (the per-cluster cap), got {k}")
        t = tf.convert_to_tensor(t, tf.float32)
        row = (self.num_subspaces, self.centres.shape[2])  # (S, L) per latent
        if t.shape.rank != 3 or tuple(t.shape[1:]) != row:
            raise DataError(f"latents must be (P, {row[0]}, {row[1]}), got {tuple(t.shape)}")
        if k not in self._queries:  # one graph per k, traced once for any number of latents
            spec = tf.TensorSpec((None, *row), tf.float32)
            self._queries[k] = tf.function(lambda x: self._query(x, k), input_signature=[spec])
        return self._queries[k](t)

    def _query(self, t, k: int):
        """Exact k-NN within each latent's cluster (loop over subspaces and clusters, not patches).

        Ranking uses score = q.m - |m|^2 / 2 (the squared distance is |q|^2 - 2 score), one
        matmul against the members augmented with -|m|^2 / 2 (-1e30 in empty slots), so no
        full distance matrix is materialised.
        """
        centre_d = self.centre_distances(t)
        ids = tf.argmin(centre_d, axis=-1, output_type=tf.int32)
        p = tf.shape(t)[0]
        means, dists = [], []
        for s in range(self.num_subspaces):
            ts, ids_s = t[:, s], ids[:, s]
            parts = tf.dynamic_partition(ts, ids_s, self.num_clusters)
            idx_parts = tf.dynamic_partition(tf.range(p), ids_s, self.num_clusters)
            m_out, d_out = [], []
            for c in range(self.num_clusters):
                q, mem_aug = parts[c], self._members_aug_tf[s, c]
                q_aug = tf.concat([q, tf.ones_like(q[:, :1])], axis=1)
                score, nn = top_k_blocked(tf.matmul(q_aug, mem_aug, transpose_b=True), k)
                found = score > -1e29
                w = tf.cast(found, tf.float32)
                nn_vec = tf.gather(mem_aug[:, :-1], nn)  # (n_c, k, L)
                m_out.append(tf.reduce_sum(nn_vec * w[..., None], 1) / tf.maximum(tf.reduce_sum(w, 1, keepdims=True), 1.0))
                d2 = tf.maximum(tf.reduce_sum(q * q, -1, keepdims=True) - 2.0 * score, 0.0)
                d_out.append(tf.where(found, tf.sqrt(d2), tf.constant(np.inf, tf.float32)))
            means.append(tf.dynamic_stitch(idx_parts, m_out))
            dists.append(tf.dynamic_stitch(idx_parts, d_out))
        nearest_centre = tf.gather(centre_d, ids, batch_dims=2)
        return tf.stack(means, axis=1), tf.stack(dists, axis=1), ids, nearest_centre

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            np.savez(tmp, centres=self.centres, members=self.members, counts=self.counts, seen=self.seen)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClusterIndex":
        path = Path(path)
        try:
            with np.load(path) as z:
                return cls(z["centres"], z["members"], z["counts"], z["seen"])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not a saved cluster index ({exc})") from None


def latent_stream_from_patches(model, patch_batches: Callable[[], Iterable]) -> LatentStream:
    """Turn a re-iterable of clean (P, b, b, S) patch batches into a stream of encoder means (P, S, L)."""

    def stream():
        for patches in patch_batches():
            mean, _ = model.encode(patches)
            yield mean.numpy()

    return stream
