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
"""

from dataclasses import dataclass, field


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
    history: list[dict] = field(default_factory=list)

    def __call__(self, scores: list[float], lengths: list[int]) -> list[float]:
        if not scores:
            return []
        shaped = list(scores)
        if self.normalize:
            if self.mean is None:
                self.mean = sum(shaped) / len(shaped)
                variance = sum((s - self.mean) ** 2 for s in shaped) / len(shaped)
                self.std = max(variance**0.5, 1e-3)
            shaped = [(s - self.mean) / self.std for s in shaped]
        slope = _slope([float(n) for n in lengths], shaped) if len(shaped) > 1 else 0.0
        if self.length_control and slope > 0:
            mean_length = sum(lengths) / len(lengths)
            shaped = [s - slope * (n - mean_length) for s, n in zip(shaped, lengths, strict=True)]
        self.history.append({"length_slope": slope, "raw_mean": sum(scores) / len(scores)})
        return shaped
