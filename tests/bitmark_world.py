"""What the BitMark tests share: one split, tokenizer and generation-0 model per seed.

Both tests/test_bitwise.py and tests/test_watermark.py need the chapter's quick-size
objects; caching them here trains the generation-0 model M1 once per test session.
"""

from functools import cache

import torch

from collapse_lib import bitwise


@cache
def bitmark_world(seed: int):
    """Split, tokenizer and the generation-0 model M1 (the chapter's quick sizes)."""
    torch.set_num_threads(1)
    data = bitwise.digits_split(seed)
    tok = bitwise.Tokenizer.fit(data["train"])
    m1 = bitwise.BitwiseAR(tok, seeds=1, seed=seed).fit(data["train"][None])
    return data, tok, m1


@cache
def digit_features(seed: int) -> bitwise.DigitFeatures:
    """The chapter's feature network for the Fréchet distance, trained on the split's digits."""
    data = bitmark_world(seed)[0]
    return bitwise.DigitFeatures.fit(data["train"], data["train_labels"], seed)
