"""What a search writes besides its checkpoint: TensorBoard tags and ``summary.md``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from law.logging import config_markdown
from law.search.config import LAST_POLICY, POLICY

class SearchLogger:
    """TensorBoard tags: reward/, target/, reference/, weights/, eval/, agent/, perf/."""

    def __init__(self, run_dir: Path, config: dict):
        self.writer = SummaryWriter(str(run_dir))
        self.writer.add_text("config", config_markdown(config), 0)

    def stage(self, worker: int, step: int, reward: float, info: dict) -> None:
        w = self.writer
        w.add_scalar(f"reward/stage_w{worker}", reward, step)
        w.add_scalar(f"target/val_accuracy_w{worker}", info["acc_target"], step)
        w.add_scalar(f"reference/val_accuracy_w{worker}", info["acc_reference"], step)
        w.add_scalar(f"target/loss_gap_w{worker}", info["loss_gap"], step)
        for group in ("noisy", "clean"):
            value = info.get(f"mean_weight_{group}")
            if value is not None:
                w.add_scalar(f"weights/{group}_w{worker}", value, step)
        w.add_scalar(f"weights/effective_sample_fraction_w{worker}", info["effective_sample_fraction"], step)
        if info.get("weights"):
            w.add_histogram(f"weights/histogram_w{worker}", np.asarray(info["weights"]), step)

    def update(self, number: int, stats: dict, noise: float) -> None:
        """The learner's FDU update ``number`` (one per stage end learned from)."""
        for name, value in stats.items():
            self.writer.add_scalar(f"agent/{name}", value, number)
        self.writer.add_scalar("agent/noise_scale", noise, number)

    def episode(self, summary: dict) -> None:
        self.writer.add_scalar("reward/episode_return", summary["return"], summary["episode"])
        self.writer.add_scalar("target/final_val_gap", summary["gap"], summary["episode"])

    def evaluation(self, record: dict) -> None:
        if "evaluation_gaps" in record:  # a finalist, judged again at the end
            self.writer.add_text("eval/finalists", f"{finalist_name(record)}: {100 * record['score']:+.1f}")
        elif "prior" in record:  # judged before the first episode
            self.writer.add_scalar("eval/prior_val_gap", record["score"], record["number"])
            self.writer.add_text("eval/priors", f"{record['prior']}: {100 * record['score']:+.1f}", record["number"])
        else:
            self.writer.add_scalar("eval/greedy_val_gap", record["score"], record["after_episodes"])

    def close(self) -> None:
        self.writer.close()


def finalist_name(record: dict) -> str:
    return f"prior *{record['prior']}*" if "prior" in record else f"greedy after {record['after_episodes']} episodes"


def paired_differences(finalists: list[dict]) -> str:
    """The best searched finalist minus the start prior (the first finalist), seed by seed."""
    def all_gaps(record: dict) -> list[float]:
        return record["evaluation_gaps"] + record["gaps"]
    best = max(finalists[1:], key=lambda r: r["score"])
    differences = [a - b for a, b in zip(all_gaps(best), all_gaps(finalists[0]))]
    return ("per seed " + " ".join(f"{100 * d:+.1f}" for d in differences)
            + f": better on {sum(d > 0 for d in differences)} of {len(differences)} seeds, "
              f"worse on {sum(d < 0 for d in differences)}")


def summary_markdown(results: dict) -> str:
    """summary.md: the one line a newcomer needs, what the search added to its priors, then the
    final judging, the evaluations and the episodes."""
    best, last = results["best"], results["last"]
    n, finalists = len(results["evaluation_seeds"]), results.get("finalists") or []
    seeds = (f"mean over its {n} evaluation and {len(results['final_seeds'])} final seeds" if finalists else
             f"mean over {n} evaluation seeds")
    kept = (f"the prior *{best['prior']}*" if "prior" in best else
            f"greedy {results['agent']} policy after {best['after_episodes']} of "
            f"{results['config']['SearchConfig']['episodes']} episodes")
    lines = [f"**policy vs unweighted twin: {100 * best['val_gap']:+.1f} validation points** "
             f"({seeds}; {kept}, saved as `{POLICY}`; the last policy "
             f"scored {100 * last['val_gap']:+.1f} on its evaluation seeds and is `{LAST_POLICY}`).", ""]
    start = results.get("start_point")
    if start is not None:
        base = finalists[0]["score"] if finalists else start["val_gap"]  # the start prior is the first finalist
        searched, added = base + results["improvement"], 100 * results["improvement"]
        verdict = (f"**it improved on its starting point by {added:+.1f} points**" if added > 0 else
                   f"**it did not improve on its starting point** ({added:+.1f} points), so `{POLICY}` is the prior")
        if finalists and added > 0:  # paired on the same seeds: how much of it a few seeds can tell
            verdict += f" ({paired_differences(finalists)})"
        origin = ("The search started from the best prior" if "fit_error" in start else
                  "The best prior (random search draws from the whole box whatever it knows) was")
        over = " over its evaluation and final seeds" if finalists else ""
        lines += [f"{origin}, *{start['prior']}* ({100 * base:+.1f}{over}); its best searched policy "
                  f"scored {100 * searched:+.1f}: {verdict}.", "",
                  "| prior | val gap (points) | per seed |", "|---|---:|---|"]
        lines += [f"| {r['prior']} | {100 * r['score']:+.1f} | " + " ".join(f"{100 * g:+.1f}" for g in r["gaps"]) + " |"
                  for r in results["priors"]]
        lines.append("")
    if finalists:
        ranked = len(finalists) - (start is not None)
        judged = ("the start prior and " if start is not None else "") + \
            f"the best {ranked} distinct greedy evaluation{'s' * (ranked != 1)}"
        lines += [f"Final judging: {judged} again on {len(results['final_seeds'])} more seeds; `{POLICY}` is the best over all its seeds.", "",
                  "| finalist | evaluation seeds | final seeds | all seeds |", "|---|---|---|---:|"]
        lines += [f"| {finalist_name(r)} | " + " ".join(f"{100 * g:+.1f}" for g in r["evaluation_gaps"]) + " | "
                  + " ".join(f"{100 * g:+.1f}" for g in r["gaps"]) + f" | {100 * r['score']:+.1f} |" for r in finalists]
        lines.append("")
    lines += ["| greedy evaluation | after episodes | val gap (points) | per seed |", "|---:|---:|---:|---|"]
    for r in results["evaluations"]:
        lines.append(f"| {r['round']} | {r['after_episodes']} | {100 * r['score']:+.1f} | "
                     + " ".join(f"{100 * g:+.1f}" for g in r["gaps"]) + " |")
    lines += ["", "| episode | seed | worker | return | val acc target | val acc twin | gap |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results["episodes"]:
        lines.append(f"| {s['episode']} | {s['seed']} | {s['worker']} | {s['return']:+.2f} | "
                     f"{s['acc_target']:.4f} | {s['acc_reference']:.4f} | {100 * s['gap']:+.1f} |")
    return "\n".join(lines) + "\n"
