"""The dataset card: README.md beside the data, in the Hugging Face card layout."""

SCHEMAS_MD = {
    "sft": """| column | type | meaning |
|---|---|---|
| `messages` | list of `{role, content}` | the prompt conversation followed by the annotator's demonstration (role `assistant`) |

TRL's conversational language-modeling format: `SFTTrainer` trains on it directly (use
`assistant_only_loss=True` for loss on the answer only).

Peer review: demonstrations that reviewers rejected are left out, and where the project asks for
reviews only accepted ones are in. Where a reviewer edited an accepted demonstration, the row holds
the edited answer (the annotator's original stays in Yushan, with the diff).""",
    "preference": """| column | type | meaning |
|---|---|---|
| `prompt` | list of `{role, content}` | the conversation up to the answer |
| `chosen` | list with one `{role: assistant, content}` | the answer ranked higher |
| `rejected` | list with one `{role: assistant, content}` | the answer ranked lower |
| `margin` | float or null | (if requested) rating of chosen minus rating of rejected, 1–7 scale; null when either was not rated |

TRL's conversational preference format with an explicit prompt: `DPOTrainer` and `RewardTrainer`
read it directly.""",
    "ranking": """| column | type | meaning |
|---|---|---|
| `prompt` | list of `{role, content}` | the conversation |
| `completions` | list of K answers, each a list with one `{role: assistant, content}` | best first |
| `ranks` | list of K integers | 1 is best; tied answers share a rank |

One row per ranking: what a K-wise reward model trains on (all K answers of a prompt in one
example; every pair of different ranks is a comparison). With the `weighted` filter, a `pairs`
column (list of `{better, worse, weight}`, indices into `completions`) weighs each pair by how far
the annotators' reliability-weighted consensus (a one-coin Dawid–Skene model, crowd-kit) believes
it: P(this order) − P(the reverse), from 0 to 1; pairs it believes reversed are left out, and a
ranking with none left is too.""",
    "consensus": """| column | type | meaning |
|---|---|---|
| `prompt` | list of `{role, content}` | the conversation |
| `completions` | list of K answers, each a list with one `{role: assistant, content}` | best first, in the consensus order |
| `ranks` | list of K integers | the consensus ranks: 1 is best; tied answers share a rank |
| `pairs` | list of `{better, worse, weight}` | indices into `completions`, and how sure the consensus is of that pair: P(better ≻ worse) − P(worse ≻ better), from 0 to 1 |
| `annotators` | int | how many annotators ranked the task |

One row per task: the annotators' rankings merged by a one-coin Dawid–Skene model of their
reliability (crowd-kit), each vote counted by its annotator's estimated skill. A K-wise reward
model trains on `pairs`, each pair's loss times its weight (Yushan's reward stage does).

Adjudication: a task whose annotators agreed on fewer pairs than the project's adjudication
threshold goes to a reviewer or an admin, who decides its final ranking. For an adjudicated task
the row is that ranking, not the model's consensus: `ranks` are the adjudicator's and every pair
it orders has weight 1. `annotators` still counts the annotators who ranked the task, and their
rankings still inform the reliability model.""",
    "annotations": """| column | type | meaning |
|---|---|---|
| `kind` | `ranking` or `demonstration` | |
| `task_id` | int | the labeling task |
| `annotator` | string | pseudonym, stable within this snapshot only |
| `created_at`, `updated_at` | ISO 8601 | submission and last edit |
| `prompt` | list of `{role, content}` | |
| `demonstration` | string or null | the written answer (demonstrations) |
| `candidates` | list of `{id, text, source, model_version, round, rank, rating, flags}` | the answers shown, with this annotator's rank (1 best, ties share), rating 1–7 and flags |
| `none_acceptable` | bool or null | the annotator said no answer was acceptable |
| `source` | `annotator` or `imported` | |

Raw per-annotator judgments: nothing is merged, so you can compute agreement, filter annotators
or re-derive any of the other kinds.""",
}


def card_render(*, snapshot, counts: dict, data_file: dict, project) -> str:
    filters = snapshot.filters or {}
    filter_lines = "\n".join(f"- `{key}`: {value}" for key, value in sorted(filters.items())) or "- none: every label"
    count_lines = "\n".join(f"- {key}: {value:,}" for key, value in counts.items())
    pairs = ""
    if snapshot.kind == "preference":
        pairs = f"\nPairs: {'every pair a ranking implies' if snapshot.pair_mode == 'all' else 'best group against worst group'}; ties make no pair.\n"
    return f"""---
configs:
- config_name: default
  data_files: {snapshot.data_file_name}
tags:
- yushan
- rlhf
- human-feedback
---

# {project.name}: {snapshot.kind} snapshot {snapshot.pk}

Exported by Yushan (code version `{snapshot.code_version}`) at {snapshot.finished_at:%Y-%m-%d %H:%M:%S} UTC.
This snapshot is immutable: its rows, filter and hashes never change.

```python
from datasets import load_dataset
dataset = load_dataset("{snapshot.format if snapshot.format == "parquet" else "json"}", data_files="{snapshot.data_file_name}", split="train")
```

## Files

| file | sha256 | bytes |
|---|---|---|
| `{snapshot.data_file_name}` | `{data_file["sha256"]}` | {data_file["bytes"]:,} |

## Counts

{count_lines}

## Filter

{filter_lines}
{pairs}
## Schema

{SCHEMAS_MD[snapshot.kind]}

## How the data was collected

Human annotators labeled tasks in Yushan's browser UI or API, following the project's guidelines
(below). Demonstration tasks ask for the ideal assistant answer to a conversation. Ranking tasks show
K = {project.k} answers (sampled from a policy model, or supplied with the prompts) in an order
shuffled per annotator; the annotator orders them best to worst, may mark ties, rates each 1–7 and
may flag answers. Each task is completed by up to {project.overlap} different annotators, who
never rank their own demonstration. Preferences imported from other datasets are marked
`imported`. Annotator identities are replaced by pseudonyms.

### Guidelines

{project.guidelines or "(none given)"}
"""
