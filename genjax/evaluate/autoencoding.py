"""The 'autoencoding' measurement: compression, features, likelihood, samples.

A task declares it as Evaluation('autoencoding', {'encode', 'decode'[, 'log_likelihood',
'sample']}, {'likelihood': bool, 'iw_samples': k, 'sample_quality': bool}) (the
autoencoder and the VAE do). Protocol (`AutoencoderEvaluator`), all in evaluation mode
(BatchNorm running averages, no dropout, a VAE's code is its posterior mean):
  * test images: eval.split (default 'test'), all of it up to 10,000 (a subset fixed by
    eval.seed beyond); training images: dataset.split, likewise. Both preprocessed
    exactly as training batches are.
  * compression: reconstruction MSE of the test images in [-1, 1] units and PSNR =
    10·log10(2² / MSE) dB (= 255² / MSE in uint8 units); the bits of the code z (n float32
    numbers = 32n bits, or 8n bits with each dimension quantised uniformly to 256 levels
    between its test-set minimum and maximum, whose MSE/PSNR are reported too) against
    the bits of the image (8 per pixel and channel); and the linear baseline: PCA with n
    components fitted on the training images.
  * features (datasets with labels): `features.feature_report`: linear-probe accuracy
    (train -> test) and k-means NMI (test) of the codes, beside raw pixels and PCA of the
    pixels with as many dimensions as the code.
  * likelihood (option 'likelihood', a VAE's `log_likelihood`): per test image, the ELBO
    (closed-form KL, reconstruction term averaged over k posterior samples) and the
    importance-weighted bound with the same k = iw_samples samples (Burda et al. 2016),
    in nats per image and bits per dimension. With a Bernoulli decoder on grey-level
    images these are the usual cross-entropy bounds, not densities of discrete data.
  * sample quality (option 'sample_quality', a VAE's `sample`): the GAN protocol of
    `generative.GenerativeEvaluator` on prior samples (Fréchet distance, KID,
    precision/recall in a genjax classifier's features), when that classifier exists;
    otherwise the result says how to train it.
"""

from __future__ import annotations

import math
import time

import jax
import ml_collections
import numpy as np
from sklearn.decomposition import PCA

from genjax import data
from genjax.checkpoint import Quality, library_versions
from genjax.errors import GenjaxError
from genjax.evaluate import features as features_lib
from genjax.evaluate.extractors import ClassifierExtractor, Extractor
from genjax.evaluate.generative import (MAX_SAMPLES, GenerativeEvaluator,
                                        default_classifier_workdir, eval_settings)

QUANTISATION_BITS = 8


def psnr(mse: float) -> float:
    """PSNR in dB of an MSE in [-1, 1] units (peak-to-peak 2)."""
    return float(10.0 * math.log10(4.0 / mse)) if mse > 0 else float("inf")


def quantise(codes: np.ndarray, bits: int = QUANTISATION_BITS) -> np.ndarray:
    """Each dimension rounded to one of 2^bits levels spread evenly between its minimum
    and maximum over `codes` (the uniform scalar quantiser a codec would use)."""
    lo, hi = codes.min(0), codes.max(0)
    scale = np.where(hi > lo, (hi - lo) / (2 ** bits - 1), 1.0)
    return (np.rint((codes - lo) / scale) * scale + lo).astype(np.float32)


def compression_report(functions, state, images: np.ndarray,
                       codes: np.ndarray | None = None) -> dict:
    """Reconstruction error and bits of `images` through `functions['encode']` and
    `functions['decode']` (a task's, or the task itself); `codes` if already known."""
    encode, decode = _function(functions, "encode"), _function(functions, "decode")
    codes = np.asarray(encode(state, images)) if codes is None else codes
    mse = float(np.mean(np.square(np.asarray(decode(state, codes)) - images)))
    mse_q = float(np.mean(np.square(np.asarray(decode(state, quantise(codes))) - images)))
    n, pixels = codes.shape[1], int(np.prod(images.shape[1:]))
    return {"mse": mse, "psnr": psnr(mse), "code_dims": n, "image_values": pixels,
            "code_bits_float32": 32 * n, f"code_bits_{QUANTISATION_BITS}bit": QUANTISATION_BITS * n,
            "image_bits": 8 * pixels,
            "compression_ratio": 8 * pixels / (QUANTISATION_BITS * n),
            f"mse_{QUANTISATION_BITS}bit": mse_q, f"psnr_{QUANTISATION_BITS}bit": psnr(mse_q)}


