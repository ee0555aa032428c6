"""The project's VAE and cluster index as the `LatentModel` the filtering environment sees."""
from __future__ import annotations

import tensorflow as tf

from data.errors import DataError
from models.clusters import ClusterIndex
from models.vae import RSEVAE
from rl.envs.latent_filter import LatentModel, Neighbours


def latent_model_from_vae(vae: RSEVAE, index: ClusterIndex, k: int = 8) -> LatentModel:
    """Wrap `models.vae.RSEVAE` and `models.clusters.ClusterIndex` as a `LatentModel`.

    encode = the encoder mean (the deterministic latent), transform = T, decode =
    the per-subspace decoders; knn = the index's k nearest clean latents in the
    nearest cluster, with the distance to that cluster's centre; latent_scale = the
    per-dimension std of the clean latent bank (the residual action's unit).
    """
    if index.num_subspaces != vae.cfg.num_subspaces:
        raise DataError(f"cluster index has {index.num_subspaces} subspaces, the VAE {vae.cfg.num_subspaces}")

    def knn(t) -> Neighbours:
        mean, dists, ids, centre_d = index.query(t, k)
        finite = tf.math.is_finite(dists)
        mean_d = (tf.reduce_sum(tf.where(finite, dists, 0.0), -1)
                  / tf.maximum(tf.reduce_sum(tf.cast(finite, tf.float32), -1), 1.0))
        return Neighbours(mean, ids, centre_d, mean_d)

    compiled = vae.inference()  # traced graphs, shared by every LatentModel of this VAE
    return LatentModel(
        encode=compiled.encode,
        transform=compiled.transform,
        decode=compiled.decode,
        knn=knn,
        num_subspaces=vae.cfg.num_subspaces,
        latent_dim=vae.cfg.latent_dim,
        num_clusters=index.num_clusters,
        latent_scale=index.latent_std(),
    )
