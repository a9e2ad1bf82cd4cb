"""Train the MuJoCo victim for the SA-PPO reproduction: Stable-Baselines3 PPO on Hopper-v5 (or another task).

Hyperparameters are rl-baselines3-zoo's tuned PPO for Hopper (``hyperparams/ppo.yml``): one env, observation
normalisation of observations and of rewards (the zoo's ``normalize: true``), n_steps 512, batch 32, 5 epochs,
lr 9.80828e-5, gamma 0.999, GAE 0.99, 256x256 ReLU nets, log-std init -2; ``--preset sb3`` takes SB3's PPO
defaults instead. Two zoo runs here (seed 0, without and with reward normalisation, 2026-12-02) both stood still:
their deterministic policies scored ~1,000 (1,000 steps of Hopper's alive bonus, no hopping) at every checkpoint to
750,000 and 800,000 steps; the small initial std (e^-2) explores little. ``--preset sb3`` (seed 0, same day) hops:
its deterministic policy scored about 3,270 over 1,000 steps at 400,000 steps (about 14 minutes on one core).

Writes into ``--out``: ``ppo.zip`` (SB3's format; read it back with ``agents.sb3_zip.read_sb3_zip``, never with
``PPO.load``, which unpickles), ``obs_normalization.json`` (the running mean and variance the policy was trained
on, as JSON instead of VecNormalize's pickle), ``progress.json`` and ``run.json`` (settings and provenance).
A checkpoint every ``--checkpoint-every`` steps (each kept under ``checkpoints/<step>/`` with
``--keep-checkpoints``); Ctrl-C or SIGTERM saves one and exits; ``--resume`` continues
from it (policy, optimiser, normalisation statistics and step count; the rollout in flight is lost).

    python benchmarks/train_mujoco_ppo.py --preset sb3 --steps 400000 --out runs/mujoco/hopper-ppo --keep-checkpoints
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.sb3_zip import read_sb3_zip
from rlrobust.runs import atomic_write_json, provenance, sigterm_as_interrupt

ZOO_PPO_HOPPER: dict[str, Any] = {
    "n_steps": 512,
    "batch_size": 32,
    "gamma": 0.999,
    "learning_rate": 9.80828e-05,
    "ent_coef": 0.00229519,
    "clip_range": 0.2,
    "n_epochs": 5,
    "gae_lambda": 0.99,
    "max_grad_norm": 0.7,
    "vf_coef": 0.835671,
}
POLICY_KWARGS = {"log_std_init": -2.0, "ortho_init": False, "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
#: ``zoo``: the tuned settings above; ``sb3``: SB3's PPO defaults (64x64 tanh, log-std 0, n_steps 2048, batch 64,
#: 10 epochs, lr 3e-4, gamma 0.99), closer to SA-PPO's own PPO (64x64 tanh, 2048 steps a batch).
PRESETS = ("zoo", "sb3")


def build(env_id: str, seed: int, preset: str = "zoo"):
    """A PPO learner on one normalised ``env_id`` (imports SB3 and MuJoCo only when called)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    gamma = ZOO_PPO_HOPPER["gamma"] if preset == "zoo" else 0.99
    venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_obs=True, norm_reward=True, gamma=gamma)
    if preset == "sb3":
        return PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0), venv
    kwargs = dict(POLICY_KWARGS, activation_fn=nn.ReLU)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", policy_kwargs=kwargs, verbose=0, **ZOO_PPO_HOPPER)
    return model, venv