def _function(functions, name: str):
    return functions[name] if isinstance(functions, dict) else getattr(functions, name)


def pca_mse(train_images: np.ndarray, test_images: np.ndarray, dims: int, seed: int) -> float:
    """Test MSE of the linear baseline at the same code size: PCA with `dims` components
    fitted on the training images, test images projected and mapped back."""
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    dims = min(dims, *flat(train_images).shape)
    pca = PCA(n_components=dims, random_state=seed).fit(flat(train_images))
    test = flat(test_images)
    return float(np.mean(np.square(pca.inverse_transform(pca.transform(test)) - test)))


def _optional_extractor(config) -> tuple[Extractor | None, str]:
    """The classifier for a VAE's sample quality, or (None, why not)."""
    try:
        return ClassifierExtractor.from_workdir(default_classifier_workdir(config),
                                                config.dataset.name), ""
    except GenjaxError as e:
        return None, str(e)


class AutoencoderEvaluator:
    """The protocol of the module docstring; the real images are read once, at construction."""

    kind = "autoencoder"

    def __init__(self, config: ml_collections.ConfigDict, spec: data.DataSpec,
                 extractor: Extractor | None = None, *, num: int | None = None,
                 seed: int | None = None, likelihood: bool = False, iw_samples: int = 1,
                 sample_quality: bool = False, decoder: str = ""):
        settings = eval_settings(config)
        self.config = config
        self.seed = int(settings["seed"] if seed is None else seed)
        self.split = settings["split"]
        self.likelihood, self.iw_samples, self.decoder = likelihood, int(iw_samples), decoder
        test = data.load_split(spec, self.split, MAX_SAMPLES, self.seed)
        train = data.load_split(spec, spec.split, MAX_SAMPLES, self.seed)
        self.test_images, self.test_labels = test["image"], test["label"]
        self.train_images, self.train_labels = train["image"], train["label"]
        self.labelled = np.unique(self.test_labels).size > 1
        self.generative, self.skipped = None, "only a VAE generates images"
        self.sample_quality = sample_quality
        if sample_quality:
            if extractor is None:
                extractor, self.skipped = _optional_extractor(config)
            if extractor is not None:
                self.generative = GenerativeEvaluator(config, spec, extractor, num=num,
                                                      seed=seed)

    @classmethod
    def from_entry(cls, config, spec, entry, *, extractor: Extractor | None = None,
                   extractor_workdir=None, num=None, seed=None, **_):
        """The measurement a task's Evaluation('autoencoding', ...) declares."""
        options = dict(entry.options)
        if extractor is None and extractor_workdir:
            extractor = ClassifierExtractor.from_workdir(extractor_workdir, config.dataset.name)
        return cls(config, spec, extractor, num=num, seed=seed,
                   likelihood=bool(options.get("likelihood", False)),
                   iw_samples=int(options.get("iw_samples", 1)),
                   sample_quality=bool(options.get("sample_quality", False)),
                   decoder=str(options.get("decoder", "")))

    @property
    def quality(self) -> Quality:
        """The figure of the best checkpoint: a VAE's test IWAE bound (its likelihood, what
        it is trained for), an autoencoder's reconstruction PSNR; higher is better."""
        return Quality("eval/iwae" if self.likelihood else "eval/psnr", "max")

    def protocol(self) -> dict:
        c = self.config
        out = {"dataset": c.dataset.name, "image_size": c.image_size,
               "test_split": self.split, "train_split": c.dataset.split,
               "num_test": int(self.test_images.shape[0]),
               "num_train": int(self.train_images.shape[0]), "seed": self.seed,
               "mode": "eval (BatchNorm running averages, no dropout); VAE codes are "
                       "posterior means",
               "psnr": "10 log10(2^2 / MSE), images in [-1, 1]",
               "quantisation": f"{QUANTISATION_BITS} bits per code dimension, uniform between "
                               "its test-set min and max",
               "versions": library_versions()}
        if self.likelihood:
            out["likelihood"] = {"k": self.iw_samples, "decoder": self.decoder,
                                 "elbo": "closed-form KL, reconstruction averaged over k "
                                         "samples of q(z|x)",
                                 "iwae": "log mean_j p(x|z_j) p(z_j) / q(z_j|x), same samples"}
        return out

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        test_codes = np.asarray(functions["encode"](state, self.test_images))
        compression = compression_report(functions, state, self.test_images, test_codes)
        compression["pca_mse"] = pca_mse(self.train_images, self.test_images,
                                         compression["code_dims"], self.seed)
        compression["pca_psnr"] = psnr(compression["pca_mse"])
        result = {"kind": "autoencoder", "task": self.config.task, "step": int(step),
                  "compression": compression}
        if self.labelled:
            result["features"] = features_lib.feature_report(
                np.asarray(functions["encode"](state, self.train_images)), self.train_labels,
                test_codes, self.test_labels,
                self.train_images, self.test_images, seed=self.seed)
        if self.likelihood:
            bounds = functions["log_likelihood"](state, self.test_images,
                                                 jax.random.key(self.seed), self.iw_samples)
            dims = int(np.prod(self.test_images.shape[1:]))
            means = {k: float(np.mean(v)) for k, v in bounds.items()}
            result["likelihood"] = {
                "elbo_nats": means["elbo"], "iwae_nats": means["iwae"], "k": self.iw_samples,
                "reconstruction_nats": -means["reconstruction"], "kl_nats": means["kl"],
                "iwae_bits_per_dim": -means["iwae"] / (dims * math.log(2.0))}
        if self.generative is not None:
            quality = self.generative(functions, state, step)
            result["sample_quality"] = {k: quality[k] for k in ("generated", "floor", "protocol")}
        elif self.sample_quality:
            result["sample_quality"] = {"skipped": self.skipped}
        result["protocol"] = self.protocol()
        result["seconds"] = round(time.perf_counter() - start, 2)
        return result


def scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars of an autoencoder result."""
    c = result["compression"]
    out = {"eval/mse": c["mse"], "eval/psnr": c["psnr"],
           f"eval/psnr_{QUANTISATION_BITS}bit": c[f"psnr_{QUANTISATION_BITS}bit"]}
    for name in ("codes", "pixels", "pca"):
        if name in result.get("features", {}):
            f = result["features"][name]
            out[f"eval/probe_{name}"] = f["linear_probe_accuracy"]
            out[f"eval/nmi_{name}"] = f["kmeans_nmi"]
    if "likelihood" in result:
        out["eval/elbo"] = result["likelihood"]["elbo_nats"]
        out["eval/iwae"] = result["likelihood"]["iwae_nats"]
    for k, v in result.get("sample_quality", {}).get("generated", {}).items():
        out[f"eval/{k}"] = v
    return out


def table(result: dict) -> str:
    """The printed summary of `python -m genjax.evaluate` for an autoencoder run."""
    c, p = result["compression"], result["protocol"]
    q = QUANTISATION_BITS
    lines = [f"step {result['step']} ({result['task']}) on {p['num_test']} "
             f"{p['dataset']}/{p['test_split']} images",
             f"compression: code {c['code_dims']} numbers ({c[f'code_bits_{q}bit']} bits at "
             f"{q} bits each) for {c['image_bits']} image bits, ratio "
             f"{c['compression_ratio']:.1f}; MSE {c['mse']:.4g}, PSNR {c['psnr']:.2f} dB "
             f"(quantised: {c[f'psnr_{q}bit']:.2f} dB; PCA with as many components: "
             f"{c['pca_psnr']:.2f} dB)"]
    if "features" in result:
        lines.append(f"{'features':>10} {'dims':>6} {'probe acc':>10} {'k-means NMI':>12}")
        for name in ("codes", "pixels", "pca"):
            f = result["features"][name]
            lines.append(f"{name:>10} {f['dims']:>6} {f['linear_probe_accuracy']:>10.4f} "
                         f"{f['kmeans_nmi']:>12.4f}")
    if "likelihood" in result:
        lk = result["likelihood"]
        lines.append(f"likelihood: ELBO {lk['elbo_nats']:.2f} nats/image, IWAE (k={lk['k']}) "
                     f"{lk['iwae_nats']:.2f} nats/image ({lk['iwae_bits_per_dim']:.4f} "
                     f"bits/dim); KL {lk['kl_nats']:.2f}")
    sq = result.get("sample_quality", {})
    if "generated" in sq:
        g, f = sq["generated"], sq["floor"]
        lines.append(f"samples: FD {g['fd']:.3g} (floor {f['fd']:.3g}), KID {g['kid']:.3g}, "
                     f"precision {g['precision']:.3f}, recall {g['recall']:.3f}")
    elif "skipped" in sq:
        lines.append(f"samples: not measured: {sq['skipped']}")
    return "\n".join(lines)


AutoencoderEvaluator.scalars = staticmethod(scalars)
AutoencoderEvaluator.table = staticmethod(table)
