"""A rate–distortion table of an autoencoder config over several code sizes, one command.

    python -m genjax.evaluate.rate_distortion --config=configs/ae.py \
        [--workdir=runs/ae_rate_distortion] [--code_sizes=2,4,8,16,32] [--config.FIELD=VALUE ...]

A command above the training loop (it trains several runs; nothing in the library
imports it): it trains the config once per code size n (model.latent_dim = n) in
<workdir>/latent_<n> through the ordinary training loop (so a rerun resumes, and
finished sizes are only evaluated), evaluates each with the autoencoder protocol
(`autoencoding`, as the task declares it, without the sample quality), and prints and
writes <workdir>/rate_distortion.json: per n, the code's bits (8 per dimension,
quantised), the compression ratio, test MSE and PSNR (of the float code and of the
quantised one), PCA with n components as the linear baseline, and the linear-probe
accuracy and k-means NMI of the codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from genjax import tasks
from genjax.errors import ConfigError
from genjax.evaluate.autoencoding import QUANTISATION_BITS, AutoencoderEvaluator
from genjax.loop import train_and_evaluate
from genjax.run import load_run

DEFAULT_CODE_SIZES = (2, 4, 8, 16, 32)


def rate_distortion(config, workdir, code_sizes=DEFAULT_CODE_SIZES) -> dict:
    """Trains and evaluates `config` at each code size; returns (and writes) the table."""
    if config.task != "autoencoder":
        raise ConfigError(f"A rate-distortion table trains autoencoders, but the config's task "
                          f"is {config.task!r}. Use configs/ae.py (or a config derived from it).")
    if not code_sizes or any(n < 1 for n in code_sizes):
        raise ConfigError(f"--code_sizes must be positive integers, got {list(code_sizes)}.")
    tasks.validate(config)
    workdir = Path(workdir)
    evaluator = None
    rows = []
    for n in code_sizes:
        run_config = config.copy_and_resolve_references()
        run_config.unlock()
        run_config.model.latent_dim = int(n)
        run_config.eval_every_steps = 0  # evaluated below, once, with one shared evaluator
        run_config.lock()
        run_dir = workdir / f"latent_{n}"
        print(f"--- code size {n}: {run_dir}", flush=True)
        train_and_evaluate(run_config, run_dir)
        _, task, state = load_run(run_dir)
        entry = task.evaluators["autoencoding"]
        if evaluator is None:  # the test and training images are the same for every size
            evaluator = AutoencoderEvaluator.from_entry(
                run_config, tasks.data_spec(run_config),
                entry._replace(options={**entry.options, "sample_quality": False}))
        result = evaluator(entry.functions, state, int(state.step))
        c, f = result["compression"], result.get("features", {})
        rows.append({"code_size": int(n), **{k: c[k] for k in (
            f"code_bits_{QUANTISATION_BITS}bit", "image_bits", "compression_ratio", "mse",
            "psnr", f"psnr_{QUANTISATION_BITS}bit", "pca_mse", "pca_psnr")},
            "probe_accuracy": f.get("codes", {}).get("linear_probe_accuracy"),
            "kmeans_nmi": f.get("codes", {}).get("kmeans_nmi"),
            "workdir": str(run_dir), "step": int(state.step)})
    table = {"rows": rows, "protocol": evaluator.protocol(), "config": config.to_dict()}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rate_distortion.json").write_text(json.dumps(table, indent=2, sort_keys=True))
    return table


def format_table(table: dict) -> str:
    q = QUANTISATION_BITS
    head = (f"{'n':>4} {f'bits ({q}/dim)':>13} {'ratio':>7} {'MSE':>8} {'PSNR dB':>8} "
            f"{f'PSNR {q}bit':>10} {'PCA PSNR':>9} {'probe':>6} {'NMI':>6}")
    lines = [head]
    for r in table["rows"]:
        probe = "" if r["probe_accuracy"] is None else f"{r['probe_accuracy']:.3f}"
        nmi = "" if r["kmeans_nmi"] is None else f"{r['kmeans_nmi']:.3f}"
        lines.append(f"{r['code_size']:>4} {r[f'code_bits_{q}bit']:>13} "
                     f"{r['compression_ratio']:>7.1f} {r['mse']:>8.4f} {r['psnr']:>8.2f} "
                     f"{r[f'psnr_{q}bit']:>10.2f} {r['pca_psnr']:>9.2f} {probe:>6} {nmi:>6}")
    return "\n".join(lines)


def main(argv=None) -> None:
    from absl import app, flags, logging
    from ml_collections import config_flags

    from genjax.cli import parse_flags

    config_flags.DEFINE_config_file("config", None, "An autoencoder config (configs/ae.py).",
                                    lock_config=True)
    flags.DEFINE_string("workdir", "runs/ae_rate_distortion",
                        "Parent folder; each code size trains in <workdir>/latent_<n>.")
    flags.DEFINE_list("code_sizes", [str(n) for n in DEFAULT_CODE_SIZES],
                      "Code sizes n (model.latent_dim) to train and measure.")
    flags.mark_flags_as_required(["config"])
    FLAGS = flags.FLAGS

    def run(_):
        if not FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        from genjax.errors import GenjaxError

        try:
            sizes = [int(n) for n in FLAGS.code_sizes]
        except ValueError:
            print(f"error: --code_sizes must be a comma-separated list of integers, got "
                  f"{','.join(FLAGS.code_sizes)!r}.", file=sys.stderr)
            sys.exit(2)
        try:
            table = rate_distortion(FLAGS.config, FLAGS.workdir, sizes)
        except GenjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(format_table(table))
        print(f"Wrote {Path(FLAGS.workdir) / 'rate_distortion.json'}")

    app.run(run, argv, flags_parser=parse_flags)


if __name__ == "__main__":
    main()
