"""Tokenizers: the bundled BERT uncased vocab matches transformers' reference WordPiece."""

import numpy as np
import pytest

from stbir_jax.data import tokenizer as tokenizer_lib

SENTENCES = [
    'A red leather Shoe with white laces.',
    'navy-blue suede boot, dotted; rubber sole!!',
    'naïve café chair in turquoise velvet',
    'houndstooth mug',
]


@pytest.fixture(scope='module')
def reference():
  # transformers 5's BertTokenizer ignores `vocab_file=`; the pure-Python legacy WordPiece reads
  # the file itself, so it is an independent reference for the bundled vocab.
  from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # pylint: disable=g-import-not-at-top
  return BertTokenizerLegacy(vocab_file=tokenizer_lib.BUNDLED_VOCAB, do_lower_case=True)


def test_bundled_ids_match_reference(reference):
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  assert tok is tokenizer_lib.get_tokenizer('bert_uncased')  # cached
  assert tok.vocab_size == 30522 and tok.pad_id == 0
  ids, mask = tok.encode(SENTENCES, 24)
  for row, sentence in enumerate(SENTENCES):
    want = reference(sentence)['input_ids']
    assert len(want) < 24
    assert ids[row, :len(want)].tolist() == want
    assert mask[row].tolist() == [1] * len(want) + [0] * (24 - len(want))
    assert not ids[row, len(want):].any()
  # Known ids of bert-base-uncased: [CLS] a red leather shoe ...
  assert ids[0, :5].tolist() == [101, 1037, 2417, 5898, 10818]


def test_truncation_and_shapes(reference):
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  ids, mask = tok.encode(SENTENCES, 5)
  assert ids.shape == mask.shape == (4, 5) and ids.dtype == mask.dtype == np.int32
  assert mask.all()
  want = reference(SENTENCES[1])['input_ids']
  assert ids[1].tolist() == want[:4] + [102]  # truncated, still ends with [SEP]
  ids, mask = tok.encode([], 7)
  assert ids.shape == (0, 7) and mask.shape == (0, 7)
  ids, mask = tok.encode([''], 4)
  assert ids.tolist() == [[101, 102, 0, 0]] and mask.tolist() == [[1, 1, 0, 0]]


def test_token_ids():
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  assert tok.token_ids(['red', 'Leather']) == {2417, 5898}
  # Multi-piece words give their pieces except the shared '##' continuations.
  pieces = tok.hf_tokenizer.tokenize('houndstooth')
  assert len(pieces) > 1 and pieces[1].startswith('##')
  assert tok.token_ids(['houndstooth']) == {tok.hf_tokenizer.convert_tokens_to_ids(pieces[0])}


def test_local_directory_roundtrip(tmp_path):
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  tok.save(str(tmp_path / 'tok'))
  local = tokenizer_lib.get_tokenizer(str(tmp_path / 'tok'))
  for a, b in zip(tok.encode(SENTENCES, 16), local.encode(SENTENCES, 16), strict=True):
    np.testing.assert_array_equal(a, b)


def test_bad_name_names_the_tokenizer(tmp_path):
  with pytest.raises(ValueError, match=f"tokenizer '{tmp_path}/missing'.*'bert_uncased'"):
    tokenizer_lib.get_tokenizer(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='Empty tokenizer name'):
    tokenizer_lib.get_tokenizer('')


def test_tokenizer_without_pad_pads_with_eos(tmp_path):
  """CLIP-style tokenizers have no pad token: pad with eos, the mask marks real tokens."""
  from tokenizers import Tokenizer, models, pre_tokenizers, processors  # pylint: disable=g-import-not-at-top
  from transformers import PreTrainedTokenizerFast  # pylint: disable=g-import-not-at-top
  vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1, 'a': 2, 'red': 3, 'shoe': 4, '<unk>': 5}
  backend = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
  backend.pre_tokenizer = pre_tokenizers.Whitespace()
  backend.post_processor = processors.TemplateProcessing(
      single='<|startoftext|> $A <|endoftext|>',
      special_tokens=[('<|startoftext|>', 0), ('<|endoftext|>', 1)])
  hf = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token='<|startoftext|>',
                               eos_token='<|endoftext|>', unk_token='<unk>')
  assert hf.pad_token is None
  hf.save_pretrained(str(tmp_path / 'clipish'))
  tok = tokenizer_lib.get_tokenizer(str(tmp_path / 'clipish'))
  assert tok.pad_id == 1
  ids, mask = tok.encode(['a red shoe', 'shoe'], 6)
  assert ids.tolist() == [[0, 2, 3, 4, 1, 1], [0, 4, 1, 1, 1, 1]]
  assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
  assert tok.token_ids(['red', 'shoe']) == {3, 4}
