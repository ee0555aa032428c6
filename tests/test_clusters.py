"""Mini-batch k-means and within-cluster neighbour search against brute force."""
import numpy as np
import pytest

from data.errors import ConfigError, DataError
from models.clusters import ClusterConfig, ClusterIndex, minibatch_kmeans, top_k_blocked


def _blobs(n=2400, s=2, k=5, l=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (s, k, l))
    labels = rng.integers(0, k, (s, n))
    x = np.take_along_axis(centres, labels[..., None], 1) + rng.normal(0, 0.5, (s, n, l))
    return np.transpose(x, (1, 0, 2)).astype(np.float32), labels


def _stream(bank, batch=400):
    return lambda: (bank[i:i + batch] for i in range(0, len(bank), batch))


def test_kmeans_recovers_cluster_means():
    bank, labels = _blobs()
    centres = minibatch_kmeans(_stream(bank), 5, passes=3, seed=0)
    for s in range(bank.shape[1]):
        truth = np.stack([bank[labels[s] == c, s].mean(0) for c in range(5)])
        # every true mean has a centre within numerical precision (brute-force matching)
        gaps = np.abs(truth[:, None] - centres[s][None]).max(-1).min(1)
        assert gaps.max() < 1e-3


def test_assign_and_knn_match_brute_force():
    bank, _ = _blobs()
    index = ClusterIndex.build(_stream(bank), ClusterConfig(num_clusters=5, cap=5000, passes=3))
    q = np.random.default_rng(1).normal(0, 10, (40, 2, 4)).astype(np.float32)
    mean, dist, ids = index.knn(q, 7)
    d_centres = ((q[:, :, None] - index.centres[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ids.numpy(), d_centres.argmin(-1))
    np.testing.assert_array_equal(index.assign(q).numpy(), d_centres.argmin(-1))
    bank_ids = ((bank[:, :, None] - index.centres[None]) ** 2).sum(-1).argmin(-1)
    for p in range(len(q)):
        for s in range(2):
            cand = bank[bank_ids[:, s] == ids.numpy()[p, s], s]
            d = np.sqrt(((cand - q[p, s]) ** 2).sum(-1))
            order = np.argsort(d)[:7]
            np.testing.assert_allclose(mean.numpy()[p, s], cand[order].mean(0), atol=1e-4)
            np.testing.assert_allclose(dist.numpy()[p, s], d[order], atol=1e-3)


@pytest.mark.parametrize("m,k,block", [(4096, 8, 64), (1000, 5, 16), (300, 8, 7), (50, 8, 64)])
def test_top_k_blocked_equals_top_k(m, k, block):
    """Same values and indices as tf.math.top_k (distinct scores), with padded last blocks, rows
    of mostly empty slots (-1e30, as the cluster bank's) and rows whose best scores share a block."""
    import tensorflow as tf

    rng = np.random.default_rng(m)
    scores = rng.normal(size=(64, m)).astype(np.float32)
    scores[:8, k // 2:] = -1e30 + rng.normal(size=(8, m - k // 2)) * 1e24  # fewer than k members
    scores[8:16, :k] += 100.0  # all of the top k in the first block(s)
    values, idx = top_k_blocked(tf.constant(scores), k, block)
    want_v, want_i = tf.math.top_k(scores, k=k)
    np.testing.assert_array_equal(idx.numpy(), want_i.numpy())
    np.testing.assert_array_equal(values.numpy(), want_v.numpy())


def test_cap_keeps_a_bounded_sample_of_the_right_cluster():
    bank, _ = _blobs(n=3000)
    index = ClusterIndex.build(_stream(bank, 256), ClusterConfig(num_clusters=5, cap=100, passes=2, seed=3))
    assert index.members.shape == (2, 5, 100, 4)
    np.testing.assert_array_equal(index.counts, np.minimum(index.seen, 100))
    assert index.seen.sum() == 2 * len(bank)
    for s in range(2):
        for c in range(5):
            kept = index.members[s, c, : index.counts[s, c]]
            # each kept latent is a bank latent of this subspace assigned to cluster c
            d_bank = np.abs(kept[:, None] - bank[None, :, s]).max(-1).min(1)
            assert d_bank.max() < 1e-6
            assert (index.assign(np.repeat(kept[:, None], 2, 1)).numpy()[:, s] == c).all()


def test_save_load_round_trip_and_errors(tmp_path):
    bank, _ = _blobs(n=600)
    index = ClusterIndex.build(_stream(bank), ClusterConfig(num_clusters=3, cap=50))
    index.save(tmp_path / "c.npz")
    again = ClusterIndex.load(tmp_path / "c.npz")
    q = bank[:20]
    for a, b in zip(index.knn(q, 3), again.knn(q, 3)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ConfigError, match="knn"):
        index.knn(q, 51)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.npz"):
        ClusterIndex.load(tmp_path / "bad.npz")
