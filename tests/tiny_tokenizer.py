"""A tiny byte-level BPE tokenizer trained in memory, for the tiny model fixtures and tokenizer tests.

A plain module rather than part of conftest.py: ``from conftest import ...`` inside a test finds
whichever conftest (tests/ or tests/tui/) was imported first.
"""

from __future__ import annotations

TOKENIZER_CORPUS = [
    "We propose a simple method for learning sparse representations of graphs with neural networks.",
    "Experiments on three benchmarks show that the approach improves accuracy and reduces training time.",
    "Large language models generate fluent text, but their titles for research papers are often vague.",
    "This paper studies reinforcement learning agents that plan with learned world models.",
    "Our results suggest that attention patterns explain how transformers copy tokens from the context.",
    "Title: A Survey of Efficient Inference for Small Language Models\n",
    "Abstract: Deep learning has changed computer vision, speech recognition and natural language processing.",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(chat: bool):
    """A 400-token byte-level BPE tokenizer; ``chat`` adds a ChatML template ending turns with <|im_end|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(TOKENIZER_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>" if chat else "<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
