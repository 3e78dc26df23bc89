"""KL budgets: stopping a policy stage once the policy has drifted `kl_budget` nats per answer from
its reference (the evaluation's definition of KL: log π(y|x) − log π_ref(y|x) summed over an
answer, averaged over answers the policy sampled).

- Sampling stages (RLOO, GRPO) report KL in their logs: `kl_budget_callback` reads it.
- DPO samples nothing while it trains: `dpo_kl_callback` samples a few prompts now and then and
  measures it (`kl_per_answer`; iterative DPO sums `answer_kls` of its own samples over the processes).

Under several processes the decision to stop is process 0's, handed to every process: a process
that stopped alone would leave the others waiting for it in the next all-reduce.
"""

from training.ml import distributed
from training.ml.reward_data import prompts_from_records


def kl_per_answer(model, reference, answers, batch_size: int) -> float:
    """Mean over the answers of log π(y|x) − log π_ref(y|x). reference None: the model with its LoRA
    adapters off is the reference."""
    return sum(answer_kls(model, reference, answers, batch_size)) / max(len(answers), 1)


def answer_kls(model, reference, answers, batch_size: int) -> list[float]:
    """log π(y|x) − log π_ref(y|x) of each answer (kl_per_answer's terms, to sum over processes)."""
    from training.ml.evaluate import sequence_logprobs

    sequences = [(a.prompt_ids + a.token_ids, len(a.prompt_ids)) for a in answers]
    policy = sequence_logprobs(model, sequences, batch_size=batch_size)
    if reference is not None:
        ref = sequence_logprobs(reference, sequences, batch_size=batch_size)
    else:
        with model.disable_adapter():
            ref = sequence_logprobs(model, sequences, batch_size=batch_size)
    return [p - r for p, r in zip(policy, ref, strict=True)]


def kl_budget_callback(budget: float, metrics_from_logs):
    """Stops training after the step whose KL (nats per answer) passed `budget`; `.stopped_at`
    says which step, None when the budget held."""
    from transformers import TrainerCallback

    class KLBudget(TrainerCallback):
        stopped_at = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if budget <= 0 or not logs or "loss" not in logs:
                return
            kl = metrics_from_logs(logs).get("kl")
            # TRL gathers the KL over the processes already; still, process 0's verdict is taken by
            # all, so that no process stops alone and leaves the others waiting in a collective.
            if distributed.from_main(lambda: kl is not None and kl > budget):
                self.stopped_at = state.global_step
                control.should_training_stop = True

    return KLBudget()


KL_CHECK_PROMPTS = 8  # DPO: prompts answered at each KL check
KL_CHECKS = 4  # DPO: checks over the stage's steps (after every steps/4 steps, and at the end)


def dpo_kl_callback(records, tokenizer, config):
    """DPO samples nothing while it trains, so its drift is measured: after every steps/KL_CHECKS
    steps the policy answers KL_CHECK_PROMPTS of the training prompts (temperature, max_completion_length
    of the config) and the KL to the reference is estimated on those answers, in nats per answer,
    log π(y|x) − log π_ref(y|x) averaged over them (the evaluation's definition). Past `kl_budget`,
    training stops after that step. Set `.trainer` before training (the reference model is its)."""
    import random

    from transformers import TrainerCallback

    from training.ml.evaluate import as_conversation

    prompts = [as_conversation(row["prompt"]) for row in prompts_from_records(records)]
    prompts = random.Random(config.seed).sample(prompts, min(KL_CHECK_PROMPTS, len(prompts)))

    class DPOKLBudget(TrainerCallback):
        trainer = None
        stopped_at = None
        checks: list[dict] = []

        def on_step_end(self, args, state, control, **kwargs):
            every = max(1, -(-state.max_steps // KL_CHECKS))
            due = state.global_step % every == 0 or state.global_step >= state.max_steps
            if config.kl_budget <= 0 or not prompts or self.trainer is None or not due:
                return
            # Under torchrun process 0 samples and measures; every process stops at the same step.
            kl = distributed.from_main(lambda: self.measure(state.global_step))
            if kl > config.kl_budget:
                self.stopped_at = state.global_step
                control.should_training_stop = True

        def measure(self, step: int) -> float:
            from training.ml.evaluate import sample_answers
            from training.ml.generation import SamplingParams

            model = self.trainer.model
            was_training = model.training
            model.eval()
            sampling = SamplingParams(
                temperature=config.temperature, max_new_tokens=config.max_completion_length, seed=config.seed + step
            )
            answers = sample_answers(model, tokenizer, prompts, sampling, batch_size=KL_CHECK_PROMPTS)
            kl = kl_per_answer(model, self.trainer.ref_model, answers, batch_size=KL_CHECK_PROMPTS)
            if was_training:
                model.train()
            self.checks = [*self.checks, {"step": step, "kl": kl}]
            return kl

    return DPOKLBudget()
