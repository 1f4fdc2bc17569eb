"""law.timing: a run's phases, timed only when asked for."""

from law import timing
from law.data import DataConfig, load_data
from law.paired import PairedTrainer
from law.policy import LAWPolicyWeighter
from law.trainer import OptimConfig


def paired_steps(steps: int = 3) -> PairedTrainer:
    bundle = load_data(DataConfig(synthetic_train_size=120, synthetic_test_size=20, val_size=20, batch_size=16),
                       seed=0)
    trainer = PairedTrainer(bundle, "mlp", OptimConfig(), 0, "cpu", total_epochs=1.0)
    trainer.warm_up(1)
    weighter = LAWPolicyWeighter(bundle.class_counts)
    weighter.set_action([-1.0, 0.0, 0.0, 0.0, 0.5])
    trainer.train_steps(steps, weighter)
    trainer.evaluate("val")
    return trainer


def test_phases_are_timed_by_role_when_enabled(monkeypatch):
    monkeypatch.setattr(timing, "ENABLED", True)
    timing.take_phases()
    paired_steps(3)
    phases = timing.take_phases()
    counts = {name: value["count"] for name, value in phases.items()}
    assert counts == {"data": 4, "sgd warm-up": 1, "sgd target": 3, "features and weights": 3, "sgd twin": 3,
                      "val evaluation": 2}
    assert phases["features and weights"]["seconds"] <= phases["sgd target"]["seconds"]  # nested inside it
    assert timing.take_phases() == {}  # taken, and counting starts anew


def test_nothing_is_timed_by_default():
    assert not timing.ENABLED  # the suite runs without LAW_PHASE_TIMES
    timing.take_phases()
    paired_steps(1)
    assert timing.take_phases() == {}
