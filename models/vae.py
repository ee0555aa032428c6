"""The RSE-RL variational autoencoder: encoder, latent transform T and decoder per YUV subspace.

Layout (the sizes of the authors' released CelebA model):
- encoder per subspace: conv 16 -> 32/s2 -> 64/s2 -> 72 (3x3, ReLU, 'same'),
  BatchNorm, flatten, dense 128 ReLU, heads `mean` and `logvar` (latent_dim each).
  With `shared_encoder=True` one encoder reads the 3-channel patch and carries
  3 pairs of heads (the paper's figure).
- latent transform T per subspace: 3 dense latent -> latent layers, ReLU between.
- decoder per subspace: dense -> (b/4, b/4, 256) -> transposed convs 72, 48/s2,
  32, 16/s2 -> `decoder_out_channels` (sigmoid); channel 0 is the patch.

Tensor layout of the public methods: patches (P, b, b, S) with S = len(channels)
subspaces (YUV in [0, 1]); latents (P, S, latent_dim), one row per subspace.
The denoiser is f(x) = decode(T(mean(x))) (deterministic; sampling only in training).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from data.color import from_model_space, to_model_space
from data.errors import ConfigError, DataError
from data.images import to_float
from data.patches import check_patch_settings, map_patches
from models import equivariance


PRECISIONS = ("float32", "mixed_bfloat16")
NATIVE_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # Linux /proc/cpuinfo names


def native_bfloat16_cpu(cpuinfo: str | None = None) -> bool:
    """True on a CPU that computes bfloat16 natively (x86 AVX512-BF16 or AMX, as Linux reports it);
    elsewhere bfloat16 is emulated and slower than float32. `cpuinfo`: /proc/cpuinfo's text (read
    when None; False where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return any(flag in flags for flag in NATIVE_BFLOAT16_CPU_FLAGS)


def inference_precision(choice: str) -> str:
    """A compute policy for applying a trained VAE: `choice`, or for "auto" mixed_bfloat16 on a CPU-only
    machine whose CPU has native bfloat16 (measured there: 1.6x float32's patches/s, -0.007 dB,
    docs/vae.md "Precision and speed"), float32 elsewhere (GPUs: unmeasured; other CPUs: emulated)."""
    if choice != "auto":
        return choice
    if tf.config.list_physical_devices("GPU") or not native_bfloat16_cpu():
        return "float32"
    return "mixed_bfloat16"


# VAEConfig fields that only change how a model is trained or computed, not its variables or function.
TRAINING_FIELDS = ("bn_momentum", "lambda_kl", "lambda_latent", "lambda_clean", "lambda_eq", "eq_fraction",
                   "sample_std", "precision", "logvar_bias_init")