def save(model, venv, out: Path, progress: dict[str, Any], keep: bool = False) -> None:
    """Model, normalisation statistics and progress, each written atomically (temp file, then rename); with
    ``keep``, also copied to ``checkpoints/<step>/`` (PPO on Hopper is not monotone: a later model can be worse)."""
    tmp = out / "ppo.tmp.zip"
    model.save(tmp)
    tmp.replace(out / "ppo.zip")
    rms = venv.obs_rms
    stats = {
        "mean": rms.mean.tolist(),
        "var": rms.var.tolist(),
        "count": float(rms.count),
        "epsilon": float(venv.epsilon),
        "clip_obs": float(venv.clip_obs),
        "note": "normalised observation = clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)",
        "return_rms": {"mean": float(venv.ret_rms.mean), "var": float(venv.ret_rms.var), "count": venv.ret_rms.count},
    }
    atomic_write_json(out / "obs_normalization.json", stats)
    atomic_write_json(out / "progress.json", progress)
    if keep:
        folder = out / "checkpoints" / str(progress["steps"])
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("ppo.zip", "obs_normalization.json", "progress.json"):
            shutil.copyfile(out / name, folder / name)


def restore(model, venv, out: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` (weights only, no unpickling)."""
    saved = read_sb3_zip(out / "ppo.zip", optimizer=True)
    model.policy.load_state_dict(saved.policy)
    if saved.optimizer is not None:
        model.policy.optimizer.load_state_dict(saved.optimizer)
    stats = json.loads((out / "obs_normalization.json").read_text())
    venv.obs_rms.mean = np.asarray(stats["mean"], dtype=np.float64)
    venv.obs_rms.var = np.asarray(stats["var"], dtype=np.float64)
    venv.obs_rms.count = stats["count"]
    if "return_rms" in stats:  # the reward scaler (training only; the policy never sees it)
        venv.ret_rms.mean = np.float64(stats["return_rms"]["mean"])
        venv.ret_rms.var = np.float64(stats["return_rms"]["var"])
        venv.ret_rms.count = stats["return_rms"]["count"]
    progress = json.loads((out / "progress.json").read_text())
    model.num_timesteps = int(progress["steps"])
    return progress


def train(args: argparse.Namespace) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    out = Path(args.out)
    if (out / "ppo.zip").exists() and not args.resume:
        raise SystemExit(f"error: {out} already holds a model; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    model, venv = build(args.env, args.seed, args.preset)
    progress: dict[str, Any] = {"steps": 0, "episodes": [], "seconds": 0.0}
    if args.resume and (out / "ppo.zip").exists():
        progress = restore(model, venv, out)
        print(f"resumed at step {progress['steps']}")
    settings = {
        "env": args.env,
        "steps": args.steps,
        "seed": args.seed,
        "ppo": ZOO_PPO_HOPPER,
        **POLICY_KWARGS,
        "normalize": {"obs": True, "reward": True},
        "preset": args.preset,
    }
    atomic_write_json(out / "run.json", {"job": "train_mujoco_ppo", "settings": settings, **provenance()})
    started = time.time() - progress["seconds"]

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    progress["episodes"].append([self.num_timesteps, float(info["episode"]["r"])])
            if self.num_timesteps % args.checkpoint_every == 0:
                progress.update(steps=self.num_timesteps, seconds=time.time() - started)
                save(model, venv, out, progress, args.keep_checkpoints)
                recent = [r for _, r in progress["episodes"][-20:]]
                print(f"step {self.num_timesteps}: mean return of the last 20 games {np.mean(recent):.0f}", flush=True)
            return True

    left = args.steps - progress["steps"]
    try:
        with sigterm_as_interrupt():
            model.learn(left, callback=Record(), tb_log_name="ppo", reset_num_timesteps=False, progress_bar=False)
    except KeyboardInterrupt:
        print("interrupted: saving a checkpoint")
    progress.update(steps=model.num_timesteps, seconds=time.time() - started)
    save(model, venv, out, progress, args.keep_checkpoints)
    recent = [r for _, r in progress["episodes"][-20:]]
    mean = np.mean(recent) if recent else math.nan
    print(f"saved {out}/ppo.zip at step {progress['steps']}; mean return of the last 20 games {mean:.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=PRESETS, default="zoo", help="PPO settings: the zoo's tuned or SB3's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--out", default="runs/mujoco/hopper-ppo")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every checkpoint in checkpoints/<step>/")
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.checkpoint_every <= 0:
        parser.error("--steps and --checkpoint-every must be positive")
    train(args)


if __name__ == "__main__":
    main()
