"""Temperature, top-k and top-p as transformers applies them, without sorting the vocabulary.

transformers' nucleus (top-p) warper sorts every row of logits at every decoding step: with
SmolLM2's 49,152-token vocabulary and 16 rows that is ~80 ms a step on one CPU core, a quarter of
the step (the forward pass is ~240 ms). `TruncatedSampling` (training.ml.decoding samples with
it) does what transformers' temperature, top-k and top-p warpers do, in that order, on the k
likeliest tokens only (`torch.topk`, ~4 ms):

- with a top-k cut, the nucleus is computed on the top k, renormalised, as transformers does;
- without one, on the 256 likeliest tokens of the full distribution; a row whose nucleus is
  wider than that (a nearly flat distribution) falls back to the full sort.

The kept tokens and their logits are the ones transformers keeps (a test checks this against its
warpers), so the random draw is the same for a given seed.
"""

CANDIDATES = 256  # tokens the nucleus is looked for in, when there is no top-k cut


class TruncatedSampling:
    """Temperature, then top-k, then top-p, as transformers' warpers apply them (see the module)."""

    def __init__(self, temperature: float, top_k: int, top_p: float):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.temperature
        vocabulary = scores.shape[-1]
        if not self.top_k and self.top_p >= 1:
            return scores
        width = min(self.top_k or CANDIDATES, vocabulary)
        top, index = scores.topk(width, dim=-1)  # descending
        wide = None
        if self.top_p < 1:
            # With a top-k cut the nucleus is taken within it (renormalised), as transformers does.
            normaliser = (top if self.top_k else scores).logsumexp(dim=-1, keepdim=True)
            probs = (top - normaliser).exp()
            cumulative = probs.cumsum(dim=-1)
            keep = cumulative - probs < self.top_p  # the mass ranked above a token is under top_p
            keep[:, 0] = True
            top = top.masked_fill(~keep, float("-inf"))
            if not self.top_k and width < vocabulary:
                wide = (cumulative[:, -1] < self.top_p).nonzero().flatten()
        kept = torch.full_like(scores, float("-inf")).scatter_(-1, index, top)
        if wide is not None and len(wide):
            from transformers import TopPLogitsWarper

            kept[wide] = TopPLogitsWarper(self.top_p)(input_ids[wide], scores[wide])
        return kept
