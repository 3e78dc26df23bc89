"""What the policy stage does to reward-model scores before it optimizes them.

- Normalisation on the policy's own samples: the first batch the policy samples (the SFT model's
  answers) fixes a mean and a standard deviation, and every later score is standardised with
  them. A reward of +1 then means "one standard deviation better than the SFT model's answers",
  whatever scale the reward model came out at, so the KL weight means the same in every round;
  and because the calibration stays fixed, a policy that improves still shows a rising reward.
- Length control, one-sided: within each batch, the part of the reward that answer length
  explains (the least-squares slope of reward on length) is removed when it is positive. Longer
  answers then cannot raise the reward by being longer, the commonest way a policy games a small
  reward model; a reward model that learned that people prefer shorter answers keeps that signal.

Under several processes (torchrun, Ray) each process scores its own share of the samples, but the
statistics are the whole batch's: every process gathers all the processes' scores and lengths, so
the calibration and the length slope are the ones one process computes over all the samples, and
the same on every process. `record()` says what was used, for the stage's metrics.
"""

from dataclasses import dataclass, field

from training.ml import distributed


def _slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


@dataclass
class RewardShaper:
    normalize: bool = True
    length_control: bool = True
    mean: float | None = None
    std: float | None = None
    samples: int | None = None  # how many samples, from every process, fixed mean and std
    history: list[dict] = field(default_factory=list)

    def __call__(self, scores: list[float], lengths: list[int]) -> list[float]:
        """This process's scores shaped, with statistics of every process's batch. Under several
        processes every one must call it for each batch (it gathers), even with no scores of its own."""
        every_score = [float(s) for s in distributed.gather(scores)]
        every_length = [float(n) for n in distributed.gather(lengths)]
        if not every_score:
            return []
        if self.normalize and self.mean is None:
            self.mean = sum(every_score) / len(every_score)
            variance = sum((s - self.mean) ** 2 for s in every_score) / len(every_score)
            self.std, self.samples = max(variance**0.5, 1e-3), len(every_score)
        every_shaped, shaped = self._standardised(every_score), self._standardised(scores)
        slope = _slope(every_length, every_shaped) if len(every_shaped) > 1 else 0.0
        if self.length_control and slope > 0:
            mean_length = sum(every_length) / len(every_length)
            shaped = [s - slope * (n - mean_length) for s, n in zip(shaped, lengths, strict=True)]
        self.history.append({"length_slope": slope, "raw_mean": sum(every_score) / len(every_score)})
        return shaped

    def _standardised(self, scores) -> list[float]:
        return [(s - self.mean) / self.std for s in scores] if self.normalize else list(scores)

    def record(self) -> dict:
        """What the shaping used, for the stage's metrics: the calibration (mean, std, and how many
        samples fixed them) and the last batch's length slope; under several processes, each
        process's own as well (`by_process`), which are the same when all is well. A collective
        under several processes: every process calls it."""
        own = {"mean": self.mean, "std": self.std, "samples": self.samples}
        if self.history:
            own["length_slope_last"] = self.history[-1]["length_slope"]
        own = {key: value for key, value in own.items() if value is not None}
        if not distributed.active():
            return own
        return {**own, "by_process": distributed.gather([own])}
