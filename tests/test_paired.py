"""Paired target/reference training: duplication is exact, only the target is weighted."""
import pytest
import torch

from law.data import DataConfig, load_data
from law.errors import LawError, TrainingDiverged
from law.paired import PairedTrainer, identical_networks
from law.policy import LAWPolicyWeighter
from law.trainer import OptimConfig
from law.weighting import Weighter

DATA = DataConfig(synthetic_train_size=300, synthetic_test_size=50, val_size=60, batch_size=32,
                  eval_batch_size=100, noise="symmetric", noise_rate=0.4)



@pytest.fixture(scope="module")
def bundle():
    return load_data(DATA, seed=0)


def paired(bundle, model="mlp", seed=0, **kwargs):
    return PairedTrainer(bundle, model, OptimConfig(), seed, "cpu", total_epochs=1.0, **kwargs)


def law_weighter(bundle, action):
    weighter = LAWPolicyWeighter(bundle.class_counts)
    weighter.set_action(action)
    return weighter


class FirstClassDouble(Weighter):
    """Known weights: 2 for observed class 0, 1 otherwise."""

    def weights(self, batch):
        return 1.0 + (batch.targets == 0).float()


def test_fresh_pair_is_identical_but_shares_no_storage(bundle):
    trainer = paired(bundle, model="small_cnn")
    assert trainer.identical()
    target_ptrs = {t.data_ptr() for t in trainer.target.state_dict().values()}
    assert not target_ptrs & {t.data_ptr() for t in trainer.reference.state_dict().values()}


def test_unit_weights_keep_the_pair_bitwise_equal(bundle):
    # small_cnn: batch-norm buffers must stay equal too.
    trainer = paired(bundle, model="small_cnn")
    trainer.train_steps(6, law_weighter(bundle, [0.0] * 5))
    assert trainer.identical()
    summary = trainer.stage_summary()
    assert summary["loss_gap"] == 0.0 and summary["mean_weight"] == 1.0
    assert summary["mean_weight_noisy"] == summary["mean_weight_clean"] == 1.0
    target, reference = trainer.evaluate()
    assert target == reference


def test_weighting_changes_the_target_and_never_the_reference(bundle):
    weighted, control = paired(bundle), paired(bundle)
    weighted.train_steps(5, law_weighter(bundle, [-3.0, 0.0, 0.0, 0.0, -0.5]))
    control.train_steps(5, law_weighter(bundle, [0.0] * 5))
    assert not weighted.identical()
    assert identical_networks(weighted.reference, control.reference)
    assert identical_networks(control.target, weighted.reference)


def test_warm_up_is_bitwise_what_training_both_gives(bundle):
    copied, both = paired(bundle), paired(bundle)
    copied.warm_up(4)
    both.train_steps(4, Weighter())
    assert identical_networks(copied.target, both.target)
    assert identical_networks(copied.reference, both.reference)
    # The copied optimiser state (momentum) must be the reference's own and equal.
    action = [-2.0, 1.0, 0.5, 0.0, 0.0]
    copied.train_steps(3, law_weighter(bundle, action))
    both.train_steps(3, law_weighter(bundle, action))
    assert identical_networks(copied.target, both.target)
    assert identical_networks(copied.reference, both.reference)
    assert not copied.identical()
    with pytest.raises(LawError, match="before the first paired step"):
        copied.warm_up(1)


def test_stage_statistics_split_weights_by_class_and_noise(bundle):
    trainer = paired(bundle, seed=3)
    trainer.train_steps(5, law_weighter(bundle, [0.0] * 5))
    trainer.reset_stats()
    trainer.train_steps(4, FirstClassDouble())
    summary = trainer.stage_summary()

    # Replay the same four batches from an identically seeded stream.
    stream = bundle.train_stream(3)
    for _ in range(5):
        next(stream)
    targets, noisy = [], []
    for _ in range(4):
        batch = next(stream)
        targets.append(batch.targets)
        noisy.append(bundle.train.noise_mask[batch.indices])
    targets, noisy = torch.cat(targets), torch.cat(noisy)
    weights = 1.0 + (targets == 0).double()

    assert summary["samples"] == 4 * DATA.batch_size
    assert summary["mean_weight_per_class"][0] == 2.0
    assert all(w == 1.0 for w in summary["mean_weight_per_class"][1:])
    assert summary["mean_weight_noisy"] == pytest.approx(float(weights[noisy].mean()))
    assert summary["mean_weight_clean"] == pytest.approx(float(weights[~noisy].mean()))
    assert summary["loss_gap"] == pytest.approx(summary["target_loss"] - summary["reference_loss"])
    assert trainer.state() == {"step": 9, "epoch": 9 / trainer.stream.steps_per_epoch, "lr": 0.05}


def test_trainer_without_reference_trains_the_target_only(bundle):
    trainer = paired(bundle, train_reference=False)
    before = {k: v.clone() for k, v in trainer.target.state_dict().items()}
    trainer.warm_up(2)
    trainer.train_steps(2, law_weighter(bundle, [-1.0, 0, 0, 0, 0]))
    assert trainer.reference is None and not trainer.identical()
    assert any(not torch.equal(before[k], v) for k, v in trainer.target.state_dict().items())
    target, reference = trainer.evaluate()
    assert reference is None and 0.0 <= target["accuracy"] <= 1.0


def test_non_finite_loss_stops_the_stage(bundle):
    class NaNWeights(Weighter):
        def weights(self, batch):
            return torch.full_like(batch.losses, float("nan"))

    trainer = paired(bundle)
    trainer.train_steps(2, NaNWeights())
    with pytest.raises(TrainingDiverged, match="stage 7"):
        trainer.stage_summary("stage 7")
