"""Vectorised episodes: networks of several episodes trained as one stack (law.stacked).

Pinned: a member's result does not depend on what it is stacked with (alone,
beside another episode, in any place), a neutral target stays bit-identical to
its twin inside a stack, the stack writes parameters, batch-norm statistics and
momentum back, and against training one by one it differs in the last bits only.
"""
import pytest
import torch

from envs import EnvConfig, StageWeightingEnv
from law.data import DataConfig, load_data
from law.errors import LawError
from law.models import build_model
from law.paired import PairedTrainer, StageTraining, identical_networks, run_in_lockstep, train_together
from law.policy import LAWPolicyWeighter
from law.stacked import StackMember, check_stackable, run_stacked_steps
from law.trainer import DivergenceGuard, Learner, OptimConfig, make_optimizer
from law.stats import WeightStats
from baselines.l2rw import L2RWWeighter

DATA = DataConfig(synthetic_train_size=300, synthetic_test_size=50, val_size=60, batch_size=32,
                  eval_batch_size=100, noise="symmetric", noise_rate=0.4)
ACTION = [-2.0, 1.0, 0.5, 0.0, 0.0]
NEUTRAL = [0.0] * 5


@pytest.fixture(scope="module")
def bundle():
    return load_data(DATA, seed=0)


def paired(bundle, seed=0, model="small_cnn", **kwargs):
    return PairedTrainer(bundle, model, OptimConfig(), seed, "cpu", total_epochs=1.0, **kwargs)


def law_weighter(bundle, action):
    weighter = LAWPolicyWeighter(bundle.class_counts)
    weighter.set_action(action)
    return weighter


def two_stages(bundle, trainers_and_actions, stacked=True):
    """A warm-up stage and a weighted one for each (trainer, action), stacked together or one by one."""
    run = train_together if stacked else (lambda requests: [r.run() for r in requests])
    run([StageTraining(trainer, 3) for trainer, _ in trainers_and_actions])
    for trainer, _ in trainers_and_actions:
        trainer.reset_stats()
    run([StageTraining(trainer, 4, law_weighter(bundle, action)) for trainer, action in trainers_and_actions])


def momentum(trainer):
    return [trainer.target_optimizer.state[p]["momentum_buffer"] for p in trainer.target.parameters()]


def test_a_member_ends_the_same_alone_or_beside_another_episode_in_any_place(bundle):
    alone, first, second = paired(bundle), paired(bundle), paired(bundle)
    two_stages(bundle, [(alone, ACTION)])
    two_stages(bundle, [(first, ACTION), (paired(bundle, seed=1), NEUTRAL)])
    two_stages(bundle, [(paired(bundle, seed=2), [1.0, 0, 0, 0, -1.0]), (second, ACTION)])
    for other in (first, second):
        assert identical_networks(alone.target, other.target)  # batch-norm buffers included
        assert identical_networks(alone.reference, other.reference)
        assert all(torch.equal(a, b) for a, b in zip(momentum(alone), momentum(other)))
        assert other.state() == alone.state() == {"step": 7, "epoch": 7 / alone.stream.steps_per_epoch, "lr": 0.05}
    assert not alone.identical(), "the weighted target left its twin"


def test_a_neutral_target_stays_bitwise_equal_to_its_twin_in_a_stack(bundle):
    neutral, weighted = paired(bundle, seed=4), paired(bundle, seed=5)
    two_stages(bundle, [(neutral, NEUTRAL), (weighted, ACTION)])
    assert neutral.identical()
    assert neutral.stage_summary()["loss_gap"] == 0.0
    target, reference = neutral.evaluate()
    assert target == reference