@dataclass
class VAEConfig:
    """Architecture and loss weights. Defaults: the authors' sizes, our activations (see docs/vae.md)."""

    block_size: int = 16
    latent_dim: int = 72
    channels: tuple[str, ...] = ("Y", "U", "V")
    shared_encoder: bool = False
    conv_filters: tuple[int, ...] = (16, 32, 64, 72)
    conv_strides: tuple[int, ...] = (1, 2, 2, 1)
    dense_units: int = 128
    bn_momentum: float = 0.9  # authors: 0.99 (Keras default), for long runs; short runs need the statistics to catch up
    # BatchNorm always in inference mode with its stored statistics (and its scale and offset not
    # trained): how the authors' released VAEs were trained (their moving statistics are still the
    # initial 0 and 1), so fine-tuning them keeps the function they learned (docs/vae.md).
    freeze_batch_norm: bool = False
    logvar_activation: str = "linear"  # authors: "softplus"
    # Initial bias of the log-variance heads. -6 (std 0.05): the first steps' latent samples carry
    # the means, not unit noise, so the decoder of a low-variance subspace (U, V of real photos)
    # learns to read them instead of collapsing to a constant (docs/vae.md). 0: Keras's default.
    logvar_bias_init: float = -6.0
    transform_layers: int = 3
    transform_last_activation: str = "linear"  # authors: "relu"
    decoder_channels: int = 256
    deconv_filters: tuple[int, ...] = (72, 48, 32, 16)
    deconv_strides: tuple[int, ...] = (1, 2, 1, 2)
    decoder_out_channels: int = 1  # authors: 3, only channel 0 used
    # Loss weights (per patch: reconstruction is a sum over pixels, KL a sum over latent dims).
    lambda_kl: float = 1e-3
    lambda_latent: float = 1e-2
    lambda_clean: float = 1.0
    lambda_eq: float = 0.1  # weight of the D4 equivariance loss (0: off)
    eq_fraction: float = 1.0  # share of each batch the D4 loss is computed on (scaled to stay unbiased)
    sample_std: float = 1.0
    # Keras dtype policy of every layer: "mixed_bfloat16" computes in bfloat16 with float32 variables;
    # the model's outputs, the losses and the KL are float32 either way (see docs/vae.md for the speed).
    precision: str = "float32"

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        for name in ("conv_filters", "conv_strides", "deconv_filters", "deconv_strides"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        down = int(np.prod(self.conv_strides))
        up = int(np.prod(self.deconv_strides))
        if self.block_size % up or self.block_size % down:
            raise ConfigError(f"--block_size {self.block_size} must be divisible by {max(up, down)} for this architecture")
        if self.latent_dim < 1:
            raise ConfigError(f"--latent_dim must be positive, got {self.latent_dim}")
        if not self.channels:
            raise ConfigError("VAEConfig.channels must name at least one subspace")
        if not 0.0 < self.eq_fraction <= 1.0:
            raise ConfigError(f"--eq_fraction must be in (0, 1], got {self.eq_fraction}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")

    @property
    def num_subspaces(self) -> int:
        return len(self.channels)

    def with_layout_of(self, saved: "VAEConfig") -> "VAEConfig":
        """`saved`'s network (every field that shapes the variables or the function) with this config's
        training settings (`TRAINING_FIELDS`): the config for fine-tuning a saved model."""
        return dataclasses.replace(saved, **{name: getattr(self, name) for name in TRAINING_FIELDS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DataError(f"model config: unknown keys {sorted(unknown)}")
        return cls(**d)


def _encoder_trunk(cfg: VAEConfig, inputs, prefix: str):
    x = inputs
    for i, (f, s) in enumerate(zip(cfg.conv_filters, cfg.conv_strides)):
        x = keras.layers.Conv2D(f, 3, strides=s, padding="same", activation="relu", name=f"{prefix}conv{i}",
                                dtype=cfg.precision)(x)
    bn = keras.layers.BatchNormalization(epsilon=1e-3, momentum=cfg.bn_momentum, name=f"{prefix}bn",
                                         dtype=cfg.precision)
    bn.trainable = not cfg.freeze_batch_norm  # Keras 3: a non-trainable BatchNorm runs in inference mode
    x = bn(x)
    x = keras.layers.Flatten(name=f"{prefix}flatten", dtype=cfg.precision)(x)
    return keras.layers.Dense(cfg.dense_units, activation="relu", name=f"{prefix}dense", dtype=cfg.precision)(x)


def build_encoder(cfg: VAEConfig, name: str, in_channels: int = 1, heads: int = 1) -> keras.Model:
    """Encoder with `heads` (mean, logvar) pairs; outputs (mean, logvar), each (P, heads, latent)."""
    inputs = keras.Input((cfg.block_size, cfg.block_size, in_channels), name=f"{name}_in")
    h = _encoder_trunk(cfg, inputs, f"{name}_")
    means, logvars = [], []
    for j in range(heads):
        sfx = f"_{j}" if heads > 1 else ""
        means.append(keras.layers.Dense(cfg.latent_dim, name=f"{name}_mean{sfx}", dtype=cfg.precision)(h))
        logvars.append(keras.layers.Dense(cfg.latent_dim, activation=cfg.logvar_activation,
                                          bias_initializer=keras.initializers.Constant(cfg.logvar_bias_init),
                                          name=f"{name}_logvar{sfx}", dtype=cfg.precision)(h))
    stack = keras.layers.Lambda(lambda t: keras.ops.stack(t, axis=1), name=f"{name}_stack_mean", dtype=cfg.precision)
    stack_lv = keras.layers.Lambda(lambda t: keras.ops.stack(t, axis=1), name=f"{name}_stack_logvar",
                                   dtype=cfg.precision)
    return keras.Model(inputs, [stack(means), stack_lv(logvars)], name=name)


def build_transform(cfg: VAEConfig, name: str) -> keras.Model:
    """T: noisy latent -> clean latent, `transform_layers` dense layers."""
    inputs = keras.Input((cfg.latent_dim,), name=f"{name}_in")
    x = inputs
    for i in range(cfg.transform_layers):
        last = i == cfg.transform_layers - 1
        act = cfg.transform_last_activation if last else "relu"
        x = keras.layers.Dense(cfg.latent_dim, activation=act, name=f"{name}_dense{i}", dtype=cfg.precision)(x)
    return keras.Model(inputs, x, name=name)


def build_decoder(cfg: VAEConfig, name: str) -> keras.Model:
    """Decoder latent -> (b, b, decoder_out_channels) in (0, 1)."""
    base = cfg.block_size // int(np.prod(cfg.deconv_strides))
    inputs = keras.Input((cfg.latent_dim,), name=f"{name}_in")
    x = keras.layers.Dense(base * base * cfg.decoder_channels, activation="relu", name=f"{name}_dense",
                           dtype=cfg.precision)(inputs)
    x = keras.layers.Reshape((base, base, cfg.decoder_channels), name=f"{name}_reshape", dtype=cfg.precision)(x)
    for i, (f, s) in enumerate(zip(cfg.deconv_filters, cfg.deconv_strides)):
        x = keras.layers.Conv2DTranspose(f, 3, strides=s, padding="same", activation="relu", name=f"{name}_deconv{i}",
                                         dtype=cfg.precision)(x)
    x = keras.layers.Conv2DTranspose(
        cfg.decoder_out_channels, 3, padding="same", activation="sigmoid", name=f"{name}_out", dtype=cfg.precision
    )(x)
    return keras.Model(inputs, x, name=name)


class RSEVAE(keras.Model):
    """Encoders, transforms and decoders of all subspaces, with patch-batch methods.

    `encode`, `transform`, `decode` and `denoise_patches` each process the whole
    batch per subspace in one call (the only Python loop is over the S subspaces).
    They take and return float32 whatever `cfg.precision` (the layers compute in it).
    """

    def __init__(self, cfg: VAEConfig, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        names = [c.lower() for c in cfg.channels]
        if cfg.shared_encoder:
            self.encoders = [build_encoder(cfg, "encoder", in_channels=cfg.num_subspaces, heads=cfg.num_subspaces)]
        else:
            self.encoders = [build_encoder(cfg, f"encoder_{n}") for n in names]
        self.transforms = [build_transform(cfg, f"transform_{n}") for n in names]
        self.decoders = [build_decoder(cfg, f"decoder_{n}") for n in names]
        self._compiled: CompiledInference | None = None
        self.built = True

    def submodels(self) -> dict[str, keras.Model]:
        """Name -> Keras model of every part (what tf.train.Checkpoint tracks; Keras 3 lists are not)."""
        return {m.name: m for m in [*self.encoders, *self.transforms, *self.decoders]}

    # -- the three stages -------------------------------------------------------------------
    def encode(self, patches, training: bool = False):
        """(P, b, b, S) patches -> (mean, logvar), each (P, S, latent)."""
        patches = tf.convert_to_tensor(patches, tf.float32)
        self._check_patches(patches)
        if self.cfg.shared_encoder:
            mean, logvar = self.encoders[0](patches, training=training)
            return tf.cast(mean, tf.float32), tf.cast(logvar, tf.float32)
        outs = [enc(patches[..., s:s + 1], training=training) for s, enc in enumerate(self.encoders)]
        mean = tf.concat([tf.cast(o[0], tf.float32) for o in outs], axis=1)
        logvar = tf.concat([tf.cast(o[1], tf.float32) for o in outs], axis=1)
        return mean, logvar

    def sample(self, mean, logvar, std: float | None = None, rng: tf.random.Generator | None = None):
        """Reparameterised z = mean + std * exp(logvar / 2) * eps.

        Pass `rng` (a seeded tf.random.Generator) for draws that repeat exactly from run to
        run; the global-seed op `tf.random.normal` is not reproducible across processes.
        """
        std = self.cfg.sample_std if std is None else std
        if std == 0:
            return mean
        shape = tf.shape(mean)
        eps = rng.normal(shape, dtype=mean.dtype) if rng is not None else tf.random.normal(shape, dtype=mean.dtype)
        return mean + std * tf.exp(0.5 * logvar) * eps

    def transform(self, z, training: bool = False):
        """(P, S, latent) noisy latents -> (P, S, latent) clean-latent estimates T(z)."""
        z = tf.convert_to_tensor(z, tf.float32)
        return tf.stack([tf.cast(t(z[:, s], training=training), tf.float32) for s, t in enumerate(self.transforms)],
                        axis=1)

    def decode(self, z, training: bool = False):
        """(P, S, latent) latents -> (P, b, b, S) patches (channel 0 of each decoder)."""
        z = tf.convert_to_tensor(z, tf.float32)
        return tf.concat([tf.cast(d(z[:, s], training=training)[..., :1], tf.float32)
                          for s, d in enumerate(self.decoders)], axis=-1)

    # -- the denoiser ---------------------------------------------------------------------------
    def denoise_fn(self, patches, training: bool = False):
        """f(x) = decode(T(mean(x))): the deterministic patch denoiser."""
        mean, _ = self.encode(patches, training=training)
        return self.decode(self.transform(mean, training=training), training=training)

    def denoise_patches(self, patches, symmetrise: bool = False):
        """Denoised patches (P, b, b, S); symmetrise=True gives the exactly D4-equivariant mean."""
        patches = tf.convert_to_tensor(patches, tf.float32)
        if symmetrise:
            return equivariance.symmetrise(self.denoise_fn, patches)
        return self.denoise_fn(patches)

    def call(self, patches, training: bool = False):
        return self.denoise_fn(patches, training=training)

    def inference(self) -> "CompiledInference":
        """The compiled inference functions of this model (built once, then reused)."""
        if self._compiled is None:
            self._compiled = CompiledInference(self)
        return self._compiled

    def _check_patches(self, patches) -> None:
        b, s = self.cfg.block_size, self.cfg.num_subspaces
        if patches.shape.rank != 4 or tuple(patches.shape[1:]) != (b, b, s):
            raise DataError(f"RSEVAE expects patches of shape (P, {b}, {b}, {s}), got {tuple(patches.shape)}")

    # -- losses -----------------------------------------------------------------------------------
    def losses_per_patch(self, noisy, clean, g_index=None, training: bool = True, rng=None, kl_weight=None) -> dict:
        """Per-patch loss terms (each (P,), summed over subspaces) and their weighted `total`.

        `kl_weight` replaces `cfg.lambda_kl` in `total` (a scalar tensor: the KL warm-up of
        `models.training.kl_weight_at` ramps it from 0).

        - recon: ||decode(T(z_noisy)) - clean||^2, z_noisy sampled (reparameterised)
        - clean: ||decode(z_clean) - clean||^2, so clean latents decode (the cluster bank uses them)
        - kl: KL(q(z|noisy) || N(0, I)) + KL(q(z|clean) || N(0, I))
        - latent: ||T(z_noisy) - stop_gradient(mean(clean))||^2
        - eq (if lambda_eq > 0 and g_index given): ||f(g x) - g f(x)||^2 on the first `eq_fraction` of
          the noisy batch (batches are shuffled, so a random subset), divided by the fraction so that
          its batch mean estimates the full term; 0 on the other patches. Why a subset: the term
          encodes and decodes extra rows; docs/vae.md has what it costs and returns.
        """
        cfg = self.cfg
        noisy = tf.convert_to_tensor(noisy, tf.float32)
        clean = tf.convert_to_tensor(clean, tf.float32)
        n = tf.shape(noisy)[0]
        use_eq = cfg.lambda_eq > 0 and g_index is not None
        parts = [noisy, clean]
        if use_eq:
            m = n if cfg.eq_fraction >= 1.0 else tf.maximum(
                1, tf.cast(tf.math.ceil(cfg.eq_fraction * tf.cast(n, tf.float32)), tf.int32))
            parts.append(equivariance.transform_by_tensor(noisy[:m], g_index))
        # One encoder pass over all inputs (BatchNorm sees one batch).
        mean_all, logvar_all = self.encode(tf.concat(parts, axis=0), training=training)
        mean_n, mean_c = mean_all[:n], mean_all[n:2 * n]
        logvar_n, logvar_c = logvar_all[:n], logvar_all[n:2 * n]
        z_n = self.sample(mean_n, logvar_n, rng=rng)
        z_c = self.sample(mean_c, logvar_c, rng=rng)
        # One transform pass and one decoder pass per subspace over every latent the terms need:
        # [T(z_n); T(eq means); z_c], so the decoders run on one large batch rather than three
        # (the decoders and transforms have no BatchNorm, so this is the same function; 1.2x the
        # step's speed in mixed bfloat16, docs/vae.md "One decoder pass per step").
        # Decoding latent means (sample_std 0), z_n is mean_n: f(x) of the eq term is then decoded[:m].
        reuse_f_x = cfg.sample_std == 0
        to_transform = [z_n]
        if use_eq:
            to_transform.append(mean_all[2 * n:] if reuse_f_x else tf.concat([mean_n[:m], mean_all[2 * n:]], axis=0))
        t_all = self.transform(tf.concat(to_transform, axis=0), training=training)
        t_n = t_all[:n]
        decoded = self.decode(tf.concat([t_all, z_c], axis=0), training=training)
        sse = lambda a, b: tf.reduce_sum(tf.square(a - b), axis=[1, 2, 3])  # noqa: E731
        recon = sse(decoded[:n], clean)
        clean_recon = sse(decoded[tf.shape(t_all)[0]:], clean)
        kl_terms = lambda m, lv: -0.5 * tf.reduce_sum(1.0 + lv - tf.square(m) - tf.exp(lv), axis=[1, 2])  # noqa: E731
        kl = kl_terms(mean_n, logvar_n) + kl_terms(mean_c, logvar_c)
        latent = tf.reduce_sum(tf.square(t_n - tf.stop_gradient(mean_c)), axis=[1, 2])
        kl_weight = cfg.lambda_kl if kl_weight is None else kl_weight
        total = recon + cfg.lambda_clean * clean_recon + kl_weight * kl + cfg.lambda_latent * latent
        out = {"recon": recon, "clean": clean_recon, "kl": kl, "latent": latent}
        if use_eq:
            if reuse_f_x:
                f_x, f_gx = decoded[:m], decoded[n:n + m]
            else:
                f_x, f_gx = decoded[n:n + m], decoded[n + m:n + 2 * m]
            eq = sse(f_gx, equivariance.transform_by_tensor(f_x, g_index))
            if cfg.eq_fraction < 1.0:
                eq = tf.pad(eq * tf.cast(n, tf.float32) / tf.cast(m, tf.float32), [[0, n - m]])
            out["eq"] = eq
            total = total + cfg.lambda_eq * eq
        out["total"] = total
        return out


def padded_rows(rows: int, chunk: int) -> int:
    """Rows a chunk of `rows` (<= chunk) is zero-padded to: chunk itself, else the next power of two >= 64."""
    if rows >= chunk:
        return chunk
    return min(chunk, max(64, 1 << max(rows - 1, 0).bit_length()))


class CompiledInference:
    """Inference-mode encode, T, decode and denoise of an RSEVAE as traced graphs; numpy in and out.

    Why graphs: the eager methods pay Python and Keras dispatch on every layer call. Why not
    XLA (`jit_compile=True`, the default until 2026-12-04): on this CPU TensorFlow's own
    oneDNN kernels now run the traced graph faster, 1.32x in float32 and 2.08x in
    mixed_bfloat16 on a quiet machine (bench/vae.py times both; docs/vae.md). Patches go
    through in chunks of `chunk` rows; under XLA, which compiles once per input shape, the last
    chunk is zero-padded to a power of two (at least 64): a handful of shapes per function,
    whatever the image sizes (padding rows are independent of the real ones: BatchNorm uses
    its moving statistics). Traced graphs take any row count unpadded (`reduce_retracing`
    relaxes the row dimension after the second shape). The eager methods of RSEVAE stay the
    reference (training, gradients).
    """

    def __init__(self, model: RSEVAE, chunk: int = 1024, jit_compile: bool = False) -> None:
        self.model = model
        self.chunk = int(chunk)
        self.pad = bool(jit_compile)
        opts = dict(jit_compile=jit_compile, reduce_retracing=True)
        self._encode = tf.function(lambda x: model.encode(x)[0], **opts)
        self._transform = tf.function(model.transform, **opts)
        self._decode = tf.function(model.decode, **opts)
        self._denoise = tf.function(model.denoise_fn, **opts)
        self._denoise_sym = tf.function(lambda x: model.denoise_patches(x, symmetrise=True), **opts)

    def encode(self, patches) -> np.ndarray:
        """(P, b, b, S) patches -> (P, S, L) encoder means."""
        return self._run(self._encode, self._patches(patches))

    def transform(self, z) -> np.ndarray:
        """(P, S, L) -> (P, S, L) T(z)."""
        return self._run(self._transform, np.asarray(z, np.float32))

    def decode(self, z) -> np.ndarray:
        """(P, S, L) latents -> (P, b, b, S) patches."""
        return self._run(self._decode, np.asarray(z, np.float32))

    def denoise(self, patches, symmetrise: bool = False) -> np.ndarray:
        """f(x) = decode(T(mean(x))) of (P, b, b, S) patches; symmetrise=True: the exact D4 mean."""
        return self._run(self._denoise_sym if symmetrise else self._denoise, self._patches(patches))

    def _patches(self, patches) -> np.ndarray:
        x = np.asarray(patches, np.float32)
        self.model._check_patches(tf.TensorSpec(x.shape))
        return x

    def _run(self, fn, x: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, max(len(x), 1), self.chunk):
            part = x[start:start + self.chunk]
            rows = len(part)
            size = padded_rows(rows, self.chunk) if self.pad else max(rows, 1)  # (Conv2D rejects 0 rows)
            if size != rows:
                part = np.concatenate([part, np.zeros((size - rows, *x.shape[1:]), np.float32)])
            outs.append(fn(tf.constant(part)).numpy()[:rows])
        return np.concatenate(outs)


def build_vae(cfg: VAEConfig | None = None) -> RSEVAE:
    """A freshly initialised model (build it inside a tf.distribute strategy scope to train it distributed)."""
    return RSEVAE(cfg or VAEConfig())


# -- whole images ---------------------------------------------------------------------------------

def denoise_image(
    model: RSEVAE,
    image: np.ndarray,
    overlap: int = 4,
    symmetrise: bool = False,
    tile: int | None = 1024,
    batch_size: int = 4096,
) -> np.ndarray:
    """The VAE alone on one image: (H, W, C) uint8 or float [0, 1] -> float32 [0, 1], same shape.

    C = 3 (RGB, filtered in YUV) or 1 (grey), matching the model's subspaces. The one
    whole-image path (`data.patches.map_patches`): tiles of `tile` pixels bound the memory
    and give the output of one pass; `symmetrise=True` is the exact D4-equivariant mode.
    """
    rgb = to_float(image)
    if rgb.ndim != 3 or rgb.shape[2] != model.cfg.num_subspaces:
        raise DataError(f"denoise_image expects an (H, W, {model.cfg.num_subspaces}) image for this model, "
                        f"got shape {rgb.shape}")
    check_patch_settings(model.cfg.block_size, overlap)
    denoise = model.inference().denoise
    out = map_patches(to_model_space(rgb[None]), lambda p: denoise(p, symmetrise=symmetrise),
                      model.cfg.block_size, overlap, tile, batch_size)
    return from_model_space(out)[0]
