"""Data-parallel training of one network with Ray Train's ``TorchTrainer``.

What it is for: LAW searches a policy on a small network and a subset (the
search itself runs on Ray, see ``law.search``), then *transfers* it to a large
network trained on all the data -- ResNet-50 on ImageNet in the paper -- which
needs several GPUs. This module trains that network (or a baseline, with the
same code) on ``workers`` Ray Train workers, one process per GPU, with
``DistributedDataParallel``: each worker draws its own batches from its own
shard of the training set, gradients are averaged by DDP.

The run is cut into the suite's stages, exactly as ``law compare`` does on one
device: each stage has a fixed learning rate (so the lr drops are the
baselines' step schedule) and, for LAW, one weighting function chosen by the
policy from the stage's observation. Why the policy's observation is built on
rank 0 and the action broadcast: every worker must weight its shard with the
*same* function, and the observation (smoothed training loss over all shards,
validation accuracy) is a global quantity.

Semantics worth knowing:

* ``DataConfig.batch_size`` is the batch of *one* worker (as in torchvision's
  references); the global batch is ``workers`` times larger. Scale ``--lr``
  accordingly.
* Weighters see their worker's batch only (LAW's per-batch feature
  normalisation, SPL/OHEM's within-batch ranking), like BatchNorm without
  sync. Methods that differentiate through the model itself (L2RW, LOW) are not
  supported here.
* Rank 0 evaluates validation and test at every stage end on the whole
  split; the other workers wait for the next stage's action.
* Results travel back as a Ray Train checkpoint holding ``results.json``, so
  the driver gets them on any cluster whose storage path all nodes share.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as torch_dist

from envs.observation import StageObserver
from law.config import to_dict
from law.data import DataConfig, load_data
from law.errors import ConfigError, LawError
from law.io import atomic_write_json, environment_info
from law.loaders import BatchStream, seeded_generator
from law.methods import MethodConfig, build_weighter
from law.models import build_model
from law.policy import LAWPolicyWeighter
from law.policy_file import greedy_policy, policy_env_config
from law.schedule import StageSchedule
from law.search import init_ray
from law.stats import WeightStats
from law.records import Record, summarise
from law.train import seed_everything
from law.trainer import DivergenceGuard, Learner, OptimConfig, evaluate, make_optimizer, run_steps, set_lr
from law.weighting import Weighter

SUPPORTED_METHODS = ("ce", "focal", "cb", "spl", "ohem", "law")
RESULTS = "results.json"


@dataclass
class DistributedConfig:
    """Ray Train data parallelism for training one network."""

    workers: int = 2
    """Training workers (processes); one per GPU with use_gpu."""
    use_gpu: bool = False
    """Give every worker one GPU (NCCL); otherwise CPU workers (gloo)."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker; also its torch thread count (at least 1)."""
    address: str = ""
    """Ray cluster to join (host:port or 'auto'); empty: RAY_ADDRESS if set, else a local Ray."""
    storage_path: str = ""
    """Ray Train storage (a folder all nodes share); empty: <run folder>/ray."""

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError("workers", f"must be >= 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise ConfigError("cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")


@dataclass
class StageJob:
    """One network to train, stage by stage: a baseline method or a LAW policy."""

    model: str
    data: DataConfig
    optim: OptimConfig
    schedule: StageSchedule
    method: MethodConfig
    """The weighting method; ``method.method == "law"`` takes the policy."""
    seed: int
    policy: Optional[dict] = None
    """A loaded policy file (``law.apply.load_policy``) for LAW."""
    amp: bool = False
    """bfloat16 autocast on CUDA."""

    def validate(self) -> None:
        if self.method.method not in SUPPORTED_METHODS:
            raise ConfigError("methods", f"'{self.method.method}' cannot train data-parallel here (it "
                                         f"differentiates through the model); supported: "
                                         f"{', '.join(SUPPORTED_METHODS)}")
        if self.method.method == "law":
            if self.policy is None:
                raise ConfigError("policy", "LAW needs a policy to train data-parallel")
            searched = greedy_policy(self.policy).num_stages
            if searched != self.schedule.num_stages:
                raise ConfigError("num_stages", f"the policy acts on {searched} stages, the schedule has "
                                                f"{self.schedule.num_stages}")
        self.data.validate()
        self.optim.validate()


def train_data_parallel(dist: DistributedConfig, job: StageJob, run_dir: str | Path) -> dict:
    """Train ``job`` on ``dist.workers`` Ray Train workers; writes and returns ``results.json``."""
    import ray.train  # Ray Train loads only where a data-parallel run is asked for
    from ray.train.torch import TorchConfig, TorchTrainer

    dist.validate()
    job.validate()
    run_dir = Path(run_dir).resolve()
    if dist.use_gpu and not dist.address and not torch.cuda.is_available():
        raise ConfigError("use_gpu", "no GPU on this machine; train on CPU workers or join a cluster")
    init_ray(dist.address)
    started = time.perf_counter()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"job": job, "threads": max(1, int(dist.cpus_per_worker))},
        scaling_config=ray.train.ScalingConfig(
            num_workers=dist.workers, use_gpu=dist.use_gpu,
            resources_per_worker={"CPU": dist.cpus_per_worker, **({"GPU": 1} if dist.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if dist.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(name=run_dir.name,
                                       storage_path=dist.storage_path or str(run_dir / "ray")),
    )
    result = trainer.fit()
    if result.error is not None or result.checkpoint is None:
        raise LawError(f"data-parallel training failed: {result.error}")
    with result.checkpoint.as_directory() as folder:
        results = json.loads((Path(folder) / RESULTS).read_text())
    results["seconds"] = time.perf_counter() - started
    results["environment"] = environment_info()
    results["distributed"] = {"workers": dist.workers, "use_gpu": dist.use_gpu}
    atomic_write_json(results, run_dir / RESULTS)
    results["run_dir"] = str(run_dir)
    return results


# ----------------------------------------------------------------------------------------
# Inside each Ray Train worker


def _shard_stream(bundle, seed: int, rank: int, world: int):
    """This worker's batches: a fixed, seeded 1/world share of the training set."""
    order = torch.randperm(len(bundle.train), generator=seeded_generator(seed, "shards"))
    shard = order[rank::world].sort().values.to(bundle.train.labels.device)
    stream = BatchStream(bundle.train.store.subset(shard), bundle.train.labels[shard], bundle.batch_size,
                         seed * 1009 + rank, augment=bundle.augment, purpose="train")
    return stream, bundle.train.noise_mask[shard]


def _broadcast_action(action: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.broadcast(action, src=0)
    return action


class _StageWeighting:
    """The weighter of each stage: a baseline's throughout, or the LAW policy's. The policy acts on
    rank 0's observation and its action is broadcast, so every worker weights its shard alike."""

    def __init__(self, job: StageJob, class_counts: torch.Tensor):
        self.policy = None
        if job.method.method == "law":
            self.env = policy_env_config(job.policy, {})
            self.policy = greedy_policy(job.policy)
            self.observer = StageObserver(self.env.smoothing, self.env.loss_clip)
            self.law_weighter = LAWPolicyWeighter(class_counts)
        self.weighter = Weighter() if self.policy else build_weighter(job.method, class_counts)

    def act(self, stage: int, warmup_stages: int, rank: int, device: torch.device) -> Optional[torch.Tensor]:
        """Set the stage's weighter; the action taken (None where the policy does not act)."""
        if self.policy is None or stage < warmup_stages:
            return None
        action = torch.zeros(self.env.action_dim)
        if rank == 0:
            action = torch.as_tensor(self.policy(self.observer.observation(stage)))
        action = _broadcast_action(action.to(device)).cpu()
        self.law_weighter.set_action(self.env.theta(action.numpy()))
        self.weighter = self.law_weighter
        return action

    def observe(self, record: dict) -> None:
        """Rank 0, at a stage end: fold the stage into the policy's observation."""
        if self.policy is not None:
            self.observer.observe(record["train"]["mean_loss"], record["val"]["accuracy"])


def _worker_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    job: StageJob = config["job"]
    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(job.seed)
    bundle = load_data(job.data, seed=job.seed, device=device)
    stream, noise_mask = _shard_stream(bundle, job.seed, rank, world)
    torch.manual_seed(job.seed)  # identical initial weights on every worker (DDP also broadcasts rank 0's)
    network = build_model(job.model, bundle.num_classes, bundle.in_channels, bundle.image_size, device)
    model = ray.train.torch.prepare_model(network)
    optimizer = make_optimizer(model, job.optim)
    dtype = torch.bfloat16 if job.amp and device.type == "cuda" else None

    schedule, weighting = job.schedule, _StageWeighting(job, bundle.class_counts)
    stats = WeightStats(bundle.num_classes, device, keep_weights=False)
    guard = DivergenceGuard(device)
    steps = round(schedule.epochs_per_stage * stream.steps_per_epoch)
    history: list[Record] = []
    started = time.perf_counter()
    for stage in range(schedule.num_stages):
        set_lr(optimizer, schedule.lr_at(job.optim.lr, stage))
        action = weighting.act(stage, schedule.warmup_stages, rank, device)
        stats.reset()
        stage_started = time.perf_counter()
        run_steps([Learner(model, optimizer, weighting.weighter, stats)], stream, steps, start_step=stage * steps,
                  steps_per_epoch=stream.steps_per_epoch, total_epochs=float(schedule.epochs),
                  noise_mask=noise_mask, guard=guard, amp_dtype=dtype)
        guard.check(f"stage {stage} on worker {rank}")
        stats.all_reduce()  # a collective: every worker reaches it once per stage
        if rank == 0:
            net = getattr(model, "module", model)
            record = {"epoch": (stage + 1) * schedule.epochs_per_stage, "stage": stage,
                      "lr": optimizer.param_groups[0]["lr"], "train": stats.summary(),
                      "val": evaluate(net, bundle.eval_batches("val"), bundle.num_classes),
                      "test": evaluate(net, bundle.eval_batches("test"), bundle.num_classes),
                      "seconds": time.perf_counter() - stage_started}
            if action is not None:
                record["action"] = action.tolist()
            history.append(record)
            weighting.observe(record)
    _report(rank, job, bundle, history, time.perf_counter() - started)


def _report(rank: int, job: StageJob, bundle, history: list[Record], seconds: float) -> None:
    import ray.train

    if rank != 0:
        ray.train.report({})
        return
    results = {"kind": "train-data-parallel", "method": job.method.method, "seed": job.seed,
               "config": to_dict(job.data, job.optim, job.method) | {"model": job.model},
               "dataset": bundle.summary(),
               "summary": summarise(history), "history": history,
               "train_seconds": seconds}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / RESULTS).write_text(json.dumps(results, default=str))
        ray.train.report({"test_accuracy": history[-1]["test"]["accuracy"]},
                         checkpoint=ray.train.Checkpoint.from_directory(folder))