def test_a_stack_writes_back_what_training_one_by_one_gives_up_to_the_last_bits(bundle):
    stacked, one_by_one = paired(bundle), paired(bundle)
    start = {k: v.clone() for k, v in stacked.target.state_dict().items()}
    two_stages(bundle, [(stacked, ACTION)])
    two_stages(bundle, [(one_by_one, ACTION)], stacked=False)
    state, expected = stacked.target.state_dict(), one_by_one.target.state_dict()
    assert {int(v) for k, v in state.items() if k.endswith("num_batches_tracked")} == {7}
    for name, value in state.items():
        assert not torch.equal(value, start[name]) or not value.is_floating_point(), f"{name} was written back"
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-4)
    for a, b in zip(momentum(stacked), momentum(one_by_one)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # The same statistics were gathered (the weights, from the same batches, agree to float precision).
    summary, expected_summary = stacked.stage_summary(), one_by_one.stage_summary()
    assert summary["samples"] == expected_summary["samples"]
    assert summary["mean_weight_noisy"] == pytest.approx(expected_summary["mean_weight_noisy"], abs=1e-4)


def test_a_stack_refuses_what_it_cannot_train(bundle):
    first, second = paired(bundle), paired(bundle, seed=1)
    second.warm_up(1)
    with pytest.raises(LawError, match="same data, step"):
        train_together([StageTraining(first, 2), StageTraining(second, 2)])
    with pytest.raises(LawError, match="dropout"):
        check_stackable(build_model("mobilenet_v2", 10, 3, 32))
    model = build_model("mlp", 10, 3, 8)
    l2rw = Learner(model, make_optimizer(model, OptimConfig()), L2RWWeighter(), WeightStats(10))
    with pytest.raises(LawError, match="runs the model itself"):
        run_stacked_steps([StackMember(l2rw, iter(()), DivergenceGuard())], 1, start_step=0, steps_per_epoch=1,
                          total_epochs=1.0, noise_mask=torch.zeros(1, dtype=torch.bool))


def env(share_with=None, twin_cache=0):
    cfg = EnvConfig(model="small_cnn", num_stages=4, warmup_stages=1, steps_per_stage=3, lr_drop_stages=(3,))
    return StageWeightingEnv(cfg, DATA, OptimConfig(), warm_up_cache=twin_cache, share_with=share_with)


def episode(env, seed, action, twin=None):
    """A whole episode as requests; returns the rewards and the twin it recorded."""
    yield from env.reset_requests(seed=seed, options={"twin": twin})
    rewards, terminated = [], False
    while not terminated:
        _, reward, terminated, _, info = yield from env.step_requests(action)
        rewards.append(reward)
    return rewards, info.get("twin")


def test_episodes_in_lockstep_earn_what_they_earn_alone_and_a_neutral_one_earns_zero():
    first = env(twin_cache=4)
    second = env(share_with=first)
    assert second.bundle is first.bundle and second._warm_ups is first._warm_ups
    (weighted, twin), (neutral, _) = run_in_lockstep(
        [episode(first, 3, ACTION), episode(second, 4, NEUTRAL)], stacked=True)
    assert neutral == [0.0, 0.0, 0.0]
    # Alone (a stack of one, padded) and with its twin's record instead of a twin: the same rewards.
    [(alone, _)] = run_in_lockstep([episode(env(), 3, ACTION)], stacked=True)
    [(cached, _)] = run_in_lockstep([episode(first, 3, ACTION, twin=twin)], stacked=True)
    assert alone == cached == weighted
    [(neutral_cached, _)] = run_in_lockstep([episode(first, 3, NEUTRAL, twin=twin)], stacked=True)
    assert neutral_cached == [0.0, 0.0, 0.0], "a stacked twin's record pairs exactly with a stacked target"
    # One by one (the plain worker) the networks differ in the last bits: the rewards, accuracy
    # differences on 60 validation samples, agree within a sample or two.
    [(plain, _)] = run_in_lockstep([episode(env(), 3, ACTION)], stacked=False)
    assert plain == pytest.approx(weighted, abs=2 / DATA.val_size)
    with pytest.raises(LawError, match="same configs"):
        StageWeightingEnv(EnvConfig(model="mlp"), DATA, OptimConfig(), share_with=first)
