"""What a policy stage is asked to do (training.ml.policy does it): its settings, the preference
rows DPO trains on, and the checks of both against this machine (the sampler, the processes).

Apart from the trainers: the round form, the API and the launchers need the settings and the
checks, not the training.
"""

from dataclasses import dataclass

from training.ml import distributed, options
from training.ml.options import SEED_RANGE, setting, translatable
from training.ml.reward_data import preference_pairs, rankings_from_records

ALGORITHMS = ("rloo", "grpo", "dpo", "iterative_dpo")
PAIRINGS = ("all", "best_worst")
SAMPLERS = ("auto", "transformers", "vllm")


@dataclass
class PolicyConfig:
    algorithm: str = setting(
        "rloo",
        "rloo, grpo and iterative_dpo sample against the reward model; dpo learns from the human preferences",
        choices=ALGORITHMS,
    )
    learning_rate: float = setting(1e-6, "peak learning rate", range=(0, 1), min_exclusive=True, aliases=("--lr",))
    steps: int = setting(
        100,
        "optimizer steps (rloo/grpo: each on fresh samples; dpo: at most, within its epochs, on the newest pairs)",
        range=(1, 1_000_000),
    )
    epochs: int = setting(1, "dpo, iterative_dpo: passes over the preferences", range=(1, 100))
    iterations: int = setting(2, "iterative_dpo: rounds of sample, score, DPO", range=(1, 1000))
    prompts_per_step: int = setting(4, "rloo/grpo: prompts per step; dpo: preference pairs per step", range=(1, 4096))
    generations_per_prompt: int = setting(
        4, "answers sampled per prompt (the group the baseline comes from)", range=(2, 1024), aliases=("--generations",)
    )
    max_completion_length: int = setting(128, "rloo/grpo: tokens sampled per answer at most", range=(1, 32768))
    max_length: int = setting(1024, "dpo: tokens of prompt + answer kept (from the start)", range=(1, 32768))
    pairs: str = setting(
        "all",
        "dpo: a ranking's ordered pairs to train on: all, or best_worst (its best answer against its worst)",
        choices=PAIRINGS,
    )
    kl_beta: float = setting(0.05, "weight of the KL penalty towards the SFT model (DPO's beta)", range=(0, 100))
    chosen_nll: float = setting(
        0.0,
        "dpo, iterative_dpo: weight of the preferred answers' negative log-likelihood added to DPO's loss "
        "(RPO; keeps the preferred answers likely instead of only apart from the others; 0: none)",
        range=(0, 100),
    )
    ld_alpha: float = setting(
        1.0,
        "dpo, iterative_dpo: weight of each answer's tokens past the shorter answer's length in its pair "
        "(LD-DPO; 1: plain DPO, lower: length counts less as what tells the answers apart)",
        range=(0, 1),
    )
    temperature: float = setting(1.0, "rloo/grpo: sampling temperature", range=(0, 10), min_exclusive=True)
    kl_budget: float = setting(
        0.0, "stop early once the KL to the SFT model passes this, in nats per answer (0: no budget)", range=(0, 1e6)
    )
    reward_normalize: bool = setting(True, "standardise reward-model scores on the SFT model's own samples")
    length_control: bool = setting(True, "remove any positive dependence of the reward on answer length")
    sampler: str = setting(
        "auto",
        "rloo, grpo, iterative_dpo: what samples the answers: vllm where it is installed on a CUDA GPU, "
        "else transformers (auto), transformers, or vllm",
        choices=SAMPLERS,
    )
    lora: bool = setting(False, "train LoRA adapters (merged into the saved model) instead of every weight")
    lora_rank: int = setting(16, "LoRA rank", range=(1, 1024))
    seed: int = setting(0, range=SEED_RANGE)

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if self.generations_per_prompt < 2:
            raise ValueError("generations_per_prompt must be at least 2: the baseline comes from the other answers")
        if self.kl_beta < 0:
            raise ValueError("kl_beta must be >= 0")


def preferences_from_records(records: list[dict], pairs: str = "all") -> list[dict]:
    """TRL preference rows {prompt, chosen, rejected}: every ordered pair a ranking implies (ties make
    none), or with pairs="best_worst" one per ranking, a best answer against a worst (none for a
    ranking of ties only); conversational prompts get conversational answers."""
    rankings = rankings_from_records(records)
    if pairs == "best_worst":
        rankings = [best_worst(r) for r in rankings if min(r.ranks) < max(r.ranks)]
    return preference_pairs(rankings)


def newest_within_steps(rows: list[dict], config: PolicyConfig) -> list[dict]:
    """The last rows, when `steps` cannot reach them all: a round's ranking snapshot lists rankings
    in task order, so the rankings of the latest policy's own answers are kept first. Those are
    the on-policy pairs, the ones that tell the policy the round starts from what to change."""
    budget = config.steps * config.prompts_per_step
    return rows[-budget:] if len(rows) > budget else rows


def best_worst(ranking):
    """The ranking cut to two answers: the first one ranked best, the last one ranked worst."""
    from dataclasses import replace

    best = ranking.ranks.index(min(ranking.ranks))
    worst = len(ranking.ranks) - 1 - ranking.ranks[::-1].index(max(ranking.ranks))
    pair = [ranking.completions[best], ranking.completions[worst]]
    return replace(ranking, completions=pair, ranks=[1, 2], pairs=None)  # pairs indexed the K answers


VLLM_UNUSABLE = translatable("must be auto or transformers here: vLLM is not installed, or there is no CUDA GPU")


def policy_sampler(config: PolicyConfig) -> str:
    """What samples the answers on this machine, "vllm" or "transformers": `auto` is vLLM where it
    can run (training.ml.generation.vllm_usable). `vllm` where it cannot is refused as a setting
    (options.SettingsError naming `sampler`) before anything loads, rather than failing later."""
    from training.ml.generation import vllm_usable

    if config.sampler == "auto":
        return "vllm" if vllm_usable() else "transformers"
    if config.sampler == "vllm" and not vllm_usable():
        raise options.SettingsError({"sampler": options.Message(VLLM_UNUSABLE)})
    return config.sampler


def data_parallel_check(config: PolicyConfig) -> None:
    """Under torchrun (more than one process): every algorithm shares each step's batch (DPO's
    pairs, RLOO's and GRPO's prompts, iterative DPO's pairs) out equally among the processes."""
    processes = distributed.world_size()
    if processes > 1 and config.prompts_per_step % processes:
        raise ValueError(
            f"prompts_per_step ({config.prompts_per_step}) must be a multiple of the processes ({processes}): "
            "each process takes an equal share of a step"
        )
