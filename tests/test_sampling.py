"""The sampler keeps exactly the tokens transformers' own warpers keep, without sorting the vocabulary."""

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from training.ml.sampling import CANDIDATES, TruncatedSampling


def transformers_warpers(temperature, top_k, top_p):
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    return LogitsProcessorList(warpers)


@pytest.mark.parametrize(
    "temperature, top_k, top_p, spread",
    [
        (0.8, 50, 0.95, 3.0),  # the defaults
        (0.7, 0, 0.95, 3.0),  # no top-k: the nucleus is found among the 256 likeliest tokens
        (1.0, 0, 0.9, 0.05),  # nearly flat rows: the nucleus is wider than 256, the full sort decides
        (1.3, 10, 1.0, 3.0),  # top-k only
        (0.5, 0, 1.0, 3.0),  # temperature only
    ],
)
def test_same_tokens_and_logits_as_the_transformers_warpers(temperature, top_k, top_p, spread):
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 4096, generator=generator) * spread
    scores[0, :5] += 20  # one peaked row: a nucleus of a token or few
    ids = torch.zeros((6, 3), dtype=torch.long)
    expected = transformers_warpers(temperature, top_k, top_p)(ids, scores.clone())
    ours = TruncatedSampling(temperature, top_k, top_p)(ids, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    finite = ~torch.isinf(expected)
    assert torch.allclose(ours[finite], expected[finite])
    if spread < 1:  # the case meant to need the fallback does need it
        assert (~torch.isinf(expected)).sum(dim=-1).max() > CANDIDATES
